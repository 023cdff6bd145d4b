"""benchmarks/compare.py: reading the scripts' JSON, medians per side, ratios and flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the clone, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.compare import (  # noqa: E402
    DEFAULTS,
    Figure,
    parse_run,
    record,
    render,
    script_args,
    split_argv,
    tree,
)


def item(
    name: str, value: float | None, *, better: str = "higher", ours: bool = True
) -> dict[str, object]:
    return {
        "name": name,
        "value": value,
        "unit": "x/s",
        "better": better,
        "ours": ours,
        "error": None if value is not None else "lost events",
    }


def test_parse_run_takes_the_last_json_line_after_other_output() -> None:
    figures = [item("a", 1.0)]
    stdout = "round 1/1 done\n{not the figures\n" + json.dumps({"figures": figures}) + "\n"
    assert parse_run(stdout) == figures


def test_parse_run_without_figures_says_so() -> None:
    with pytest.raises(ValueError, match="no JSON figures"):
        parse_run("| a table | only |\n")


def test_score_is_head_over_base_for_rates_and_base_over_head_for_times() -> None:
    rate = Figure("s", "rate", "x/s", "higher", True, base=[100.0, 90.0, 110.0], head=[80.0])
    time = Figure("s", "time", "ms", "lower", True, base=[2.0], head=[4.0, 5.0, 3.0])
    assert rate.score() == pytest.approx(0.8)
    assert time.score() == pytest.approx(0.5)


def test_worse_flags_our_figures_beyond_five_percent_only() -> None:
    inside = Figure("s", "a", "x/s", "higher", True, base=[100.0], head=[95.5])
    beyond = Figure("s", "b", "x/s", "higher", True, base=[100.0], head=[94.0])
    slower = Figure("s", "c", "ms", "lower", True, base=[1.0], head=[1.06])
    control = Figure("s", "d", "x/s", "higher", False, base=[100.0], head=[50.0])
    assert [f.worse() for f in (inside, beyond, slower, control)] == [False, True, True, False]


def test_a_failed_figure_of_ours_is_flagged_and_shown_as_failed() -> None:
    table: dict[tuple[str, str], Figure] = {}
    record(table, "fanout", "base", [item("a", 10.0)])
    record(table, "fanout", "head", [item("a", None)])
    (figure,) = table.values()
    assert figure.base == [10.0]
    assert figure.head == []
    assert figure.errors == ["head: lost events"]
    assert figure.score() is None
    assert figure.worse()
    assert "FAILED: head: lost events" in render([figure])[-1]


def test_record_and_render_give_medians_per_side_and_the_flag() -> None:
    table: dict[tuple[str, str], Figure] = {}
    for side, values in (("base", [100.0, 300.0, 200.0]), ("head", [150.0, 170.0, 160.0])):
        for value in values:
            record(table, "http", side, [item("rate", value), item("peer", value, ours=False)])
    ours, peer = table.values()
    assert (ours.base, ours.head) == ([100.0, 300.0, 200.0], [150.0, 170.0, 160.0])
    rows = render([ours, peer])
    assert rows[2] == "| http | rate | 200.0 x/s | 160.0 x/s | 0.800 | **worse > 5 %** |"
    assert rows[3] == "| http | peer | 200.0 x/s | 160.0 x/s | 0.800 | control |"


@given(
    st.floats(min_value=1e-3, max_value=1e9),
    st.floats(min_value=1e-3, max_value=1e9),
    st.sampled_from(["higher", "lower"]),
)
def test_swapping_base_and_head_inverts_the_score(a: float, b: float, better: str) -> None:
    forward = Figure("s", "f", "u", better, True, base=[a], head=[b]).score()
    backward = Figure("s", "f", "u", better, True, base=[b], head=[a]).score()
    assert forward is not None
    assert backward is not None
    assert forward * backward == pytest.approx(1.0)
    assert forward == pytest.approx(b / a if better == "higher" else a / b)


def test_split_argv_passes_what_follows_the_double_dash_to_the_scripts() -> None:
    assert split_argv(["--base", "x", "fanout", "--", "--gc", "--timeout", "9"]) == (
        ["--base", "x", "fanout"],
        ["--gc", "--timeout", "9"],
    )
    assert split_argv(["--base", "x", "http"]) == (["--base", "x", "http"], [])


def test_script_args_use_the_defaults_or_replace_them() -> None:
    assert script_args("fanout", ["--gc"]) == ("fanout", [*DEFAULTS["fanout"], "--gc"])
    assert script_args("http:--clients 100 --only 'raw ASGI'", []) == (
        "http",
        ["--clients", "100", "--only", "raw ASGI"],
    )
    with pytest.raises(ValueError, match="unknown script 'encode'"):
        script_args("encode", [])


def test_the_fanout_script_emits_figures_that_compare_reads() -> None:
    script = ROOT / "benchmarks" / "fanout.py"
    command = [sys.executable, str(script), "--quick", "--json", "--only", "ours"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    figures = parse_run(done.stdout)
    assert len(figures) == 10
    assert all(f["ours"] and f["error"] is None and f["value"] > 0 for f in figures)
    assert {f["better"] for f in figures} == {"higher", "lower"}


def test_a_commit_gets_a_temporary_worktree_that_is_removed_afterwards() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: compare.py needs git worktrees")
    with tree("HEAD") as (path, sha):
        assert (Path(path) / "src" / "sse_channels" / "__init__.py").is_file()
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True
        ).stdout
        assert os.path.realpath(path) in {
            os.path.realpath(line.split()[0]) for line in listed.splitlines()
        }
        assert sha
    assert not Path(path).exists()
