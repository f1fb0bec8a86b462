"""transform / prepare_partial: per-point independence, gradient, grid vs exact, estimator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from tsnejax import TSNE, TSNEConfig, fit
from tsnejax.gradients.interpolation import InterpolationGrid
from tsnejax.knn import exact_knn, knn_query
from tsnejax.large_data import sample_transform_optimize
from tsnejax.transform import (
    Reference,
    TransformConfig,
    _kl,
    exact_reference_repulsion,
    field_repulsion,
    place,
    prepare_partial,
    reference_field,
    transform,
    transform_gradient,
    transform_phases,
)


@pytest.fixture(scope="module")
def reference(digits):
    X, y = digits
    r = fit(jax.random.key(0), X[:1400], TSNEConfig.make(n_iter=300))
    return X, y, r.embedding


@pytest.mark.parametrize("method", ["exact", "interpolation"])
def test_one_at_a_time_equals_one_batch(reference, method):
    X, _, Y = reference
    cfg = TransformConfig(method=method)
    batch = transform(X[1400:1440], X[:1400], Y, cfg)
    for i in range(0, 40, 7):
        one = transform(X[1400 + i : 1401 + i], X[:1400], Y, cfg)
        np.testing.assert_allclose(one.embedding, batch.embedding[i : i + 1], atol=1e-5)
    assert batch.method == method


# dof is compiled in: each value is its own programs; 5 and inf catch both faults, 0.5 (a
# heavier tail) is the slow tier's.
@pytest.mark.parametrize("dof", [pytest.param(0.5, marks=pytest.mark.slow), 5.0, np.inf])
def test_the_kernel_dof_reaches_the_new_points_optimisation(reference, dof):
    """With no early phase (the default) the phase table lost its dof (two phases at 0): the
    exact transform ran dof 1 whatever the reference's, the frozen grid (built with the right
    dof) disagreed with its own attraction and sent points to the grid's edge (3.6 units off
    the exact placement after 20 steps at dof 5), and dof = inf was NaN."""
    X, _, Y = reference
    assert transform_phases(TransformConfig(), dof).values[0]["dof"] == dof
    runs = {
        m: transform(X[1400:1430], X[:1400], Y, TransformConfig(method=m, n_iter=40), dof=dof)
        for m in ("exact", "interpolation")
    }
    exact, grid = runs["exact"], runs["interpolation"]
    assert np.isfinite(exact.kl_divergence) and np.isfinite(grid.kl_divergence)
    assert grid.kl_divergence == pytest.approx(exact.kl_divergence, rel=1e-2)
    assert np.abs(grid.embedding - exact.embedding).max() <= 0.01 * np.abs(Y).max()
    # dof reaches the exact run: another dof, another objective
    if dof != 5.0:
        other = transform(X[1400:1430], X[:1400], Y, TransformConfig(method="exact", n_iter=40))
        assert abs(other.kl_divergence - exact.kl_divergence) > 1e-3


def test_a_wide_frozen_grid_in_3d_is_not_taken_silently(reference):
    """In 3-D the frozen grid is capped at 32 boxes: over a 100-unit reference its boxes are
    ~4.7 units and the placements were off by up to the embedding's scale (3-D digits: 53.9
    units at scale 50). "auto" now sums exactly there; an explicit grid warns."""
    from tsnejax._transform_field import frozen_grid_boxes

    assert frozen_grid_boxes(140.0, 3, 1.0, None) == (32, True)
    nb, wide = frozen_grid_boxes(140.0, 2, 1.0, None)
    assert nb >= 140 and not wide
    X, _, _ = reference
    Y3 = np.random.default_rng(0).uniform(-50, 50, size=(1400, 3))
    cfg = TransformConfig(n_iter=0)
    assert transform(X[1400:1500], X[:1400], Y3, cfg).method == "exact"  # 1.4e5 pairs
    with pytest.warns(UserWarning, match="frozen grid is capped at 32 boxes per axis in 3-D"):
        res = transform(
            X[1400:1500], X[:1400], Y3, TransformConfig(n_iter=0, method="interpolation")
        )
    assert res.method == "interpolation"


def test_transform_computes_in_float64_under_x64(reference):
    """It computed in float32 whatever the mode (fit computes in float64 under x64)."""
    X, _, Y = reference
    with jax.enable_x64(True):
        res = transform(X[1400:1410], X[:1400], Y, TransformConfig(method="exact", n_iter=5))
    assert res.embedding.dtype == np.float64 and np.isfinite(res.embedding).all()


def test_transform_quality_and_reference_untouched(reference):
    X, y, Y = reference
    Y_before = Y.copy()
    res = transform(X[1400:], X[:1400], Y)
    np.testing.assert_array_equal(Y, Y_before)
    knn = KNeighborsClassifier(10).fit(Y, y[:1400])
    acc, acc0 = knn.score(res.embedding, y[1400:]), knn.score(res.initial, y[1400:])
    assert acc >= 0.9 and acc >= acc0 - 0.01
    from openTSNE import TSNE as OpenTSNE

    emb = OpenTSNE(random_state=0, n_iter=300).fit(X[:1400].astype(np.float64))
    theirs = KNeighborsClassifier(10).fit(np.asarray(emb), y[:1400])
    acc_ot = theirs.score(np.asarray(emb.transform(X[1400:].astype(np.float64))), y[1400:])
    assert acc >= acc_ot - 0.02
    # The new points' objective fell from their initial placement.
    assert res.kl_history[-1][1] <= res.kl_history[0][1] + 1e-6


def test_gradient_is_half_the_per_point_kl_gradient(reference):
    """Only y_i moves in KL_i (no symmetric pair term), so the t-SNE factor 4 becomes 2."""
    X, _, Y = reference
    _, knn, P = prepare_partial(X[1400:1420], X[:1400], Y)
    ref = Reference(knn.indices, P, jnp.asarray(Y), None)
    Yn = jnp.asarray(Y[knn.indices[:, 0]]) + 0.3
    # Jitted (dof static, as eagerly): op by op the autodiff compiled ~50 programs when cold.
    grad = jax.jit(transform_gradient, static_argnums=(2, 3, 4))
    auto = jax.jit(jax.grad(lambda Z, r, a: _kl(Z, r, a, None) * Z.shape[0]), static_argnums=2)
    for dof in (1.0, 0.7):
        g, _ = grad(Yn, ref, dof, 1.0, None)
        g_auto = auto(Yn, ref, dof)
        np.testing.assert_allclose(2 * g, g_auto, rtol=2e-3, atol=1e-6)


def test_frozen_field_matches_exact_sums():
    rng = np.random.default_rng(0)
    Y_ref = jnp.asarray(rng.normal(size=(3000, 2)) * 10, jnp.float32)
    Yn = jnp.asarray(rng.normal(size=(200, 2)) * 12, jnp.float32)
    grid = InterpolationGrid(135, 3)  # ~1 box per unit of the padded span, transform's rule
    R, Z = jax.jit(field_repulsion, static_argnums=2)(
        Yn, reference_field(Y_ref, 1.0, grid, 0.25), grid
    )
    R0, Z0 = exact_reference_repulsion(Yn, Y_ref, 1.0)
    F, F0 = R / Z[:, None], R0 / Z0[:, None]
    assert float(jnp.linalg.norm(F - F0) / jnp.linalg.norm(F0)) < 2e-2
    assert float(jnp.max(jnp.abs(Z - Z0) / Z0)) < 1e-2


def test_knn_query_matches_exact_knn():
    X = np.random.default_rng(1).normal(size=(500, 8)).astype(np.float32)
    q = knn_query(X[:400], X[400:], 10)
    full = exact_knn(X, 10, rows=np.arange(400, 500))  # neighbours among all 499 others
    # Reference-only search: compare with the full search restricted to reference rows.
    d = np.linalg.norm(X[400:, None] - X[None, :400], axis=-1)
    np.testing.assert_array_equal(np.asarray(q.indices), np.argsort(d, axis=1)[:, :10])
    assert full.indices.shape == (100, 10)
    with pytest.raises(ValueError, match="same number of columns"):
        knn_query(X[:400], X[400:, :3], 10)


def test_place_methods():
    Y_ref = jnp.asarray([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    nb = jnp.asarray([[0, 1, 2]])
    np.testing.assert_allclose(place(Y_ref, nb, method="median"), [[2.0, 0.0]])
    np.testing.assert_allclose(place(Y_ref, nb, method="nearest"), [[0.0, 0.0]])
    w = jnp.asarray([[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(place(Y_ref, nb, w, method="weighted"), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="initialization"):
        place(Y_ref, nb, method="mean")


def test_transform_errors(reference):
    X, _, Y = reference
    with pytest.raises(ValueError, match="same features"):
        transform(X[1400:1410, :10], X[:1400], Y)
    with pytest.raises(ValueError, match="Y_ref has shape"):
        transform(X[1400:1410], X[:1400], Y[:100])
    with pytest.raises(ValueError, match="needs k >= perplexity"):
        transform(X[1400:1410], X[:1400], Y, TransformConfig(perplexity=30, k=25))
    # Without k, a perplexity above 25 / 3 queries 3 x perplexity neighbours (it was the error
    # above, asking for a k that openTSNE chooses itself) ...
    wide = transform(X[1400:1410], X[:1400], Y, TransformConfig(perplexity=10, n_iter=0))
    assert wide.neighbors.indices.shape == (10, 30)
    # ... up to the reference's size (a perplexity up to k, as openTSNE: 30 over 60 points).
    with pytest.raises(ValueError, match="needs more neighbours than the 20 it has"):
        transform(X[1400:1410], X[:20], Y[:20], TransformConfig(perplexity=30))
    with pytest.raises(ValueError, match="NaN or inf"):
        transform(np.full((2, 64), np.nan), X[:1400], Y)
    bad = np.array(Y)
    bad[7] = np.nan  # was a DivergenceError at iteration 1 that blamed the learning rate
    with pytest.raises(
        ValueError, match=r"Y_ref has 1 row\(s\) with NaN or inf values \(first: 7\)"
    ):
        transform(X[1400:1410], X[:1400], bad)
    with pytest.raises(ValueError, match="n_sample=10 is too small for this config: perplex"):
        sample_transform_optimize(jax.random.key(0), X, n_sample=10)  # named only perplexity
    with pytest.raises(ValueError, match="placement='foo'"):  # named "initialization" before
        sample_transform_optimize(jax.random.key(0), X, n_sample=100, placement="foo")
    with pytest.raises(ValueError, match="final_exaggeration must be finite and > 0"):
        # named "exaggeration", after the sample's whole fit
        sample_transform_optimize(jax.random.key(0), X, n_sample=100, final_exaggeration=0.0)


def test_a_given_neighbour_graph_and_dof_are_checked(reference):
    """``neighbors=`` was used as given: 5 rows for 10 new points returned 5 positions, index -1
    (NumPy's last row) ran to a negative KL, NaN distances ran, an index past the reference
    blamed "the start embedding", and a plain ``(indices, distances)`` pair (what ``fit``
    takes) was an ``AttributeError``; ``dof`` 0 or NaN was a divergence or a tracer error."""
    X, _, Y = reference
    Xn, Xr = X[1400:1410], X[:1400]
    cfg = TransformConfig(n_iter=5)
    knn = knn_query(Xr, Xn, 25)
    idx, dist = np.asarray(knn.indices), np.asarray(knn.distances)
    ref = transform(Xn, Xr, Y, cfg, neighbors=knn)
    pair = transform(Xn, Xr, Y, cfg, neighbors=(idx, dist))
    np.testing.assert_array_equal(pair.embedding, ref.embedding)
    bad = {
        "5 rows for 10 new points": (idx[:5], dist[:5]),
        r"lie in \[0, 1399\]": (np.where(idx == idx[0, 0], -1, idx), dist),
        r"lie in \[0, 1399\]\.": (idx + 1400, dist),
        "finite and non-negative": (idx, np.where(dist > dist[0, 3], np.nan, dist)),
        "perplexity=5 needs at least that many neighbours": (idx[:, :4], dist[:, :4]),
        "KNNGraph or an": idx,
    }
    for match, graph in bad.items():
        with pytest.raises(ValueError, match=match):
            transform(Xn, Xr, Y, cfg, neighbors=graph)
    for dof in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="dof must be finite and > 0"):
            transform(Xn, Xr, Y, cfg, dof=dof)


def test_estimator_transform(digits):
    X, y = digits
    est = TSNE(random_state=0, n_iter=300).fit(X[:1400])
    out = est.transform(X[1400:])
    assert out.shape == (397, 2) and np.isfinite(out).all()
    placed = est.transform(X[1400:], n_iter=0)
    np.testing.assert_array_equal(placed, est.transform_result_.initial)
    with pytest.raises(ValueError, match="not fitted"):
        TSNE().transform(X[:10])
    with pytest.raises(ValueError, match="config must be a TransformConfig or None"):
        est.transform(X[1400:1405], config={"n_iter": 0})  # was dataclasses' TypeError


def test_sample_transform_optimize_runs(digits):
    X, y = digits
    cfg = TSNEConfig.make(early_exaggeration_iter=100, n_iter=200)
    out = sample_transform_optimize(jax.random.key(0), X, cfg, n_sample=600)
    assert out.result.embedding.shape == (len(X), 2) and len(out.sample_rows) == 600
    acc = KNeighborsClassifier(10).fit(out.result.embedding, y).score(out.result.embedding, y)
    assert acc > 0.95
    assert set(out.timings) == {"sample", "place", "optimize_all", "total"}
