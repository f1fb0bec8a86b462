"""Backend conformance, driven by the ``gradients.BACKENDS`` registry plus user-defined backends
(as the optimizer suite is driven by ``optim.OPTIMIZERS``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tsnejax
from tsnejax._checks import float_dtype
from tsnejax.affinity import perplexity_affinities
from tsnejax.build import phase_table, stepper_for
from tsnejax.config import TSNEConfig
from tsnejax.gradients import (
    BACKENDS,
    Backend,
    attraction,
    exact_gradient,
    exact_kl_divergence,
    get_backend,
)
from tsnejax.init import pca
from tsnejax.knn import exact_knn
from tsnejax.run import init_state, optimize


def _dense(P, n):
    """P as a dense (n, n) matrix, inside jit."""
    D = jnp.zeros((n, n), P.weights.dtype)
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], P.neighbors.shape)
    D = D.at[rows, P.neighbors].add(P.weights)
    extra = jnp.broadcast_to(P.extra_rows[:, None], P.extra_neighbors.shape)
    return D.at[extra, P.extra_neighbors].add(P.extra_weights)


def _objective(Y, P, dof, exaggeration):
    """``-exaggeration * sum p log w + log Z``: a quarter of its gradient is the t-SNE
    gradient with exaggerated attraction."""
    n = Y.shape[0]
    D = _dense(P, n)
    d2 = jnp.sum((Y[:, None, :] - Y[None, :, :]) ** 2, axis=-1)
    log_w = -dof * jnp.log1p(d2 / dof)
    off = 1.0 - jnp.eye(n, dtype=Y.dtype)
    Z = jnp.sum(jnp.exp(log_w) * off)
    return -exaggeration * jnp.sum(D * log_w) + jnp.log(Z), Z


def _autodiff_backend() -> Backend:
    """A user's gradient method: jax.grad of a dense KL (O(N^2) memory; small N only)."""

    def gradient(Y, P, dof, exaggeration, grid):
        del grid
        (_, Z), g = jax.value_and_grad(_objective, has_aux=True)(Y, P, dof, exaggeration)
        return g / 4.0, Z

    def kl(Y, P, dof, grid):
        del grid
        D = _dense(P, Y.shape[0])
        plogp = jnp.sum(jnp.where(D > 0, D * jnp.log(jnp.where(D > 0, D, 1.0)), 0.0))
        return plogp + _objective(Y, P, dof, 1.0)[0]

    return Backend("autodiff", gradient, kl, lambda Y: None)


def _renamed_exact() -> Backend:
    def gradient(Y, P, dof, exaggeration, grid):
        return exact_gradient(Y, P, dof, exaggeration)

    def kl(Y, P, dof, grid):
        return exact_kl_divergence(Y, P, dof)

    return Backend("mine", gradient, kl, lambda Y: None)


AUTODIFF = _autodiff_backend()
RENAMED = _renamed_exact()
# Relative error of the gradient against the exact oracle each backend must meet here
# (300 points after 60 iterations; docs/gradients.md has the accuracy at scale).
TOLERANCE = {"exact": 1e-5, "interpolation": 3e-2, "splat": 1e-1, "autodiff": 1e-4, "mine": 1e-6}
TOLERANCE["adaptive"] = TOLERANCE["exact"]  # 300 points: cheaper exactly than on any grid
UNDER_TEST = [*(get_backend(name) for name in BACKENDS), AUTODIFF, RENAMED]


# The exact references, jitted: op by op they compiled ~60 programs per worker on a cold cache.
_exact_gradient = jax.jit(exact_gradient, static_argnums=(2, 3))
_attraction = jax.jit(attraction, static_argnums=2)
_exact_kl = jax.jit(exact_kl_divergence, static_argnums=2)


@pytest.fixture(scope="module")
def problem(digits):
    X = digits[0][:300]
    P = perplexity_affinities(exact_knn(X, 45), 15.0)
    config = TSNEConfig.make(
        early_exaggeration_iter=30, n_iter=30, negative_gradient_method="exact"
    )
    step, opt = stepper_for(config, len(X))
    res = optimize(step, init_state(pca(X), opt), P, 60, phases=phase_table(config, len(X)))
    return X, P, res.state.embedding


