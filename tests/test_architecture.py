"""The shape of the package, as ``docs/architecture.md`` draws it, checked from the source.

* no import cycle, counting imports inside functions too (so no function-level import
  can exist to dodge one);
* imports only run down the layers (``LAYERS``); ``local/`` (the platform's side) imports
  only leaves, ``config`` and ``errors``; nothing imports ``cli``;
* no module outside ``resources/`` (and ``local/``, which plays the platform) spells a
  platform route;
* no module over ``MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "xpander_sync"
MAX_LINES = 700

#: Layer of each top-level part of the package: an import may only point to the same or a lower layer.
LAYERS = {
    "_version": 0, "_retry": 0, "_async": 0, "_cache": 0, "_redact": 0, "_scripted_formats": 0, "_scripted_model": 0,
    "_deadline": 0, "_process": 0,
    "errors": 1, "config": 1,
    "transport": 2, "models": 2, "_converter": 2, "handlers": 2,
    "resources": 3,
    "reporting": 4, "outbox": 4, "frameworks": 4, "summary": 4,
    "backend": 5, "worker": 5, "tracking": 5,
    "cli": 6, "cli_run": 6, "quickstart": 6, "contrib": 6, "testing": 6, "__main__": 6, "__init__": 6,
    "local": 1,  # the platform's side: leaves, errors and config only (checked below)
}
LOCAL_MAY_IMPORT = {"_version", "_retry", "_async", "_cache", "_redact", "_scripted_formats", "_scripted_model",
                    "errors", "config", "local"}

#: Platform routes (as literals or f-string pieces); the local backend serves them, resources/ sends them.
ROUTE = re.compile(
    r"/agent-execution/|/agents/|/agents-metrics/|/mcp_auth/|/metadata/|/operations/|/events/|/report_task"
    r"|/llm-proxy/|/knowledge-bases/|/knowledge_bases/|/memories/|/organizations/|/dynamic-prompt|/channel-presence"
)


def _modules() -> Iterator[Tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(_modules())


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> List[str]:
    if node.level:
        base = module.split(".")
        base = base if _is_package(module) else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if not prefix.startswith("xpander_sync"):
        return []
    targets = []
    for alias in node.names:
        sub = f"{prefix}.{alias.name}"
        targets.append(sub if sub in MODULES else prefix)
    return targets


def _type_checking_lines(tree: ast.AST) -> Set[int]:
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str) -> Set[str]:
    """Every package module imported anywhere in ``module`` (functions included, TYPE_CHECKING not)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    out: Set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            out.update(_resolve(module, node))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("xpander_sync."))
    out.discard(module)
    return {m for m in out if m in MODULES}


GRAPH: Dict[str, Set[str]] = {m: _imports(m) for m in MODULES}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles() -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_the_graph_is_read_from_the_source():
    # The walker sees the arrows we know are there (a broken walker would pass everything).
    assert "xpander_sync.resources._base" in GRAPH["xpander_sync.resources.agents"]
    assert "xpander_sync.transport" in GRAPH["xpander_sync.resources._base"]
    assert any(m.startswith("xpander_sync.frameworks") for m in GRAPH["xpander_sync.backend"])


def test_no_import_cycle_even_through_imports_inside_functions():
    assert _cycles() == []


def test_imports_only_point_down_the_layers():
    wrong = []
    for module, targets in GRAPH.items():
        source = _part(module)
        assert source in LAYERS, f"{module}: add {source!r} to LAYERS (and to docs/architecture.md)"
        for target in targets:
            dest = _part(target)
            if source == "local":
                if dest not in LOCAL_MAY_IMPORT:
                    wrong.append(f"{module} -> {target} (local/ imports only leaves, errors and config)")
            elif dest == "local" and source not in ("testing", "quickstart", "cli", "__init__"):
                wrong.append(f"{module} -> {target} (only the CLI and the test kit start the local backend)")
            elif dest != "local" and LAYERS[dest] > LAYERS[source]:
                wrong.append(f"{module} -> {target} (layer {LAYERS[source]} imports layer {LAYERS[dest]})")
            if dest == "cli" and source not in ("cli", "__main__", "contrib"):
                wrong.append(f"{module} -> {target} (nothing imports the CLI but the framework commands)")
    assert wrong == []


def _strings(tree: ast.AST) -> Iterator[Tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_only_resources_spell_platform_routes():
    found = []
    for module, path in MODULES.items():
        if _part(module) in ("resources", "local"):
            continue
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            match = ROUTE.search(text)
            if match:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {match.group(0)}")
    assert found == []


def test_the_route_check_sees_routes():
    # The check would find a route spelled outside resources/ (the pattern is not dead).
    tree = ast.parse('x = f"/agent-execution/{task_id}/events/push"\n"""GET /agents/{id}"""')
    hits = [m.group(0) for _, text in _strings(tree) for m in [ROUTE.search(text)] if m]
    assert sorted(hits) == ["/agent-execution/", "/agents/", "/events/"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_reads_in_one_sitting(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it (docs/architecture.md)"
