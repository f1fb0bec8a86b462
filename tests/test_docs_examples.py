"""The Python blocks of README.md and docs/*.md: they parse and their tsnejax imports resolve
(fast), and they run as written on a small problem (slow tier). A block that used an import
that had moved, or a placeholder that was not Python, stayed wrong until a reader copied it."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    (f"{page.relative_to(ROOT)}#{i}", code)
    for page in PAGES
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))
]

#: Blocks that need what a test cannot give them here, and where their calls are tested.
NOT_RUN = {
    "README.md#1": "an AnnData object (tests/test_anndata.py runs tl.tsne)",
    "docs/scaling.md#1": "jax.distributed over processes (tests/test_shard.py runs two)",
    "docs/sweeps.md#0": "a whole sweep config (tests/test_cli.py runs sweeps)",
}
#: Sizes shrunk to the small problem (the names and calls stay as the page has them).
SHRINK = {
    "docs/transform.md#0": [("n_sample=25_000", "n_sample=300")],
    "docs/hypergradients.md#0": [
        ("n_iter=500, early_exaggeration_iter=250", "n_iter=20, early_exaggeration_iter=10")
    ],
    "docs/metrics.md#0": [
        ("n_iter=500, early_exaggeration_iter=250", "n_iter=20, early_exaggeration_iter=10")
    ],
}

#: What the blocks assume is already defined (a page's prose says where each comes from).
PREAMBLE = """
import jax, jax.numpy as jnp, numpy as np, tsnejax
from sklearn.datasets import load_digits
from tsnejax import affinity, build, init, knn, optim, run
from tsnejax.schedules import Phases
X, y = load_digits(return_X_y=True)
X, y = X[:400].astype(np.float32), y[:400]
X_train, X_test = X[:300], X[300:]
n, n_iter, key = len(X), 60, jax.random.key(0)
P = affinity.perplexity_affinities(knn.nearest_neighbors(X, k=90), 30.0)
Y0 = init.pca(X)
Y = jnp.asarray(np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32) * 10)
config = tsnejax.TSNEConfig.make(n_iter=40, early_exaggeration_iter=20)
opt = optim.make_optimizer("classic", learning_rate=1.0, momentum=0.8)
stepper, state = run.build_step("exact", opt), run.init_state(Y0, opt)
phases = Phases.of({0: {"exaggeration": 12.0, "learning_rate": n / 12}, 20: {"exaggeration": 1.0}})
my_backend = tsnejax.gradients.get_backend("exact")
"""


def _tsnejax_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tsnejax"):
            for alias in node.names:
                yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tsnejax"):
                    yield alias.name, None


@pytest.mark.parametrize("where,code", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_block_parses_and_its_imports_resolve(where, code):
    tree = ast.parse(code, filename=where)  # a placeholder like f(a=1, ...) is a SyntaxError
    for module, name in _tsnejax_imports(tree):
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            importlib.import_module(f"{module}.{name}")  # a submodule, or ImportError


def test_every_page_with_code_is_read():
    assert len(BLOCKS) >= 15 and {w.split("#")[0] for w in NOT_RUN} <= {
        w.split("#")[0] for w, _ in BLOCKS
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "where,code",
    [b for b in BLOCKS if b[0] not in NOT_RUN],
    ids=[w for w, _ in BLOCKS if w not in NOT_RUN],
)
def test_block_runs(where, code, tmp_path, monkeypatch):
    for old, new in SHRINK.get(where, []):
        assert old in code, f"{where}: update SHRINK"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)  # blocks that write (out/...) write here
    namespace: dict = {}
    exec(compile(PREAMBLE, "preamble", "exec"), namespace)
    exec(compile(code, where, "exec"), namespace)  # any exception fails the block