@pytest.mark.parametrize("backend", UNDER_TEST, ids=lambda b: b.name)
def test_backend_contract(problem, backend):
    X, P, Y = problem
    grid = backend.allocate(Y)
    hash(grid)  # a static structure
    grad_fn = jax.jit(backend.gradient, static_argnums=4)
    ref, Z_ref = _exact_gradient(Y, P, 1.0, 1.0)
    g, Z = grad_fn(Y, P, 1.0, 1.0, grid)
    tol = TOLERANCE[backend.name]
    assert g.shape == Y.shape and g.dtype == float_dtype()  # float32 unless x64 is on
    # The repulsive force (the total is a small difference of large forces near a minimum).
    attr = _attraction(Y, P, 1.0)
    rep, rep_ref = g - attr, ref - attr
    assert float(jnp.linalg.norm(rep - rep_ref) / jnp.linalg.norm(rep_ref)) < tol
    assert float(jnp.abs(Z - Z_ref) / Z_ref) < tol
    # Exaggeration multiplies the attraction only.
    g4, _ = grad_fn(Y, P, 1.0, 4.0, grid)
    diff = (g4 - g) / 3.0
    assert float(jnp.linalg.norm(diff - attr) / jnp.linalg.norm(attr)) < max(tol, 1e-5)
    # A traced dof, and vmap over a batch of embeddings.
    gd, _ = jax.jit(backend.gradient, static_argnums=4)(Y, P, jnp.float32(0.7), 1.0, grid)
    assert np.isfinite(np.asarray(gd)).all()
    Ys = jnp.stack([Y, 1.1 * Y])
    gv, _ = jax.jit(jax.vmap(lambda y: backend.gradient(y, P, 1.0, 1.0, grid)))(Ys)
    np.testing.assert_allclose(np.asarray(gv[0]), np.asarray(g), rtol=1e-4, atol=1e-7)
    # The KL agrees with the exact one.
    kl = float(jax.jit(backend.kl_divergence, static_argnums=3)(Y, P, 1.0, grid))
    assert abs(kl - float(_exact_kl(Y, P, 1.0))) < 10 * tol


@pytest.mark.parametrize("backend", UNDER_TEST, ids=lambda b: b.name)
def test_backend_in_the_loop(problem, backend):
    """Through config -> stepper -> optimize: KL falls, the dtype kept, no recompilation."""
    X, P, Y = problem
    config = TSNEConfig.make(early_exaggeration_iter=0, n_iter=60, negative_gradient_method=backend)
    step, opt = stepper_for(config, len(X))
    assert step.backend is backend
    phases = phase_table(config, len(X))
    first = optimize(step, init_state(Y, opt), P, 60, phases=phases, chunk_size=20)
    kls = [kl for _, kl in first.kl_history]
    assert kls[-1] < kls[0] and first.state.embedding.dtype == float_dtype()
    again = optimize(step, init_state(Y, opt), P, 60, phases=phases.replace(dof=1.0), chunk_size=20)
    assert again.n_compiles == 0


def test_user_backends_through_fit_estimator_and_sweep(digits, tmp_path):
    X = digits[0][:300]
    short = dict(early_exaggeration_iter=20, n_iter=30)
    ref = tsnejax.fit(
        jax.random.key(0), X, TSNEConfig.make(negative_gradient_method="exact", **short)
    )
    mine = tsnejax.fit(
        jax.random.key(0), X, TSNEConfig.make(negative_gradient_method=RENAMED, **short)
    )
    np.testing.assert_array_equal(mine.embedding, ref.embedding)
    assert mine.method == "mine"
    est = tsnejax.TSNE(negative_gradient_method=AUTODIFF, random_state=0, **short).fit(X)
    assert est.method_ == "autodiff"
    assert est.kl_divergence_ == pytest.approx(ref.kl_divergence, rel=2e-2)
    from tsnejax.sweep import run_sweep, spec_from_dict

    spec = spec_from_dict(
        {
            "name": "b",
            "data": {"name": "digits", "n_points": 300},
            "fixed": short,
            "grid": {"negative_gradient_method": {"mine": RENAMED, "exact": "exact"}},
            "run": {"metrics": ["kl"]},
        }
    )
    s = run_sweep(spec, tmp_path / "sweep")
    assert s.n_run == 2 and s.n_diverged == 0


def test_backend_is_not_a_valid_name_error():
    with pytest.raises(ValueError, match="negative_gradient_method='bh'"):
        TSNEConfig.make(negative_gradient_method="bh")
    with pytest.raises(ValueError, match="optimizer must be"):
        TSNEConfig.make(optimizer=3)


