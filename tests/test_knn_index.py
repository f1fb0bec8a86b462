"""GraphIndex: the approximate query of new points through the fit's kNN graph."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tsnejax
from tsnejax import TSNE, TSNEConfig, fit
from tsnejax import knn as knn_mod
from tsnejax.knn import exact_knn, knn_query
from tsnejax.knn_index import GraphSearch, build_graph_index, graph_query
from tsnejax.transform import TransformConfig, transform


def _mixture(n, d, seed, centers=12):
    rng = np.random.default_rng(seed)
    c = rng.normal(scale=6.0, size=(centers, d))
    return (c[rng.integers(0, centers, n)] + rng.normal(size=(n, d))).astype(np.float32)


def _recall(found, exact):
    return np.mean(
        [len(np.intersect1d(a, b)) / exact.shape[1] for a, b in zip(found, exact, strict=True)]
    )


@pytest.fixture(scope="module")
def mixture():
    X = _mixture(4000, 12, 0)
    R, Q = X[:3500], X[3500:]
    graph = exact_knn(R, 30)
    return R, Q, graph, knn_query(R, Q, 15, method="exact")


def test_recall_and_exact_distances(mixture):
    R, Q, graph, exact = mixture
    index = build_graph_index(R, graph, n_entry=256)
    res = graph_query(index, Q, 15)
    idx, dist = np.asarray(res.indices), np.asarray(res.distances)
    assert idx.shape == (500, 15) and idx.dtype == np.int32
    assert _recall(idx, np.asarray(exact.indices)) >= 0.9
    # Only the set is approximate: each distance is the true one, ascending, no repeats.
    true = np.linalg.norm(R[idx] - Q[:, None, :], axis=-1)
    np.testing.assert_allclose(dist, true, rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert all(len(set(row)) == 15 for row in idx)
    # A single round finds fewer: the refinement round is doing work.
    one_round = graph_query(index, Q, 15, GraphSearch(refine=0))
    assert _recall(np.asarray(one_round.indices), np.asarray(exact.indices)) < _recall(
        idx, np.asarray(exact.indices)
    )


def test_too_sparse_pool_falls_back_to_exact(mixture):
    R, Q, graph, exact = mixture
    # One seed with one neighbour: two candidates for k = 15, so every row is redone exactly.
    index = build_graph_index(R, np.asarray(graph.indices)[:, :1], n_entry=64)
    res = graph_query(index, Q, 15, GraphSearch(seeds=1, refine=0))
    np.testing.assert_array_equal(np.asarray(res.indices), np.asarray(exact.indices))
    np.testing.assert_allclose(res.distances, exact.distances, rtol=1e-5)


# Fixed shapes, drawn values: every drawn shape compiled the index and the searches anew.
@pytest.mark.parametrize("n,d,k", [(20, 1, 8), (200, 6, 3)])
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 1e4]))
def test_seeds_from_every_row_make_it_exact(n, d, k, seed, scale):
    # With every row an entry point and k seeds, the seeds are the exact k nearest.
    rng = np.random.default_rng(seed)
    R = (rng.normal(size=(n, d)) * scale).astype(np.float32)
    Q = (rng.normal(size=(7, d)) * scale).astype(np.float32)
    graph = exact_knn(R, min(5, n - 1))
    index = build_graph_index(R, graph, n_entry=n)
    res = graph_query(index, Q, k, GraphSearch(seeds=k, refine=2))
    exact = knn_query(R, Q, k, method="exact")
    np.testing.assert_allclose(res.distances, exact.distances, rtol=1e-4, atol=1e-6 * scale)


def test_queries_are_independent(mixture):
    R, Q, graph, _ = mixture
    index = build_graph_index(R, graph, n_entry=256)
    batch = np.asarray(graph_query(index, Q[:40], 10).indices)
    for i in range(0, 40, 9):
        one = np.asarray(graph_query(index, Q[i : i + 1], 10).indices)
        np.testing.assert_array_equal(one[0], batch[i])


def test_missing_neighbours_and_bad_input(mixture):
    R, Q, graph, exact = mixture
    g = np.asarray(graph.indices).copy()
    g[:, 20:] = -1  # pynndescent marks missing neighbours with -1
    res = graph_query(build_graph_index(R, g, n_entry=256), Q, 15)
    assert np.asarray(res.indices).min() >= 0
    assert _recall(np.asarray(res.indices), np.asarray(exact.indices)) >= 0.85
    with pytest.raises(ValueError, match="graph has shape"):
        build_graph_index(R, g[:10])
    with pytest.raises(ValueError, match="refers to row"):
        build_graph_index(R, g + len(R))
    with pytest.raises(ValueError, match="integer"):
        build_graph_index(R, g.astype(np.float32))
    index = build_graph_index(R, graph, n_entry=256)
    with pytest.raises(ValueError, match="must be"):
        graph_query(index, Q[:, :5], 3)
    with pytest.raises(ValueError, match="exceeds"):
        graph_query(index, Q, len(R) + 1)
    with pytest.raises(ValueError, match="index="):
        knn_query(R, Q, 5, method="graph")
    with pytest.raises(ValueError, match="built on data of shape"):
        knn_query(R[:100], Q, 5, index=index)


def test_auto_uses_a_given_index_above_the_threshold(mixture, monkeypatch):
    R, Q, graph, _ = mixture
    index = build_graph_index(R, graph, n_entry=64)
    approx = graph_query(index, Q, 15, GraphSearch(seeds=1, refine=0))
    search = GraphSearch(seeds=1, refine=0)
    below = knn_query(R, Q, 15, index=index, search=search)  # 1.75e6 pairs: exact
    np.testing.assert_array_equal(below.indices, knn_query(R, Q, 15).indices)
    monkeypatch.setattr(knn_mod, "GRAPH_QUERY_PAIRS", 0)
    above = knn_query(R, Q, 15, index=index, search=search)
    np.testing.assert_array_equal(above.indices, approx.indices)


def test_fit_keeps_its_graph_and_transform_uses_it(digits, monkeypatch):
    X, y = digits
    res = fit(jax.random.key(0), X[:1200], TSNEConfig.make(n_iter=100))
    assert isinstance(res.neighbors, tsnejax.KNNGraph)
    assert res.neighbors.indices.shape == (1200, 90)
    no_iter = TSNEConfig.make(n_iter=0, early_exaggeration_iter=0)
    given_p = fit(
        jax.random.key(0), None, no_iter, affinities=res.affinities, initialization=res.embedding
    )
    assert given_p.neighbors is None
    index = build_graph_index(X[:1200], res.neighbors)
    exact = transform(X[1200:], X[:1200], res.embedding, TransformConfig(n_iter=50))
    graph_conf = TransformConfig(n_iter=50, neighbors="graph")
    approx = transform(X[1200:], X[:1200], res.embedding, graph_conf, index=index)
    assert _recall(np.asarray(approx.neighbors.indices), np.asarray(exact.neighbors.indices)) > 0.9
    # The estimator indexes its reference by the fit's graph on the first transform.
    monkeypatch.setattr(knn_mod, "GRAPH_QUERY_PAIRS", 0)
    est = TSNE(n_iter=100, random_state=0).fit(X[:1200])
    assert est.neighbors_.indices.shape == (1200, 90)
    est.transform(X[1200:], n_iter=0)
    assert est._cache["graph_index"] is not None
    found = np.asarray(est.transform_result_.neighbors.indices)
    assert _recall(found, np.asarray(exact.neighbors.indices)) > 0.9
