"""Input metrics other than Euclidean and precomputed distances (tsnejax.knn_metric): the
affinities against openTSNE's, the precomputed forms against the searched ones, and the
estimator, transform, sweeps and command line with a metric."""

import json
import pickle
import warnings

import jax
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors, kneighbors_graph

import tsnejax
from tsnejax import TSNE
from tsnejax.affinity import to_scipy
from tsnejax.config import TSNEConfig
from tsnejax.knn_metric import distance_matrix_knn, graph_search, metric_query
from tsnejax.metrics import knn_accuracy, trustworthiness
from tsnejax.pipeline import prepare

SHORT = dict(early_exaggeration_iter=40, n_iter=60, random_state=0)


@pytest.fixture(scope="module")
def Xy(digits):
    X, y = digits
    # jitter: integer pixels tie many distances, and ties may be broken either way
    X = X[:400].astype(np.float64) + np.random.default_rng(0).normal(0, 0.01, (400, 64))
    return X, y[:400]


def _P(X, **flat):
    flat.setdefault("initialization", "random")
    return to_scipy(prepare(jax.random.key(0), X, TSNEConfig.make(**flat)).P).toarray()


@pytest.mark.parametrize(
    "metric, params", [("cosine", None), ("manhattan", None), ("minkowski", {"p": 3})]
)
def test_affinities_equal_opentsnes_in_the_metric(Xy, metric, params):
    openTSNE = pytest.importorskip("openTSNE")
    X, _ = Xy
    with warnings.catch_warnings():  # openTSNE passes p twice to scikit-learn (its warning)
        warnings.simplefilter("ignore")
        ref = openTSNE.affinity.PerplexityBasedNN(
            X, perplexity=30, metric=metric, metric_params=params, method="exact"
        ).P.toarray()
    P = _P(X, metric=metric, metric_params=params)
    assert np.abs(P - ref).max() <= 1e-5 * ref.max()
    assert np.abs(P - _P(X)).max() > 0.05 * ref.max()  # not the Euclidean P


def test_correlation_equals_precomputed_correlation_distances(Xy):
    openTSNE = pytest.importorskip("openTSNE")
    X, _ = Xy
    D = pairwise_distances(X, metric="correlation")
    ref = openTSNE.affinity.PerplexityBasedNN(D, perplexity=30, metric="precomputed").P
    P = _P(X, metric="correlation")
    assert np.abs(P - ref.toarray()).max() <= 1e-5 * P.max()
    np.testing.assert_allclose(_P(D, metric="precomputed"), P, rtol=0, atol=1e-6 * P.max())


def test_precomputed_dense_and_sparse_give_the_searched_graph(Xy):
    X, _ = Xy
    g = graph_search(X, 20, metric="euclidean", method="exact")
    for D in (pairwise_distances(X), kneighbors_graph(X, 25, mode="distance")):
        h = distance_matrix_knn(D, 20)
        np.testing.assert_array_equal(np.asarray(h.indices), np.asarray(g.indices))
        np.testing.assert_allclose(h.distances, g.distances, rtol=1e-4)
    # a stored diagonal is skipped, stored zeros elsewhere are neighbours (duplicates)
    # rows 1 and 2 store an explicit 0 for each other
    D = sp.csr_matrix(([1.0, 2.0, 1.0, 0.0, 2.0, 0.0], ([0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1])))
    h = distance_matrix_knn(D, 1)
    assert np.asarray(h.indices)[:, 0].tolist() == [1, 2, 1]


def test_precomputed_fit_and_transform_match_the_metric(Xy):
    """TSNE(metric='precomputed') on Manhattan distances is TSNE(metric='manhattan'): the same
    graph, P, embedding; transform takes the new points' distances to the reference."""
    X, _ = Xy
    ref, new = X[:350], X[350:]
    a = TSNE(metric="manhattan", initialization="random", **SHORT).fit(ref)
    with pytest.warns(UserWarning, match="spectral one of P"):
        TSNE(metric="precomputed", **SHORT).fit(pairwise_distances(ref, metric="manhattan"))
    b = TSNE(metric="precomputed", initialization="random", **SHORT)
    b.fit(pairwise_distances(ref, metric="manhattan"))
    np.testing.assert_allclose(b.embedding_, a.embedding_, atol=1e-3 * np.abs(a.embedding_).max())
    Ya = a.transform(new)
    Yb = b.transform(pairwise_distances(new, ref, metric="manhattan"))
    np.testing.assert_allclose(Yb, Ya, atol=1e-3 * np.abs(a.embedding_).max())
    with pytest.raises(ValueError, match=r"\(n_new, 350\) distances"):
        b.transform(new)
    # a sparse kNN graph of the new points (absent entries are not distances, not zeros)
    nn = NearestNeighbors(n_neighbors=30, metric="manhattan").fit(ref)
    np.testing.assert_array_equal(b.transform(nn.kneighbors_graph(new, 30, mode="distance")), Yb)
    with pytest.raises(ValueError, match=r"sparse X_new stores 10 distance\(s\), but k=25"):
        b.transform(nn.kneighbors_graph(new, 10, mode="distance"))


