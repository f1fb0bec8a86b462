"""Registry-driven conformance of every optimizer (optax-style), hyperparameter injection,
exaggeration carried in the state, resume and checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tsnejax.affinity import perplexity_affinities
from tsnejax.checkpoint import load_meta, load_state, save_state
from tsnejax.gradients import exact_backend
from tsnejax.init import pca
from tsnejax.knn import exact_knn
from tsnejax.optim import (
    OPTIMIZERS,
    classic,
    exaggerate,
    find_exaggeration,
    get_hyperparams,
    make_optimizer,
    set_hyperparams,
)
from tsnejax.pipeline import TSNEConfig, build_optimizer
from tsnejax.run import build_step, init_state, optimize
from tsnejax.schedules import auto_learning_rate, exaggeration_schedule, momentum_schedule

# Short schedule: 50 steps of early exaggeration, 50 without.
SHORT = dict(early_exaggeration_iter=50, n_iter=50, negative_gradient_method="exact")


@pytest.fixture(scope="module")
def problem(digits):
    X = digits[0]
    P = perplexity_affinities(exact_knn(X, 90), 30.0)
    return X, P, pca(X)


def _floating_leaves(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.floating)]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_registry_optimizer_conformance(problem, name):
    X, P, Y0 = problem
    # A numeric learning rate (the "auto" rule's early-phase value) is settable state.
    _, lr_of, _ = build_optimizer(TSNEConfig(optimizer=name, **SHORT), len(X))
    config = TSNEConfig(optimizer=name, learning_rate=lr_of(0), **SHORT)
    opt, _, _ = build_optimizer(config, len(X))
    stepper = build_step(exact_backend(), opt)
    state = init_state(Y0, opt)
    kl0 = float(jax.jit(stepper.kl_divergence, static_argnums=3)(Y0, P, 1.0, None))

    res = optimize(stepper, state, P, config.total_iter)
    # Lowers KL.
    assert res.kl_history[-1][1] < 0.8 * kl0
    assert np.isfinite(np.asarray(res.state.embedding)).all()
    # Keeps dtype: every floating leaf of the state stays float32.
    assert {jnp.result_type(x) for x in _floating_leaves(res.state)} == {jnp.dtype("float32")}
    # The second call with the same stepper compiles nothing, also after overwriting the
    # learning rate and the exaggeration in the state.
    hp = get_hyperparams(res.state.opt_state)
    opt_state = set_hyperparams(
        res.state.opt_state, learning_rate=0.5 * hp["learning_rate"], exaggeration=2.0
    )
    again = optimize(stepper, res.state._replace(opt_state=opt_state), P, 100, chunk_size=50)
    assert res.n_compiles >= 1 and again.n_compiles == 0
    # The config's exaggeration is a schedule: re-evaluated after the first overwritten step.
    assert float(get_hyperparams(again.state.opt_state)["exaggeration"]) == 1.0

    # Jittable and vmappable: a batch of two trials with different learning rates (injected
    # hyperparameters) equals the two trials run one at a time.
    step = jax.jit(stepper.step, static_argnums=3)
    lr = float(get_hyperparams(state.opt_state)["learning_rate"])
    trials = [
        state._replace(opt_state=set_hyperparams(state.opt_state, learning_rate=lr * f))
        for f in (1.0, 0.5)
    ]
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), *trials)
    vstep = jax.jit(jax.vmap(stepper.step, in_axes=(0, None, None, None)), static_argnums=3)
    out, _ = vstep(batched, P, 1.0, None)
    for i, trial in enumerate(trials):
        single, _ = step(trial, P, 1.0, None)
        np.testing.assert_allclose(
            np.asarray(out.embedding[i]), np.asarray(single.embedding), rtol=1e-5, atol=1e-7
        )
    assert not np.allclose(np.asarray(out.embedding[0]), np.asarray(out.embedding[1]))


@pytest.mark.parametrize("method", ["interpolation", "splat"])
@pytest.mark.parametrize("name", ["classic", "adam"])
def test_optimizers_work_with_every_grid_backend(problem, method, name):
    X, P, Y0 = problem
    config = TSNEConfig(optimizer=name, **{**SHORT, "negative_gradient_method": method})
    opt, _, _ = build_optimizer(config, len(X))
    stepper = build_step(method, opt)
    grid = stepper.allocate(Y0)
    kl0 = float(jax.jit(stepper.kl_divergence, static_argnums=3)(Y0, P, 1.0, grid))
    res = optimize(stepper, init_state(Y0, opt), P, config.total_iter)
    assert res.kl_history[-1][1] < 0.8 * kl0


def test_registry_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("adamax_typo", learning_rate=1.0)
    with pytest.raises(ValueError, match="no argument"):
        make_optimizer("adam", learning_rate=1.0, beta1=0.9)
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer("adam")


def test_inject_hyperparams_classic_equals_plain(problem):
    """optax.inject_hyperparams(classic) gives identical updates to classic."""
    X, P, Y0 = problem
    n = len(X)
    ex = exaggeration_schedule(12.0, 30, 1.0)
    kwargs = dict(momentum=momentum_schedule(0.5, 0.8, 30), gains_rule="fitsne", max_step_norm=5.0)
    plain = classic(auto_learning_rate(n, ex), **kwargs)
    injected = optax.inject_hyperparams(classic, static_args=("gains_rule",))(
        learning_rate=auto_learning_rate(n, ex), **kwargs
    )
    a = optimize(build_step(exact_backend(), plain, ex), init_state(Y0, plain), P, 60)
    b = optimize(build_step(exact_backend(), injected, ex), init_state(Y0, injected), P, 60)
    np.testing.assert_array_equal(np.asarray(a.state.embedding), np.asarray(b.state.embedding))
    np.testing.assert_array_equal(
        np.asarray(a.state.opt_state.gains), np.asarray(b.state.opt_state.inner_state.gains)
    )
    hp = get_hyperparams(b.state.opt_state)
    assert float(hp["learning_rate"]) == pytest.approx(n)  # N / 1 after exaggeration
    assert float(hp["momentum"]) == pytest.approx(0.8)


def test_exaggeration_is_carried_settable_and_scheduled(problem):
    X, P, Y0 = problem
    sched = exaggeration_schedule(12.0, 3, 1.0, decay="linear", decay_iter=4)
    opt = optax.chain(exaggerate(sched), classic(100.0))
    state = init_state(Y0, opt)
    stepper = build_step(exact_backend(), opt)
    seen = []
    for _ in range(8):
        seen.append(float(find_exaggeration(state.opt_state)))
        state, _ = stepper.step(state, P, 1.0, None)
    # The factor used at step t is the schedule's value at t.
    np.testing.assert_allclose(seen, [float(sched(t)) for t in range(8)], rtol=1e-6)
    assert seen[:4] == [12.0] * 4 and seen[-2] == pytest.approx(3.75) and seen[-1] == 1.0

    # A constant factor stays as set; the step uses the set value.
    opt = optax.chain(exaggerate(12.0), classic(100.0))
    s = init_state(Y0, opt)
    s4 = s._replace(opt_state=set_hyperparams(s.opt_state, exaggeration=4.0))
    stepper = build_step(exact_backend(), opt)
    ref = build_step(exact_backend(), classic(100.0), 4.0)
    a, _ = stepper.step(s4, P, 1.0, None)
    b, _ = ref.step(init_state(Y0, classic(100.0)), P, 1.0, None)
    np.testing.assert_array_equal(np.asarray(a.embedding), np.asarray(b.embedding))
    assert float(find_exaggeration(a.opt_state)) == 4.0
    with pytest.raises(ValueError, match="learning_rat"):
        set_hyperparams(s.opt_state, learning_rat=1.0)


def test_exaggeration_decay_schedules():
    lin = exaggeration_schedule(4.0, 250, 1.0, decay="linear", decay_iter=150)
    exp = exaggeration_schedule(4.0, 250, 1.0, decay="exponential", decay_iter=150)
    assert float(lin(249)) == 4.0 and float(lin(325)) == pytest.approx(2.5)
    assert float(lin(400)) == 1.0 and float(lin(1000)) == 1.0
    assert float(exp(325)) == pytest.approx(2.0) and float(exp(400)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="decay"):
        exaggeration_schedule(decay="cosine")


@pytest.mark.parametrize("method", ["exact", "interpolation"])
def test_resume_250_plus_500_equals_750(problem, method, tmp_path):
    """Gains and velocity carry over, also through a saved and reloaded checkpoint."""
    X, P, Y0 = problem
    config = TSNEConfig(negative_gradient_method=method)
    opt, _, _ = build_optimizer(config, len(X))
    stepper = build_step(method, opt)
    s0 = init_state(Y0, opt)
    one = optimize(stepper, s0, P, 750).state
    first = optimize(stepper, s0, P, 250).state
    path = save_state(tmp_path / "state.npz", first, iteration=250, method=method)
    loaded = load_state(path, opt)
    assert load_meta(path) == {"iteration": 250, "method": method}
    two = optimize(stepper, loaded, P, 500).state
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(two.iteration) == 750


def test_load_state_rejects_wrong_optimizer_and_bad_files(problem, tmp_path):
    X, P, Y0 = problem
    opt = classic(10.0)
    path = save_state(tmp_path / "s.npz", init_state(Y0, opt))
    with pytest.raises(ValueError, match="optimizer"):
        load_state(path, optax.chain(exaggerate(1.0), make_optimizer("adam", learning_rate=1.0)))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_state(tmp_path / "bad.npz", opt)
    with pytest.raises(ValueError, match="does not exist"):
        load_state(tmp_path / "missing.npz", opt)
