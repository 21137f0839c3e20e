"""The package's import graph: the wings' layering, no cycles, and the edges (web, cli) never
imported from below.

Read statically from the source (every `import`, at module level or inside a function), so a
cycle hidden behind a late import counts too; then each module is imported alone in a fresh
interpreter, which is what a cycle breaks first.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "notifier"
# Only these may import the edges: each other (cli starts web) and the edges themselves.
EDGES = ("notifier.web", "notifier.cli")

# The wings, bottom up, and what each may import besides itself. The data flows
# dates -> schedule -> compose -> ledger -> delivery -> channels; imports run the other way
# where a producer writes to the ledger (compose) or a consumer reads it (delivery).
#   base      constants, errors, keys, logs, metrics, signing, timer, private_files (0600
#             files), invisible (hidden characters): used everywhere
#   dates     the pure calendar (knows nothing of the config)
#   config    the service's settings, their secrets' rules and the masking of those secrets
#   schedule  the config files: types, loader, planner, rule in words, feeds
#   ledger    the database; knows no config, no schedule: rows in, rows out
#   channels  ways out, each behind the one Channel contract
#   compose   templates, MIME, rows, the outbox, admin notices: the producers
#   delivery  the worker: the consumer
#   bounces   the bounce mailbox (IMAP): parses bounces, marks rows, suppresses addresses
#   app       checks, planning, reloading, service: the App that wires the rest
#   web, cli  the edges
BASE = {
    "notifier", "constants", "errors", "invisible", "keys", "logs", "metrics", "private_files",
    "signing", "timer",
}  # fmt: skip
CONFIG = {"config", "masking", "secret_checks"}
APP = {"checks", "editing", "editor", "list_editing", "planning", "reloading", "service"}
ALLOWED: dict[str, set[str]] = {
    "base": {"base"},
    "dates": {"base"},
    "config": {"dates", "base"},
    "schedule": {"config", "dates", "base"},
    "ledger": {"base"},
    "channels": {"schedule", "ledger", "config", "base"},
    "compose": {"channels", "schedule", "ledger", "config", "dates", "base"},
    "delivery": {"channels", "ledger", "config", "base"},
    # The bounce mailbox: reads bounces over IMAP and tells the ledger (issue 21).
    "bounces": {"ledger", "config", "base"},
}
ALLOWED["app"] = {"app", *ALLOWED, *set().union(*ALLOWED.values())}
ALLOWED["web"] = ALLOWED["app"] | {"app"}
ALLOWED["cli"] = ALLOWED["web"] | {"web"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """The notifier modules `path` imports (a package import names the package)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("notifier"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("notifier"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in imports_of(path, name) if m in paths and m != name}
        for name, path in paths.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def is_edge(name: str) -> bool:
    return any(name == e or name.startswith(e + ".") for e in EDGES)


def wing(name: str) -> str:
    """The wing of a module (`notifier.ledger.store` -> ledger, `notifier.keys` -> base)."""
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else "notifier"
    if top in BASE:
        return "base"
    if top in APP:
        return "app"
    if top in CONFIG:
        return "config"
    return top


def test_every_module_stands_in_a_wing() -> None:
    assert {wing(name) for name in graph()} <= set(ALLOWED)


def test_each_wing_imports_only_the_wings_below_it() -> None:
    offenders = sorted(
        f"{name} -> {dep}"
        for name, deps in graph().items()
        for dep in deps
        if wing(dep) != wing(name) and wing(dep) not in ALLOWED[wing(name)]
    )
    assert offenders == []


def test_the_layering_is_not_vacuous() -> None:
    """The rule bites: a ledger module importing the schedule would be refused."""
    assert "schedule" not in ALLOWED["ledger"] and "compose" not in ALLOWED["delivery"]
    assert "web" not in ALLOWED["app"] and "cli" not in ALLOWED["web"]
    assert wing("notifier.ledger.store") == "ledger" and wing("notifier.cli.main") == "cli"


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle() -> None:
    edges = graph()
    assert len(edges) > 30  # the whole package was read
    assert {"notifier.cli.common", "notifier.service"} <= set(edges["notifier.cli.main"])
    assert cycles(edges) == []


def test_nothing_below_the_edges_imports_web_or_cli() -> None:
    offenders = {
        name: sorted(d for d in deps if is_edge(d))
        for name, deps in graph().items()
        if not is_edge(name)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_each_module_imports_alone() -> None:
    """Each module first in a clean slate of notifier modules (third-party ones stay loaded:
    they are what costs time, and no cycle can run through them)."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'notifier']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    names = sorted(graph())
    done = subprocess.run(
        [sys.executable, "-c", script, *names], capture_output=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == ""
