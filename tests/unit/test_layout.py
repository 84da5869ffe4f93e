"""The package's shape: the engine, the pure stages, the explainers and the result documents load
without MLflow or the MLflow layer, and no two lexflow modules import each other (directly or
around a loop)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import lexflow

PACKAGE = Path(lexflow.__file__).resolve().parent


def test_engine_stages_explainers_and_record_load_without_mlflow() -> None:
    code = (
        "import sys\n"
        "import lexflow.engine, lexflow.record, lexflow.explainers.dryrun, lexflow.explainers.mllm\n"
        "import lexflow.stages.plan, lexflow.stages.decode, lexflow.stages.evidence\n"
        "import lexflow.stages.render\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'mlflow'\n"
        "          or m.startswith('lexflow.tracking')]\n"
        "print(','.join(sorted(loaded)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("lexflow", *path.relative_to(PACKAGE).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    deps.add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_import_loops() -> None:
    """Every import counts, the lazy ones inside functions too."""
    graph = _module_graph()
    assert "lexflow.engine" in graph and graph["lexflow.engine"]
    state: dict[str, int] = {}
    loops: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                loops.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert loops == []
