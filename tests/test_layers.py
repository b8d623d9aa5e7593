"""The layering of docs/ARCHITECTURE.md, read from the source (ast, no import): every ``import`` of every module of
the package, at module level or inside a function, must

1. go to the module's own layer or a layer above it (never below),
2. not close an import circle (lazy imports included: a circle through a function-level import is still one),
3. not reach into another package's private module or name (``from mtlfast.x._y import``, ``from mtlfast.x
   import _y``) except the pairs listed in :data:`ALLOWED_PRIVATE`, each with its reason.

A module that belongs to no layer fails the test: add it to :data:`LAYERS` (and to the architecture table).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mtlfast"

#: The layers, top (imported by everything below) to bottom. A module matches the longest prefix listed.
LAYERS = [
    ("base", ["mtlfast", "mtlfast.config"]),
    ("data", ["mtlfast.data"]),
    ("stats", ["mtlfast.stats"]),
    ("ops/nn", ["mtlfast.ops", "mtlfast.nn", "mtlfast._C"]),
    ("metrics", ["mtlfast.metrics"]),
    ("train", ["mtlfast.train", "mtlfast.train.memory"]),  # train.memory: bytes per run, the default array size
    ("store", ["mtlfast.store"]),  # mtlfast.store (records, checkpoints), mtlfast.store.transfer (export/import)
    ("meta", ["mtlfast.meta"]),
    ("report", ["mtlfast.report"]),
    ("executors", ["mtlfast.executors"]),
    ("CLIs", ["mtlfast.cli", "mtlfast.sweep", "mtlfast.analyze", "mtlfast.predict", "mtlfast.reproduce",
              "mtlfast.budget", "mtlfast.info", "mtlfast.stats.__main__", "mtlfast.data.__main__",
              "mtlfast.store.__main__"]),
]

#: (importing module, imported module) pairs allowed although they break a rule above, and why.
ALLOWED = {
    ("mtlfast", "mtlfast.ops.dispatch"): "mtlfast.backends(), a lazy convenience of the package root (which "
                                         "otherwise holds only __version__); importing mtlfast imports no layer",
}
#: (importing module, imported private module) pairs allowed across packages, and why.
ALLOWED_PRIVATE = {
    ("mtlfast.stats._objects", "mtlfast.data._fast"):
        "the data layer's compiled parser helpers (factorize by object identity, the parser's string pools and "
        "their identity check): the statistics read the pools the parser left on loaded splits; the names are "
        "private because they are an implementation detail of these two layers, not a user API",
    ("mtlfast.budget", "mtlfast.report.figures._plt"):
        "the report's one matplotlib set-up (Agg backend, imported on first use) reused by the budget figure; "
        "report.figures should make it public",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def _layer(module: str) -> int | None:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def _is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()


def _resolve(module: str, node) -> list[str]:
    """The mtlfast modules an import node imports (``from a import b``: ``a.b`` when that is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "mtlfast"]
    if node.level:  # relative import
        base = module.split(".") if _is_package(module) else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "mtlfast":
        return []
    out = []
    folder = PACKAGE.parent / target.replace(".", "/")
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        compiled = any(p.suffix in (".so", ".pyd", ".pyx") for p in folder.glob(alias.name + ".*"))  # built or not
        out.append(sub if sub in MODULES or compiled else target)
    return out


def _imports() -> dict[str, list[tuple[str, int]]]:
    edges = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found += [(target, node.lineno) for target in _resolve(module, node)]
        edges[module] = found
    return edges


EDGES = _imports()


def _package(module: str) -> str:
    """The package a module belongs to for privacy: ``mtlfast.x`` of ``mtlfast.x.y`` (top-level modules:
    themselves)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if _layer(m) is None)
    assert not missing, f"modules in no layer (add them to LAYERS and docs/ARCHITECTURE.md): {missing}"


def _downward(edges) -> list[str]:
    bad = []
    for module, targets in edges.items():
        for target, line in targets:
            lm, lt = _layer(module), _layer(target)
            if lm is not None and lt is not None and lt > lm and (module, target) not in ALLOWED:
                bad.append(f"{module}:{line}: {module} ({LAYERS[lm][0]}) imports {target} ({LAYERS[lt][0]}), "
                           "a layer below it")
    return bad


def _circles(edges) -> list[list[str]]:
    graph = {m: sorted({t for t, _ in targets if t in edges and t != m}) for m, targets in edges.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_no_module_imports_a_layer_below_it():
    assert not _downward(EDGES), "\n".join(_downward(EDGES))


def test_no_import_circles():
    assert not _circles(EDGES), f"import circles: {_circles(EDGES)}"


def test_the_checks_catch_what_they_are_for():
    # a data module importing the engine (lazily or not), a meta module importing the sweep: both below
    assert len(_downward({"mtlfast.data.io": [("mtlfast.train.engine", 3)],
                          "mtlfast.meta.table": [("mtlfast.sweep", 9), ("mtlfast.stats", 1)]})) == 2
    # the old executors.py <-> executors_ray.py circle, through a function-level import
    assert _circles({"mtlfast.executors": [("mtlfast.executors_ray", 80)],
                     "mtlfast.executors_ray": [("mtlfast.executors", 42)], "mtlfast.store": []}) == \
        [["mtlfast.executors", "mtlfast.executors_ray"]]
    assert _resolve("mtlfast.stats._objects", ast.parse("from mtlfast.data import _fast").body[0]) == \
        ["mtlfast.data._fast"]
    assert _resolve("mtlfast.meta.gains", ast.parse("from .table import read_csv").body[0]) == ["mtlfast.meta.table"]


def test_no_private_cross_package_imports():
    bad = []
    for module, targets in EDGES.items():
        for target, line in targets:
            private = [p for p in target.split(".")[1:] if p.startswith("_") and p not in ("__main__",)]
            if not private or _package(target) == _package(module) and not target.startswith("mtlfast._"):
                continue
            if target.startswith("mtlfast._") and module.split(".")[:2] == target.split(".")[:2]:
                continue
            if (module, target) not in ALLOWED_PRIVATE:
                bad.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {module} imports private {target}")
    # names: from mtlfast.x import _y where mtlfast.x is another package and _y is not a module
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("mtlfast"):
                if _package(node.module) == _package(module):
                    continue
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if alias.name.startswith("_") and (module, target) not in ALLOWED_PRIVATE:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module} imports private name "
                                   f"{alias.name} from {node.module}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_the_allowed_exceptions_are_still_needed():
    """An exception that no longer happens is removed from the lists (they must not grow stale)."""
    present = {(m, t) for m, targets in EDGES.items() for t, _ in targets}
    for module, path in MODULES.items():  # imported names too (``from mtlfast.x import _y``)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                present |= {(module, f"{node.module}.{a.name}") for a in node.names}
    stale = sorted((set(ALLOWED) | set(ALLOWED_PRIVATE)) - present)
    assert not stale, f"stale exceptions: {stale}"


@pytest.mark.parametrize("name, prefixes", LAYERS)
def test_architecture_doc_lists_every_layer(name, prefixes):
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for prefix in prefixes:
        if prefix not in ("mtlfast", "mtlfast._C"):
            assert f"`{prefix}" in doc, f"docs/ARCHITECTURE.md does not name {prefix} (layer {name})"
