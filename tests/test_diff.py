"""Hypergradients through whole runs (issue #19): jax.grad of diff.fit against central finite
differences, jax.vmap against separate calls, the implicit perplexity derivative."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tsnejax
from tsnejax import diff
from tsnejax.affinity import calibrate_perplexity, perplexity_affinities
from tsnejax.knn import exact_knn

SGD = {
    "perplexity": 20.0,
    "early_exaggeration": 12.0,
    "exaggeration": 1.5,
    "learning_rate": 40.0,
    "momentum": 0.5,
    "dof": 1.0,
}
ADAM = {**SGD, "learning_rate": 0.05, "momentum": 0.8}
RUN = dict(n_iter=40, early_exaggeration_iter=20)


@pytest.fixture(scope="module")
def X(digits):
    return digits[0][:500].astype(np.float64)


def _check_against_fd(X, method, optimizer, values, rel, x64):
    """Every hyperparameter's dKL/dh within 2 % of the central difference with step rel * h."""
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        key = jax.random.key(0)

        def kl(h):
            return diff.fit(X, h, key=key, method=method, optimizer=optimizer, **RUN)[1]

        h0 = {k: dtype(v) for k, v in values.items()}
        grads = jax.grad(kl)(h0)
        for name, v in values.items():
            eps = rel * abs(v)
            up, down = dict(h0), dict(h0)
            up[name], down[name] = dtype(v + eps), dtype(v - eps)
            fd = (float(kl(up)) - float(kl(down))) / (2 * eps)
            assert float(grads[name]) == pytest.approx(fd, rel=0.02), (name, grads[name], fd)


METHODS = ["exact", pytest.param("interpolation", marks=pytest.mark.slow)]


# The fast tier checks sgd through the interpolation and adam (x64) through the exact gradient;
# sgd through the exact one re-proves both (10 s of compiling) and runs with the slow tier.
@pytest.mark.parametrize("method", [pytest.param("exact", marks=pytest.mark.slow), "interpolation"])
def test_sgd_hypergradients_match_finite_differences(X, method):
    _check_against_fd(X, method, "sgd", SGD, rel=1e-2, x64=False)


@pytest.mark.parametrize("method", METHODS)
def test_adam_hypergradients_match_finite_differences(X, method):
    # Adam's normalised early steps make KL sharply curved in perplexity and exaggeration at
    # float32 finite-difference steps; in float64 with a 1e-4 step the agreement is < 0.1 %.
    _check_against_fd(X, method, "adam", ADAM, rel=1e-4, x64=True)


@pytest.mark.slow
def test_splat_hypergradients_match_finite_differences(X):
    _check_against_fd(X, "splat", "sgd", SGD, rel=1e-2, x64=False)


