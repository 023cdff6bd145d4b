"""Run benchmark scripts on two commits side by side, interleaved, and compare their medians.

Run from a clone::

    .venv/bin/python benchmarks/compare.py --base 46c9a9d [--head f49b6d6] --rounds 7 \\
        fanout http redis [-- extra args for every script]

``--base`` and ``--head`` name commits; each gets a temporary ``git worktree`` (removed
afterwards). Without ``--head``, the head is this checkout as it is, uncommitted changes
included. Each round runs every script once on each side, alternating which side goes
first (base, head, then head, base, ...), so drift on a shared machine falls on both.

Every run uses the scripts of *this* checkout, with ``PYTHONPATH=<tree>/src``, so that only
the library differs between the two sides and the harness is held constant (a harness
change would otherwise show up as a library change; older commits' scripts also lack
``--json``). The scripts print their medians as JSON (``--json``); each run makes one value
per figure, and this script reports, per figure, the median over the rounds on each side,
the ratio, and a flag on every sse-channels figure more than 5 % worse on the head. Rows of
peers are controls: they run the same code on both sides, so their ratios show the noise.

A script may carry its own arguments after a colon, replacing its defaults (``DEFAULTS``
below): ``"http:--clients 100 --only sse-channels"``. Arguments after ``--`` go to every
script after those. Prints a markdown table to stdout and writes no files outside the
temporary worktrees.
"""

from __future__ import annotations

import os
import sys

# Run as ``python benchmarks/compare.py``, this directory comes first on sys.path, where
# http.py and redis.py would shadow the packages of those names.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import contextlib
import datetime
import json
import shlex
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: One inner round per run (this script does the rounds), and only the rows that the
#: comparison needs: sse-channels', plus one control that runs the same code on both sides.
DEFAULTS = {
    "fanout": ["--rounds", "1", "--only", "ours", "ours_batch", "queue"],
    "http": ["--rounds", "1", "--only", "sse-channels", "sse-channels (Starlette)", "raw ASGI"],
    "redis": ["--rounds", "1", "--only", "sse-channels", "baseline", "--python", sys.executable],
}
#: A figure more than this much worse on the head is flagged.
TOLERANCE = 0.05


@dataclass
class Figure:
    """One figure's values over the rounds, on each side."""

    script: str
    name: str
    unit: str
    better: str
    ours: bool
    base: list[float] = field(default_factory=list)
    head: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def score(self) -> float | None:
        """Head against base, oriented so that above 1.0 is better (None: no result)."""
        if self.errors or not self.base or not self.head:
            return None
        base, head = statistics.median(self.base), statistics.median(self.head)
        if base == 0 or head == 0:
            return None
        return head / base if self.better == "higher" else base / head

    def worse(self) -> bool:
        """True when this is our figure and the head is more than TOLERANCE worse."""
        score = self.score()
        return self.ours and (score is None or score < 1 - TOLERANCE)


def parse_run(stdout: str) -> list[dict[str, Any]]:
    """The figures of one script run: the last line of its stdout that is a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            document = json.loads(line)
            figures = document.get("figures")
            if isinstance(figures, list):
                return figures
    raise ValueError("no JSON figures in the script's output (does it support --json?)")


def record(table: dict[tuple[str, str], Figure], script: str, side: str, run: list[Any]) -> None:
    """Add one run's figures to ``table`` on ``side`` ("base" or "head")."""
    for item in run:
        key = (script, str(item["name"]))
        figure = table.setdefault(
            key,
            Figure(script, key[1], str(item["unit"]), str(item["better"]), bool(item["ours"])),
        )
        if item.get("value") is None:
            figure.errors.append(f"{side}: {item.get('error') or 'no value'}")
        else:
            getattr(figure, side).append(float(item["value"]))


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"


