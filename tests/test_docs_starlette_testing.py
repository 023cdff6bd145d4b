"""docs/starlette.md's testing example runs as written: its app, its conftest.py fixture and
its three tests pass together, so a test after the first does not meet a closed store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "starlette.md"


def example(name: str) -> str:
    found = re.search(rf"```python\n(# {re.escape(name)}\n.*?)```", DOC.read_text(), re.DOTALL)
    assert found is not None, f"docs/starlette.md has no {name} example"
    return found.group(1)


def test_docs_testing_example_passes_three_tests_each_with_a_fresh_store(tmp_path: Path) -> None:
    for name in ("app.py", "conftest.py", "test_app.py"):
        (tmp_path / name).write_text(example(name))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b3 passed\b", result.stdout), result.stdout


def test_docs_testing_example_fails_without_the_fresh_store_fixture(tmp_path: Path) -> None:
    # The trap the fixture avoids: entering the module's own store in each test.
    (tmp_path / "app.py").write_text(example("app.py"))
    (tmp_path / "conftest.py").write_text(
        example("conftest.py").replace(
            "fresh = ChannelStore()", "fresh = app_module.store  # the trap"
        )
    )
    (tmp_path / "test_app.py").write_text(example("test_app.py"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "StoreClosedError" in result.stdout
    assert "cannot be reopened" in result.stdout  # the error says what to do
