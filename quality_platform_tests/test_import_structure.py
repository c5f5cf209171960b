"""The package's import graph has no cycles and no private names cross module boundaries.

A cycle (at module level, or through an import inside a function) means two modules are one
concept split in two files, or a low layer reaching up into a high one (the CLI importing
back from its own command modules, a guard importing a report). Private names (`_x`) imported
from another module are the same smell one level down. Both were found in review (issue 12)
and are kept out by this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "quality_platform"


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    mods = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str:
    while name and name not in mods:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def _graph(module_level_only: bool, package: Path = PACKAGE) -> dict[str, set[str]]:
    mods = _modules(package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if module_level_only else list(ast.walk(tree))
        for node in nodes:
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "quality_platform"
            ):
                targets = [
                    _resolve(f"{node.module}.{alias.name}", mods) or _resolve(node.module, mods)
                    for alias in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [
                    _resolve(alias.name, mods)
                    for alias in node.names
                    if alias.name.startswith("quality_platform")
                ]
            graph[module].update(t for t in targets if t and t != module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_module_level() -> None:
    assert _cycles(_graph(module_level_only=True)) == []


def test_no_import_cycles_through_function_level_imports() -> None:
    assert _cycles(_graph(module_level_only=False)) == []


def _private_imports(package: Path = PACKAGE) -> list[str]:
    offenders = []
    for module, path in _modules(package).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "quality_platform"
            ):
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    # Package-private modules (defs/_checks.py, cli/_common.py) are imported as
                    # a whole by their siblings; their names are public within the package.
                    if (
                        private
                        and not (package.parent / node.module.replace(".", "/"))
                        .joinpath(alias.name)
                        .with_suffix(".py")
                        .exists()
                    ):
                        offenders.append(f"{module}: from {node.module} import {alias.name}")
    return offenders


def test_no_private_name_is_imported_from_another_module() -> None:
    assert _private_imports() == []


def report(package: Path) -> str:
    """The import structure of ``package`` (a checkout's ``quality_platform/``): size, largest
    modules, cycles, modules that read the environment, private names imported across modules.
    ``python quality_platform_tests/test_import_structure.py [PACKAGE_DIR]`` prints it."""
    import re

    mods = _modules(package)
    lines = {m: len(p.read_text().splitlines()) for m, p in mods.items()}
    env = {
        m: n
        for m, p in mods.items()
        if (n := len(re.findall(r"os\.environ|os\.getenv", p.read_text())))
    }
    largest = sorted(lines.items(), key=lambda kv: -kv[1])[:5]
    return "\n".join(
        [
            f"{len(mods)} modules, {sum(lines.values())} lines",
            "largest: " + ", ".join(f"{m} {n}" for m, n in largest),
            f"cycles (module level): {_cycles(_graph(True, package)) or 'none'}",
            f"cycles (with function-level imports): {_cycles(_graph(False, package)) or 'none'}",
            "read the environment (os.environ/os.getenv sites): "
            + (", ".join(f"{m} ({n})" for m, n in sorted(env.items())) or "none"),
            f"private names imported from another module: {len(_private_imports(package))} lines",
        ]
    )


if __name__ == "__main__":
    import sys

    print(report(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PACKAGE))