def test_the_forward_run_is_fits_run(X):
    # The module's claim: diff.fit's forward pass is tsnejax.fit's run with the same settings
    # (same graph width, initial embedding, phases and grids); measured 4e-8 on a scale of 0.2.
    key = jax.random.key(0)
    Y, kl = diff.fit(X, SGD, key=key, method="interpolation", optimizer="sgd", **RUN)
    config = tsnejax.TSNEConfig.make(
        **{k: v for k, v in SGD.items() if k != "momentum"},
        initial_momentum=SGD["momentum"],
        final_momentum=SGD["momentum"],
        negative_gradient_method="interpolation",
        optimizer="sgd",
        n_neighbors=90,  # diff.fit's default graph
        **RUN,
    )
    ref = np.asarray(tsnejax.fit(key, X, config).embedding)
    np.testing.assert_allclose(Y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_vmap_over_four_hyperparameter_sets_equals_separate_calls(X):
    key = jax.random.key(0)
    # Every hyperparameter given, as the finite-difference test gives them: the separate calls
    # then reuse that test's compiled run.
    sets = {
        **{k: jnp.full(4, v, jnp.float32) for k, v in SGD.items()},
        "learning_rate": jnp.array([20.0, 40.0, 60.0, 80.0]),
        "exaggeration": jnp.array([1.0, 1.5, 2.0, 4.0]),
        "perplexity": jnp.array([10.0, 20.0, 30.0, 15.0]),
    }

    def run(h):
        return diff.fit(X, h, key=key, method="interpolation", optimizer="sgd", **RUN)

    Ys, kls = jax.vmap(run)(sets)
    for i in range(4):
        Y, kl = run({k: v[i] for k, v in sets.items()})
        np.testing.assert_allclose(Ys[i], Y, rtol=1e-4, atol=1e-4)
        assert float(kls[i]) == pytest.approx(float(kl), rel=1e-5)
    # and jax.grad of the vmapped sum: one hypergradient per set
    g = jax.grad(lambda h: jnp.sum(jax.vmap(run)(h)[1]))(sets)
    assert g["learning_rate"].shape == (4,) and np.isfinite(g["learning_rate"]).all()
    # A traced value a concrete one is refused for is NaN (value and gradient), not the finite
    # KL each gave: a perplexity beyond the 90-neighbour graph (a saturated calibration), a
    # negative learning rate, a momentum of 1. The valid trial is untouched.
    beyond = {
        **sets,
        "learning_rate": sets["learning_rate"].at[1].set(-20.0),
        "perplexity": sets["perplexity"].at[2].set(95.0),
        "momentum": sets["momentum"].at[3].set(1.0),
    }
    Yb, klb = jax.vmap(run)(beyond)
    assert np.isnan(np.asarray(klb[1:])).all() and np.isnan(np.asarray(Yb[1:])).all()
    assert float(klb[0]) == float(kls[0])
    gb = jax.grad(lambda h: jnp.sum(jax.vmap(run)(h)[1][:1]))(beyond)
    assert all(np.isfinite(g[0]) for g in gb.values())
    # The beyond-range trial's hypergradient is NaN (the same compiled programs as above).
    g2 = jax.grad(lambda h: jnp.sum(jax.vmap(run)(h)[1][2:3]))(beyond)
    assert np.isnan(float(g2["perplexity"][2]))


def test_differentiable_p_equals_tsnejax_p_and_its_implicit_derivative(X):
    knn = exact_knn(X, 60)
    prep = diff.prepare(X, key=jax.random.key(0), n_neighbors=60)
    # Jitted, as diff.fit runs them: op by op a cold cache compiled ~70 programs here.
    ours = jax.jit(diff.perplexity_affinities)(prep.distances, prep.layout, 15.0)
    ref = perplexity_affinities(knn, 15.0)
    np.testing.assert_allclose(ours.weights, ref.weights, rtol=1e-4, atol=1e-9)
    # d beta / d perplexity by the implicit function theorem vs re-calibrating at u +- h
    d2 = jnp.square(prep.distances)
    d2 = d2 - d2.min(axis=1, keepdims=True)
    grad = jax.jit(jax.jacfwd(lambda u: diff.precisions(d2, u)))(15.0)
    h = 0.05
    beta = jax.jit(lambda u: calibrate_perplexity(d2, u)[1])
    fd = (beta(15.0 + h) - beta(15.0 - h)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=0.02, atol=1e-6)


def test_the_metric_reaches_the_differentiable_p(X):
    """diff.fit(metric=...) calibrates on that metric's graph (it searched Euclidean only)."""
    from tsnejax.config import TSNEConfig
    from tsnejax.pipeline import prepare as pipeline_prepare

    key = jax.random.key(0)
    prep = diff.prepare(X, key=key, n_neighbors=60, metric="cosine")
    ours = jax.jit(diff.perplexity_affinities)(prep.distances, prep.layout, 15.0)
    config = TSNEConfig.make(metric="cosine", perplexity=15.0, n_neighbors=60)
    ref = pipeline_prepare(key, X, config).P
    np.testing.assert_allclose(ours.weights, ref.weights, rtol=1e-4, atol=1e-9)
    euclidean = diff.prepare(X, key=key, n_neighbors=60)
    assert (np.asarray(euclidean.indices) != np.asarray(prep.indices)).any()
    Y, kl = diff.fit(X, {"perplexity": 15.0}, key=key, metric="cosine", n_neighbors=60, **RUN)
    assert (
        np.isfinite(float(kl))
        and jax.grad(
            lambda p: diff.fit(
                X, {"perplexity": p}, key=key, metric="cosine", n_neighbors=60, **RUN
            )[1]
        )(15.0)
        != 0
    )


def test_jit_of_the_whole_fit_and_tracers_pass_the_checks(X):
    key = jax.random.key(0)
    diff.clear_cache()  # the kNN search and grid sizing then run inside the jit trace
    f = jax.jit(
        lambda lr: diff.fit(X, {"learning_rate": lr}, key=key, method="interpolation", **RUN)[1]
    )
    eager = diff.fit(X, {"learning_rate": 40.0}, key=key, method="interpolation", **RUN)[1]
    assert float(f(40.0)) == pytest.approx(float(eager), rel=1e-5)


def test_bad_input_is_named(X):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"unknown name\(s\) \['lr'\]"):
        diff.fit(X, {"lr": 1.0}, key=key, **RUN)
    with pytest.raises(
        ValueError, match=r"hyperparams\['perplexity'\]=120 needs more .* at most 90"
    ):
        diff.fit(X, {"perplexity": 120.0}, key=key, **RUN)
    with pytest.raises(
        ValueError, match=r"the default perplexity=30 needs more .* at most 15 \(n_neighbors"
    ):
        diff.fit(X, {}, key=key, n_neighbors=15, **RUN)  # was a saturated P's KL
    with pytest.raises(ValueError, match=r"learning_rate'\]=-1.0 must be finite and positive"):
        diff.fit(X, {"learning_rate": -1.0}, key=key, **RUN)
    with pytest.raises(ValueError, match="must be a scalar"):
        diff.fit(X, {"learning_rate": jnp.ones(3)}, key=key, **RUN)
    # Below 1 the calibration cannot reach the target: the KL was NaN without a word.
    with pytest.raises(ValueError, match=r"hyperparams\['perplexity'\]=0.5 is below 1"):
        diff.fit(X, {"perplexity": 0.5}, key=key, **RUN)
    for bad in (1.2, -0.5):  # both were accepted
        with pytest.raises(ValueError, match=r"hyperparams\['momentum'\]"):
            diff.fit(X, {"momentum": bad}, key=key, **RUN)
    with pytest.raises(ValueError, match="X must be a concrete array"):
        jax.grad(lambda Z: diff.fit(Z, {}, key=key, **RUN)[1])(jnp.asarray(X))
    with pytest.raises(ValueError, match="optimizer='bfgs' is not a valid option"):
        diff.fit(X, {}, key=key, optimizer="bfgs", **RUN)
    with pytest.raises(ValueError, match=r"sets b1 and so does hyperparams\['momentum'\]"):
        diff.fit(X, {"momentum": 0.5}, key=key, optimizer="adam:b1=0.5", **RUN)
    with pytest.raises(ValueError, match=r"optimizer .adam.: b1=2 must be in \[0, 1\)"):
        diff.fit(X, {}, key=key, optimizer="adam:b1=2", **RUN)
    # Each was a JAX or Python error (or, for checkpoint_every=0, the default without a word).
    with pytest.raises(ValueError, match=r"hyperparams\['perplexity'\] must be a number"):
        diff.fit(X, {"perplexity": "10"}, key=key, **RUN)
    with pytest.raises(ValueError, match="hyperparams must be a dict"):
        diff.fit(X, 10.0, key=key, **RUN)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1, got 0"):
        diff.fit(X, {}, key=key, checkpoint_every=0, **RUN)
    # A run that diverges says at which step and why (it returned NaN without a word);
    # under jax.grad/jit/vmap it cannot raise and returns NaN (docs/hypergradients.md).
    with pytest.raises(tsnejax.DivergenceError, match="diverged at iteration 2 .the gradient"):
        diff.fit(X, {"learning_rate": 1e30}, key=key, **RUN)
    with pytest.raises(ValueError, match=r"a spectral start: tsnejax.init.spectral\(P"):
        diff.fit(X, {}, key=key, initialization="spectral", **RUN)
    with pytest.raises(ValueError, match="grid must be hashable"):
        diff.fit(X, {}, key=key, method="interpolation", grid=[1, 2], **RUN)
    # static arguments: an int() error, "unhashable type: 'list'" from the step cache, and
    # "'str' object has no attribute 'n_boxes'" from inside the gradient
    for kw, message in [
        ({"n_iter": None}, "n_iter must be an integer"),
        ({"method": ["exact"]}, "method must be a gradient method's name"),
        ({"optimizer": {"sgd": 1}}, "optimizer must be a registry name or spec"),
        ({"method": "interpolation", "grid": "fine"}, r"allocate returns \(InterpolationGrid\)"),
        ({"method": "interpolation", "grid": ((0, 3),)}, r"allocate returns \(InterpolationGrid\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            diff.fit(X, {}, key=key, **{**RUN, **kw})


def test_an_optax_object_with_injected_hyperparameters(X):
    import optax

    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=40.0, momentum=0.5)
    key = jax.random.key(0)
    a = diff.fit(X, {"learning_rate": 40.0, "momentum": 0.5}, key=key, optimizer=opt, **RUN)
    b = diff.fit(X, {"learning_rate": 40.0, "momentum": 0.5}, key=key, optimizer="sgd", **RUN)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    # The spec form of the same optimizer, as the config and the CLI take it.
    c = diff.fit(X, {}, key=key, optimizer="sgd:learning_rate=40,momentum=0.5", **RUN)
    np.testing.assert_array_equal(b[0], c[0])
    g = jax.grad(lambda lr: diff.fit(X, {"learning_rate": lr}, key=key, optimizer=opt, **RUN)[1])
    assert np.isfinite(float(g(40.0)))


def test_adam_hypergradients_stay_finite_on_a_coordinate_that_never_moves(X):
    # A 2-D start padded with a zero third axis: that axis's gradient is exactly zero at every
    # step, and Adam (elementwise) runs the other two as the 2-D run does, so every
    # hypergradient must equal the 2-D run's. sqrt(v)'s infinite derivative at v = 0 made them
    # all NaN before the registry's Adam got an eps_root in this path.
    Xs, key = X[:200], jax.random.key(0)
    Y2 = 1e-4 * np.asarray(jax.random.normal(jax.random.key(1), (200, 2)), np.float32)
    h0 = {"learning_rate": 0.5, "momentum": 0.8, "perplexity": 15.0, "dof": 1.0}
    h0 = {k: jnp.float32(v) for k, v in h0.items()}
    run = dict(n_iter=20, early_exaggeration_iter=10, optimizer="adam", n_neighbors=60)
    grads = []
    for Y0 in (Y2, np.pad(Y2, ((0, 0), (0, 1)))):
        f = lambda h, Y0=Y0: diff.fit(  # noqa: E731
            Xs, h, key=key, initialization=Y0, n_components=Y0.shape[1], **run
        )[1]
        grads.append(jax.grad(f)(h0))
    for name in h0:
        assert np.isfinite(float(grads[1][name])), name
        assert float(grads[1][name]) == pytest.approx(float(grads[0][name]), rel=1e-4), name


def test_soft_knn_recall_tends_to_nn_precision_and_is_differentiable(X):
    from tsnejax.metrics import nn_precision_recall, soft_knn_recall

    key = jax.random.key(0)
    prep = diff.prepare(X, key=key)
    true = prep.indices[:, :10]
    Y, _ = diff.fit(X, {"learning_rate": 40.0}, key=key, **RUN)
    hard = nn_precision_recall(np.asarray(X, np.float32), Y, 10).precision[-1]
    assert float(soft_knn_recall(Y, true, temperature=1e-4)) == pytest.approx(hard, abs=2e-3)
    soft = [float(soft_knn_recall(Y, true, temperature=t)) for t in (0.03, 0.1, 0.3)]
    assert hard > soft[0] > soft[1] > soft[2] > 0  # smoothing blurs the ball's edge
    with jax.enable_x64(True):
        X64 = np.asarray(X, np.float64)

        def recall(h):
            return soft_knn_recall(diff.fit(X64, h, key=key, **RUN)[0], true)

        h0 = {"learning_rate": jnp.float64(40.0), "perplexity": jnp.float64(20.0)}
        g = jax.grad(recall)(h0)
        for name, v in h0.items():
            eps = 1e-4 * float(v)
            up, down = dict(h0), dict(h0)
            up[name], down[name] = v + eps, v - eps
            fd = (float(recall(up)) - float(recall(down))) / (2 * eps)
            assert float(g[name]) == pytest.approx(fd, rel=0.02), name
    with pytest.raises(ValueError, match="temperature"):
        soft_knn_recall(Y, true, temperature=0.0)
