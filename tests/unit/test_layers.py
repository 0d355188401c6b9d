"""The shape of the code: imports point only down, no circles, small modules.

docs/architecture.md ("Layers") draws the packages from the bottom up; this
test reads every module's imports (TYPE_CHECKING ones included: a type-only
import is still a dependency a reader must follow) and holds the code to it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pigeon
from pigeon.testing.source import parse_source

SRC = Path(pigeon.__file__).resolve().parent.parent

#: docs/architecture.md, "Layers": a package may import packages of a lower
#: rank, and of its own rank when no circle results.
RANK = {
    "pigeon": 0,  # the package itself: its version, nothing imported
    "pigeon.vocab": 0,
    "pigeon.fsutil": 0,
    "pigeon.compiled": 0,  # which modules setup.py compiles with mypyc; stdlib only
    "pigeon.proto": 1,
    "pigeon.config": 2,
    "pigeon.msgfile": 2,
    "pigeon.dataformat": 2,
    "pigeon.mailstore": 2,
    "pigeon.obs": 3,
    "pigeon.auth": 3,
    "pigeon.dns": 3,
    "pigeon.reports": 3,
    "pigeon.forwarding": 3,
    "pigeon.queue": 4,
    # The PostgreSQL store (issue 17): implements the queue's interfaces and
    # reuses its model, health and ID generator; nothing below imports it.
    "pigeon.store": 5,
    "pigeon.routing": 5,
    "pigeon.signing": 5,
    "pigeon.delivery": 6,
    "pigeon.policy": 6,
    "pigeon.hooks": 6,
    "pigeon.net": 7,
    "pigeon.readers": 7,  # POP3, IMAP: above mailstore, auth, proto and net
    "pigeon.webhooks": 7,  # above config, queue (the envelope) and hooks (delivery events)
    "pigeon.qmgr": 8,
    "pigeon.admin": 9,
    "pigeon.privileges": 9,
    "pigeon.web": 10,  # the HTTP API: beside app, which starts it; above admin, which it asks
    "pigeon.console": 10,  # the web console: pages added to the API's application by app
    "pigeon.app": 10,
    "pigeon.cli": 11,
    "pigeon.api": 11,
    "pigeon.testing": 11,
    "pigeon.__main__": 12,
}

#: The two protocol cores may be bigger: each is one state machine whose
#: parts read best together (CONTRIBUTING.md, "Habits").
SIZE_EXEMPT = {"pigeon/proto/server.py", "pigeon/proto/client.py"}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "pigeon").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(parse_source(path)):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                subs = {f"{base}.{a.name}" for a in node.names} & mods.keys()
                graph[name] |= subs
                if base in mods and len(subs) < len(node.names):
                    graph[name].add(base)
    return graph


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        for dep in deps:
            a, b = _package(module), _package(dep)
            if a != b:
                out.setdefault(a, set()).add(b)
    return out


def test_no_module_imports_in_a_circle():
    assert _cycles(_graph()) == []


def test_no_package_imports_in_a_circle():
    assert _cycles(_package_graph(_graph())) == []


def test_every_package_has_a_rank():
    assert {_package(m) for m in _modules()} <= RANK.keys()


def test_imports_point_only_down():
    upward = sorted(
        f"{a} -> {b}"
        for a, deps in _package_graph(_graph()).items()
        for b in deps
        if RANK[b] > RANK[a]
    )
    assert upward == []


def test_no_module_is_over_500_lines():
    big = {
        str(path.relative_to(SRC)): n
        for path in (SRC / "pigeon").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
        and str(path.relative_to(SRC)) not in SIZE_EXEMPT
    }
    assert big == {}
