"""Registry-driven conformance of every optimizer (optax-style), hyperparameter injection, the
phase table, Optax objects with the same phase handling and rails, resume and checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tsnejax._checks import float_dtype
from tsnejax.affinity import perplexity_affinities
from tsnejax.build import build_optimizer, phase_table, stepper_for
from tsnejax.checkpoint import load_meta, load_state, save_state
from tsnejax.config import TSNEConfig
from tsnejax.init import pca
from tsnejax.knn import exact_knn
from tsnejax.optim import (
    OPTIMIZERS,
    classic,
    get_hyperparams,
    make_optimizer,
    scales_with_gradient,
    set_hyperparams,
)
from tsnejax.run import DivergenceError, build_step, init_state, optimize
from tsnejax.schedules import (
    Phases,
    auto_learning_rate,
    exaggeration_schedule,
    momentum_schedule,
)

# Short schedule: 50 steps of early exaggeration, 50 without.
SHORT = dict(early_exaggeration_iter=50, n_iter=50, negative_gradient_method="exact")


@pytest.fixture(scope="module")
def problem(digits):
    X = digits[0]
    P = perplexity_affinities(exact_knn(X, 90), 30.0)
    return X, P, pca(X)


def _floating_leaves(tree):
    return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.floating)]


#: In the fast tier: the plain, the adaptive and openTSNE's rule; the other registry entries run
#: the same checks in the slow tier (each costs ~8 s of compilation with an empty cache).
FAST_OPTIMIZERS = ("adam", "classic", "sgd")


@pytest.mark.parametrize(
    "name",
    [
        n if n in FAST_OPTIMIZERS else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(OPTIMIZERS)
    ],
)
def test_registry_optimizer_conformance(problem, name):
    X, P, Y0 = problem
    config = TSNEConfig.make(optimizer=name, **SHORT)
    stepper, opt = stepper_for(config, len(X))
    phases = phase_table(config, len(X))
    state = init_state(Y0, opt)
    kl0 = float(jax.jit(stepper.kl_divergence, static_argnums=3)(Y0, P, 1.0, None))

    res = optimize(stepper, state, P, config.total_iter, phases=phases)
    # Lowers KL.
    assert res.kl_history[-1][1] < 0.8 * kl0
    assert np.isfinite(np.asarray(res.state.embedding)).all()
    # Keeps dtype: every floating leaf of the state stays in the kernels' (float32 unless x64).
    assert {jnp.result_type(x) for x in _floating_leaves(res.state)} == {float_dtype()}
    # The phase's values reach the optimizer state.
    hp = get_hyperparams(res.state.opt_state)
    assert float(hp["learning_rate"]) == pytest.approx(float(phases.values[-1]["learning_rate"]))
    # The second call with the same stepper compiles nothing, also with other phase values.
    again = optimize(stepper, res.state, P, 100, phases=phases.replace(exaggeration=2.0))
    assert again.n_compiles == 0

    # Jittable and vmappable: a batch of two trials with different learning rates (phase
    # values) equals the two trials run one at a time.
    step = jax.jit(stepper.step, static_argnums=3)
    lr = float(phases.values[0]["learning_rate"])
    hyper = {k: jnp.float32(v) for k, v in phases.values[0].items() if k != "dof"}
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), state, state)
    hb = {**{k: jnp.stack([v, v]) for k, v in hyper.items()}}
    hb["learning_rate"] = jnp.asarray([lr, 0.5 * lr], jnp.float32)
    vstep = jax.jit(jax.vmap(lambda s, h: stepper.step(s, P, {**h, "dof": 1.0}, None)))
    out, _ = vstep(batched, hb)
    for i, f in enumerate((1.0, 0.5)):
        single, _ = step(state, P, {**hyper, "learning_rate": lr * f, "dof": 1.0}, None)
        np.testing.assert_allclose(
            np.asarray(out.embedding[i]), np.asarray(single.embedding), rtol=1e-5, atol=1e-7
        )
    assert not np.allclose(np.asarray(out.embedding[0]), np.asarray(out.embedding[1]))


@pytest.mark.parametrize("method", ["interpolation", "splat"])
@pytest.mark.parametrize("name", ["classic", "adam"])
def test_optimizers_work_with_every_grid_backend(problem, method, name):
    X, P, Y0 = problem
    config = TSNEConfig.make(optimizer=name, **{**SHORT, "negative_gradient_method": method})
    stepper, opt = stepper_for(config, len(X))
    grid = stepper.allocate(Y0)
    kl0 = float(jax.jit(stepper.kl_divergence, static_argnums=3)(Y0, P, 1.0, grid))
    res = optimize(
        stepper, init_state(Y0, opt), P, config.total_iter, phases=phase_table(config, len(X))
    )
    assert res.kl_history[-1][1] < 0.8 * kl0


def test_registry_rejects_unknown_names_and_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("adamax_typo", learning_rate=1.0)
    with pytest.raises(ValueError, match="no argument"):
        make_optimizer("adam", learning_rate=1.0, beta1=0.9)
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer("adam")
    with pytest.raises(ValueError, match="learning_rat"):
        set_hyperparams(make_optimizer("adam", learning_rate=1.0).init(jnp.zeros((3, 2))), x=1)


def test_phase_table_equals_the_optax_schedules_it_replaces(problem):
    """Phases set per step give the run of plain classic with Optax schedules (fitsne preset:
    momentum 0.5 -> 0.8 and the exaggeration switch, both at 30)."""
    X, P, Y0 = problem
    n = len(X)
    ex = exaggeration_schedule(12.0, 30, 1.0)
    kwargs = dict(momentum=momentum_schedule(0.5, 0.8, 30), gains_rule="fitsne", max_step_norm=5.0)
    plain = classic(auto_learning_rate(n, ex), **kwargs)
    ref_phases = Phases.of({0: {"exaggeration": 12.0}, 30: {"exaggeration": 1.0}})
    a = optimize(build_step("exact", plain), init_state(Y0, plain), P, 60, phases=ref_phases)
    config = TSNEConfig.from_preset(
        "fitsne", learning_rate_rule="opentsne", early_exaggeration_iter=30, n_iter=30
    )
    stepper, opt = stepper_for(config.replace(negative_gradient_method="exact"), n)
    b = optimize(stepper, init_state(Y0, opt), P, 60, phases=phase_table(config, n))
    np.testing.assert_array_equal(np.asarray(a.state.embedding), np.asarray(b.state.embedding))
    hp = get_hyperparams(b.state.opt_state)
    assert float(hp["learning_rate"]) == pytest.approx(n)  # N / 1 after exaggeration
    assert float(hp["momentum"]) == pytest.approx(0.8)


def test_decaying_exaggeration_is_a_scheduled_phase(problem):
    X, P, Y0 = problem
    config = TSNEConfig.make(
        early_exaggeration=4.0,
        early_exaggeration_iter=3,
        exaggeration_decay="linear",
        exaggeration_decay_iter=4,
        n_iter=5,
        negative_gradient_method="exact",
    )
    phases = phase_table(config, len(X))
    assert phases.starts == (0, 3, 7)
    sched = exaggeration_schedule(4.0, 3, 1.0, decay="linear", decay_iter=4)
    ex = [phases.at(t)["exaggeration"] for t in range(8)]
    got = [float(e(t)) if callable(e) else e for t, e in enumerate(ex)]
    np.testing.assert_allclose(got, [float(sched(t)) for t in range(8)], rtol=1e-6)
    # The learning rate follows N / exaggeration(t) inside the decay.
    lr = phases.at(5)["learning_rate"]
    assert float(lr(5)) == pytest.approx(len(X) / float(sched(5)))
    # Two configs with the same decay share the schedule, hence the compiled program.
    assert phase_table(config, len(X)).at(4) == phases.at(4)


def test_a_decay_schedule_object_is_accepted_where_its_name_is(problem):
    """``exaggeration_decay`` takes a schedule of the steps since early exaggeration ended."""
    from tsnejax import fit

    X, P, Y0 = problem
    same = {"early_exaggeration": 4.0, "early_exaggeration_iter": 5, "n_iter": 10}
    same |= {"exaggeration_decay_iter": 4, "negative_gradient_method": "exact"}
    linear = TSNEConfig.make(exaggeration_decay="linear", **same)

    def mine(t):  # the named linear decay's own arithmetic
        return 4.0 + (1.0 - 4.0) * jnp.clip(t / 4, 0.0, 1.0)

    by_object = TSNEConfig.make(exaggeration_decay=mine, **same)
    key = jax.random.key(0)
    a = fit(key, None, linear, affinities=P, initialization=Y0)
    b = fit(key, None, by_object, affinities=P, initialization=Y0)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    # An Optax schedule, counted from 0 at the end of early exaggeration (Optax's convention).
    cosine = optax.cosine_decay_schedule(4.0, 4, alpha=0.25)
    phases = phase_table(TSNEConfig.make(exaggeration_decay=cosine, **same), len(X))
    got = [phases.at(t)["exaggeration"] for t in range(12)]
    got = [float(e(t)) if callable(e) else e for t, e in enumerate(got)]
    want = [4.0] * 5 + [float(cosine(t)) for t in range(4)] + [1.0] * 3
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="exaggeration_decay='cosine' is not a valid option"):
        TSNEConfig.make(exaggeration_decay="cosine")


def test_exaggeration_decay_schedules():
    lin = exaggeration_schedule(4.0, 250, 1.0, decay="linear", decay_iter=150)
    exp = exaggeration_schedule(4.0, 250, 1.0, decay="exponential", decay_iter=150)
    assert float(lin(249)) == 4.0 and float(lin(325)) == pytest.approx(2.5)
    assert float(lin(400)) == 1.0 and float(lin(1000)) == 1.0
    assert float(exp(325)) == pytest.approx(2.0) and float(exp(400)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="decay"):
        exaggeration_schedule(decay="cosine")


def test_optax_objects_get_phase_scaling_and_rails(problem):
    """A user's SGD chain gets the auto rule's per-phase step (x 1/12 in early exaggeration),
    row step clipping and the divergence guard; Adam-like objects keep a constant step."""
    X, P, Y0 = problem
    n = len(X)
    chain = optax.chain(optax.clip_by_global_norm(1e6), optax.sgd(float(n), momentum=0.8))
    assert scales_with_gradient(chain) and not scales_with_gradient(optax.adam(1.0))
    config = TSNEConfig.make(optimizer=chain, **SHORT)
    phases = phase_table(config, n)
    assert [v["learning_rate_scale"] for v in phases.values] == [pytest.approx(1 / 12), 1.0]
    assert (
        "learning_rate_scale"
        not in phase_table(config.replace(optimizer=optax.adam(1.0)), n).values[0]
    )
    off = config.replace(optimizer=optax.sgd(float(n), momentum=0.8)).replace(phase_scaling=False)
    assert "learning_rate_scale" not in phase_table(off, n).values[0]
    # Scaled, the chain runs like the classic rule's step sizes and stays finite...
    stepper, opt = stepper_for(config, n)
    res = optimize(stepper, init_state(Y0, opt), P, 100, phases=phases)
    kls = [kl for _, kl in res.kl_history]
    assert np.isfinite(np.asarray(res.state.embedding)).all() and kls[-1] < kls[0]
    # ... and a runaway object is stopped by the guard on its unclipped step.
    bad = config.replace(optimizer=optax.sgd(1e9))
    stepper, opt = stepper_for(bad, n)
    with pytest.raises(DivergenceError, match="max_step_norm"):
        optimize(stepper, init_state(Y0, opt), P, 50, phases=phase_table(bad, n))


def test_an_optax_wrapper_object_is_taken_and_a_factory_is_named(problem):
    """optax.MultiSteps is an Optax object without being a GradientTransformation (it makes one):
    it used to be refused. Accumulating over one step it is the optimizer it wraps."""
    X, P, Y0 = problem
    n = len(X)
    plain = TSNEConfig.make(optimizer=optax.sgd(float(n), momentum=0.8), **SHORT)
    wrapped = plain.replace(optimizer=optax.MultiSteps(optax.sgd(float(n), momentum=0.8), 1))
    out = []
    for config in (plain, wrapped):
        stepper, opt = stepper_for(config, n)
        res = optimize(stepper, init_state(Y0, opt), P, 60, phases=phase_table(config, n))
        out.append(np.asarray(res.state.embedding))
    np.testing.assert_allclose(out[1], out[0], rtol=1e-4, atol=1e-4)  # float32 rounding
    # Accumulating over 2 steps it still scales with the gradient: the early phase's 1/12 step
    # scale applies (its zero first update read as "does not scale" and lost it).
    two = plain.replace(optimizer=optax.MultiSteps(optax.sgd(float(n), momentum=0.8), 2))
    assert phase_table(two, n).values[0]["learning_rate_scale"] == pytest.approx(1 / 12)
    with pytest.raises(ValueError, match=r"'adam' is a function; .* call it"):
        TSNEConfig.make(optimizer=optax.adam)


@pytest.mark.parametrize("phase_scaling", ["auto", False])
def test_an_optax_object_the_loop_cannot_drive_is_named_before_the_search(
    phase_scaling, monkeypatch
):
    """optax.lookahead wants LookaheadParams, contrib.sophia a loss function: they failed with
    Optax's own AttributeError / "obj_fn must be provided" from inside the compiled loop, after
    the kNN search and P (with phase_scaling given, nothing probed them first)."""
    from optax import contrib

    import tsnejax.pipeline

    def no_search(*args, **kwargs):
        raise AssertionError("the kNN search ran before the optimizer was checked")

    monkeypatch.setattr(tsnejax.pipeline, "prepare", no_search)
    X = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    cases = [
        (optax.lookahead(optax.sgd(60.0), 5, 0.5), r"AttributeError: .*fast.*cannot be driven"),
        (contrib.sophia(0.1), r"obj_fn must be provided.*need the loss value or function"),
        (optax.lbfgs(), r"TypeError: .*optax.scale_by_lbfgs\(\) in a chain"),
    ]
    for transform, why in cases:
        config = TSNEConfig.make(optimizer=transform, phase_scaling=phase_scaling, perplexity=5)
        with pytest.raises(ValueError, match=r"optimizer: this Optax transformation fails.*" + why):
            tsnejax.pipeline.fit(jax.random.key(0), X, config)
    if phase_scaling == "auto":  # diff.fit takes objects too (its error was Optax's own)
        from tsnejax import diff

        for transform, why in cases:
            with pytest.raises(ValueError, match=r"optimizer: this Optax.*" + why):
                diff.fit(
                    X,
                    {"perplexity": 5.0},
                    key=jax.random.key(0),
                    optimizer=transform,
                    n_neighbors=15,
                )


@pytest.mark.parametrize("method", ["exact", "interpolation"])
def test_resume_150_plus_250_equals_400(problem, method, tmp_path):
    """Gains and velocity carry over, also through a saved and reloaded checkpoint (the grid
    grows over these iterations: resizing is the same in one run and in two)."""
    X, P, Y0 = problem
    config = TSNEConfig.make(negative_gradient_method=method, early_exaggeration_iter=100)
    stepper, opt = stepper_for(config, len(X))
    phases = phase_table(config, len(X))
    s0 = init_state(Y0, opt)
    one = optimize(stepper, s0, P, 400, phases=phases)
    first = optimize(stepper, s0, P, 150, phases=phases).state
    path = save_state(tmp_path / "state.npz", first, iteration=150, method=method)
    loaded = load_state(path, opt)
    assert load_meta(path) == {"iteration": 150, "method": method}
    two = optimize(stepper, loaded, P, 250, phases=phases)
    for a, b in zip(jax.tree.leaves(one.state), jax.tree.leaves(two.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(two.state.iteration) == 400
    if method == "interpolation":
        assert len(one.grids) >= 2


def test_load_state_rejects_wrong_optimizer_and_bad_files(problem, tmp_path):
    X, P, Y0 = problem
    opt = classic(10.0)
    path = save_state(tmp_path / "s.npz", init_state(Y0, opt))
    adam = build_optimizer(TSNEConfig.make(optimizer="adam"))
    with pytest.raises(ValueError, match="optimizer"):
        load_state(path, adam)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_state(tmp_path / "bad.npz", opt)
    with pytest.raises(ValueError, match="does not exist"):
        load_state(tmp_path / "missing.npz", opt)


def test_a_learning_rate_schedule_is_accepted_where_a_rate_is(problem):
    """``learning_rate`` takes an Optax schedule of the iteration: each step uses its value."""
    from tsnejax import fit
    from tsnejax.config import static_signature

    X, P, Y0 = problem
    same = {"early_exaggeration_iter": 5, "n_iter": 10, "negative_gradient_method": "exact"}
    key = jax.random.key(0)
    number = fit(
        key, None, TSNEConfig.make(learning_rate=25.0, **same), affinities=P, initialization=Y0
    )
    constant = TSNEConfig.make(learning_rate=optax.constant_schedule(25.0), **same)
    by_schedule = fit(key, None, constant, affinities=P, initialization=Y0)
    np.testing.assert_array_equal(number.embedding, by_schedule.embedding)

    warmup = optax.linear_schedule(0.0, 200.0, 8)
    seen = fit(
        key,
        None,
        TSNEConfig.make(learning_rate=warmup, **same),
        affinities=P,
        initialization=Y0,
        record=lambda state, info: get_hyperparams(state.opt_state)["learning_rate"],
    )
    np.testing.assert_allclose(seen.records, [float(warmup(t)) for t in range(15)], rtol=1e-6)
    # compiled in: another schedule is another static setting (fit_batch and sweeps group apart)
    assert static_signature(constant) != static_signature(TSNEConfig.make(**same))
    for bad, match in [
        (lambda: 1.0, "failed at iteration 0"),
        (lambda t: -1.0, "rate >= 0"),
        (lambda t: jnp.ones(2), "one finite rate"),
    ]:
        with pytest.raises(ValueError, match=match):
            TSNEConfig.make(learning_rate=bad)
