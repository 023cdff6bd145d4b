"""The Redis backend as a package: what its wheel ships, and what each of its modules may use.

The module map in docs/design.md, enforced: each module of ``sse_channels.backends.redis``
imports only the modules of ours (and third-party packages) its row allows, and no module
reaches into another object's underscore attributes (redis-py's included).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sse_channels.backends.redis as package

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(package.__file__).parent
NAME = "sse_channels.backends.redis"

#: module -> what it may import: modules of ours (absolute) and third-party top-level names.
MAY_IMPORT: dict[str, set[str]] = {
    "__init__": {f"{NAME}._backend", f"{NAME}._presence"},
    "_presence": {"anyio", "redis", "sse_channels._presence", f"{NAME}._scripts"},
    "_backend": {
        "anyio",
        "redis",
        "sse_channels._event",
        "sse_channels._exceptions",
        "sse_channels._observe",  # types only: the store's metrics, told of reconnects
        "sse_channels._pattern",
        "sse_channels.backends._base",
        *(f"{NAME}.{m}" for m in ("_entry", "_epoch", "_health", "_keys", "_link")),
        *(f"{NAME}.{m}" for m in ("_plan", "_resp", "_retry", "_scripts")),
        NAME,  # "from . import _entry, _scripts"
    },
    "_keys": set(),
    "_resp": set(),
    "_health": set(),
    "_epoch": set(),
    "_link": {"anyio", "redis"},
    "_entry": {"sse_channels._event", f"{NAME}._epoch"},
    "_plan": {
        "sse_channels._event",
        "sse_channels._pattern",
        *(f"{NAME}.{m}" for m in ("_entry", "_epoch", "_keys", "_resp")),
    },
    "_scripts": {"redis", f"{NAME}._keys", f"{NAME}._resp"},
    "_retry": {"redis", "sse_channels._exceptions", f"{NAME}._health"},
}


def imports_of(path: Path) -> set[str]:
    """The modules ``path`` imports: ours by full name, anything else by top-level name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = NAME.split(".")[: len(NAME.split(".")) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.partition(".")[0]
            if top == "sse_channels":
                found.add(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def test_every_module_of_the_package_is_in_the_map() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(MAY_IMPORT)


@pytest.mark.parametrize("module", sorted(MAY_IMPORT))
def test_module_imports_only_what_the_module_map_allows(module: str) -> None:
    extra = imports_of(PACKAGE / f"{module}.py") - MAY_IMPORT[module]
    assert not extra, f"{module} may not import {sorted(extra)} (see docs/design.md)"


@pytest.mark.parametrize("module", sorted(MAY_IMPORT))
def test_module_uses_no_underscore_attribute_but_its_own(module: str) -> None:
    # redis-py's private attributes (a connection's ``_writer``) change between releases.
    tree = ast.parse((PACKAGE / f"{module}.py").read_text("utf-8"))
    reached = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert not reached


def test_wheel_ships_the_lua_scripts_and_the_backend_loads_them_from_it(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("sse_channels-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = ("history", "publish", "sync", "presence")
    lua = {f"sse_channels/backends/redis/lua/{n}.lua" for n in shipped}
    assert lua <= names
    # Imported from the wheel itself (a zip file), not from the source tree.
    code = (
        "import sse_channels.backends.redis._scripts as s, sse_channels\n"
        f"assert sse_channels.__file__.startswith({str(wheel)!r}), sse_channels.__file__\n"
        "from sse_channels.backends.redis._keys import Keys\n"
        "print(sorted(len(s.load(n)) > 0 for n in s.SCRIPT_NAMES))\n"
        "s.Scripts(Keys(b'p:', 'x'), maxlen=10, ttl_ms=0)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(wheel)!r})\n" + code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[True, True, True]"
