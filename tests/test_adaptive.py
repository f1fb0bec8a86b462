"""The ``"adaptive"`` gradient method (interpolation, or the exact sums where they cost less) and
the exact method's cache-sized row blocks."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tsnejax
from tsnejax.build import AUTO_ADAPTIVE_MAX_POINTS, AUTO_EXACT_MAX_POINTS, resolve_method
from tsnejax.config import TSNEConfig
from tsnejax.gradients import (
    AdaptiveGrid,
    InterpolationGrid,
    adaptive_backend,
    exact_gradient,
    exact_kl_divergence,
    exact_repulsion,
    get_backend,
    interpolation_gradient,
)
from tsnejax.gradients.adaptive import EXACT_RATIO, WIDE_EXACT_COST, prefers_exact
from tsnejax.gradients.exact import CPU_BLOCK_PAIRS, DEFAULT_BLOCK, auto_block
from tsnejax.pipeline import fit


def _blob(n: int, span: float, seed: int = 0, dim: int = 2) -> jnp.ndarray:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.uniform(0.0, span, (n, dim)), jnp.float32)


def test_the_rule_compares_pairs_with_fft_grid_points():
    grid = InterpolationGrid(100, 3)  # m = 300 nodes per axis: (2m)^2 = 360 000
    limit = int(np.sqrt(EXACT_RATIO * 600**2))
    assert prefers_exact(limit, grid, 2) and not prefers_exact(limit + 1, grid, 2)
    assert not prefers_exact(10, grid, 2, ratio=0.0)  # 0: never exact


def test_exact_ratio_bounds():
    Y = _blob(50_000, 5.0)
    assert adaptive_backend(exact_ratio=float("inf")).allocate(Y).exact
    assert not adaptive_backend(exact_ratio=0.0).allocate(_blob(10, 500.0)).exact
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="exact_ratio"):
            adaptive_backend(exact_ratio=bad)


@pytest.mark.parametrize(("n", "span", "exact"), [(2500, 10.0, False), (2500, 150.0, True)])
def test_allocate_picks_by_the_grid_the_span_needs(n, span, exact):
    """2500 points: the 50-box minimum grid is cheaper than the pairs; a span of 150 needs
    ~150 boxes per axis, whose FFTs cost more than all pairs."""
    Y = _blob(n, span)
    grid = adaptive_backend().allocate(Y)
    assert isinstance(grid, AdaptiveGrid) and grid.exact is exact
    if exact:  # every exact chunk shares one program: the grid field is blanked
        assert grid == adaptive_backend().allocate(_blob(n, 2 * span, seed=1))
    else:
        assert grid.grid == get_backend("interpolation").allocate(Y)


@pytest.mark.parametrize("span", [10.0, 150.0])
def test_gradient_and_kl_are_those_of_the_chosen_method(digits, span):
    from tsnejax.affinity import perplexity_affinities
    from tsnejax.knn import exact_knn

    X = np.concatenate([digits[0], digits[0][:703] + 0.5])  # 2500 points
    P = perplexity_affinities(exact_knn(X, 90), 30.0)
    Y = _blob(len(X), span)
    backend = adaptive_backend()
    grid = backend.allocate(Y)
    g, Z = jax.jit(backend.gradient, static_argnums=4)(Y, P, 1.0, 12.0, grid)
    kl = jax.jit(backend.kl_divergence, static_argnums=3)(Y, P, 1.0, grid)
    # The references run jitted too: op by op they compiled ~160 programs on a cold cache.
    if grid.exact:
        ref, Z_ref = jax.jit(exact_gradient, static_argnums=(2, 3))(Y, P, 1.0, 12.0)
    else:
        ref, Z_ref = jax.jit(interpolation_gradient, static_argnums=(2, 3, 4))(
            Y, P, 1.0, 12.0, grid.grid
        )
    np.testing.assert_allclose(np.asarray(g), np.asarray(ref), rtol=1e-5, atol=1e-8)
    assert float(Z) == pytest.approx(float(Z_ref), rel=1e-6)
    kl_ref = jax.jit(exact_kl_divergence)(Y, P)
    assert abs(float(kl) - float(kl_ref)) < (1e-5 if grid.exact else 1e-2)


def test_a_run_switches_to_exact_as_the_embedding_spreads(digits):
    """2500 points: early chunks on the grid, late ones exact (one more program), and the
    result as good as the exact method's."""
    from tsnejax.metrics import kl_divergence

    X = np.concatenate([digits[0], digits[0][:703] + 0.5])
    config = TSNEConfig.make(negative_gradient_method="adaptive", n_iter=500)
    res = fit(jax.random.key(0), X, config)
    kinds = [g.exact for g in res.grids]  # distinct structures, in order of first use
    assert kinds[0] is False and kinds[-1] is True and kinds.count(True) == 1
    exact = fit(jax.random.key(0), X, config.replace(negative_gradient_method="exact"))
    kl, kl_exact = (float(kl_divergence(r.affinities, r.embedding)) for r in (res, exact))
    # 1.5 %: the exact run's own final KL moves by ~0.8 % with the rounding of its sums (0.6905
    # before the complex force sums, 0.6848 after; the adaptive run 0.6916 both times).
    assert kl < kl_exact * 1.015


