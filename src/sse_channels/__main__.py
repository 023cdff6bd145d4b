"""The ``sse-channels`` command (also ``python -m sse_channels``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; return the exit code."""
    parser = argparse.ArgumentParser(prog="sse-channels", description="sse-channels tools.")
    parser.add_argument("--version", action="version", version=f"sse-channels {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "demo", help="serve the live demo (see 'sse-channels demo --help')", add_help=False
    )
    _, rest = parser.parse_known_args(argv)
    from .demo.__main__ import main as demo  # the only command so far

    return demo(rest, prog="sse-channels demo")


if __name__ == "__main__":
    sys.exit(main())
