"""The ``sse-channels`` command (also ``python -m sse_channels``).

Subcommands are found through the ``sse_channels.commands`` entry-point group, so the
library imports none of them: the demo registers ``demo`` in pyproject.toml, and an
installed extra or plugin can add its own. A command is a callable
``(argv, *, prog) -> int`` that parses the rest of the command line itself.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

#: The entry-point group a command registers in.
COMMANDS = "sse_channels.commands"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; return the exit code."""
    found = {point.name: point for point in entry_points(group=COMMANDS)}
    parser = argparse.ArgumentParser(prog="sse-channels", description="sse-channels tools.")
    parser.add_argument("--version", action="version", version=f"sse-channels {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in sorted(found):
        commands.add_parser(name, help=f"see 'sse-channels {name} --help'", add_help=False)
    args, rest = parser.parse_known_args(argv)
    command = found[args.command].load()  # imported only when it is the one asked for
    return int(command(rest, prog=f"sse-channels {args.command}"))


if __name__ == "__main__":
    sys.exit(main())
