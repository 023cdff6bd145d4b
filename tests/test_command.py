"""The ``sse-channels`` command finds its subcommands without the library importing them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sse_channels.__main__ import main


def test_command_lists_the_demo_found_through_its_entry_point(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_command_imports_a_subcommand_only_when_it_is_asked_for() -> None:
    probe = (
        "import sys\n"
        "from sse_channels.__main__ import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('sse_channels.demo')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_command_runs_the_subcommand_with_the_rest_of_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: sse-channels demo")


def test_command_refuses_an_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
