"""The house rules of src/: floors that import only downwards, no circles, no hidden imports.

The floors, from the ground up (README "Code tour" and docs/architecture.md draw them):

    1 settings          src/config.py
    2 market calendar   src/market_calendar.py
    3 ingestion         src/ingestion/        (fetching only)
    4 transformation    src/transformation/   (validation, cleaning, indicators, aggregation)
    5 storage           src/storage/          (warehouses, S3 zones; no computation)
    6 monitoring        src/monitoring/       (alerts, health checks, metrics, dashboard)
    7 pipeline          src/steps.py and the runners: the CLI, the Lambda entry, analytics

A module may import from its own floor or the floors below it, never from above. The local
stand-ins (src/local_stack/) may use the pipeline's modules, but no pipeline module imports them.
The checks read the source with the standard library's `ast`: nothing is imported or run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

FLOORS = {
    "src.config": 1,
    "src.market_calendar": 2,
    "src.ingestion": 3,
    "src.transformation": 4,
    "src.storage": 5,
    "src.monitoring": 6,
    "src.steps": 7,
    "src.background": 7,
    "src.stop_signals": 7,
    "src.pipeline": 7,
    "src.lambda_handler": 7,
    "src.analytics": 7,
}
LOCAL_STACK = "src.local_stack"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int | None:
    """The floor of a src module (by its longest listed prefix), None for the package root."""
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return FLOORS[prefix]
    return None


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported src module, line, inside a function?) for every import of our own code in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    inside = {id(child) for function in functions for child in ast.walk(function)}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from src import steps` imports the module src.steps.
            names = [f"{node.module}.{alias.name}" if node.module == "src" else node.module for alias in node.names]
        for name in names:
            if name == "src" or name.startswith("src."):
                found.append((name, node.lineno, id(node) in inside))
    return found


def all_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, inside a function?) of every import statement in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    inside = {id(child) for function in functions for child in ast.walk(function)}
    return [
        (node.lineno, id(node) in inside) for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
    ]


SOURCE_FILES = sorted(SRC.rglob("*.py"))
PIPELINE_FILES = [path for path in SOURCE_FILES if not module_name(path).startswith(LOCAL_STACK)]


def test_every_module_has_a_floor():
    unplaced = [module_name(path) for path in PIPELINE_FILES if floor_of(module_name(path)) is None]
    assert unplaced == ["src"], "add new top-level modules to FLOORS"


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda path: module_name(path))
def test_imports_run_only_downwards(path):
    here = floor_of(module_name(path))
    upwards = [
        f"line {line}: {name} (floor {floor_of(name)})"
        for name, line, _ in project_imports(path)
        if floor_of(name) is not None and here is not None and floor_of(name) > here
    ]
    assert upwards == [], f"{module_name(path)} (floor {here}) imports from a higher floor"


def test_no_pipeline_module_imports_the_local_stand_ins():
    offenders = [
        f"{module_name(path)} line {line}"
        for path in PIPELINE_FILES
        for name, line, _ in project_imports(path)
        if name.startswith(LOCAL_STACK)
    ]
    assert offenders == []


def test_the_import_graph_has_no_circles():
    modules = {module_name(path): path for path in SOURCE_FILES}
    graph = {
        module: sorted({name for name, _, _ in project_imports(path) if name in modules and name != module})
        for module, path in modules.items()
    }
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        for target in graph[module]:
            if target in trail:
                circles.append(trail[trail.index(target) :] + [target])
            elif len(trail) < len(graph):
                visit(target, [*trail, target])

    for module in graph:
        visit(module, [module])
    assert circles == []


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda path: module_name(path))
def test_an_import_inside_a_function_says_why(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    silent = []
    for line, inside in all_imports(path):
        if not inside:
            continue
        # A comment on the import's own line, or in the comment block right above it (a block
        # of several imports shares one comment).
        above = line - 2
        while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
            above -= 1
        if "#" not in lines[line - 1] and not (above >= 0 and lines[above].strip().startswith("#")):
            silent.append(f"line {line}: {lines[line - 1].strip()}")
    assert silent == [], "say in a comment why this import cannot be at the top of the module"
