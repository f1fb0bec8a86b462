import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from tsnejax import knn
from tsnejax._knn_exact import drop_self
from tsnejax.knn import (
    KNNGraph,
    default_k,
    exact_knn,
    exact_limit,
    nearest_neighbors,
    precomputed_knn,
)


def _sklearn_knn(X, k):
    dist, idx = NearestNeighbors(n_neighbors=k).fit(X).kneighbors()
    return idx, dist


def test_exact_matches_sklearn_distances(digits):
    X, _ = digits
    g = exact_knn(X, 90)
    _, dist = _sklearn_knn(X.astype(np.float64), 90)
    assert g.indices.shape == (len(X), 90) and g.indices.dtype == np.int32
    np.testing.assert_allclose(np.asarray(g.distances), dist, rtol=1e-5, atol=1e-5)
    # Neighbour sets agree wherever the k-th distance is not tied with the (k+1)-th.
    _, dist91 = _sklearn_knn(X.astype(np.float64), 91)
    untied = dist91[:, 89] < dist91[:, 90] - 1e-9
    idx_sk, _ = _sklearn_knn(X.astype(np.float64), 90)
    ours = np.sort(np.asarray(g.indices), axis=1)
    assert untied.mean() > 0.5
    np.testing.assert_array_equal(ours[untied], np.sort(idx_sk, axis=1)[untied])


def test_exact_is_block_size_invariant(digits):
    """Same distances; the same neighbours except in the order of exactly equal distances
    (integer pixels tie often; the matmul that picks candidates rounds per block shape)."""
    X = digits[0][:300]
    a = exact_knn(X, 15, block_size=7)
    b = exact_knn(X, 15, block_size=300)
    da, db = np.asarray(a.distances), np.asarray(b.distances)
    np.testing.assert_allclose(da, db, rtol=1e-6)
    tied = np.zeros_like(da, dtype=bool)
    tied[:, 1:] |= da[:, 1:] == da[:, :-1]
    tied[:, :-1] |= da[:, :-1] == da[:, 1:]
    assert tied.mean() < 0.5
    ia, ib = np.asarray(a.indices), np.asarray(b.indices)
    np.testing.assert_array_equal(ia[~tied], ib[~tied])
    # The first k columns of a larger graph are the k-neighbour graph (sweeps rely on it).
    big = exact_knn(X, 45, block_size=300)
    np.testing.assert_array_equal(np.asarray(big.indices)[:, :15], ib)


def test_exact_excludes_self_even_with_duplicates():
    X = np.repeat(np.arange(5.0)[:, None], 3, axis=0).astype(np.float32)  # 15 rows, triplicates
    g = exact_knn(X, 4)
    idx = np.asarray(g.indices)
    assert not (idx == np.arange(15)[:, None]).any()
    # The two exact duplicates come first at distance 0.
    np.testing.assert_allclose(np.asarray(g.distances)[:, :2], 0.0)


def test_exact_k_too_large():
    with pytest.raises(ValueError, match="largest allowed is 9"):
        exact_knn(np.zeros((10, 2), np.float32), 10)


def test_drop_self_handles_missing_and_misplaced_self():
    idx = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 3]])
    dist = np.array([[0.0, 1, 2], [0.0, 0, 2], [0.1, 0.2, 0.3]])
    out_idx, out_dist = drop_self(idx, dist, 2)
    np.testing.assert_array_equal(out_idx, [[1, 2], [0, 2], [0, 1]])
    np.testing.assert_allclose(out_dist, [[1, 2], [0, 2], [0.1, 0.2]])


