"""DESIGN.md's layering, checked by walking every import of proxy/ (type-only ones included):
domain imports nothing else of the project, store no edge/control/app/ops/ofrep, edge and
control never each other, only the CLI imports the app, and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

PROXY = Path(__file__).resolve().parents[2] / "proxy"


def graph() -> dict[str, set[str]]:
    modules = {}
    for path in PROXY.rglob("*.py"):
        parts = path.relative_to(PROXY.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith("proxy"):
                    deps.add(node.module)
                    deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("proxy"))
        modules[name] = deps
    return {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}


GRAPH = graph()


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "proxy"


def test_the_walk_sees_the_whole_package() -> None:
    assert {"proxy.app", "proxy.runtime", "proxy.domain.model", "proxy.edge.snapshot"} <= set(GRAPH)
    assert "proxy.domain.access" in GRAPH["proxy.domain.model"]


def test_domain_imports_nothing_else_of_the_project() -> None:
    for module, deps in GRAPH.items():
        if layer(module) == "domain":
            assert {layer(d) for d in deps} <= {"domain"}, (module, deps)


def test_store_knows_neither_edge_control_app_nor_ops() -> None:
    forbidden = {"edge", "control", "app", "ops", "ofrep", "runtime", "http", "errors"}
    for module, deps in GRAPH.items():
        if layer(module) == "store":
            assert not {layer(d) for d in deps} & forbidden, (module, deps)


def test_edge_and_control_never_import_each_other_or_the_app() -> None:
    for module, deps in GRAPH.items():
        mine = layer(module)
        if mine in ("edge", "control"):
            other = "control" if mine == "edge" else "edge"
            assert not {layer(d) for d in deps} & {other, "app"}, (module, deps)
    assert not {layer(d) for d in GRAPH["proxy.openapi"]} & {"edge", "control"}


def test_only_the_cli_imports_the_app() -> None:
    importers = {m for m, deps in GRAPH.items() if "proxy.app" in deps}
    assert importers <= {"proxy.__main__"}, importers


def test_there_is_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in GRAPH[module]:
            if state.get(dep) == 1:
                raise AssertionError(" -> ".join([*path, module, dep]))
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [])