def test_the_metric_reaches_transform_and_the_scorer(Xy):
    X, y = Xy
    est = TSNE(metric="cosine", **SHORT).fit(X[:350])
    g = metric_query(X[:350], X[350:], 10, metric="cosine")
    cos = pairwise_distances(X[350:], X[:350], metric="cosine")
    np.testing.assert_array_equal(np.asarray(g.indices), np.argsort(cos, axis=1)[:, :10])
    np.testing.assert_allclose(g.distances, np.sort(cos, axis=1)[:, :10], atol=1e-5)
    Y = est.transform(X[350:])
    assert est.transform_result_.neighbors.indices[0, 0] == g.indices[0, 0]
    assert knn_accuracy(np.vstack([est.embedding_, Y]), y) > 0.9
    scorer = tsnejax.trustworthiness_scorer(5)
    from sklearn.manifold import trustworthiness as sk

    assert scorer(est, X[350:]) == pytest.approx(sk(X[350:], Y, n_neighbors=5, metric="cosine"))
    Yr = np.random.default_rng(0).normal(size=(50, 2))
    for metric in ("correlation", "manhattan"):
        ref = sk(X[:50], Yr, n_neighbors=5, metric=metric)
        assert trustworthiness(X[:50], Yr, 5, metric=metric) == pytest.approx(ref, abs=1e-6)


def test_bad_metric_input_is_named(Xy):
    X, _ = Xy
    with pytest.raises(ValueError, match="metric='cosin' is not a metric"):
        TSNEConfig.make(metric="cosin")
    with pytest.raises(ValueError, match="do not apply to metric='cosine'"):
        TSNEConfig.make(metric="cosine", metric_params={"p": 3})
    Z = X.copy()
    Z[[3, 7]] = 0.0
    with pytest.raises(ValueError, match=r"metric='cosine': X has 2 row\(s\).*all zeros.*\[3, 7\]"):
        TSNE(metric="cosine", **SHORT).fit(Z)
    Z[[3, 7]] = 5.0
    with pytest.raises(ValueError, match=r"metric='correlation'.*constant.*\[3, 7\]"):
        TSNE(metric="correlation", **SHORT).fit(Z)
    with pytest.raises(ValueError, match="neighbors='ivf' searches in Euclidean space"):
        TSNE(metric="manhattan", neighbors="ivf", **SHORT).fit(X)
    with pytest.raises(ValueError, match=r"square \(n, n\) distance matrix, got shape \(400, 64\)"):
        TSNE(metric="precomputed", **SHORT).fit(X)
    with pytest.raises(ValueError, match="negative distances"):
        TSNE(metric="precomputed", initialization="random", **SHORT).fit(-pairwise_distances(X))
    with pytest.raises(ValueError, match=r"metric_params=\{'p': -1\}: scikit-learn's search"):
        TSNE(metric="minkowski", metric_params={"p": -1}, **SHORT).fit(X)
    with pytest.raises(ValueError, match=r"metric_params=\{'q': 1\}.*unexpected keyword"):
        TSNE(metric="manhattan", metric_params={"q": 1}, **SHORT).fit(X)
    # a callable's NaN or negative distances were calibrated into a P (KL 0.28, no word)
    with pytest.raises(ValueError, match="gave NaN, inf or negative distances for 400 point"):
        TSNE(metric=_nan_metric, **SHORT).fit(X)
    G = kneighbors_graph(X, 20, mode="distance")
    with pytest.raises(ValueError, match=r"stores 20 distance\(s\).*k=90"):
        TSNE(metric="precomputed", initialization="random", **SHORT).fit(G)


