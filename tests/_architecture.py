"""Read a package's source and report where it breaks the layering rules (docs/design.md).

Pure AST reading: nothing is imported, so a rule also holds for code that only runs under a
framework or a driver the test machine may lack. Imports under ``if TYPE_CHECKING:`` count
too: a type-only import still couples two layers.

A rule is a pair of module-name predicates: modules matching ``source`` must not import a
module matching ``forbidden``. Module names are dotted and relative to nothing
(``sse_channels.asgi._engine``); third-party imports keep their own names (``starlette``).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "Module",
    "Rule",
    "Violation",
    "import_violations",
    "load_package",
    "underscore_violations",
]

Predicate = Callable[[str], bool]


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "sse_channels._store"
    path: Path
    tree: ast.Module
    is_package: bool

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Rule:
    description: str
    source: Predicate
    forbidden: Predicate


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.message}"


def load_package(root: Path) -> dict[str, Module]:
    """Every ``.py`` file under the package directory ``root``, parsed, by dotted name."""
    modules: dict[str, Module] = {}
    base = root.parent
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)), is_package)
    return modules


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.package.split(".")
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def imports(module: Module) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, imported module, names taken from it)`` for every import in ``module``."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            yield node.lineno, target, [alias.name for alias in node.names]


def _imported_modules(module: Module, known: dict[str, Module]) -> Iterator[tuple[int, str]]:
    """Each imported module; ``from pkg import sub`` counts as importing ``pkg.sub``."""
    for line, target, names in imports(module):
        yield line, target
        for name in names:
            if f"{target}.{name}" in known:
                yield line, f"{target}.{name}"


def import_violations(modules: dict[str, Module], rules: list[Rule]) -> list[Violation]:
    found: list[Violation] = []
    for module in modules.values():
        for rule in rules:
            if not rule.source(module.name):
                continue
            lines: set[int] = set()  # one report per import statement and rule
            for line, target in _imported_modules(module, modules):
                if target != module.name and rule.forbidden(target) and line not in lines:
                    lines.add(line)
                    found.append(Violation(module.name, line, f"{rule.description}: {target}"))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_underscore_names(module: Module) -> set[str]:
    """Underscore names a module defines: top-level, class members and ``self._x`` fields."""
    names: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if _private(name)}


def _own_names(module: Module) -> set[str]:
    """Attribute receivers that are the module's own objects: ``self``, ``cls``."""
    return {"self", "cls"}


def underscore_violations(modules: dict[str, Module]) -> list[Violation]:
    """Uses of another module's underscore names.

    Two kinds: ``from ours import _name`` (or ``ours._name`` on an imported module of
    ours), and ``thing._attr`` on anything but ``self``/``cls`` where ``_attr`` is not
    defined in this module but is in another of ours (a subscription's ``_entries`` read
    by the store, say). Underscore *modules* may be imported: privacy is per name.
    """
    defined = {name: _defined_underscore_names(module) for name, module in modules.items()}
    everywhere: dict[str, set[str]] = {}
    for name, attrs in defined.items():
        for attr in attrs:
            everywhere.setdefault(attr, set()).add(name)
    found: list[Violation] = []
    for module in modules.values():
        own = defined[module.name]
        aliases: dict[str, str] = {}
        for line, target, names in imports(module):
            if target not in modules:
                continue
            for name in names:
                if _private(name) and f"{target}.{name}" not in modules:
                    found.append(Violation(module.name, line, f"imports {target}.{name}"))
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node)
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
        receivers = _own_names(module)
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Attribute) or not _private(node.attr):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in receivers:
                continue
            if isinstance(value, ast.Name) and value.id in aliases:
                target = aliases[value.id]
                found.append(Violation(module.name, node.lineno, f"uses {target}.{node.attr}"))
                continue
            owners = everywhere.get(node.attr, set()) - {module.name}
            if node.attr not in own and owners:
                where = ", ".join(sorted(owners))
                found.append(Violation(module.name, node.lineno, f"uses .{node.attr} of {where}"))
    return found