def test_precomputed_validation():
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    dist = np.array([[1.0, 2.0], [1.0, 3.0], [2.0, 3.0]])
    g = precomputed_knn(idx, dist)
    assert isinstance(g, KNNGraph) and g.k == 2
    with pytest.raises(ValueError, match="itself"):
        precomputed_knn(np.array([[0, 1], [0, 2], [0, 1]]), dist)
    with pytest.raises(ValueError, match="non-negative"):
        precomputed_knn(idx, -dist)
    with pytest.raises(ValueError, match="shape"):
        precomputed_knn(idx, dist[:, :1])
    with pytest.raises(ValueError, match="lie in"):
        precomputed_knn(idx + 5, dist)
    # Unsorted rows are sorted by distance.
    g = precomputed_knn(np.array([[2, 1], [0, 2], [0, 1]]), np.array([[2.0, 1.0], [1, 3], [2, 3]]))
    np.testing.assert_array_equal(np.asarray(g.indices)[0], [1, 2])


def test_default_k_and_auto_rule():
    assert default_k(1797, 30) == 90
    assert default_k(50, 30) == 49
    assert 40_000 < exact_limit(784) < 50_000 < 100_000 < exact_limit(50)  # MNIST PCA-50: exact


def test_nearest_neighbors_rejects_unknown_method(digits):
    with pytest.raises(ValueError, match="neighbors='annoy'"):
        nearest_neighbors(digits[0], 5, method="annoy")


def test_nearest_neighbors_rejects_nan_rows_and_non_matrices(digits):
    X = np.array(digits[0][:50])
    X[3, 1] = np.nan  # such rows got arbitrary "neighbours" (NaN distances sort anywhere)
    with pytest.raises(ValueError, match=r"X has 1 row\(s\) with NaN or inf values \(first: 3\)"):
        nearest_neighbors(X, 5)
    with pytest.raises(ValueError, match="X has NaN or inf values"):
        nearest_neighbors(jnp.asarray(X), 5)  # a device array, checked on the device
    with pytest.raises(ValueError, match=r"X must be 2-D .* got shape \(50,\)"):
        nearest_neighbors(X[:, 0], 5)  # was "not enough values to unpack"


@pytest.mark.slow
def test_pynndescent_backend_close_to_exact(digits, key):
    X = digits[0]
    approx = nearest_neighbors(X, 15, method="pynndescent", key=key)
    exact = exact_knn(X, 15)
    assert not (np.asarray(approx.indices) == np.arange(len(X))[:, None]).any()
    recall = np.mean(
        [
            len(set(a) & set(b)) / 15
            for a, b in zip(np.asarray(approx.indices), np.asarray(exact.indices), strict=True)
        ]
    )
    assert recall > 0.95


def test_band_search_for_embeddings_is_exact():
    """Low-dimensional inputs above BAND_MIN_POINTS take the sorted-band path; its windows
    are certified or redone by brute force, so it equals an exact float64 search."""
    from sklearn.neighbors import NearestNeighbors

    from tsnejax import knn

    rng = np.random.default_rng(0)
    n = knn.BAND_MIN_POINTS + 3000
    centres = rng.normal(size=(12, 2)) * 40
    Y = centres[rng.integers(0, 12, n)] + rng.normal(size=(n, 2)) * 3
    Y[:50] = rng.uniform(-300, 300, size=(50, 2))  # isolated points fail the window check
    Y = Y.astype(np.float32)
    g = knn.exact_knn(Y, 15)
    ref_d, ref_i = NearestNeighbors(n_neighbors=15).fit(Y.astype(np.float64)).kneighbors()
    np.testing.assert_allclose(np.asarray(g.distances), ref_d, rtol=1e-5, atol=1e-4)
    same = np.mean([set(a) == set(b) for a, b in zip(np.asarray(g.indices), ref_i, strict=True)])
    assert same > 0.999  # the rest are float32 near-ties
    sub = knn.exact_knn(Y, 15, rows=np.array([3, 0, 7000]))
    np.testing.assert_array_equal(np.asarray(sub.indices), np.asarray(g.indices)[[3, 0, 7000]])


faiss_only = pytest.mark.skipif(not knn.faiss_available(), reason="faiss not installed")


