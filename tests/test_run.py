import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsnejax.affinity import perplexity_affinities
from tsnejax.gradients import exact_backend
from tsnejax.init import pca
from tsnejax.knn import exact_knn
from tsnejax.optim import get_hyperparams, make_optimizer
from tsnejax.run import DivergenceError, build_step, init_state, optimize
from tsnejax.schedules import Phases, TrialPhases


@pytest.fixture(scope="module")
def small(digits):
    X = digits[0][:400]
    P = perplexity_affinities(exact_knn(X, 45), 15.0)
    return X, P


def _phases(n, early=100, lr=None):
    lr = [n / 12.0, float(n)] if lr is None else [lr, lr]
    return Phases.of(
        {
            0: {"exaggeration": 12.0, "learning_rate": lr[0], "momentum": 0.8},
            early: {"exaggeration": 1.0, "learning_rate": lr[1]},
        }
    )


def _step(max_step_norm=5.0):
    opt = make_optimizer("classic", learning_rate=1.0, momentum=0.8, max_step_norm=max_step_norm)
    return build_step(exact_backend(), opt), opt


def test_resume_equals_single_call(small):
    X, P = small
    step, opt = _step()
    ph = _phases(len(X))
    s0 = init_state(pca(X), opt)
    one = optimize(step, s0, P, 300, phases=ph).state
    a = optimize(step, s0, P, 100, phases=ph).state
    two = optimize(step, a, P, 200, phases=ph).state
    np.testing.assert_array_equal(np.asarray(one.embedding), np.asarray(two.embedding))
    g1, g2 = (s.opt_state.inner_state.gains for s in (one, two))
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))
    assert int(two.iteration) == 300


def test_phase_boundary_is_exact_and_chunks_of_any_length_share_one_program(small):
    """A boundary at 37 takes effect at iteration 37; segments of 37, 13, 50 ... compile once."""
    X, P = small
    step, opt = _step()
    ph = _phases(len(X), early=37)
    s0 = init_state(pca(X), opt)
    res = optimize(step, s0, P, 113, phases=ph)
    assert res.n_compiles == 1
    # Equal to 37 steps of the first phase's values, then 76 of the second's, in two calls.
    first = optimize(step, s0, P, 37, phases=Phases.of(**ph.at(0)))
    second = optimize(step, first.state, P, 76, phases=Phases.of(**ph.at(37)))
    np.testing.assert_array_equal(
        np.asarray(res.state.embedding), np.asarray(second.state.embedding)
    )
    later = optimize(step, s0, P, 113, phases=_phases(len(X), early=38))
    assert not np.allclose(np.asarray(later.state.embedding), np.asarray(res.state.embedding))
    assert float(get_hyperparams(res.state.opt_state)["learning_rate"]) == len(X)


def test_second_call_compiles_nothing(small):
    X, P = small
    step, opt = _step()
    ph = _phases(len(X))
    s0 = init_state(pca(X), opt)
    first = optimize(step, s0, P, 100, phases=ph)
    assert first.n_compiles == 1 and first.compile_seconds > 0
    again = optimize(step, first.state, P, 100, phases=ph.replace(exaggeration=3.0))
    assert again.n_compiles == 0


def test_divergence_stops_with_iteration_and_last_finite_state(small):
    X, P = small
    step, opt = _step(max_step_norm=None)
    ph = _phases(len(X), lr=1e30)
    s0 = init_state(pca(X), opt)
    with pytest.raises(DivergenceError, match=r"diverged at iteration \d+ \(phase X\)") as err:
        optimize(step, s0, P, 100, phases=ph, describe=lambda it: "phase X")
    assert err.value.iteration >= 1
    assert np.isfinite(np.asarray(err.value.state.embedding)).all()
    assert int(err.value.state.iteration) == err.value.iteration - 1
    # Without describe the message names the phase's values.
    with pytest.raises(DivergenceError, match=r"learning_rate=1e\+30"):
        optimize(step, s0, P, 100, phases=ph)