def test_a_backend_that_breaks_the_contract_is_named(digits):
    """Checked when traced (run.build_step wraps every backend): a gradient of another shape
    was broadcast into the update without a word; the others failed inside JAX or Python."""
    import dataclasses

    from tsnejax.gradients import checked_backend, get_backend

    X = digits[0][:120]
    ex = get_backend("exact")
    grad = ex.gradient
    broken = {
        r"gradient has shape \(120, 1\) for an embedding of shape \(120, 2\)": dict(
            gradient=lambda Y, P, d, e, g: (grad(Y, P, d, e, g)[0][:, :1], 1.0)
        ),
        r"gradient must return \(gradient, Z\)": dict(
            gradient=lambda Y, P, d, e, g: grad(Y, P, d, e, g)[0]
        ),
        r"kl_divergence must return a scalar, got \(3,\)": dict(
            kl_divergence=lambda Y, P, d, g: jnp.ones(3)
        ),
        "allocate.s grid must be hashable": dict(allocate=lambda Y: [1, 2]),
    }
    cfg = dict(n_iter=10, early_exaggeration_iter=10, perplexity=10)
    for fragment, parts in broken.items():
        mine = dataclasses.replace(ex, name="mine", **parts)
        with pytest.raises(ValueError, match=f"Backend 'mine': {fragment}"):
            tsnejax.TSNE(negative_gradient_method=mine, **cfg).fit(X)
    # Checked when the Backend is made: a gradient or KL of the wrong arity failed with
    # Python's TypeError inside the compiled loop; a name of None was taken.
    wrong = {
        r"gradient must take 5 arguments .* signature is \(Y, P, d, e\)": dict(
            gradient=lambda Y, P, d, e: grad(Y, P, d, e, None)
        ),
        r"kl_divergence must take 4 arguments \(Y, P, dof, grid\)": dict(
            kl_divergence=lambda Y, P, d: 0.0
        ),
        r"allocate must be a function \(Y\)": dict(allocate=None),
    }
    for fragment, parts in wrong.items():
        with pytest.raises(ValueError, match=f"Backend 'mine': {fragment}"):
            dataclasses.replace(ex, name="mine", **parts)
    with pytest.raises(ValueError, match="Backend name must be a non-empty string"):
        dataclasses.replace(ex, name=None)
    # A KL of NaN for a finite embedding became the run's KL without a word: warned.
    nan_kl = dataclasses.replace(ex, name="mine", kl_divergence=lambda Y, P, d, g: jnp.nan)
    with pytest.warns(RuntimeWarning, match="KL divergence of 'mine' came back NaN/inf"):
        est = tsnejax.TSNE(negative_gradient_method=nan_kl, **cfg).fit(X)
    assert np.isfinite(est.embedding_).all() and np.isnan(est.kl_divergence_)
    # The wrapper changes nothing for a backend that keeps the contract.
    Y = jnp.asarray(np.random.default_rng(0).normal(size=(120, 2)), jnp.float32)
    P = perplexity_affinities(exact_knn(X, 30), 10.0)
    g0, z0 = ex.gradient(Y, P, 1.0, 1.0, None)
    g1, z1 = checked_backend(ex).gradient(Y, P, 1.0, 1.0, None)
    np.testing.assert_array_equal(g0, g1)
    assert float(z0) == float(z1)
    # A Backend is accepted where a name is; parameters are checked against the factory.
    assert get_backend(ex) is ex
    with pytest.raises(ValueError, match=r"has no parameter \['max_box'\]; valid: .*max_boxes"):
        get_backend("interpolation", max_box=3)
    with pytest.raises(ValueError, match="apply to a method name, not a Backend"):
        get_backend(ex, max_boxes=3)


def test_opentsne_method_names():
    """openTSNE's ``"fft"`` is the interpolation method (one config, one program); its ``"bh"``
    is named as absent with what to use instead (both were "not a valid option")."""
    from tsnejax.gradients import get_backend

    fft = TSNEConfig.make(negative_gradient_method="fft")
    assert fft == TSNEConfig.make(negative_gradient_method="interpolation")
    assert get_backend("FFT").name == "interpolation"
    for name in ("bh", "barnes-hut"):
        with pytest.raises(ValueError, match="no Barnes-Hut gradient. Use 'interpolation'"):
            TSNEConfig.make(negative_gradient_method=name)