def test_a_callable_metric_pickles_and_batches_key_graphs_by_metric(Xy):
    X, _ = Xy
    est = TSNE(metric=_l1, **SHORT).fit(X[:200])
    ref = TSNE(metric="manhattan", **SHORT).fit(X[:200])
    Pa, Pb = to_scipy(est.affinities_).toarray(), to_scipy(ref.affinities_).toarray()
    np.testing.assert_allclose(Pa, Pb, rtol=0, atol=1e-5 * Pb.max())  # float32 vs float64 sums
    back = pickle.loads(pickle.dumps(est))
    assert back.metric is _l1 and back.get_params()["metric_params"] is None
    # two metrics in one batch: each trial gets its own graph (graphs were keyed by search only)
    cfgs = [
        TSNEConfig.make(metric=m, early_exaggeration_iter=20, n_iter=20)
        for m in ("euclidean", "cosine")
    ]
    keys = jax.random.split(jax.random.key(0), 2)
    batch = tsnejax.fit_batch(keys, X[:200], cfgs)
    for i, c in enumerate(cfgs):
        single = tsnejax.fit(keys[i], X[:200], c)
        assert (
            np.abs(batch.embeddings[i] - single.embedding).max()
            <= 1e-4 * np.abs(single.embedding).max()
        )
    assert np.abs(batch.embeddings[0] - batch.embeddings[1]).max() > 0.1


def _nan_metric(a, b):
    return float("nan")


def _l1(a, b):
    return float(np.abs(a - b).sum())


