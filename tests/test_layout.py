"""Package layout rules: no import cycles (function-level imports included), no module importing
another module's private names, no file over 500 lines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tsnejax"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, level: int, name: str | None, current: str, is_pkg: bool) -> str:
    if level == 0:
        return name or ""
    base = current.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(path: Path, current: str, modules: dict[str, Path]):
    """``(target module, imported names)`` for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.append((alias.name, []))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module, node.level, node.module, current, is_pkg)
            names = [a.name for a in node.names]
            # "from pkg import submodule" imports the submodule.
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            rest = [n for n in names if f"{target}.{n}" not in modules]
            if rest or not subs:
                out.append((target, rest))
            out.extend((s, []) for s in subs)
    return [(t, n) for t, n in out if t == "tsnejax" or t.startswith("tsnejax.")]


def _graph():
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private: list[str] = []
    for mod, path in modules.items():
        for target, names in _imports(path, mod, modules):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target == mod:
                continue
            graph[mod].add(target)
            private += [f"{mod} imports {target}.{n}" for n in names if n.startswith("_")]
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    # A package __init__ imports its submodules (re-exports), so a submodule that imports
    # its package (or anything above that leads back) is a cycle too.
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_no_private_names_imported_across_modules():
    _, private = _graph()
    assert private == []


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.name)
def test_file_size(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT.parent)} has {n} lines (limit {MAX_LINES})"


def test_lazy_submodules_and_py_typed():
    """``tsnejax.plot`` works without importing it first; the package ships ``py.typed``."""
    import subprocess
    import sys

    code = (
        "import sys, tsnejax; assert 'tsnejax.plot' not in sys.modules; "
        "assert callable(tsnejax.plot.plot_embedding); print(tsnejax.sweep.run_sweep.__name__)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    import importlib.resources

    assert importlib.resources.files("tsnejax").joinpath("py.typed").is_file()