def test_auto_resolves_by_size():
    for dim in (1, 2, 3):
        assert resolve_method("auto", AUTO_EXACT_MAX_POINTS[dim], dim) == "exact"
        top = AUTO_ADAPTIVE_MAX_POINTS[dim]
        assert resolve_method("auto", top + 1, dim) == "interpolation"
    assert resolve_method("auto", 5000, 2) == "adaptive"
    assert TSNEConfig.make(negative_gradient_method="adaptive").gradient.method == "adaptive"


def test_adaptive_through_the_estimator_with_grid_parameters(digits):
    est = tsnejax.TSNE(
        negative_gradient_method="adaptive", n_iter=60, early_exaggeration_iter=30, max_boxes=64
    ).fit(digits[0][:600])
    assert est.method_ == "adaptive" and np.isfinite(est.embedding_).all()


def test_exact_row_blocks_are_cache_sized_on_cpu():
    assert jax.default_backend() == "cpu"
    assert auto_block(5000) == CPU_BLOCK_PAIRS // 5000 // 32 * 32 == 288
    assert auto_block(100) == DEFAULT_BLOCK and auto_block(10**7) == 64
    Y = _blob(700, 30.0)
    R, Z = exact_repulsion(Y)  # auto: 1024 rows, one block
    R64, Z64 = exact_repulsion(Y, block_size=64)
    np.testing.assert_allclose(np.asarray(R64), np.asarray(R), rtol=1e-5, atol=1e-6)
    assert float(Z64) == pytest.approx(float(Z), rel=1e-6)


def test_a_grid_held_to_wide_boxes_warns_where_it_is_used():
    """3-D caps the grid at 32 boxes: an embedding 100 units wide gets boxes ~3 units wide, where
    the force error is above 100 % (benchmarks/bench_box_width.py). Interpolation warns; adaptive
    only when it runs the grid (N past the exact crossover), not when it runs exact."""
    wide, narrow = _blob(31_000, 100.0, dim=3), _blob(2000, 100.0, dim=3)
    with pytest.warns(UserWarning, match=r"max_boxes=32 per axis in 3-D.*'exact'"):
        assert get_backend("interpolation").allocate(wide).n_boxes == 32
    with pytest.warns(UserWarning, match="max_boxes=32"):
        assert not adaptive_backend().allocate(wide).exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert adaptive_backend().allocate(narrow).exact
        get_backend("interpolation").allocate(_blob(2000, 40.0, dim=3))  # 32 boxes of 1.25
        get_backend("interpolation").allocate(_blob(2000, 900.0))  # 2-D: 1000 boxes of 0.9
        # a cap the user set warns too, in the width they asked for
        assert get_backend("interpolation", ints_in_interval=2.0).allocate(_blob(9, 900.0))
        with pytest.raises(UserWarning, match="requested 2 unit"):
            get_backend("interpolation", max_boxes=100, ints_in_interval=2.0).allocate(
                _blob(9, 400.0)
            )


def test_adaptive_takes_exact_longer_where_the_grid_is_capped_wide():
    """3-D, 32 boxes (m = 96): exact while cheaper (N^2 <= 50 (2m)^3: N <= 18.8k), and while at
    most WIDE_EXACT_COST times the grid once its boxes are too wide (N <= 29.7k)."""
    grid = InterpolationGrid(32, 3)
    assert prefers_exact(18_000, grid, 3) and not prefers_exact(20_000, grid, 3)
    limit = int(np.sqrt(WIDE_EXACT_COST * EXACT_RATIO * 192**3))
    assert 29_000 < limit < 30_000
    for n, span, exact in [(25_000, 30.0, False), (25_000, 100.0, True), (limit + 1, 100.0, False)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert adaptive_backend().allocate(_blob(n, span, dim=3)).exact is exact, (n, span)
    with pytest.warns(UserWarning, match="max_boxes"):  # 0: never exact, wide or not
        assert not adaptive_backend(exact_ratio=0.0).allocate(_blob(20_000, 100.0, dim=3)).exact
    # "auto" runs adaptive in 3-D from 20k to 30k points
    assert resolve_method("auto", 25_000, 3) == "adaptive"
