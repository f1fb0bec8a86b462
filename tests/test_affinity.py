import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tsnejax.affinity import (
    build_layout,
    calibrate_perplexity,
    conditional_perplexity,
    fixed_sigma_affinities,
    perplexity_affinities,
    precomputed_affinities,
    symmetrize,
    to_scipy,
    uniform_affinities,
)
from tsnejax.knn import exact_knn, precomputed_knn


@pytest.fixture(scope="module")
def opentsne_digits(digits):
    from openTSNE.affinity import PerplexityBasedNN

    aff = PerplexityBasedNN(digits[0].astype(np.float64), perplexity=30, method="exact")
    dist, idx = aff.knn_index.index.kneighbors(n_neighbors=90)
    return aff, idx, dist


def test_P_matches_opentsne_exactly_on_same_knn(opentsne_digits):
    aff, idx, dist = opentsne_digits
    Po = aff.P.tocsr()
    P = to_scipy(perplexity_affinities(precomputed_knn(idx, dist), 30.0))
    # Same sparsity pattern.
    assert P.nnz == Po.nnz
    assert abs((P != 0).astype(np.int8) - (Po != 0).astype(np.int8)).sum() == 0
    # Same values to a *relative* 1e-4 (entries are ~1e-6, an absolute tolerance hides a bad sigma).
    rows, cols = Po.nonzero()
    ours = np.asarray(P[rows, cols]).ravel()
    theirs = np.asarray(Po[rows, cols]).ravel()
    assert np.max(np.abs(ours - theirs) / theirs) < 1e-4
    assert abs(P.sum() - 1) < 1e-5


def test_P_from_own_exact_knn_close_to_opentsne(digits, opentsne_digits):
    aff, _, _ = opentsne_digits
    P = to_scipy(perplexity_affinities(exact_knn(digits[0], 90), 30.0))
    # Tied k-th neighbours may be broken differently; the matrices still nearly coincide.
    diff = abs(P - aff.P).sum()
    assert diff < 2e-3


def test_uniform_matches_opentsne(digits):
    from openTSNE.affinity import Uniform

    X = digits[0][:500].astype(np.float64)
    ref = Uniform(X, k_neighbors=10, method="exact")
    dist, idx = ref.knn_index.index.kneighbors(n_neighbors=10)
    P = to_scipy(uniform_affinities(precomputed_knn(idx, dist)))
    np.testing.assert_allclose(P.toarray(), ref.P.toarray(), rtol=1e-6, atol=1e-9)


def test_multiscale_single_equals_perplexity(digits):
    knn = exact_knn(digits[0][:400], 60)
    a = to_scipy(perplexity_affinities(knn, [20.0]))
    b = to_scipy(perplexity_affinities(knn, 20.0))
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-6)
    c = conditional_perplexity(knn, [5.0, 20.0])
    d = (conditional_perplexity(knn, 5.0) + conditional_perplexity(knn, 20.0)) / 2
    np.testing.assert_allclose(np.asarray(c), np.asarray(d), rtol=1e-6)


def test_fixed_sigma_rows(digits):
    knn = exact_knn(digits[0][:300], 20)
    P = to_scipy(fixed_sigma_affinities(knn, 5.0))
    assert abs(P.sum() - 1) < 1e-5
    assert abs(P - P.T).max() < 1e-9


def test_layout_continuation_rows_give_same_matrix(digits):
    knn = exact_knn(digits[0][:500], 30)
    full = to_scipy(perplexity_affinities(knn, 10.0, layout=build_layout(knn)))
    narrow_layout = build_layout(knn, width=8)  # most entries go to continuation rows
    assert narrow_layout.extra_rows.shape[0] > 1000
    narrow = to_scipy(perplexity_affinities(knn, 10.0, layout=narrow_layout))
    np.testing.assert_allclose(narrow.toarray(), full.toarray(), rtol=1e-6, atol=1e-12)
    assert abs(full - full.T).max() < 1e-12


def _entropy(p):
    p = np.asarray(p, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)