@faiss_only
def test_faiss_search_equals_the_exact_search(digits):
    X = digits[0]
    a, b = knn.faiss_knn(X, 30), knn.exact_knn(X, 30)
    # integer pixels: many equal distances, whose order may differ; the distances may not
    np.testing.assert_allclose(np.asarray(a.distances), np.asarray(b.distances), rtol=1e-5)
    Xc = X + np.random.default_rng(0).normal(0, 0.01, X.shape).astype(np.float32)
    a, b = knn.faiss_knn(Xc, 30), knn.exact_knn(Xc, 30)
    assert np.mean(np.asarray(a.indices) == np.asarray(b.indices)) > 0.999
    # far from the origin the float32 expansion cancels; the distances are measured again
    Xf = X + 1e4
    np.testing.assert_allclose(
        np.asarray(knn.faiss_knn(Xf, 5).distances),
        np.asarray(knn.exact_knn(Xf, 5).distances),
        rtol=1e-4,
    )


@faiss_only
def test_faiss_through_fit_and_config(digits, key):
    import tsnejax

    cfg = tsnejax.TSNEConfig.make(neighbors="faiss", n_iter=20, early_exaggeration_iter=10)
    assert np.isfinite(tsnejax.fit(key, digits[0][:400], cfg).embedding).all()


@faiss_only
def test_faiss_hnsw_is_deterministic_with_high_recall(digits, key):
    import tsnejax

    X = digits[0]
    a = knn.nearest_neighbors(X, 90, method="faiss_hnsw")
    b = knn.nearest_neighbors(X, 90, method="faiss_hnsw")
    np.testing.assert_array_equal(a.indices, b.indices)  # one thread: a fixed insertion order
    exact = np.asarray(knn.exact_knn(X, 90).indices)
    found = np.asarray(a.indices)
    recall = np.mean([len(np.intersect1d(found[i], exact[i])) for i in range(len(X))]) / 90
    assert recall >= 0.99, recall
    assert (found != np.arange(len(X))[:, None]).all()  # no self-matches
    cfg = tsnejax.TSNEConfig.make(neighbors="faiss_hnsw", n_iter=20, early_exaggeration_iter=10)
    assert np.isfinite(tsnejax.fit(key, X[:400], cfg).embedding).all()


def test_faiss_missing_gives_a_clear_error(monkeypatch, digits):
    monkeypatch.setattr(knn, "faiss_available", lambda: False)
    with pytest.raises(ValueError, match=r"tsnejax\[faiss\]"):
        knn.faiss_knn(digits[0], 5)


def test_default_search_recall_on_mnist(data_dir):
    """The default search (whatever 'auto' picks at this size) finds >= 0.99 of the true 90
    neighbours of MNIST rows (brute force in float64 as the reference)."""
    with np.load(data_dir / "mnist.npz") as z:
        X = z["X"][:3000].astype(np.float32)
    g = knn.nearest_neighbors(X, 90)
    Xd = X.astype(np.float64)
    rows = np.arange(0, 3000, 10)
    # Expanded in float64: with integer pixels every product and sum is an integer below 2^53,
    # so the distances are exact (the broadcast difference array would be 5.6 GB, a minute).
    sq = (Xd * Xd).sum(1)
    d2 = sq[rows, None] + sq[None, :] - 2.0 * (Xd[rows] @ Xd.T)
    d2[np.arange(len(rows)), rows] = np.inf
    kth = np.sort(d2, axis=1)[:, 89:90]
    found = np.take_along_axis(d2, np.asarray(g.indices)[rows], axis=1)
    recall = np.mean(found <= kth * (1 + 1e-6))
    assert recall >= 0.99, recall


@pytest.mark.parametrize("name, fix", [("annoy", "'ivf'"), ("approx", "'ivf'"), ("hnsw", "faiss")])
def test_opentsnes_search_names_are_answered(name, fix):
    """openTSNE's neighbors= names were listed as unknown options; the error says what to use."""
    from tsnejax import TSNE

    with pytest.raises(ValueError, match=f"neighbors='{name}' is openTSNE's search.*{fix}"):
        TSNE(neighbors=name)._config()
    with pytest.raises(ValueError, match=f"is openTSNE's search.*{fix}"):
        nearest_neighbors(np.zeros((10, 2)), 3, method=name)
