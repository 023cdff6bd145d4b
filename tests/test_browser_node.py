"""Runs the Node test of the browser module (tests/js/): Svelte's own get() and derived() on
its stores, and a compiled Svelte component that reads them with ``$store``.

It needs Node.js and the locked dev dependency ``svelte`` (``npm ci``, which ``.ci/run``
does; this test runs it itself when ``node_modules`` lacks svelte and npm is there).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="no Node.js on PATH (Debian: apt-get install nodejs npm; .ci/run does)"
)


def ensure_svelte() -> None:
    if (ROOT / "node_modules" / "svelte" / "package.json").is_file():
        return
    if NPM is None:
        pytest.skip("svelte is not installed and there is no npm to run `npm ci` with")
    subprocess.run(
        [NPM, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True, capture_output=True
    )


def test_browser_module_stores_work_with_svelte_store_get_derived_and_dollar_syntax() -> None:
    ensure_svelte()
    assert NODE is not None
    run = subprocess.run(
        [NODE, "--test", "tests/js/stores.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert tap_count(run.stdout, "fail") == 0
    assert tap_count(run.stdout, "pass") >= 10, run.stdout  # every test in stores.test.mjs ran


def tap_count(output: str, name: str) -> int:
    """A total from the summary node's test runner prints (``# pass 10``)."""
    found = re.search(rf"^# {name} (\d+)$", output, re.MULTILINE)
    assert found is not None, output
    return int(found.group(1))