def render(figures: Sequence[Figure]) -> list[str]:
    """The comparison table: medians per side, the oriented ratio, and the flags."""
    lines = [
        "| script | figure | base median | head median | head vs base (>1 better) | |",
        "|---|---|---:|---:|---:|---|",
    ]
    for f in figures:
        score = f.score()
        if score is None:
            cells = ["-", "-", "-", "FAILED: " + "; ".join(f.errors[:2]) if f.errors else "-"]
        else:
            flag = "**worse > 5 %**" if f.worse() else ("control" if not f.ours else "")
            cells = [
                f"{_number(statistics.median(f.base))} {f.unit}",
                f"{_number(statistics.median(f.head))} {f.unit}",
                f"{score:.3f}",
                flag,
            ]
        lines.append(f"| {f.script} | {f.name} | {' | '.join(cells)} |")
    return lines


@contextlib.contextmanager
def tree(commit: str | None) -> Iterator[tuple[str, str]]:
    """A checkout of ``commit`` (a temporary worktree), or this one for None: (path, id)."""
    if commit is None:
        state = git("status", "--porcelain", "--untracked-files=no", "--", "src").strip()
        yield ROOT, git("rev-parse", "--short", "HEAD").strip() + (" + changes" if state else "")
        return
    sha = git("rev-parse", "--short", f"{commit}^{{commit}}").strip()
    path = tempfile.mkdtemp(prefix=f"sse-compare-{sha}-")
    git("worktree", "add", "--detach", path, sha)
    try:
        yield path, sha
    finally:
        git("worktree", "remove", "--force", path)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", ROOT, *args], check=True, capture_output=True, text=True
    ).stdout


def run_script(script: str, args: list[str], src: str) -> tuple[list[Any] | None, str]:
    """Run one script against the library in ``src``: its figures, or None and the error."""
    env = {**os.environ, "PYTHONPATH": src}
    command = [sys.executable, os.path.join(HERE, f"{script}.py"), *args, "--json"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        return parse_run(done.stdout), ""
    except ValueError as exc:
        tail = " / ".join(done.stderr.strip().splitlines()[-3:])
        return None, f"exit {done.returncode}: {exc}; stderr: {tail}"


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """This script's own arguments, and those after ``--`` for every benchmark script."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, []


def script_args(spec: str, extra: list[str]) -> tuple[str, list[str]]:
    """``name`` or ``name:ARGS`` to the script's name and its arguments."""
    name, colon, own = spec.partition(":")
    if name not in DEFAULTS:
        raise ValueError(f"unknown script {name!r}: choose from {', '.join(DEFAULTS)}")
    return name, [*(shlex.split(own) if colon else DEFAULTS[name]), *extra]


def main(argv: list[str] | None = None) -> None:
    own, extra = split_argv(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", help="the commit to measure (default: this checkout as is)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each script per side")
    parser.add_argument("scripts", nargs="+", help="fanout, http, redis (or name:ARGS)")
    args = parser.parse_args(own)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        plan = [script_args(spec, extra) for spec in args.scripts]
    except ValueError as exc:
        parser.error(str(exc))
    table: dict[tuple[str, str], Figure] = {}
    began = time.monotonic()
    with tree(args.base) as (base_src, base_id), tree(args.head) as (head_src, head_id):
        sides = [("base", os.path.join(base_src, "src")), ("head", os.path.join(head_src, "src"))]
        for r in range(args.rounds):
            for name, script in plan:
                for side, src in sides if r % 2 == 0 else sides[::-1]:
                    run, error = run_script(name, script, src)
                    if run is None:
                        table.setdefault((name, "(run)"), Figure(name, "(run)", "", "", True))
                        table[(name, "(run)")].errors.append(f"{side}: {error}")
                    else:
                        record(table, name, side, run)
                    print(f"round {r + 1}/{args.rounds} {name} {side} done", file=sys.stderr)
    minutes = (time.monotonic() - began) / 60
    figures = list(table.values())
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"base {base_id}, head {head_id}; {args.rounds} interleaved rounds per side, medians; "
        f"{when}, {minutes:.0f} min; scripts and arguments: "
        + "; ".join(f"{name} {shlex.join(script)}" for name, script in plan)
        + "\n"
    )
    print("\n".join(render(figures)))
    flagged = [f for f in figures if f.worse()]
    print(f"\n{len(flagged)} sse-channels figure(s) more than 5 % worse on the head.")
    if flagged:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
