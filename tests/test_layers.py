"""The layout's rules, read from the imports themselves so that they cannot rot.

Data flows one way: an interface (cli, api, web) calls the engine; the engine calls the
pipeline, the catalog, the index and rights. Nothing below calls back up, and no interface
reaches past the engine into the catalog or the index.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import vultus

PACKAGE = Path(vultus.__file__).parent
INTERFACES = ("api", "web", "cli")
STORES = ("catalog", "index")
# The foundations everything stands on: they import nothing of Vultus but each other.
FOUNDATIONS = ("config", "errors", "files", "clock", "vectors", "storage", "crypto", "lawful_basis")
# One interface may start another: `vultus serve` starts the server (api, which mounts web).
STARTS = {("cli.serve", "api")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported vultus module, line), relative to the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                elif node.module and node.module.startswith("vultus"):
                    target = node.module.removeprefix("vultus").lstrip(".")
                else:
                    continue
                # `from vultus import audit` names a module, not an attribute.
                names = [a.name for a in node.names]
                targets = [f"{target}.{n}".lstrip(".") for n in names] if not target else [target]
                found += [(module, t, node.lineno) for t in targets]
            elif isinstance(node, ast.Import):
                found += [
                    (module, a.name.removeprefix("vultus."), node.lineno)
                    for a in node.names
                    if a.name.startswith("vultus.")
                ]
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


IMPORTS = _imports()


def _broken(rule: str, allowed: Callable[[str, str], bool]) -> list[str]:
    return [
        f"{rule}: vultus.{a} imports vultus.{b} (line {n})"
        for a, b, n in IMPORTS
        if not allowed(a, b)
    ]


def test_the_import_reader_sees_the_layout() -> None:
    # A reader that found nothing would pass every rule below.
    pairs = {(_top(a), _top(b)) for a, b, _ in IMPORTS}
    assert ("engine", "catalog") in pairs
    assert ("api", "engine") in pairs
    assert ("catalog", "crypto") in pairs
    assert len(IMPORTS) > 300


def test_stores_and_pipeline_never_import_upwards() -> None:
    upper = {"engine", "rights", *INTERFACES}
    broken = _broken(
        "catalog/index/pipeline import upwards",
        lambda a, b: not (_top(a) in (*STORES, "pipeline") and _top(b) in upper),
    )
    assert not broken, "\n".join(broken)


def test_nothing_outside_the_interfaces_imports_them() -> None:
    broken = _broken(
        "below the interfaces",
        lambda a, b: _top(b) not in INTERFACES or _top(a) in INTERFACES or a == "__main__",
    )
    assert not broken, "\n".join(broken)


def test_interfaces_reach_catalog_and_index_only_through_the_engine() -> None:
    broken = _broken(
        "interface past the engine", lambda a, b: not (_top(a) in INTERFACES and _top(b) in STORES)
    )
    assert not broken, "\n".join(broken)


def test_interfaces_do_not_import_one_another() -> None:
    def allowed(a: str, b: str) -> bool:
        if _top(a) not in INTERFACES or _top(b) not in INTERFACES or _top(a) == _top(b):
            return True
        return (a, _top(b)) in STARTS

    broken = _broken("interface to interface", allowed)
    assert not broken, "\n".join(broken)


def test_foundations_import_only_foundations() -> None:
    broken = _broken(
        "foundation imports upwards",
        lambda a, b: a not in FOUNDATIONS or _top(b) in FOUNDATIONS or b == "",
    )
    assert not broken, "\n".join(broken)


def test_every_engine_method_lives_in_engine() -> None:
    # The Engine is assembled from mixins; each must be a module of the engine package.
    from vultus.engine import Engine

    modules = {cls.__module__ for cls in Engine.__mro__ if cls.__module__.startswith("vultus")}
    assert len(modules) >= 4 and all(m.startswith("vultus.engine.") for m in modules), modules
