import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse as sp

from tsnejax.optim import classic, clip_row_norm, clip_rows
from tsnejax.schedules import auto_learning_rate, exaggeration_schedule, momentum_schedule


def _toy_grad(Y):
    # A fixed, nonlinear gradient field so sign flips (and gains changes) happen.
    return np.sin(3.0 * Y) + 0.3 * Y - 0.1


def _run_ours(Y0, n_iter, lr, momentum, gains_rule, max_step_norm, recenter=True):
    opt = classic(lr, momentum, gains_rule=gains_rule, max_step_norm=max_step_norm)
    Y = jnp.asarray(Y0)
    state = opt.init(Y)
    for _ in range(n_iter):
        upd, state = opt.update(jnp.asarray(_toy_grad(np.asarray(Y))), state, Y)
        Y = optax.apply_updates(Y, upd)
        if recenter:
            Y = Y - jnp.mean(Y, axis=0)
    return np.asarray(Y), state


def test_classic_reproduces_opentsne_gradient_descent():
    from openTSNE.tsne import gradient_descent

    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        Y0 = rng.normal(size=(40, 2)) * 2

        def objective(embedding, P, **kwargs):
            return 0.0, _toy_grad(np.asarray(embedding))

        ref = np.array(Y0, copy=True)
        gd = gradient_descent()
        gd(
            ref,
            sp.csr_matrix((40, 40)),
            n_iter=60,
            objective_function=objective,
            learning_rate=0.7,
            momentum=0.8,
            exaggeration=None,
            dof=1,
            min_gain=0.01,
            max_grad_norm=None,
            max_step_norm=0.5,
            theta=0.5,
            n_interpolation_points=3,
            min_num_intervals=50,
            ints_in_interval=1,
            reference_embedding=None,
            n_jobs=1,
            use_callbacks=False,
            callbacks=None,
            callbacks_every_iters=50,
            verbose=False,
        )
        ours, state = _run_ours(Y0, 60, 0.7, 0.8, "opentsne", 0.5)
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state.gains), gd.gains, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(state.velocity), gd.update, rtol=1e-8, atol=1e-12)


def test_classic_checks_its_hyperparameters():
    """A string or None failed at the first update ("unsupported operand type(s) for *"), and a
    negative rate or a momentum of 1 ran; arrays (inject_hyperparams, vmap) and schedules pass."""
    for lr, message in [
        ("1e-3", "learning_rate must be a number, an Optax schedule"),
        (None, "learning_rate must be a number, an Optax schedule"),
        (-1.0, "learning_rate must be finite and > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            classic(lr)
    with pytest.raises(ValueError, match=r"a momentum must be in \[0, 1\)"):
        classic(1.0, 1.0)
    for lr in (np.float32(2.0), jnp.asarray(3.0), optax.linear_schedule(1.0, 2.0, 10)):
        classic(lr)
    batch = jax.vmap(lambda lr: classic(lr).init(jnp.zeros((3, 2))).gains)(jnp.ones(4))
    assert batch.shape == (4, 3, 2)
    injected = optax.inject_hyperparams(classic, static_args=("gains_rule",))(learning_rate=10.0)
    assert injected.init(jnp.zeros((3, 2))).hyperparams["learning_rate"] == 10.0


def test_gains_rules_differ_as_documented():
    g = jnp.array([[1.0, -1.0]])
    for rule, expected_first in [("opentsne", 1.2), ("fitsne", 1.2), ("sklearn", 0.8)]:
        opt = classic(1.0, 0.0, gains_rule=rule, max_step_norm=None)
        _, state = opt.update(g, opt.init(jnp.zeros((1, 2))))
        np.testing.assert_allclose(np.asarray(state.gains), expected_first, rtol=1e-6)
    # Alternating gradients overshoot every step, so gains shrink to the floor: openTSNE's
    # additive rule converges to 0.01 / (1 - 0.8) = 0.05, the clipping rules to 0.01.
    for rule, floor in [("opentsne", 0.05), ("fitsne", 0.01), ("sklearn", 0.01)]:
        opt = classic(1e-3, 0.0, gains_rule=rule, max_step_norm=None)
        state = opt.init(jnp.zeros((1, 2)))
        for i in range(100):
            _, state = opt.update(g if i % 2 == 0 else -g, state)
        np.testing.assert_allclose(np.asarray(state.gains), floor, rtol=1e-4)
    with pytest.raises(ValueError, match="gains_rule"):
        classic(1.0, gains_rule="adam")


def test_clip_rows_and_clip_row_norm():
    x = jnp.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(clip_rows(x, 1.0)), [[0.6, 0.8], [0.3, 0.4], [0, 0]])
    t = clip_row_norm(1.0)
    out, _ = t.update(x, t.init(x))
    np.testing.assert_allclose(np.asarray(out)[0], [0.6, 0.8], rtol=1e-5)


def test_schedules():
    ex = exaggeration_schedule(12.0, 250, 1.0)
    assert float(ex(0)) == 12 and float(ex(249)) == 12 and float(ex(250)) == 1
    lr = auto_learning_rate(1200, ex)
    assert float(lr(0)) == pytest.approx(100.0) and float(lr(300)) == pytest.approx(1200.0)
    assert float(auto_learning_rate(1200, ex, rule="fitsne")(0)) == 200.0
    assert float(auto_learning_rate(12000, ex, rule="sklearn")(0)) == 250.0
    mom = momentum_schedule(0.5, 0.8, 250)
    assert float(mom(249)) == 0.5 and float(mom(250)) == pytest.approx(0.8)
    assert float(auto_learning_rate(30, ex, rule="cuml")(0)) == 10.0
    with pytest.raises(ValueError, match="rule"):
        auto_learning_rate(10, ex, rule="tsnecuda")


def test_classic_is_jittable_and_keeps_dtype():
    opt = classic(auto_learning_rate(100, exaggeration_schedule()), momentum_schedule(0.5, 0.8))
    Y = jnp.ones((5, 2), jnp.float32)
    upd, state = jax.jit(opt.update)(jnp.ones((5, 2), jnp.float32), opt.init(Y))
    assert upd.dtype == jnp.float32 and state.gains.dtype == jnp.float32
    assert int(state.count) == 1