# Two fixed shapes, values drawn: each distinct shape compiles the search and the calibration
# anew (~2 s on two cores), so drawn shapes made this test cost the same with a warm
# compilation cache as with an empty one.
@pytest.mark.parametrize("n,d", [(10, 1), (60, 8)])
@settings(max_examples=8, deadline=None)
@given(
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    perp_frac=st.floats(0.1, 1.0),
    seed=st.integers(0, 2**16),
)
def test_calibration_rows_sum_to_one_and_meet_perplexity(n, d, scale, perp_frac, seed):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * scale).astype(np.float32)
    k = n - 1
    perp = max(1.5, perp_frac * k / 3)
    knn = exact_knn(X, k)
    P, beta = calibrate_perplexity(jnp.square(knn.distances), perp)
    P = np.asarray(P)
    assert np.all(np.isfinite(P)) and np.all(P >= 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(_entropy(P)), perp, rtol=1e-3)


def test_constant_rows_stay_finite():
    X = np.zeros((20, 3), np.float32)
    X[10:] = 1.0  # two groups of identical points
    P = to_scipy(perplexity_affinities(exact_knn(X, 15), 5.0))
    assert np.isfinite(P.data).all() and abs(P.sum() - 1) < 1e-5


def test_symmetrize_is_jittable(digits):
    import jax

    knn = exact_knn(digits[0][:200], 30)
    layout = build_layout(knn)
    Pc = conditional_perplexity(knn, 10.0)
    a = jax.jit(symmetrize, static_argnames="mode")(Pc, layout)
    b = symmetrize(Pc, layout)
    np.testing.assert_allclose(np.asarray(a.weights), np.asarray(b.weights), rtol=1e-6)


def test_precomputed_affinities_roundtrip_and_errors():
    rng = np.random.default_rng(0)
    dense = rng.random((30, 30)) * (rng.random((30, 30)) < 0.2)
    dense = dense + dense.T
    np.fill_diagonal(dense, 0)
    A = sp.csr_matrix(dense)
    P = to_scipy(precomputed_affinities(A, width=3))  # narrow width: exercises continuation rows
    np.testing.assert_allclose(P.toarray(), dense / dense.sum(), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="not symmetric"):
        precomputed_affinities(sp.csr_matrix(np.triu(rng.random((5, 5)), 1)))
    with pytest.raises(ValueError, match="sums to"):
        precomputed_affinities(A, normalize=False)
    with pytest.raises(ValueError, match="square"):
        precomputed_affinities(sp.csr_matrix(np.ones((3, 4))))


