import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsnejax.affinity import build_layout, perplexity_affinities, to_scipy
from tsnejax.gradients import (
    attraction,
    exact_gradient,
    exact_kl_divergence,
    exact_normalization,
    exact_repulsion,
)
from tsnejax.knn import exact_knn


def _setup(n=120, d_in=5, dim=2, seed=0, width=None, spread=3.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d_in)).astype(np.float32)
    knn = exact_knn(X, 15)
    P = perplexity_affinities(knn, 5.0, layout=build_layout(knn, width=width))
    Y = rng.normal(size=(n, dim)) * spread
    return P, Y


def _dense_kl(Y, Pd, dof):
    d2 = jnp.sum((Y[:, None, :] - Y[None, :, :]) ** 2, axis=-1)
    w = jnp.exp(-d2) if np.isinf(dof) else (1 + d2 / dof) ** (-dof)  # inf: Gaussian limit
    w = w * (1 - jnp.eye(Y.shape[0], dtype=Y.dtype))
    Q = w / jnp.sum(w)
    mask = Pd > 0
    return jnp.sum(jnp.where(mask, Pd * jnp.log(jnp.where(mask, Pd, 1) / jnp.where(mask, Q, 1)), 0))


# Jitted with the Python-number arguments static, as an eager call sees them: one program per
# setting, where op by op a cold cache compiled ~100 (tens of seconds over this file).
_oracle = jax.jit(jax.value_and_grad(_dense_kl), static_argnums=2)
_exact_gradient = jax.jit(exact_gradient, static_argnames=("dof", "exaggeration", "block_size"))
_exact_kl = jax.jit(exact_kl_divergence, static_argnames=("dof", "block_size"))
_attraction = jax.jit(attraction, static_argnames="dof")


@pytest.mark.parametrize("dof", [1.0, 0.6, 3.0, float("inf")])
@pytest.mark.parametrize("dim", [1, 2, 3, 5])  # 5: n_components > 3 runs the exact gradient
def test_exact_gradient_equals_autodiff_of_kl(dof, dim):
    with jax.enable_x64(True):
        # narrow ELL: continuation rows are exercised too; in 5-D a tighter spread keeps the
        # oracle's Gaussian q_ij above underflow (its autodiff is NaN where they are 0)
        P, Y = _setup(dim=dim, width=8, spread=3.0 if dim <= 3 else 1.5)
        P = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, P)
        Y = jnp.asarray(Y, jnp.float64)
        Pd = jnp.asarray(to_scipy(P).toarray())
        kl_dense, g_auto = _oracle(Y, Pd, dof)
        g, Z = _exact_gradient(Y, P, dof, 1.0, block_size=32)
        rel = float(jnp.linalg.norm(4 * g - g_auto) / jnp.linalg.norm(g_auto))
        assert rel < 1e-5
        kl = _exact_kl(Y, P, dof, block_size=50)
        np.testing.assert_allclose(float(kl), float(kl_dense), rtol=1e-10)


def test_exaggeration_scales_attraction_only():
    P, Y = _setup()
    Y = jnp.asarray(Y, jnp.float32)
    g1, Z = _exact_gradient(Y, P, 1.0, 1.0)
    g12, Z12 = _exact_gradient(Y, P, 1.0, 12.0)
    np.testing.assert_allclose(np.asarray(g12 - g1), 11 * np.asarray(_attraction(Y, P)), atol=1e-6)
    assert float(Z) == float(Z12)


_repulsion = jax.jit(exact_repulsion, static_argnames="block_size")


# Fixed shapes and blocks (each compiles its own program), drawn values: one block of a single
# row, blocks with a remainder, one block larger than n.
@pytest.mark.parametrize("n,block", [(5, 1), (77, 10), (77, 100)])
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.sampled_from([0.01, 1.0, 30.0]))
def test_blocking_does_not_change_repulsion(n, block, seed, scale):
    Y = jnp.asarray(np.random.default_rng(seed).normal(size=(n, 2)) * scale, jnp.float32)
    r1, z1 = _repulsion(Y, 1.0, block_size=block)
    r2, z2 = _repulsion(Y, 1.0, block_size=n)
    np.testing.assert_allclose(np.asarray(r1), np.asarray(r2), rtol=2e-5, atol=1e-6)
    # Z sums the self pairs (1 each) and subtracts n: float32 rounding is relative to Z + n,
    # which matters for spread points (scale 30: Z ~ 0.02 for 5 points, 1 ulp of 5 apart).
    assert abs(float(z1) - float(z2)) <= 1e-5 * (abs(float(z2)) + n)


@pytest.mark.parametrize(
    "n,block,dim,width", [(20, 1, 1, 6), (97, 13, 2, 6), (150, 40, 3, None)]
)  # fixed shapes (each compiles twice), drawn values
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 1000))
def test_row_blocks_do_not_change_attraction(n, block, dim, width, seed):
    from tsnejax.gradients import _attraction

    P, Y = _setup(n=n, dim=dim, seed=seed, width=width)
    Y = jnp.asarray(Y, jnp.float32)
    with pytest.MonkeyPatch.context() as mp:
        # A fresh jit per setting: the block size is read at trace time.
        mp.setattr(_attraction, "_row_block", lambda n: None)
        whole = jax.jit(attraction)(Y, P, 0.7)
        mp.setattr(_attraction, "_row_block", lambda n: block)  # blocks + a remainder
        blocked = jax.jit(attraction)(Y, P, 0.7)
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(whole), rtol=1e-6, atol=1e-9)


def test_attraction_uses_row_blocks_on_cpu_for_large_n():
    from tsnejax.gradients._attraction import CPU_ROW_BLOCK, _row_block

    expected = CPU_ROW_BLOCK if jax.default_backend() == "cpu" else None
    assert _row_block(10 * CPU_ROW_BLOCK) == expected
    assert _row_block(CPU_ROW_BLOCK) is None  # small problems: one block


@pytest.mark.parametrize("dof", [1.0, 0.5, 2.0])
def test_attraction_matches_opentsne(dof):
    from openTSNE import _tsne

    P, Y = _setup(n=80)
    Ps = to_scipy(P)
    ref = np.zeros_like(Y)
    _tsne.estimate_positive_gradient_nn(
        Ps.indices.astype(np.int32), Ps.indptr.astype(np.int32), Ps.data, Y, Y, ref, dof, 1, False
    )
    ours = _attraction(jnp.asarray(Y, jnp.float32), P, dof)
    np.testing.assert_allclose(np.asarray(ours), ref, rtol=2e-4, atol=1e-7)


def test_two_point_analytic_gradient():
    # Two points at distance 1 with P = [[0, .5], [.5, 0]]: q = .5 as well, so the gradient is 0.
    from tsnejax.affinity import precomputed_affinities

    P = precomputed_affinities(np.array([[0.0, 1.0], [1.0, 0.0]]))
    Y = jnp.array([[0.0, 0.0], [1.0, 0.0]], jnp.float32)
    g, Z = exact_gradient(Y, P)
    np.testing.assert_allclose(np.asarray(g), 0.0, atol=1e-7)
    assert float(Z) == pytest.approx(1.0)  # 2 * 1/(1+1)
    assert float(exact_normalization(Y)) == pytest.approx(1.0)
    assert float(exact_kl_divergence(Y, P)) == pytest.approx(0.0, abs=1e-7)
