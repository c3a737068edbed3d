"""Layering: imports between the package's modules form no cycle, and one module writes
the webhook outbox."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "chatsessions"


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each module's imports of other chatsessions modules."""
    modules = {_module_of(p): p for p in SRC.rglob("*.py") if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        # Imports inside functions count too: deferring one hides a cycle, it does not
        # remove it.
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("chatsessions")
            ):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_module_imports_have_no_cycle() -> None:
    graph = _imports()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_only_the_outbox_writes_webhook_events() -> None:
    writers = {
        _module_of(p)
        for p in SRC.rglob("*.py")
        if any(
            marker in p.read_text()
            for marker in (
                "INSERT INTO webhook_events",
                "INSERT INTO webhook_deliveries",
                "webhook_events.insert(",
                "webhook_deliveries.insert(",
            )
        )
    }
    assert writers == {"chatsessions.webhooks.outbox"}
