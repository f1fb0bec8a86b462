"""Metrics against brute-force numpy references, scikit-learn and scipy."""

import jax
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import procrustes
from scipy.spatial.distance import cdist, pdist
from scipy.stats import spearmanr

from tsnejax import metrics as M
from tsnejax.affinity import perplexity_affinities
from tsnejax.knn import exact_knn


def _brute_knn(A, k):
    d = cdist(A, A)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def blobs():
    """2k points, 10 clusters in 20-D, a noisy 2-D 'embedding' of them; no distance ties."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    centres = rng.normal(size=(10, 20)) * 4
    X = centres[labels] + rng.normal(size=(2000, 20))
    Y = centres[labels, :2] * 3 + rng.normal(size=(2000, 2)) * 2
    return X, Y, labels


def test_nn_precision_recall_equals_brute_force(blobs):
    X, Y, _ = blobs
    res = M.nn_precision_recall(X, Y, k_max=30)
    true = _brute_knn(X, 30)
    emb = _brute_knn(Y, 30)
    hits = np.array(
        [[len(np.intersect1d(emb[i, :k], true[i])) for k in range(1, 31)] for i in range(2000)]
    ).mean(0)
    np.testing.assert_allclose(res.precision, hits / np.arange(1, 31), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.recall, hits / 30, rtol=0, atol=1e-6)
    assert res.precision[-1] == pytest.approx(res.recall[-1])
    # A seeded subsample averages the same per-point quantity over fewer rows.
    sub = M.nn_precision_recall(X, Y, k_max=30, n_queries=500, key=jax.random.key(1))
    again = M.nn_precision_recall(X, Y, k_max=30, n_queries=500, key=jax.random.key(1))
    assert len(sub.queries) == 500 and np.array_equal(sub.queries, again.queries)
    per_point = np.array(
        [[len(np.intersect1d(emb[i, :k], true[i])) for k in (5, 30)] for i in sub.queries]
    ).mean(0)
    np.testing.assert_allclose(sub.recall[[4, 29]], per_point / 30, atol=1e-6)


def test_knn_preservation_and_accuracy(blobs):
    X, Y, labels = blobs
    t, e = _brute_knn(X, 10), _brute_knn(Y, 10)
    ref = np.mean([len(np.intersect1d(a, b)) for a, b in zip(t, e, strict=True)]) / 10
    assert M.knn_preservation(X, Y, 10) == pytest.approx(ref, abs=1e-7)
    votes = np.array([np.bincount(labels[row], minlength=10).argmax() for row in e])
    assert M.knn_accuracy(Y, labels, k=10) == pytest.approx(np.mean(votes == labels))


@pytest.mark.parametrize(
    "k",
    [
        pytest.param(1, marks=pytest.mark.float32_only("a near-tie (1e-7) of float32 distances")),
        5,
        10,
        30,
    ],
)
def test_trustworthiness_equals_sklearn(digits, k):
    from sklearn.manifold import trustworthiness

    X = digits[0].astype(np.float64)
    Y = np.random.default_rng(1).normal(size=(len(X), 2))
    Y[:, 0] += digits[1] * 3.0  # some structure, so that ranks vary
    # float32 values for both, so that neither side sees near-ties the other does not.
    Y = Y.astype(np.float32).astype(np.float64)
    # Digits' integer pixels give exactly tied distances, which scikit-learn orders by numpy's
    # unstable argsort; a 1e-3 jitter removes the ties (tsnejax orders ties by index).
    Xj = X + np.random.default_rng(0).uniform(-1e-3, 1e-3, X.shape)
    with jax.enable_x64(True):
        assert M.trustworthiness(Xj, Y, k) == pytest.approx(
            trustworthiness(Xj, Y, n_neighbors=k), abs=1e-12
        )
    assert M.trustworthiness(Xj, Y, k) == pytest.approx(
        trustworthiness(Xj, Y, n_neighbors=k), abs=1e-6
    )
    # With the ties left in, only their order differs: a few ranks, each worth < 4e-7.
    assert M.trustworthiness(X, Y, k) == pytest.approx(
        trustworthiness(X, Y, n_neighbors=k), abs=1e-5
    )
    with pytest.raises(ValueError, match="n_samples / 2"):
        M.trustworthiness(X[:20], Y[:20], 10)


@pytest.mark.parametrize("k", [5, 30])
def test_continuity_is_trustworthiness_with_the_roles_swapped(digits, k):
    """Continuity equals scikit-learn's trustworthiness(Y, X): the input's neighbours ranked in
    the embedding; it falls when the embedding tears input neighbours apart, while
    trustworthiness (which penalises false neighbours) may not."""
    from sklearn.manifold import trustworthiness

    X = digits[0].astype(np.float64)
    X = X + np.random.default_rng(0).uniform(-1e-3, 1e-3, X.shape)  # no tied input distances
    Y = np.random.default_rng(1).normal(size=(len(X), 2))
    Y[:, 0] += digits[1] * 3.0
    Y = Y.astype(np.float32).astype(np.float64)
    ref = trustworthiness(Y, X, n_neighbors=k)
    assert M.continuity(X, Y, k) == pytest.approx(ref, abs=1e-6)
    with jax.enable_x64(True):
        assert M.continuity(X, Y, k) == pytest.approx(ref, abs=1e-12)
    # Any metric: cosine (unit rows, blocked) and a metric scikit-learn computes agree with
    # the full-matrix reference.
    from sklearn.metrics import pairwise_distances

    D = pairwise_distances(X, metric="cosine")
    full = M.continuity(D, Y, k, metric="precomputed")
    assert M.continuity(X, Y, k, metric="cosine") == pytest.approx(full, abs=1e-5)
    assert M.continuity(X, Y, k, metric="manhattan") == pytest.approx(
        M.continuity(pairwise_distances(X, metric="manhattan"), Y, k, metric="precomputed")
    )
    # Tearing: each class split in two far-apart halves keeps every embedding neighbour a
    # true one (trustworthiness high) but loses half of some input neighbourhoods.
    good = np.stack([digits[1] * 10.0, np.zeros(len(X))], 1) + Y * 0.1
    torn = good + np.stack([(np.arange(len(X)) % 2) * 1000.0, np.zeros(len(X))], 1)
    assert M.continuity(X, torn, k) < M.continuity(X, good, k) - 0.2  # 0.94 -> 0.62 at k = 5
    assert abs(M.trustworthiness(X, torn, k) - M.trustworthiness(X, good, k)) < 0.01
    with pytest.raises(ValueError, match="n_samples / 2 = 10 for continuity"):
        M.continuity(X[:20], Y[:20], 10)


def test_kl_exact_equals_dense_formula_and_exaggeration_forms():
    rng = np.random.default_rng(0)
    n = 300
    W = rng.random((n, n)) * (rng.random((n, n)) < 0.05)
    W = W + W.T
    np.fill_diagonal(W, 0)
    Pd = W / W.sum()
    Y5 = rng.normal(size=(n, 2)) * 5
    # dof = inf is the Gaussian kernel exp(-d^2) (it was NaN here: inf traced, exp(-inf * 0));
    # its Y is compact, or most q_ij underflow
    for dof, Y in ((1.0, Y5), (0.7, Y5), (np.inf, Y5 / 10)):
        d2 = cdist(Y, Y, "sqeuclidean")
        w = np.exp(-d2) if dof == np.inf else (1 + d2 / dof) ** -dof
        np.fill_diagonal(w, 0)
        q = w / w.sum()
        mask = Pd > 0
        dense = np.sum(Pd[mask] * np.log(Pd[mask] / q[mask]))
        with jax.enable_x64(True):
            ours = M.kl_divergence(sp.csr_matrix(Pd), Y, dof)
        assert ours == pytest.approx(dense, rel=1e-10)
        ours32 = M.kl_divergence(sp.csr_matrix(Pd), Y, dof)
        assert ours32 == pytest.approx(dense, rel=1e-5)
        raw = M.kl_divergence(sp.csr_matrix(Pd), Y, dof, exaggeration=12.0, corrected=False)
        mask_raw = np.sum(12 * Pd[mask] * np.log(12 * Pd[mask] / q[mask]))
        assert raw == pytest.approx(mask_raw, rel=1e-5)
        assert raw / 12 - np.log(12) == pytest.approx(ours32, rel=1e-5)
        assert M.kl_divergence(sp.csr_matrix(Pd), Y, dof, exaggeration=12.0) == ours32
    with pytest.raises(ValueError, match="method"):
        M.kl_divergence(sp.csr_matrix(Pd), Y, method="bh")
    with pytest.raises(ValueError, match="dof must be finite and > 0"):
        M.kl_divergence(sp.csr_matrix(Pd), Y, -1.0)


def test_kl_approx_within_half_percent_at_10k():
    rng = np.random.default_rng(0)
    n = 10000
    labels = rng.integers(0, 10, n)
    centres = rng.normal(size=(10, 30)) * 3
    X = centres[labels] + rng.normal(size=(n, 30))
    Y = rng.normal(size=(10, 2))[labels] * 25 + rng.normal(size=(n, 2)) * 4
    P = perplexity_affinities(exact_knn(X, 90), 30.0)
    exact = M.kl_divergence(P, Y)
    approx = M.kl_divergence(P, Y, method="approx")
    assert abs(approx - exact) / exact < 0.005


def test_kobak_berens_scores(blobs):
    X, Y, labels = blobs
    s = M.kobak_berens_scores(X, Y, labels, key=jax.random.key(3))
    assert s.knn == pytest.approx(M.knn_preservation(X, Y, 10))
    # KNC by hand.
    mx = np.stack([X[labels == c].mean(0) for c in range(10)])
    my = np.stack([Y[labels == c].mean(0) for c in range(10)])
    nx, ny = _brute_knn(mx, 4), _brute_knn(my, 4)
    ref = np.mean([len(np.intersect1d(a, b)) for a, b in zip(nx, ny, strict=True)]) / 4
    assert s.knc == pytest.approx(ref)
    # CPD on the same seeded subset.
    rows = M.neighborhood.query_rows(len(X), 1000, jax.random.key(3))
    assert s.cpd == pytest.approx(spearmanr(pdist(X[rows]), pdist(Y[rows])).statistic)
    with pytest.raises(ValueError, match="k_classes"):
        M.knc_score(X, Y, labels, k_classes=10)


def test_procrustes_matches_scipy(blobs):
    _, Y, _ = blobs
    rng = np.random.default_rng(2)
    rot = np.linalg.qr(rng.normal(size=(2, 2)))[0]
    Y2 = 3 * Y @ rot + 7 + rng.normal(size=Y.shape) * 0.5
    assert M.procrustes_disparity(Y, Y2) == pytest.approx(procrustes(Y, Y2)[2], rel=1e-4)
    assert M.procrustes_disparity(Y, 2 * Y @ rot - 1) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="equal shapes"):
        M.procrustes_disparity(Y, Y[:10])


def test_evaluate_agrees_with_the_single_metrics(blobs):
    X, Y, labels = blobs
    out = M.evaluate(X, Y, labels)
    pr = M.nn_precision_recall(X, Y)
    np.testing.assert_allclose(out["nn_precision"], pr.precision, atol=1e-7)
    assert out["knn_preservation_10"] == pytest.approx(M.knn_preservation(X, Y, 10))
    assert out["knn_accuracy_10"] == pytest.approx(M.knn_accuracy(Y, labels, 10))
    assert out["trustworthiness_5"] == pytest.approx(M.trustworthiness(X, Y, 5))
    assert out["continuity_5"] == pytest.approx(M.continuity(X, Y, 5))
    # a query subset: continuity searches X again for every point's neighbours
    sub = M.evaluate(X, Y, labels, n_queries=50, key=jax.random.key(0))
    assert sub["continuity_5"] == pytest.approx(M.continuity(X, Y, 5))
    assert {"knc_4", "cpd", "timings_seconds"} <= set(out)


def _labels(n, odd):
    """String labels (an object column, as pandas gives) with ``odd`` at index 3."""
    labels = np.array([f"c{i % 3}" for i in range(n)], dtype=object)
    labels[3] = odd
    return labels


def _nan_row(A):
    A = np.array(A, np.float32)
    A[3, 0] = np.nan
    return A


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda X, Y: M.nn_precision_recall(X, Y[:-1]), "same points"),
        (lambda X, Y: M.nn_precision_recall(X, Y, k_max=5000), "largest allowed"),
        (lambda X, Y: M.nn_precision_recall(X, Y, n_queries=10), "key="),
        (lambda X, Y: M.knn_accuracy(Y, np.zeros(5)), "labels"),
        (lambda X, Y: M.knn_accuracy(Y, _nan_row(np.zeros((len(Y), 1)))[:, 0]), "1 NaN entr"),
        # a pandas column's None / NaN, or ints and strings mixed, failed inside np.unique's
        # sort ("'<' not supported between instances of 'NoneType' and 'str'")
        (lambda X, Y: M.knn_accuracy(Y, _labels(len(Y), None)), r"1 missing entries.*first: 3"),
        (lambda X, Y: M.knc_score(X, Y, _labels(len(Y), np.nan)), r"1 missing entries"),
        (lambda X, Y: M.evaluate(X, Y, _labels(len(Y), 7)), r"mixes types .*\(int, str\)"),
        # NaN coordinates gave numbers (a NaN sorts as no distance does):
        (lambda X, Y: M.nn_precision_recall(X, _nan_row(Y)), "Y has 1 row.*first: 3"),
        (lambda X, Y: M.knn_accuracy(_nan_row(Y), np.zeros(len(Y))), "Y has 1 row"),
        (lambda X, Y: M.trustworthiness(_nan_row(X), Y), "X has 1 row"),
        (lambda X, Y: M.class_fragmentation(_nan_row(Y), np.zeros(len(Y))), "Y has 1 row"),
        # a constant embedding gave NaN with scipy's warning; the subset size is named
        (lambda X, Y: M.cpd_score(X, np.zeros_like(Y), len(X)), "every pairwise distance in Y"),
        (lambda X, Y: M.cpd_score(X, Y, 10), "n_points=10 below"),
        # arguments of the wrong type were Python's TypeError ("'>=' not supported between
        # 'str' and 'int'", "float division by zero", JAX's "invalid PRNG key data")
        (lambda X, Y: M.nn_precision_recall(X, Y, n_queries="100"), "n_queries must be an int"),
        (lambda X, Y: M.nn_precision_recall(X, Y, n_queries=100, key=0), "key must be a JAX"),
        (lambda X, Y: M.evaluate(X, Y, trustworthiness_k=0), "trustworthiness_k must be >= 1"),
        (lambda X, Y: M.evaluate(X, Y, x_neighbors="cached"), "x_neighbors must be a numeric"),
        (lambda X, Y: M.procrustes_disparity(Y, {}), "Y2 must be a numeric array"),
        (lambda X, Y: M.pbic(None, 30.0, 100), "kl must be a numeric array"),
        # the data where P goes: the error says how to build P from it
        (lambda X, Y: M.kl_divergence(X, Y), r"from data X .*perplexity_affinities"),
    ],
)
def test_metric_errors(blobs, call, fragment):
    X, Y, _ = blobs
    with pytest.raises(ValueError, match=fragment):
        call(X, Y)


def test_evaluate_on_few_points_and_a_collapsed_embedding(blobs):
    """``evaluate`` refused fewer than 31 points (its default k_max = 30 was checked as given),
    and one undefined score (CPD of an embedding whose points all coincide) took the whole
    report with it; a sweep scoring a collapsed trial lost every other number."""
    X, Y, labels = blobs
    few = M.evaluate(X[:20], Y[:20], labels[:20])
    assert few["k_max"] == 19 and len(few["nn_precision"]) == 19
    assert M.evaluate(X, Y)["k_max"] == 30
    with pytest.raises(ValueError, match="k_max=30 is too large for 20 points"):
        M.evaluate(X[:20], Y[:20], k_max=30)  # a value given is checked
    with pytest.warns(RuntimeWarning, match="every pairwise distance in Y .* cpd = NaN"):
        flat = M.evaluate(X, np.zeros_like(Y), labels)
    assert np.isnan(flat["cpd"]) and np.isfinite(flat["knn_accuracy_10"])
    assert flat["nn_precision"] and "trustworthiness_5" in flat


def test_class_fragmentation_counts_pieces():
    from tsnejax.metrics import class_fragmentation

    rng = np.random.default_rng(0)
    one = rng.normal(size=(200, 2))
    two = np.concatenate([rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 50])
    Y = np.concatenate([one, two + 200])
    labels = np.repeat([0, 1], 200)
    out = class_fragmentation(Y, labels)
    assert out["fragments_per_class"] == 1.5  # class 0 whole, class 1 in two pieces
    assert out["outside_largest"] == pytest.approx(0.25)