def test_divergence_names_its_cause(small):
    """The step tells a NaN gradient, a NaN update and a runaway step apart; the message
    blames the backend, the optimizer or the learning rate accordingly."""
    import optax

    from tsnejax.gradients import Backend, exact_gradient, exact_kl_divergence

    X, P = small
    Y0 = pca(X)

    def gradient(Y, P, dof, exaggeration, grid):  # NaN once early exaggeration ends
        g, z = exact_gradient(Y, P, dof, exaggeration)
        return g * jnp.where(exaggeration > 2.0, 1.0, jnp.nan), z

    mine = Backend(
        "mine", gradient, lambda Y, P, dof, grid: exact_kl_divergence(Y, P, dof), lambda Y: None
    )
    step, opt = _step()
    with pytest.raises(DivergenceError, match="gradient of 'mine' came back NaN") as err:
        optimize(build_step(mine, opt), init_state(Y0, opt), P, 30, phases=_phases(400, 10))
    assert (err.value.iteration, err.value.cause) == (11, "gradient")
    assert "custom Backend" in str(err.value)
    nan_update = optax.scale(float("nan"))
    with pytest.raises(DivergenceError, match="update turned a finite gradient") as err:
        optimize(build_step("exact", nan_update), init_state(Y0, nan_update), P, 5)
    assert (err.value.iteration, err.value.cause) == (1, "update")
    with pytest.raises(DivergenceError, match="step over 1000 x max_step_norm") as err:
        optimize(step, init_state(Y0, opt), P, 5, phases=_phases(400, lr=1e12))
    assert err.value.cause == "step"


def test_batch_of_four_equals_four_runs_and_a_diverging_trial_is_frozen(small):
    X, P = small
    step, opt = _step(max_step_norm=None)
    n = len(X)
    rates = [n / 12.0, 50.0, 1e30, 100.0]  # the third diverges
    tables = [_phases(n, early=60, lr=r) for r in rates]
    Y0 = pca(X)
    batch = optimize(
        step,
        init_state(jnp.stack([Y0] * 4), opt),
        P,
        120,
        phases=Phases.stack(tables),
        batch="map",  # P shared: P_axis read from its shape (it failed inside lax.scan)
    )
    assert batch.diverged_at[2] >= 1 and (np.delete(batch.diverged_at, 2) == -1).all()
    for b in (0, 1, 3):
        single = optimize(step, init_state(Y0, opt), P, 120, phases=tables[b])
        np.testing.assert_array_equal(
            np.asarray(batch.state.embedding[b]), np.asarray(single.state.embedding)
        )
        assert batch.kl_history[-1][1][b] == single.kl_history[-1][1]
    with pytest.raises(DivergenceError) as err:
        optimize(step, init_state(Y0, opt), P, 120, phases=tables[2])
    assert batch.diverged_at[2] == err.value.iteration
    assert list(batch.diverged_cause) == ["", "", err.value.cause, ""]
    # The frozen trial holds its last finite state; its KL is reported as nan.
    np.testing.assert_array_equal(
        np.asarray(batch.state.embedding[2]), np.asarray(err.value.state.embedding)
    )
    assert np.isnan(batch.kl_history[-1][1][2])


def test_vmapped_batch_with_per_trial_values_and_stacked_P(small, digits):
    """The vectorised batch: per-trial phase values and per-trial P (different perplexities,
    padded to one shape) give each trial its own run, up to float rounding (short run, before
    the dynamics amplify rounding)."""
    X, P = small
    step, opt = _step()
    n = len(X)
    P2 = perplexity_affinities(exact_knn(X, 45), 5.0)
    from tsnejax.batch import stack_affinities

    tables = [_phases(n, early=10, lr=r) for r in (n / 12.0, 20.0)]
    Y0 = pca(X)
    batch = optimize(
        step,
        init_state(jnp.stack([Y0, Y0]), opt),
        stack_affinities([P, P2]),
        15,
        phases=Phases.stack(tables),
        batch="vmap",
    )
    for b, Pb in enumerate((P, P2)):
        single = optimize(step, init_state(Y0, opt), Pb, 15, phases=tables[b])
        np.testing.assert_allclose(
            np.asarray(batch.state.embedding[b]),
            np.asarray(single.state.embedding),
            rtol=1e-4,
            atol=1e-7,
        )