def test_cli_metric_spec(tmp_path):
    from tsnejax.cli import main

    out = tmp_path / "m"
    main(
        [
            "embed",
            "--out",
            str(out),
            "--metric",
            "minkowski:p=3",
            "--n-iter",
            "30",
            "--early-exaggeration-iter",
            "30",
            "--metrics-queries",
            "100",
        ]
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["metric"] == "minkowski" and m["config"]["metric_params"] == [["p", 3]]
    assert "Euclidean" in m["quality"]["skipped"] and m["knn_accuracy_10"] > 0.8


def test_a_small_sparse_matrix_is_the_dense_one(Xy):
    """scikit-learn's and openTSNE's TSNE take sparse X (TF-IDF, counts): up to
    SPARSE_DENSE_ELEMENTS cells it is made dense, so fit and transform give the dense result."""
    X, _ = Xy
    X = X.astype(np.float32)
    a = TSNE(**SHORT).fit(X[:300])
    b = TSNE(**SHORT).fit(sp.csr_matrix(X[:300]))
    np.testing.assert_array_equal(b.embedding_, a.embedding_)
    np.testing.assert_array_equal(b.transform(sp.csc_matrix(X[300:])), a.transform(X[300:]))
    bad = sp.csr_matrix(X[:300])
    bad.data[7] = np.nan
    with pytest.raises(ValueError, match=r"X has 1 row\(s\) with NaN"):
        TSNE(**SHORT).fit(bad)


def test_a_large_sparse_matrix_is_searched_and_reduced_on_the_host(Xy, monkeypatch):
    """Above SPARSE_DENSE_ELEMENTS cells X stays sparse: scikit-learn's exact search (the same
    graph and P) and its ARPACK PCA (the same initial embedding to 1e-4)."""
    from tsnejax import init, knn_metric

    X, _ = Xy
    S = sp.csr_matrix(X.astype(np.float32))
    monkeypatch.setattr(knn_metric, "SPARSE_DENSE_ELEMENTS", 100)
    np.testing.assert_allclose(
        init.pca(S), init.pca(X), rtol=0, atol=1e-4 * np.abs(init.pca(X)).max()
    )
    for metric in ("euclidean", "cosine"):
        P, ref = _P(S, metric=metric), _P(X.astype(np.float32), metric=metric)
        np.testing.assert_allclose(P, ref, rtol=0, atol=1e-5 * ref.max())
    est = TSNE(metric="cosine", **SHORT).fit(S[:350])
    est.transform(S[350:])
    dense = metric_query(X[:350], X[350:], 25, metric="cosine")
    np.testing.assert_array_equal(
        np.asarray(est.transform_result_.neighbors.indices), np.asarray(dense.indices)
    )
    with pytest.raises(ValueError, match="'correlation' not valid for sparse.*on a sparse X"):
        TSNE(metric="correlation", **SHORT).fit(S)
    with pytest.raises(ValueError, match="sparse X over 100 cells .* searched on the host"):
        TSNE(neighbors="ivf", **SHORT).fit(S)


def test_cli_sparse_input_and_cosine_quality(tmp_path, digits):
    """A scipy.sparse.save_npz file is an --input (it was "name the features 'X'"); embed's
    quality and the metrics verb rank the input's neighbours in the run's metric."""
    from tsnejax.cli import main

    X, y = digits[0][:300], digits[1][:300]
    sp.save_npz(tmp_path / "s.npz", sp.csr_matrix(X))
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "e"
    common = ["--labels", str(tmp_path / "y.npy"), "--metrics-queries", "300"]
    short = ["--n-iter", "30", "--early-exaggeration-iter", "30"]
    main(
        ["embed", "--input", str(tmp_path / "s.npz"), "--out", str(out), "--metric", "cosine"]
        + common
        + short
    )
    q = json.loads((out / "metrics.json").read_text())["quality"]
    mout = tmp_path / "m"
    args = [
        "metrics",
        "--input",
        str(tmp_path / "s.npz"),
        "--embedding",
        str(out / "embedding.npy"),
    ]
    main([*args, "--labels", str(tmp_path / "y.npy"), "--out", str(mout), "--metric", "cosine"])
    m = json.loads((mout / "metrics.json").read_text())
    assert m["metric"] == "cosine" and m["trustworthiness_5"] == pytest.approx(
        q["trustworthiness_5"]
    )
    from sklearn.manifold import trustworthiness as sk

    Y = np.load(out / "embedding.npy")
    assert m["trustworthiness_5"] == pytest.approx(
        sk(X, Y, n_neighbors=5, metric="cosine"), abs=1e-6
    )


def test_auto_keeps_a_plain_callable_off_pynndescent():
    """pynndescent calls only numba-compiled metrics: from 40k points "auto" sent a plain
    Python callable there (a numba typing error after the data was loaded)."""
    from tsnejax.knn_metric import _host_method

    assert _host_method("auto", "manhattan", 50_000) == "pynndescent"
    assert _host_method("auto", _l1, 50_000) == "exact"
    assert _host_method("auto", "manhattan", 5_000) == "exact"


def test_fit_takes_a_sparse_knn_graph_as_neighbors(Xy):
    """neighbors= a sparse distance graph (scikit-learn's kneighbors_graph, scanpy's obsp) was
    refused; k is the fewest distances a row stores."""
    X, _ = Xy
    G = kneighbors_graph(X, 60, mode="distance")
    g = graph_search(X, 60, metric="euclidean", method="exact")
    a = TSNE(perplexity=20, **SHORT).fit(X, neighbors=G)
    b = TSNE(perplexity=20, **SHORT).fit(
        X, neighbors=(np.asarray(g.indices), np.asarray(g.distances))
    )
    Pa, Pb = to_scipy(a.affinities_).toarray(), to_scipy(b.affinities_).toarray()
    np.testing.assert_allclose(Pa, Pb, rtol=0, atol=1e-5 * Pb.max())  # float64 vs 32 distances
    np.testing.assert_array_equal(np.asarray(a.neighbors_.indices), np.asarray(g.indices))
    c = TSNE(perplexity=20, initialization="random", **SHORT).fit(None, neighbors=G)
    assert c.embedding_.shape == (400, 2)
    # every row storing its diagonal (include_self=True) broke scanpy's graph conversion
    from tsnejax.tl import graph_from_obsp

    with_self = kneighbors_graph(X, 61, mode="distance", include_self=True)
    assert with_self[0, 0] == 0 and with_self.nnz == 400 * 61
    ad = type("AD", (), {"uns": {"neighbors": {}}, "obsp": {"distances": with_self}})()
    idx, dist = graph_from_obsp(ad)
    np.testing.assert_array_equal(idx, np.asarray(g.indices))


def test_evaluate_ranks_input_neighbours_in_the_metric(Xy):
    from sklearn.manifold import trustworthiness as sk

    from tsnejax.metrics import evaluate
    from tsnejax.metrics.report import input_neighbors

    X, y = Xy
    Y = np.random.default_rng(1).normal(size=(400, 2))
    q = evaluate(X, Y, y, metric="cosine", global_scores=False)
    assert q["trustworthiness_5"] == pytest.approx(sk(X, Y, n_neighbors=5, metric="cosine"))
    cos = pairwise_distances(X, metric="cosine")
    np.fill_diagonal(cos, np.inf)
    ref = np.sort(np.argsort(cos, axis=1)[:, :30], axis=1)
    ours = np.sort(np.asarray(input_neighbors(X, metric="cosine")), axis=1)
    assert (ours == ref).mean() > 0.999  # the same 30 neighbours of every point
    with pytest.raises(ValueError, match="metric='manhattan': the quality metrics rank"):
        evaluate(X, Y, y, metric="manhattan")


def test_the_memory_plan_of_precomputed_distances_has_no_pca_or_search(Xy, monkeypatch):
    """The plan read a (n, n) distance matrix as n features: a PCA of n x n and a search over
    n-dimensional points, neither of which runs (at 50k points: tens of GB, refused)."""
    from tsnejax import memory
    from tsnejax.pipeline import check_fit_memory

    seen = []
    monkeypatch.setattr(memory, "check_plan", lambda plan: seen.append(plan))
    D = np.zeros((400, 400), np.float32)
    check_fit_memory(TSNEConfig.make(metric="precomputed"), D)
    check_fit_memory(TSNEConfig.make(), Xy[0])
    names = [[stage.name for stage in plan] for plan in seen]
    assert not any("PCA" in n or "kNN" in n for n in names[0]), names[0]
    assert any("PCA" in n for n in names[1]) and any("kNN" in n for n in names[1])


def test_sample_transform_optimize_in_the_metric(Xy, monkeypatch):
    """The large-data recipe placed the rest by Euclidean neighbours whatever the metric, and
    with precomputed distances it failed (the sample's rows of D are not square)."""
    from tsnejax import knn_metric
    from tsnejax.large_data import sample_transform_optimize

    X, y = Xy
    short = dict(early_exaggeration_iter=20, n_iter=20)
    cfg = TSNEConfig.make(metric="precomputed", initialization="random", **short)
    r = sample_transform_optimize(jax.random.key(0), pairwise_distances(X), cfg, n_sample=200)
    assert r.result.embedding.shape == (400, 2) and knn_accuracy(r.result.embedding, y) > 0.8
    seen = []
    query = knn_metric.metric_query
    monkeypatch.setattr(
        "tsnejax.transform.metric_query", lambda *a, **k: seen.append(k["metric"]) or query(*a, **k)
    )
    sample_transform_optimize(jax.random.key(0), X, cfg.replace(metric="cosine"), n_sample=200)
    assert seen == ["cosine"]


def test_a_sweep_reads_a_sparse_npz(tmp_path, digits):
    """A scipy.sparse.save_npz data file failed in a sweep (np.asarray of a sparse matrix)."""
    from tsnejax.sweep import spec_from_dict
    from tsnejax.sweep.workspace import load_data

    X = digits[0][:300]
    sp.save_npz(tmp_path / "s.npz", sp.csr_matrix(X))
    spec = spec_from_dict({"name": "s", "data": {"path": "s.npz"}, "grid": {"metric": ["cosine"]}})
    data = load_data(spec.data, data_dir=tmp_path)
    np.testing.assert_array_equal(data.X, X)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    metric=st.sampled_from(["cosine", "correlation", "manhattan", "sqeuclidean"]),
)
def test_every_metric_graph_is_the_brute_force_one(seed, metric):
    """For continuous data (no ties) each metric's graph is scikit-learn's brute-force one, with
    its distances, and a precomputed matrix or kNN graph of them gives it back (shapes fixed:
    a drawn shape would compile anew)."""
    X = np.random.default_rng(seed).normal(size=(60, 5)).astype(np.float32) + 0.5
    D = pairwise_distances(X.astype(np.float64), metric=metric)
    np.fill_diagonal(D, np.inf)
    ref_idx = np.argsort(D, axis=1, kind="stable")[:, :12]
    ref_dist = np.take_along_axis(D, ref_idx, axis=1)
    g = graph_search(X, 12, metric=metric)
    np.testing.assert_array_equal(np.asarray(g.indices), ref_idx)
    np.testing.assert_allclose(g.distances, ref_dist, rtol=2e-4, atol=2e-5)
    np.fill_diagonal(D, 0.0)
    for given_ in (D, kneighbors_graph(X.astype(np.float64), 15, metric=metric, mode="distance")):
        h = distance_matrix_knn(given_, 12)
        np.testing.assert_array_equal(np.asarray(h.indices), ref_idx)


def test_the_metrics_take_a_sparse_input_as_fit_does(Xy):
    """The quality metrics read a sparse X as a 0-d object array ("X and Y must be 2-D, got
    shapes ()"); it is now the dense array's score."""
    from tsnejax.metrics import evaluate, knn_preservation

    X, y = Xy
    Y = np.random.default_rng(1).normal(size=(400, 2))
    S = sp.csr_matrix(X)
    assert trustworthiness(S, Y, 5) == trustworthiness(X, Y, 5)
    assert knn_preservation(S, Y) == knn_preservation(X, Y)
    a = evaluate(S, Y, y, metric="cosine", global_scores=False)
    b = evaluate(X, Y, y, metric="cosine", global_scores=False)
    assert (
        a["trustworthiness_5"] == b["trustworthiness_5"] and a["nn_precision"] == b["nn_precision"]
    )
