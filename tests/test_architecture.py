"""The layering of docs/design.md's module map, enforced on the source.

Each rule is checked twice: on the real package (no violations), and on a small package
written here with exactly one violation per rule (the rule must report it), so a rule that
has silently stopped matching anything fails too.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from _architecture import (
    Rule,
    import_violations,
    load_package,
    underscore_violations,
)

if TYPE_CHECKING:
    from collections.abc import Callable

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "sse_channels"

WIRE = {"sse_channels._encode", "sse_channels._event", "sse_channels._decode"}
FRAMEWORKS = ("starlette", "fastapi", "django", "litestar", "quart")
HELPERS = tuple(f"sse_channels.{name}" for name in ("starlette", "django", "litestar", "quart"))
DRIVERS = ("redis", "psycopg", "psycopg_pool", "asyncpg")


def under(*prefixes: str) -> Callable[[str], bool]:
    def matches(name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)

    return matches


def is_ours(name: str) -> bool:
    return name == "sse_channels" or name.startswith("sse_channels.")


def is_store_core(name: str) -> bool:
    """The package's own private top-level modules, but the endpoint-testing ones."""
    head, _, leaf = name.rpartition(".")
    return (
        head == "sse_channels"
        and leaf.startswith("_")
        and not leaf.startswith(("_testing_asgi", "_testing_client", "__"))
    )


asgi = under("sse_channels.asgi")
helpers = under(*HELPERS)
demo = under("sse_channels.demo")
frameworks = under(*FRAMEWORKS)
backends = under("sse_channels.backends")
drivers = under(*DRIVERS, "sse_channels.backends.redis", "sse_channels.backends.postgres")
metrics = under("sse_channels.metrics", "prometheus_client", "opentelemetry")

RULES = [
    Rule(
        "a wire module imports another module of ours",
        lambda name: name in WIRE,
        lambda target: is_ours(target) and target not in WIRE,
    ),
    Rule(
        "the store imports ASGI, a helper or the demo",
        is_store_core,
        lambda target: asgi(target) or helpers(target) or demo(target) or frameworks(target),
    ),
    Rule(
        "a backend imports ASGI or a helper",
        backends,
        lambda target: asgi(target) or helpers(target) or frameworks(target),
    ),
    Rule(
        "the ASGI core imports a framework",
        asgi,
        lambda target: frameworks(target) or helpers(target),
    ),
    Rule(
        "the memory backend imports a driver",
        under("sse_channels.backends.memory", "sse_channels.backends._base"),
        drivers,
    ),
    Rule(
        "the library imports the metrics package or a metrics library",
        lambda name: is_ours(name) and not under("sse_channels.metrics")(name),
        metrics,
    ),
    Rule(
        "the library imports the demo",
        lambda name: is_ours(name) and not demo(name),
        demo,
    ),
]


def test_the_package_keeps_every_layering_rule() -> None:
    found = import_violations(load_package(PACKAGE), RULES)
    assert not found, "\n".join(map(str, found))


def test_no_module_uses_another_modules_underscore_names() -> None:
    found = underscore_violations(load_package(PACKAGE))
    assert not found, "\n".join(map(str, found))


# -- each rule fails on a package that breaks it -----------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    package = root / "sse_channels"
    for relative, source in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    for directory in [package, *[p for p in package.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    return package


CLEAN = {
    "_encode.py": "import json\n",
    "_event.py": "from ._encode import json\n",
    "_store.py": "from ._event import json\nfrom .backends.memory import MemoryBackend\n",
    "backends/memory.py": "from .._event import json\nclass MemoryBackend: ...\n",
    "asgi/_engine.py": "from .._store import MemoryBackend\n",
    "starlette.py": "import starlette\nfrom .asgi._engine import MemoryBackend\n",
    "demo/_app.py": "from ..starlette import starlette\n",
}

BROKEN = {
    "a wire module imports another module of ours": {"_encode.py": "from ._store import x\n"},
    "the store imports ASGI, a helper or the demo": {"_store.py": "from .asgi import _engine\n"},
    "a backend imports ASGI or a helper": {"backends/memory.py": "from ..starlette import y\n"},
    "the ASGI core imports a framework": {"asgi/_engine.py": "from starlette.types import Scope\n"},
    "the memory backend imports a driver": {"backends/memory.py": "import redis.asyncio\n"},
    "the library imports the metrics package or a metrics library": {
        "asgi/_engine.py": "from ..metrics import prometheus\n"
    },
    "the library imports the demo": {"testing.py": "from . import demo\n"},
}


def test_a_clean_synthetic_package_passes_every_rule(tmp_path: Path) -> None:
    package = load_package(write(tmp_path, CLEAN))
    assert import_violations(package, RULES) == []
    assert underscore_violations(package) == []


@pytest.mark.parametrize("rule", [rule.description for rule in RULES])
def test_each_layering_rule_fails_on_an_added_forbidden_import(tmp_path: Path, rule: str) -> None:
    package = load_package(write(tmp_path, {**CLEAN, **BROKEN[rule]}))
    found = import_violations(package, RULES)
    assert [v.message.split(":")[0] for v in found] == [rule], found


@pytest.mark.parametrize(
    "source",
    [
        # a field another module owns, read through an object
        "def peek(subscription):\n    return subscription._entries\n",
        # an underscore name imported from another module of ours
        "from .._store import _collect\n",
        # an underscore name reached through an imported module of ours
        "from .. import _store\n_store._collect()\n",
    ],
)
def test_an_added_cross_module_underscore_access_fails(tmp_path: Path, source: str) -> None:
    files = {
        **CLEAN,
        "_store.py": "def _collect(): ...\nclass Store:\n    def __init__(self):\n"
        "        self._entries = []\n",
        "asgi/_engine.py": source,
    }
    found = underscore_violations(load_package(write(tmp_path, files)))
    assert len(found) == 1, found
    assert found[0].module == "sse_channels.asgi._engine"


def test_a_modules_own_underscore_names_and_self_fields_are_allowed(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "_store.py": "_LIMIT = 3\nclass Store:\n    def __init__(self):\n"
        "        self._entries = []\n    def size(self, other: 'Store'):\n"
        "        return len(self._entries) + len(other._entries) + _LIMIT\n",
    }
    assert underscore_violations(load_package(write(tmp_path, files))) == []
