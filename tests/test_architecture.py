"""The layers: ``analysis`` is a library that never imports ``ddl``; no import cycle between any two modules;
no algorithm name tested outside ``ddl/algorithms``; no module over 500 lines; the flat modules of ``ddl/`` are
the ones docs/architecture.md names.

The import graph is read from the source (every ``import`` statement, including those inside functions), so a
lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ddl", "analysis")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules imported anywhere in ``path``, function bodies included."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            # ``from pkg import mod`` depends on the module pkg.mod; ``from mod import name`` on mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in targets:
            # the longest project module that t names or lies in
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_project_modules():
    graph = import_graph()
    assert len(graph) > 40  # both packages were read
    assert "ddl.loop.train" in graph["ddl.commands.cli"] or any("ddl.loop.train" in graph[m] for m in graph)
    assert cycles(graph) == []


def test_analysis_never_imports_ddl():
    graph = import_graph()
    offenders = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.startswith("analysis") for t in ts
                       if t.split(".")[0] == "ddl")  # fmt: skip
    assert offenders == []


def test_import_analysis_loads_no_ddl_module():
    code = ("import sys, analysis, analysis.figures, analysis.io\n"
            "print(sorted(m for m in sys.modules if m == 'ddl' or m.startswith('ddl.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---- the layout: one identity per algorithm, small modules, few flat ones ---------------------------------

MAX_LINES = 500


def _string_literals(path: Path) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_algorithm_name_is_tested_outside_the_algorithms_package():
    """Everything outside ``ddl/algorithms`` asks an algorithm's declaration (``Communication``, ``Identity``),
    so no registered name appears there as a string literal."""
    from ddl.algorithms import ALGORITHMS

    names = set(ALGORITHMS)
    assert {"ssgd", "dpsgd"} <= names
    offenders = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("ddl/algorithms/"):
                continue
            offenders += [f"{rel}:{line}: {value!r}" for line, value in _string_literals(path) if value in names]
    assert offenders == []


def test_the_literal_counter_finds_a_planted_name(tmp_path):
    p = tmp_path / "x.py"
    p.write_text('def f(cfg):\n    return cfg.algo == "dpsgd"\n')
    assert (2, "dpsgd") in _string_literals(p)


def test_no_module_over_the_line_limit():
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
             for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert len(sizes) > 60
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_flat_modules_of_ddl_are_the_ones_the_architecture_names():
    """docs/architecture.md names the few modules that sit directly in ``ddl/`` (line ``Flat modules: …``)."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    (line,) = [ln for ln in doc.splitlines() if ln.startswith("Flat modules in `ddl/`:")]
    named = set(re.findall(r"`([\w]+\.py)`", line))
    actual = {p.name for p in (ROOT / "ddl").glob("*.py")}
    assert actual == named
    assert len(actual) <= 5


def test_the_architecture_lists_every_module():
    """docs/architecture.md's folder table names every module of every folder (and nothing that is gone)."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    rows = {m.group(1): set(re.findall(r"`(\w+\.py)`", m.group(2)))
            for m in re.finditer(r"^\| `((?:ddl|analysis)[\w/]*)/` \|(.*)\|$", doc, re.M)}
    folders = {p.parent.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               if p.parent != ROOT / "ddl"}
    assert set(rows) == folders
    for folder, named in rows.items():
        actual = {p.name for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}
        assert named == actual, folder


def test_every_module_imports():
    """Every module of both packages imports, in alphabetical order in one fresh interpreter (a module that only
    works when imported through another, or a missing dependency, fails here rather than at a user's command)."""
    names = sorted(module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')"
    r = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok" and len(names) > 60
