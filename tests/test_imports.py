"""The package's import graph: no cycles in oga_core / oga_app, and the engine never imports
Streamlit (or Plotly), so every capability runs headless."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("oga_core", "oga_app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth, type-only imports (``if TYPE_CHECKING:``)
    included: a cycle through a type annotation is still a cycle between two ideas."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    found: set[str] = set()
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_import_cycles():
    graph = _graph()
    assert "oga_core.pipeline" in graph and "oga_app.figures" in graph
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_the_engine_never_imports_streamlit_or_plotly():
    for path in (REPO / "oga_core").rglob("*.py"):
        heavy = {m for m in _imports(path) if m.split(".")[0] in ("streamlit", "plotly")}
        assert not heavy, (path, heavy)


def test_the_graph_sees_a_cycle_when_there_is_one(tmp_path, monkeypatch):
    # the detector itself must be able to fail: two modules importing each other
    pkg = tmp_path / "oga_core"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from oga_core import b\n")
    (pkg / "b.py").write_text("def f():\n    from oga_core.a import x\n")
    (tmp_path / "oga_app").mkdir()
    (tmp_path / "oga_app" / "__init__.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    graph = _graph()
    assert "oga_core.b" in graph["oga_core.a"] and graph["oga_core.b"] == {"oga_core.a"}