def test_perplexity_needs_enough_neighbours(digits):
    knn = exact_knn(digits[0][:100], 10)
    with pytest.raises(ValueError, match="k=10"):
        perplexity_affinities(knn, 30.0)
    # an (indices, distances) pair is a graph (it was "'tuple' object has no attribute
    # 'indices'"); anything else, and a calibration tolerance or step count that cannot work,
    # is named (max_iter=-1 returned uncalibrated P without a word)
    pair = (np.asarray(knn.indices), np.asarray(knn.distances))
    np.testing.assert_array_equal(
        perplexity_affinities(pair, 3.0).weights, perplexity_affinities(knn, 3.0).weights
    )
    for call, message in [
        (lambda: perplexity_affinities(None, 3.0), "knn must be a tsnejax.knn.KNNGraph"),
        (lambda: uniform_affinities(knn.indices), "knn must be a tsnejax.knn.KNNGraph"),
        (lambda: perplexity_affinities((pair[0] + 1000, pair[1]), 3.0), r"lie in \[0, 99\]"),
        (lambda: perplexity_affinities(knn, 3.0, tol=-1.0), "tol must be finite and > 0"),
        (lambda: perplexity_affinities(knn, 3.0, max_iter=-1), "max_iter must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="largest allowed is 9"):
        perplexity_affinities(exact_knn(digits[0][:10], 9), 30.0)


def test_few_points_take_the_perplexity_their_neighbours_allow(digits):
    """60 points at perplexity 30 (3 * perplexity > n - 1): openTSNE calibrates on all 59 other
    points, scikit-learn too (``perplexity < n``); tsnejax refused it (3 * perplexity <= n - 1)
    and now gives openTSNE's P, and a whole fit runs as both peers' do."""
    import jax
    from openTSNE.affinity import PerplexityBasedNN

    from tsnejax import TSNEConfig, fit

    X = digits[0][:60].astype(np.float64)
    ref = PerplexityBasedNN(X, perplexity=30, method="exact")
    assert ref.knn_index.k == 59 and ref.effective_perplexity_ == 30
    dist, idx = ref.knn_index.index.kneighbors(n_neighbors=59)
    P = to_scipy(perplexity_affinities(precomputed_knn(idx, dist), 30.0))
    Po = ref.P.tocsr()
    rows, cols = Po.nonzero()
    assert P.nnz == Po.nnz
    rel = np.abs(np.asarray(P[rows, cols]).ravel() / np.asarray(Po[rows, cols]).ravel() - 1)
    assert rel.max() < 1e-4
    config = TSNEConfig.make(perplexity=30.0, early_exaggeration_iter=20, n_iter=20)
    res = fit(jax.random.key(0), X, config)
    assert res.neighbors.k == 59 and np.isfinite(np.asarray(res.embedding)).all()
    np.testing.assert_allclose(to_scipy(res.affinities).toarray(), P.toarray(), atol=1e-7)
    # The uniform kernel uses the perplexity for k alone: k = min(n - 1, 3 * 30) or as given.
    uni = fit(jax.random.key(0), X, config.replace(affinity_method="uniform", n_neighbors=10))
    assert uni.neighbors.k == 10


# Few distinct shapes (each converts to device arrays through programs compiled per shape),
# drawn graphs.
@settings(max_examples=15, deadline=None)
@given(
    n=st.sampled_from([6, 400]),
    k=st.sampled_from([1, 5]),
    hubs=st.integers(0, 3),
    width=st.sampled_from([None, 1, 8]),
    seed=st.integers(0, 10_000),
)
def test_lean_layout_equals_the_unique_reference(n, k, hubs, width, seed):
    """build_layout (scipy union with flags, int32) == the np.unique construction."""
    from tsnejax._layout import build_layout, build_layout_unique
    from tsnejax.knn import KNNGraph

    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    for h in range(min(hubs, k)):  # hub points: many reverse neighbours, continuation rows
        col = np.where(np.arange(n) == h, (h + 1) % n, h)
        clash = (idx == col[:, None]).any(axis=1) & (idx[:, h] != col)
        idx[~clash, h] = col[~clash]
    graph = KNNGraph(jnp.asarray(idx, jnp.int32), jnp.ones(idx.shape, jnp.float32))
    lean, ref = build_layout(graph, width), build_layout_unique(graph, width, 16)
    for a, b in zip(lean, ref, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_layout_builds_with_small_pages_and_restores_numpy_setting(monkeypatch):
    from tsnejax import _layout
    from tsnejax.knn import KNNGraph

    setter = _layout._hugepage_setter()
    if setter is None:
        pytest.skip("this NumPy has no _set_madvise_hugepage")
    seen = []

    def spy(flag):
        seen.append(flag)
        return setter(flag)

    monkeypatch.setattr(_layout, "_hugepage_setter", lambda: spy)
    before = setter(True)
    idx = np.array([[1, 2], [2, 0], [0, 1], [0, 1]], np.int32)
    graph = KNNGraph(jnp.asarray(idx), jnp.ones((4, 2), jnp.float32))
    try:
        _layout.build_layout(graph)
        assert seen == []  # a small layout keeps NumPy's huge pages (faster there)
        monkeypatch.setattr(_layout, "SMALL_PAGES_MIN_ENTRIES", 0)
        _layout.build_layout(graph)
        # off while the layout (and the fill it calls) runs, then NumPy's setting back
        assert seen == [False, False, False, True] and setter(True) is True
    finally:
        setter(before)


def test_layout_with_repeated_neighbours_falls_back():
    from tsnejax._layout import build_layout, build_layout_unique
    from tsnejax.knn import KNNGraph

    idx = np.array([[1, 1], [0, 2], [0, 1]], np.int32)  # row 0 lists point 1 twice
    graph = KNNGraph(jnp.asarray(idx), jnp.ones((3, 2), jnp.float32))
    for a, b in zip(build_layout(graph), build_layout_unique(graph, None, 16), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_perplexity_one_and_equidistant_rows_give_finite_p():
    """Two inputs the long property profile found (tests/test_reliability.py): 1e30-scale points
    at perplexity 1 (the precision overflowed to inf) and identical rows (XLA squared the two
    terms of d^2 - min d^2 differently, leaving 2.6e-8 instead of 0, so every entry underflowed
    and P was 0, then NaN after normalising)."""
    import jax

    import tsnejax
    from tsnejax.affinity import conditional_perplexity
    from tsnejax.knn import KNNGraph

    def rows(distances, perplexity):
        d = jnp.asarray(distances, jnp.float32)
        graph = KNNGraph(jnp.zeros(d.shape, jnp.int32), d)
        return np.asarray(conditional_perplexity(graph, perplexity))

    big = rows([[8.2376115e29, 9.153567e29, 1.6549327e30]], 1.0)
    np.testing.assert_allclose(big.sum(axis=1), 1.0, rtol=1e-6)
    assert big[0, 0] > 0.999
    same = rows(np.full((2, 3), 3.2e-9), 1.0)
    np.testing.assert_allclose(same, 1.0 / 3.0, rtol=1e-6)
    X = np.ones((40, 5), np.float32)
    config = tsnejax.TSNEConfig.make(perplexity=1.0)
    with pytest.warns(tsnejax.EmbeddingScaleWarning, match="all 40 rows are identical"):
        P = tsnejax.pipeline.prepare(jax.random.key(0), X, config).P
    assert np.isfinite(np.asarray(P.weights)).all()
    np.testing.assert_allclose(float(np.sum(P.weights) + np.sum(P.extra_weights)), 1.0, rtol=1e-5)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 10**6))
def test_extra_capacity_is_a_short_step_above_the_need(e, n):
    from tsnejax._layout import extra_capacity

    cap, step = extra_capacity(e, n), max(8, -(-n // 16))
    assert cap >= max(e, 1) and cap < max(e, 1) + step
    assert e == 0 or cap % step == 0


def test_data_sets_of_one_size_share_p_shapes_and_padding_changes_nothing(digits, monkeypatch):
    """Continuation rows come in steps of n / 16, so random subsets of one size usually share
    P's shapes (hence compiled programs); the zero rows leave the embedding bit for bit."""
    import jax

    import tsnejax
    import tsnejax._layout as layout

    X = digits[0]
    rng = np.random.default_rng(0)
    graphs = [exact_knn(X[rng.choice(len(X), 1500, replace=False)], 90) for _ in range(4)]
    shapes = {perplexity_affinities(g, 30.0).extra_rows.shape for g in graphs}
    monkeypatch.setattr(layout, "extra_capacity", lambda e, n: max(e, 1))
    exact = {perplexity_affinities(g, 30.0).extra_rows.shape for g in graphs}
    assert len(shapes) < len(exact), (shapes, exact)  # MNIST 5k, 10k: 5 shapes -> 1
    # The same fit on the exact-size layout and on the stepped one.
    cfg = tsnejax.TSNEConfig.make(n_iter=30, early_exaggeration_iter=20)
    key = jax.random.key(0)
    Xs = X[:600]
    plain = tsnejax.fit(key, Xs, cfg)
    monkeypatch.undo()
    stepped = tsnejax.fit(key, Xs, cfg)
    assert stepped.affinities.extra_rows.shape[0] > plain.affinities.extra_rows.shape[0]
    np.testing.assert_array_equal(stepped.embedding, plain.embedding)
    assert stepped.kl_divergence == plain.kl_divergence


def test_an_affinity_method_object_in_the_config(digits):
    """``affinity_method`` takes a callable ``KNNGraph -> P`` where it takes "uniform": P as
    Affinities, or as a scipy matrix as ``fit(affinities=)`` takes it (it was refused)."""
    import jax

    import tsnejax

    X = digits[0][:300]
    key = jax.random.key(0)

    def cfg(method):
        return tsnejax.TSNEConfig.make(
            affinity_method=method, n_iter=20, early_exaggeration_iter=20, perplexity=10.0
        )

    named = tsnejax.fit(key, X, cfg("uniform"))
    as_object = tsnejax.fit(key, X, cfg(uniform_affinities))
    np.testing.assert_array_equal(as_object.embedding, named.embedding)
    as_scipy = tsnejax.fit(key, X, cfg(lambda g: to_scipy(uniform_affinities(g))))
    np.testing.assert_allclose(as_scipy.embedding, named.embedding, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="returned int; it must return tsnejax.Affinities"):
        tsnejax.fit(key, X, cfg(lambda g: 3))
