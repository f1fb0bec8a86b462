"""The cluster-pruned search (neighbors="ivf", the default from 25k points)."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tsnejax
from tsnejax import knn
from tsnejax.build import memory_plan
from tsnejax.knn_ivf import IVF_MIN_POINTS, IVFSearch, ivf_knn, ivf_query, tree_leaves

SMALL = IVFSearch(cluster_size=16, candidates=400, query_tile=16, lloyd_steps=2)


def _recall(found, truth):
    k = truth.shape[1]
    return np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(found, truth, strict=True)])


def _mixture(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (12, d))
    return (centres[rng.integers(0, 12, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def test_ivf_finds_most_neighbours_with_exact_distances():
    X = _mixture(3000, 10)
    g = ivf_knn(X, 30, search=SMALL)  # 400 of 3000 candidates: the pruning is real
    idx, dist = np.asarray(g.indices), np.asarray(g.distances)
    assert idx.shape == (3000, 30) and idx.dtype == np.int32
    assert not (idx == np.arange(3000)[:, None]).any()
    assert all(len(set(r)) == 30 for r in idx)  # no repeats
    assert (np.diff(dist, axis=1) >= 0).all()
    direct = np.sqrt(((X[:, None, :] - X[idx]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, direct, rtol=1e-5, atol=1e-5)
    assert _recall(idx, np.asarray(knn.exact_knn(X, 30).indices)) >= 0.95


@pytest.mark.float32_only("near-ties (1e-7) of float32 distances order the neighbours")
def test_ivf_is_deterministic_and_exact_when_candidates_cover_everything():
    X = _mixture(1500, 8, seed=1)
    a, b = ivf_knn(X, 20, search=SMALL), ivf_knn(X, 20, search=SMALL)
    np.testing.assert_array_equal(np.asarray(a.indices), np.asarray(b.indices))
    np.testing.assert_array_equal(np.asarray(a.distances), np.asarray(b.distances))
    # Tiles vmapped in batches (the accelerator default) give the same graph.
    c = ivf_knn(X, 20, search=SMALL._replace(tile_batch=8))
    np.testing.assert_array_equal(np.asarray(a.indices), np.asarray(c.indices))
    np.testing.assert_allclose(np.asarray(a.distances), np.asarray(c.distances), rtol=1e-6)
    full = ivf_knn(X, 20, search=SMALL._replace(candidates=1500))
    exact = knn.exact_knn(X, 20)
    np.testing.assert_array_equal(np.asarray(full.indices), np.asarray(exact.indices))


def test_ivf_redoes_queries_with_too_few_candidates_exactly():
    # Candidates only just above k with tiny cells: some probe lists hold < k others.
    X = _mixture(600, 5, seed=2)
    s = IVFSearch(cluster_size=4, candidates=21, query_tile=4, lloyd_steps=1, centroid_neighbors=2)
    g = ivf_knn(X, 20, search=s)
    dist = np.asarray(g.distances)
    assert np.isfinite(dist).all()
    idx = np.asarray(g.indices)
    assert not (idx == np.arange(600)[:, None]).any()
    assert all(len(set(r)) == 20 for r in idx)


def test_ivf_rejects_bad_settings():
    X = _mixture(200, 3)
    with pytest.raises(ValueError, match="search.candidates"):
        ivf_knn(X, 30, search=IVFSearch(candidates=30))
    with pytest.raises(ValueError, match="k=200"):
        ivf_knn(X, 200)
    with pytest.raises(ValueError, match="search.query_tile"):
        ivf_knn(X, 5, search=IVFSearch(query_tile=0))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), leaf=st.integers(1, 40), d=st.integers(1, 4))
def test_tree_leaves_are_balanced(n, leaf, d):
    X = np.random.default_rng(n).normal(size=(n, d)).astype(np.float32)
    label = tree_leaves(X, leaf)
    counts = np.bincount(label)
    assert len(counts) == -(-n // leaf)  # as few leaves as possible: all full but one
    assert counts.max() <= leaf and (counts < leaf).sum() <= 1


def test_auto_switches_to_ivf_and_says_so_in_the_memory_plan():
    assert knn.auto_search(IVF_MIN_POINTS - 1, 50) == "exact"
    assert knn.auto_search(IVF_MIN_POINTS, 50) == "ivf"
    assert knn.auto_search(1_000_000, 784) == "ivf"
    stages = memory_plan(tsnejax.TSNEConfig(), 100_000, 50)
    assert any("cluster-pruned kNN search of 100000" in s.name for s in stages)
    cfg = tsnejax.TSNEConfig.make(neighbors=IVFSearch(candidates=50_000))
    bigger = memory_plan(cfg, 100_000, 50)
    need = {s.name: s.bytes for s in stages if "kNN" in s.name}
    assert [s.bytes for s in bigger if s.name in need][0] > list(need.values())[0]


def _mnist_pca50(data_dir, n):
    with np.load(data_dir / "mnist.npz") as z:
        X = z["X"][:n].astype(np.float32)
    X -= X.mean(0)
    _, vecs = np.linalg.eigh(X.T @ X)
    return np.ascontiguousarray(X @ vecs[:, ::-1][:, :50])


def test_default_ivf_search_recall_on_mnist(data_dir):
    """The search 'auto' runs from 40k points, with its default effort, on 30k MNIST rows
    (PCA-50; 12288 of 30k candidates per query): >= 0.99 of the exact 90 neighbours."""
    X = _mnist_pca50(data_dir, 30000)
    found = np.asarray(knn.nearest_neighbors(X, 90, method="ivf").indices)
    truth = np.asarray(knn.exact_knn(X, 90).indices)
    assert _recall(found, truth) >= 0.99
    # The probe lists (twice the cells an average list needs) fill every cell's candidate list,
    # so their length costs no candidates (a short list would be redone exactly).
    from tsnejax import knn_ivf

    s = IVFSearch()
    cells = knn_ivf._cells(jnp.asarray(X), s, 0)
    probe = np.asarray(cells.probe)
    assert probe.shape[1] == knn_ivf.PROBE_FACTOR * -(-s.candidates // s.cluster_size)
    assert np.asarray(cells.sizes)[probe].sum(axis=1).min() >= s.candidates


@pytest.mark.slow
def test_auto_search_recall_on_all_of_mnist(data_dir):
    """All 70k rows: 'auto' picks ivf (12288 of 70k candidates); recall >= 0.99."""
    X = _mnist_pca50(data_dir, 70000)
    assert knn.auto_search(len(X), 50) == "ivf"
    found = np.asarray(knn.nearest_neighbors(X, 90).indices)
    truth = np.asarray(knn.exact_knn(X, 90).indices)
    assert _recall(found, truth) >= 0.99


@pytest.mark.float32_only("near-ties (1e-7) of float32 distances order the neighbours")
def test_fit_accepts_neighbors_ivf(key):
    X = _mixture(500, 6, seed=3)
    cfg = tsnejax.TSNEConfig.make(neighbors="ivf", n_iter=20, early_exaggeration_iter=10)
    res = tsnejax.fit(key, X, cfg)
    assert np.isfinite(res.embedding).all()
    # 500 points < the default 12288 candidates: the search is exact.
    exact = knn.exact_knn(X, res.neighbors.k)
    np.testing.assert_array_equal(np.asarray(res.neighbors.indices), np.asarray(exact.indices))
    # The object sets the effort (here small enough to prune 500 points).
    effort = tsnejax.IVFSearch(cluster_size=8, candidates=120, query_tile=8)
    est = tsnejax.TSNE(neighbors=effort, n_iter=20, early_exaggeration_iter=10, random_state=0)
    est.fit(X)
    direct = ivf_knn(X, est.neighbors_.k, search=effort)
    np.testing.assert_array_equal(np.asarray(est.neighbors_.indices), np.asarray(direct.indices))
    assert not np.array_equal(np.asarray(direct.indices), np.asarray(exact.indices))


def test_ivf_query_finds_the_reference_neighbours_of_new_points():
    X = _mixture(4000, 8, seed=4)
    R, Q = X[:3000], X[3000:]
    s = IVFSearch(cluster_size=16, candidates=500, query_tile=16, lloyd_steps=2)
    g = ivf_query(R, Q, 25, search=s)
    idx, dist = np.asarray(g.indices), np.asarray(g.distances)
    assert idx.shape == (1000, 25) and idx.min() >= 0 and idx.max() < 3000
    direct = np.sqrt(((Q[:, None, :] - R[idx]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, direct, rtol=1e-5, atol=1e-5)
    truth = np.asarray(knn.knn_query(R, Q, 25, method="exact").indices)
    assert _recall(idx, truth) >= 0.95
    # knn_query(method="ivf") runs it with the default effort: 12288 >= 3000, exact.
    full = knn.knn_query(R, Q, 25, method="ivf")
    np.testing.assert_array_equal(np.asarray(full.indices), truth)
    # A query identical to a reference row finds it first, at distance 0 (not excluded).
    same = ivf_query(R, R[:40], 5, search=s)
    assert (np.asarray(same.indices)[:, 0] == np.arange(40)).all()
    assert np.allclose(np.asarray(same.distances)[:, 0], 0.0, atol=1e-5)
    # Probe lists shorter than k: those queries are searched exactly.
    tiny = IVFSearch(
        cluster_size=4, candidates=25, query_tile=4, lloyd_steps=1, centroid_neighbors=2
    )
    g = ivf_query(R, Q, 25, search=tiny)
    gi, gd = np.asarray(g.indices), np.asarray(g.distances)
    assert np.isfinite(gd).all() and all(len(set(r)) == 25 for r in gi)
    np.testing.assert_allclose(gd, np.sqrt(((Q[:, None, :] - R[gi]) ** 2).sum(-1)), atol=1e-4)


def test_knn_query_auto_uses_ivf_above_the_exact_budget(monkeypatch):
    X = _mixture(1200, 6, seed=5)
    R, Q = X[:1000], X[1000:]
    calls = []
    real = knn.ivf_query

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(knn, "ivf_query", spy)
    knn.knn_query(R, Q, 10)  # 2e5 pairs: exact
    assert calls == []
    monkeypatch.setattr(knn, "EXACT_QUERY_PAIRS", 1e5)
    got = knn.knn_query(R, Q, 10)
    assert calls == [(200, 6)]
    exact = knn.knn_query(R, Q, 10, method="exact")  # 12288 candidates >= 1000: exact
    np.testing.assert_array_equal(np.asarray(got.indices), np.asarray(exact.indices))


def test_short_probe_lists_are_searched_exactly(monkeypatch):
    """Every cell probing only itself (a handful of points < k): all rows are flagged and
    redone by the exact search, in ivf_knn and in ivf_query."""
    from tsnejax import knn_ivf

    real = knn_ivf._cells
    redone = []

    def own_cell_only(X, s, seed):
        cells = real(X, s, seed)
        redone.append(int(np.bincount(cells.cell).max()))
        return cells._replace(probe=cells.probe[:, :1])

    monkeypatch.setattr(knn_ivf, "_cells", own_cell_only)
    X = _mixture(300, 4, seed=6)
    s = IVFSearch(cluster_size=4, candidates=64, query_tile=4)
    g = ivf_knn(X, 20, search=s)
    assert redone[-1] <= 20  # no cell holds k others: every row was short
    np.testing.assert_array_equal(np.asarray(g.indices), np.asarray(knn.exact_knn(X, 20).indices))
    R, Q = X[:250], X[250:]
    q = ivf_query(R, Q, 20, search=s)
    exact = knn.knn_query(R, Q, 20, method="exact")
    np.testing.assert_array_equal(np.asarray(q.indices), np.asarray(exact.indices))
