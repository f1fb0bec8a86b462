import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsnejax.affinity import perplexity_affinities
from tsnejax.gradients import exact_backend
from tsnejax.init import pca
from tsnejax.knn import exact_knn
from tsnejax.optim import classic
from tsnejax.run import DivergenceError, build_step, init_state, optimize
from tsnejax.schedules import auto_learning_rate, exaggeration_schedule


@pytest.fixture(scope="module")
def small(digits):
    X = digits[0][:400]
    P = perplexity_affinities(exact_knn(X, 45), 15.0)
    return X, P


def _step(n, lr=None, max_step_norm=5.0):
    ex = exaggeration_schedule(12.0, 100, 1.0)
    rate = auto_learning_rate(n, ex) if lr is None else lr
    opt = classic(rate, 0.8, max_step_norm=max_step_norm)
    return build_step(exact_backend(), opt, ex), opt


def test_resume_equals_single_call(small):
    X, P = small
    step, opt = _step(len(X))
    s0 = init_state(pca(X), opt)
    one = optimize(step, s0, P, 300).state
    a = optimize(step, s0, P, 100).state
    two = optimize(step, a, P, 200).state
    np.testing.assert_array_equal(np.asarray(one.embedding), np.asarray(two.embedding))
    np.testing.assert_array_equal(np.asarray(one.opt_state.gains), np.asarray(two.opt_state.gains))
    assert int(two.iteration) == 300


def test_second_call_compiles_nothing(small):
    X, P = small
    step, opt = _step(len(X))
    s0 = init_state(pca(X), opt)
    first = optimize(step, s0, P, 100)
    assert first.n_compiles == 1 and first.compile_seconds > 0
    again = optimize(step, first.state, P, 100)
    assert again.n_compiles == 0


def test_divergence_stops_with_iteration_and_last_finite_state(small):
    X, P = small
    step, opt = _step(len(X), lr=1e30, max_step_norm=None)
    s0 = init_state(pca(X), opt)
    with pytest.raises(DivergenceError, match=r"diverged at iteration \d+ \(phase X\)") as err:
        optimize(step, s0, P, 100, describe=lambda it: "phase X")
    assert err.value.iteration >= 1
    assert np.isfinite(np.asarray(err.value.state.embedding)).all()
    assert int(err.value.state.iteration) == err.value.iteration - 1


def test_callbacks_receive_kl_and_can_stop(small):
    X, P = small
    step, opt = _step(len(X))
    seen = []

    def cb(iteration, kl, Y):
        seen.append((iteration, kl, Y.shape))
        return iteration >= 100

    res = optimize(
        step,
        init_state(pca(X), opt),
        P,
        300,
        callbacks=[cb],
        callbacks_every=25,
    )
    assert [s[0] for s in seen] == [25, 50, 75, 100]
    assert res.stopped_early and int(res.state.iteration) == 100
    kls = [s[1] for s in seen]
    assert all(np.isfinite(kls))
    # Early exaggeration lowers the (true) KL only slowly, but it must not increase overall.
    assert kls[-1] < kls[0] + 1e-3


def test_kl_decreases_over_the_main_phase(small):
    X, P = small
    step, opt = _step(len(X))
    res = optimize(
        step,
        init_state(pca(X), opt),
        P,
        400,
        callbacks=[lambda *a: False],
        callbacks_every=100,
    )
    kls = [kl for _, kl in res.kl_history]
    assert kls[-1] < kls[1] < kls[0]
    assert res.grad_norms.shape == (400,)


def test_dof_array_is_traced_not_recompiled(small):
    X, P = small
    step, opt = _step(len(X))
    s0 = init_state(pca(X), opt)
    a = optimize(step, s0, P, 50, dof=jnp.float32(0.8))
    b = optimize(step, s0, P, 50, dof=jnp.float32(1.5))
    assert a.n_compiles == 1 and b.n_compiles == 0
    assert not np.allclose(np.asarray(a.state.embedding), np.asarray(b.state.embedding))


def test_kernels_and_classic_step_obey_strict_dtype_promotion(small):
    # Optax's own adam does not (1 - decay**count mixes float and int32), so the strict
    # mode is scoped to our pieces rather than set globally.
    X, P = small
    with jax.numpy_dtype_promotion("strict"):
        step, opt = _step(len(X))
        res = optimize(
            step,
            init_state(pca(X), opt),
            P,
            10,
            callbacks=[lambda *a: False],
            callbacks_every=10,
        )
    assert res.state.embedding.dtype == jnp.float32


def test_learning_rate_1e12_stops_with_divergence_error(digits, key, tmp_path):
    """Step clipping keeps such a run finite; the guard on the unclipped step still stops it."""
    from tsnejax.pipeline import TSNEConfig, fit

    with pytest.raises(DivergenceError, match="max_step_norm") as err:
        fit(key, digits[0], TSNEConfig(learning_rate=1e12))
    assert err.value.iteration <= 5
    assert np.isfinite(np.asarray(err.value.state.embedding)).all()
    # The CLI turns it into one line and exit code 1, writing no embedding.
    from tsnejax.cli import main

    assert main(["embed", "--out", str(tmp_path / "o"), "--learning-rate", "1e12"]) == 1
    assert not (tmp_path / "o" / "embedding.npy").exists()