def test_optimize_names_a_mismatched_P_and_a_negative_n_iter(small):
    X, P = small
    step, opt = _step()
    # A batched state: P's trial axis is read from its shape; a P_axis that contradicts it is
    # named (a shared P under the old default P_axis=0 failed inside lax.scan).
    batched = init_state(jnp.stack([pca(X)] * 2), opt)
    with pytest.raises(ValueError, match="P has no trial axis"):
        optimize(step, batched, P, 10, P_axis=0)
    from tsnejax.batch import stack_affinities

    with pytest.raises(ValueError, match="P is stacked for 3 trials but the state has 2"):
        optimize(step, batched, stack_affinities([P] * 3), 10)
    with pytest.raises(ValueError, match="P_axis=None shares one P, but P is stacked"):
        optimize(step, batched, stack_affinities([P] * 2), 10, P_axis=None)
    # The mapping Phases.of takes is taken as the phase table (was a TypeError).
    table = {0: {"exaggeration": 12.0, "learning_rate": 30.0, "momentum": 0.8}}
    s0 = init_state(pca(X), opt)
    np.testing.assert_array_equal(
        optimize(step, s0, P, 5, phases=table).state.embedding,
        optimize(step, s0, P, 5, phases=Phases.of(table)).state.embedding,
    )
    s0 = init_state(pca(X)[:-1], opt)
    with pytest.raises(ValueError, match=f"P describes {len(X)} points but the state's"):
        optimize(step, s0, P, 10)  # was a broadcasting TypeError from inside the gradient
    with pytest.raises(ValueError, match="n_iter must be >= 0, got -5"):
        optimize(step, init_state(pca(X), opt), P, -5)  # ran nothing without a word
    # each positional input by name (Python's AttributeError "'NoneType' object has no
    # attribute 'allocate'", or jnp's "broadcast_in_dim shape must have every element be
    # nonnegative" for chunk_size=-1)
    s0 = init_state(pca(X), opt)
    for args, kw, message in [
        ((None, s0, P, 5), {}, "stepper must be what tsnejax.run.build_step"),
        ((step, pca(X), P, 5), {}, "state must be a TSNEState"),
        ((step, s0, None, 5), {}, "P must be the affinities"),
        ((step, s0, "P", 5), {}, "P must be the affinities"),
        ((step, s0, P, 5), {"chunk_size": -1}, "chunk_size must be >= 1"),
        ((step, s0, P, 5), {"chunk_size": 2.5}, "chunk_size must be an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            optimize(*args, **kw)
    with pytest.raises(ValueError, match="start embedding must be a numeric"):
        init_state("Y", opt)  # was JAX's "not a valid JAX array type"
    # keyword objects: "'str' object has no attribute 'values'" (phases, checkpoint, mesh),
    # "unhashable type: 'list'" (P_axis), "'str' object is not callable" (project)
    for kw, message in [
        ({"phases": "step"}, "phases must be a tsnejax.schedules.Phases"),
        ({"checkpoint": "run.npz"}, "checkpoint must have .every and .save"),
        ({"P_axis": [0]}, "P_axis must be 'auto', 0 or None"),
    ]:
        with pytest.raises(ValueError, match=message):
            optimize(step, s0, P, 5, **kw)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        optimize(step, s0, P, 5, mesh="points")
    with pytest.raises(ValueError, match="project must be a callable"):
        build_step("exact", opt, project="clip")
    with pytest.raises(ValueError, match="gradient_scale must be a number"):
        build_step("exact", opt, gradient_scale="4")


def test_callbacks_at_any_interval_do_not_change_the_result(small):
    X, P = small
    step, opt = _step()
    ph = _phases(len(X))
    s0 = init_state(pca(X), opt)
    plain = optimize(step, s0, P, 150, phases=ph)
    seen = []

    def cb(iteration, kl, Y):
        seen.append((iteration, kl, Y.shape))

    with_cb = optimize(step, s0, P, 150, phases=ph, callbacks=[cb], callbacks_every=7)
    assert [s[0] for s in seen] == list(range(7, 151, 7))
    assert all(np.isfinite([s[1] for s in seen]))
    np.testing.assert_array_equal(
        np.asarray(plain.state.embedding), np.asarray(with_cb.state.embedding)
    )
    # An interval of 0 used to fall back to the chunk size without a word.
    with pytest.raises(ValueError, match="callbacks_every must be >= 1, got 0"):
        optimize(step, s0, P, 150, phases=ph, callbacks=[cb], callbacks_every=0)


def test_callback_can_stop_and_record_hook_sees_every_step(small):
    X, P = small
    step, opt = _step()
    ph = _phases(len(X))

    def record(state, info):
        return {"norm": info.grad_norm, "spread": jnp.std(state.embedding)}

    res = optimize(
        step,
        init_state(pca(X), opt),
        P,
        300,
        phases=ph,
        record=record,
        callbacks=[lambda it, kl, Y: it >= 100],
        callbacks_every=25,
    )
    assert res.stopped_early and int(res.state.iteration) == 100
    assert res.records["norm"].shape == (100,) and res.records["spread"].shape == (100,)
    assert res.records["spread"][-1] == pytest.approx(float(jnp.std(res.state.embedding)))


def test_kl_decreases_over_the_main_phase(small):
    X, P = small
    step, opt = _step()
    res = optimize(step, init_state(pca(X), opt), P, 400, phases=_phases(len(X)), chunk_size=100)
    kls = [kl for _, kl in res.kl_history]
    assert kls[-1] < kls[1] < kls[0]
    assert res.grad_norms.shape == (400,)


def test_dof_array_is_traced_not_recompiled(small):
    X, P = small
    step, opt = _step()
    s0 = init_state(pca(X), opt)
    ph = _phases(len(X))
    a = optimize(step, s0, P, 50, phases=ph, dof=jnp.float32(0.8))
    b = optimize(step, s0, P, 50, phases=ph, dof=jnp.float32(1.5))
    assert a.n_compiles == 1 and b.n_compiles == 0
    assert not np.allclose(np.asarray(a.state.embedding), np.asarray(b.state.embedding))


def test_kernels_and_classic_step_obey_strict_dtype_promotion(small):
    # Optax's own adam does not (1 - decay**count mixes float and int32), so the strict
    # mode is scoped to our pieces rather than set globally.
    X, P = small
    with jax.numpy_dtype_promotion("strict"):
        step, opt = _step()
        Y0 = pca(X)  # float32, or float64 under JAX_ENABLE_X64 (it failed there)
        res = optimize(step, init_state(Y0, opt), P, 10, phases=_phases(len(X)))
    assert res.state.embedding.dtype == Y0.dtype


def test_phases_table_checks():
    ph = Phases.of({0: {"exaggeration": 12.0, "momentum": 0.5}, 250: {"exaggeration": 1.0}})
    assert ph.at(249) == {"exaggeration": 12.0, "momentum": 0.5}
    assert ph.at(250) == {"exaggeration": 1.0, "momentum": 0.5}
    assert ph.next_start(0) == 250 and ph.next_start(250) is None
    with pytest.raises(ValueError, match="first phase does not define"):
        Phases.of({0: {"exaggeration": 12.0}, 10: {"learning_rate": 1.0}})
    with pytest.raises(ValueError, match="integer >= 0"):
        Phases.of({-1: {"exaggeration": 1.0}})
    with pytest.raises(ValueError, match="share their starts"):
        Phases.stack([ph, Phases.of({0: {"exaggeration": 1.0, "momentum": 0.5}})])
    with pytest.raises(ValueError, match="finite"):
        Phases.of(exaggeration=float("nan"))
    # the step's own values in their ranges (a negative exaggeration or rate and a momentum
    # of 1 ran without a word; the config refuses them); dof may be inf, other names any
    for values, message in [
        ({"exaggeration": -1.0}, "exaggeration=-1.0 must be > 0"),
        ({"learning_rate": np.array([10.0, 0.0])}, "learning_rate=.* must be > 0"),
        ({"momentum": 1.0}, r"momentum=1.0 must be in \[0, 1\)"),
        ({"dof": float("nan")}, "dof=nan must be > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            Phases.of(**values)
    Phases.of(dof=float("inf"), momentum=0.0, b1=-3.0)
    # Tables that do not share starts are read as one per trial instead.
    other = Phases.of({0: {"exaggeration": 4.0, "momentum": 0.5}, 100: {"exaggeration": 1.0}})
    both = TrialPhases([ph, other])
    assert both.starts == (0, 100, 250) and both.next_start(0) == 100
    assert both.next_start(100) == 250 and both.next_start(250) is None
    np.testing.assert_array_equal(both.at(150)["exaggeration"], [12.0, 1.0])
    assert both.at(150)["momentum"] == 0.5  # equal values stay one number
    assert "trials [0]" in both.describe(150) and "trials [1]" in both.describe(150)


def test_learning_rate_1e12_stops_with_divergence_error(digits, key, tmp_path):
    """Step clipping keeps such a run finite; the guard on the unclipped step still stops it."""
    from tsnejax.config import TSNEConfig
    from tsnejax.pipeline import fit

    with pytest.raises(DivergenceError, match="max_step_norm") as err:
        fit(key, digits[0], TSNEConfig.make(learning_rate=1e12))
    assert err.value.iteration <= 5
    assert np.isfinite(np.asarray(err.value.state.embedding)).all()
    # The CLI turns it into one line and exit code 1, writing no embedding.
    from tsnejax.cli import main

    assert main(["embed", "--out", str(tmp_path / "o"), "--learning-rate", "1e12"]) == 1
    assert not (tmp_path / "o" / "embedding.npy").exists()


def test_a_dof_schedule_in_the_phase_table(small):
    # A dof schedule was a TypeError (float() of the schedule) in the chunk's static values.
    import optax

    X, P = small
    step, opt = _step()
    s0 = init_state(pca(X), opt)
    base = {"exaggeration": 1.0, "learning_rate": 100.0, "momentum": 0.8}
    sched = optax.join_schedules([optax.constant_schedule(1.0), optax.constant_schedule(0.5)], [60])
    got = optimize(step, s0, P, 120, phases=Phases.of({0: {**base, "dof": sched}}))
    table = Phases.of({0: {**base, "dof": 1.0}, 60: {"dof": 0.5}})
    ref = optimize(step, s0, P, 120, phases=table)
    a, b = np.asarray(got.state.embedding), np.asarray(ref.state.embedding)
    assert np.abs(a - b).max() <= 1e-3 * np.abs(b).max()  # traced vs compiled-in dof rounding
    assert got.kl_history[-1][1] == pytest.approx(ref.kl_history[-1][1], rel=1e-4)
    # a schedule that stays at 1 ends elsewhere: the switch to 0.5 took effect
    flat = optimize(step, s0, P, 120, phases=Phases.of({0: {**base, "dof": 1.0}}))
    assert np.abs(np.asarray(flat.state.embedding) - b).max() > 1e-2 * np.abs(b).max()
