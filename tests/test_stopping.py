"""Stopping rules (tsnejax.stopping): scikit-learn's and opt-SNE's, any rule set, in batches."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tsnejax
from tsnejax import TSNE, TSNEConfig, fit
from tsnejax.affinity import perplexity_affinities
from tsnejax.gradients import exact_backend
from tsnejax.init import pca
from tsnejax.knn import exact_knn
from tsnejax.optim import make_optimizer
from tsnejax.run import build_step, init_state, optimize
from tsnejax.schedules import Phases
from tsnejax.stopping import SklearnStopping


@pytest.fixture(scope="module")
def small(digits):
    X = digits[0][:300]
    P = perplexity_affinities(exact_knn(X, 45), 15.0)
    opt = make_optimizer("classic", learning_rate=1.0, momentum=0.8)
    n = len(X)
    phases = Phases.of(
        {
            0: {"exaggeration": 12.0, "learning_rate": n / 12.0, "momentum": 0.8},
            50: {"exaggeration": 1.0, "learning_rate": float(n)},
        }
    )
    return X, P, build_step(exact_backend(), opt), opt, phases


def test_sklearn_rule_stops_where_scikit_learn_does(digits):
    """Same threshold, same stops: scikit-learn's TSNE (Barnes-Hut, PCA init) and preset
    "sklearn" end early exaggeration at the same check and the run within one check."""
    from sklearn.manifold import TSNE as SKTSNE

    X, _ = digits
    ref = SKTSNE(random_state=0, init="pca", min_grad_norm=1e-2).fit(X)
    ours = TSNE(random_state=0, preset="sklearn", min_grad_norm=1e-2).fit(X)
    assert ours.config_.schedule.stopping == "sklearn"
    assert ours.early_exaggeration_iter_ < 250  # it stopped early exaggeration...
    assert ours.n_iter_ < 1000  # ...and the run (scikit-learn: at 100 and 400)
    assert abs(ours.n_iter_ - (ref.n_iter_ + 1)) <= 50  # its n_iter_ is the last index
    # scikit-learn's grad_norm is of gains x gradient: the raw gradient's norm (below 1e-2
    # from iteration ~100 of the main phase) would stop far earlier.
    assert ours.n_iter_ > ours.early_exaggeration_iter_ + 100


def test_sklearn_check_semantics():
    check = SklearnStopping(min_grad_norm=1e-3, n_iter_without_progress=100).check("main")
    said = [bool(check(t, kl, 1.0)) for t, kl in [(300, 2.0), (350, 1.9), (400, 1.95)]]
    said += [bool(check(t, 1.95, 1.0)) for t in (450,)]  # 100 after the best: not yet
    assert said == [False, False, False, False]
    assert check(500, 1.95, 1.0)  # 150 > 100 iterations without progress
    assert SklearnStopping().check("main")(50, 1.0, 1e-8)  # gradient norm below 1e-7
    # Early exaggeration: no patience (scikit-learn's equals the phase length there).
    early = SklearnStopping(n_iter_without_progress=1).check("early")
    assert not any(bool(early(t, 5.0, 1.0)) for t in (50, 100, 150, 200))
    # One decision per trial.
    batch = SklearnStopping(min_grad_norm=0.5).check("main")
    np.testing.assert_array_equal(batch(50, np.array([1.0, 1.0]), np.array([1.0, 0.1])), [0, 1])


def _sklearn_loop(kls, norms, min_grad_norm, patience, every=50):
    """scikit-learn's _gradient_descent checks, transcribed: the index where it breaks."""
    best_error, best_iter = np.finfo(float).max, 0
    for c, (error, grad_norm) in enumerate(zip(kls, norms, strict=True)):
        i = (c + 1) * every - 1  # its iteration index at the c-th check
        if error < best_error:
            best_error, best_iter = error, i
        elif i - best_iter > patience:
            return c
        if grad_norm <= min_grad_norm:
            return c
    return None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0.1, 3.0), st.floats(1e-4, 1.0)), min_size=1, max_size=25
    ),  # (KL, gradient norm) at each check
    st.sampled_from([1e-3, 1e-2, 0.1]),
    st.sampled_from([50, 100, 300]),
)
def test_sklearn_check_stops_where_scikit_learns_loop_does(checks, min_grad_norm, patience):
    kls, norms = zip(*checks, strict=True)
    rule = SklearnStopping(min_grad_norm, patience).check("main")
    ours = next((c for c, (k, g) in enumerate(checks) if rule(50 * (c + 1), k, g)), None)
    assert ours == _sklearn_loop(kls, norms, min_grad_norm, patience)
    # Per trial in a batch: the same decisions, each trial its own state.
    batch = SklearnStopping(min_grad_norm, patience).check("main")
    rev = [(k, g) for k, g in reversed(checks)]
    said = [batch(50 * (c + 1), np.array([a[0], b[0]]), np.array([a[1], b[1]]))
            for c, (a, b) in enumerate(zip(checks, rev, strict=True))]  # fmt: skip
    first = [next((c for c, s in enumerate(said) if s[t]), None) for t in (0, 1)]
    assert first == [ours, _sklearn_loop(*zip(*rev, strict=True), min_grad_norm, patience)]


def test_a_stop_check_freezes_each_trial_of_a_batch(small):
    X, P, step, opt, phases = small
    Y0 = pca(X)

    def stop(t, kl, norm):  # trial 0 at iteration 80, trial 1 never
        return np.array([t >= 80, False])

    batch = optimize(
        step, init_state(jnp.stack([Y0, Y0]), opt), P, 150, phases=Phases.stack([phases] * 2),
        stop=stop, stop_every=40, batch="map",
    )  # fmt: skip
    np.testing.assert_array_equal(batch.stop_rule_at, [80, -1])
    # A frozen trial runs no more steps (batch="map"): nothing is recorded for it after 80.
    norms = np.asarray(batch.records)
    assert (norms[0, 80:] == 0).all() and (norms[0, :80] > 0).all() and (norms[1] > 0).all()
    assert not batch.stopped_early and (batch.diverged_at == -1).all()
    np.testing.assert_array_equal(np.asarray(batch.state.iteration), [80, 150])
    for b, n_iter in ((0, 80), (1, 150)):
        single = optimize(step, init_state(Y0, opt), P, n_iter, phases=phases)
        np.testing.assert_array_equal(
            np.asarray(batch.state.embedding[b]), np.asarray(single.state.embedding)
        )
    # A single run ends where its check says, and says where.
    one = optimize(step, init_state(Y0, opt), P, 150, phases=phases, stop=lambda t, k, g: t >= 60)
    assert one.stopped_early and one.stop_rule_at == 100  # checks at chunk_size (50) by default
    assert int(one.state.iteration) == 100
    with pytest.raises(ValueError, match="stop_every must be >= 1"):
        optimize(step, init_state(Y0, opt), P, 10, phases=phases, stop=stop, stop_every=0)


def test_the_check_sees_the_kl_and_gains_times_gradient(small):
    X, P, step, opt, phases = small
    seen = []
    norms = lambda state, info: (info.grad_norm, info.gained_norm)  # noqa: E731
    res = optimize(
        step, init_state(pca(X), opt), P, 100, phases=phases, record=norms,
        stop=lambda t, kl, g: seen.append((t, kl, g)), stop_every=25,
    )  # fmt: skip
    assert [t for t, _, _ in seen] == [25, 50, 75, 100]
    history = dict(res.kl_history)
    raw, gained = (np.asarray(r) for r in res.records)
    for t, kl, g in seen:
        assert kl == history[t]
        assert g == pytest.approx(float(gained[t - 1]))
    assert not np.allclose(raw, gained)  # the gains grew


@dataclasses.dataclass(frozen=True)
class KLBelow:
    """A user's rule set: early exaggeration ends at once, the main phase below a KL."""

    kl: float
    every: int = 10
    keeps_total: bool = True

    def check(self, phase):
        if phase == "early":
            return lambda t, kl, g: True
        return lambda t, kl, g: kl < self.kl


def test_any_rule_set_is_a_stopping(digits, key):
    X = digits[0][:400]
    cfg = TSNEConfig.make(stopping=KLBelow(0.37), early_exaggeration_iter=100, n_iter=600)
    seen = []
    res = fit(key, X, cfg, callbacks=lambda t, kl, Y: seen.append(t), callbacks_every=35)
    assert res.early_exaggeration_iter == 10
    assert res.kl_history[-1][1] < 0.37 and res.total_iter < 700
    assert res.kl_history[-2][1] >= 0.37
    assert seen[:3] == [35, 70, 105]  # the user's interval, not the rule's
    est = TSNE(stopping=KLBelow(0.37), random_state=0, early_exaggeration_iter=100).fit(X)
    assert est.early_exaggeration_iter_ == 10
    with pytest.raises(ValueError, match="stopping must be one of .* or a rule set"):
        TSNEConfig.make(stopping=object())
    with pytest.raises(ValueError, match="'fixed', 'optsne', 'sklearn'"):
        TSNEConfig.make(stopping="sklearn-ish")


def test_stopping_settings_need_their_rule(digits, key):
    with pytest.raises(ValueError, match="min_grad_norm=0.001 applies with stopping='sklearn'"):
        TSNEConfig.make(min_grad_norm=1e-3)
    with pytest.raises(ValueError, match="optsne_tol=0.001 applies with stopping='optsne'"):
        TSNEConfig.make(optsne_tol=1e-3, stopping="sklearn")
    assert TSNEConfig.make(stopping="sklearn", n_iter_without_progress=50)
    # The estimator's scikit-learn parameters turn the rule on; with another rule, an error.
    cfg = TSNE(n_iter_without_progress=50)._config()
    assert (cfg.schedule.stopping, cfg.schedule.n_iter_without_progress) == ("sklearn", 50)
    with pytest.raises(ValueError, match="min_grad_norm is scikit-learn's stopping rule"):
        TSNE(min_grad_norm=1e-3, stopping="optsne")._config()


def test_a_batch_under_stopping_rules_is_each_trials_own_fit(digits, key):
    """fit_batch takes rules (it refused them): one program in which each trial switches
    phase and ends where its own fit does, also mixed with the fixed schedule and with other
    iteration counts, an early phase not a multiple of the rule's interval included."""
    X = digits[0][:400]
    base = dict(negative_gradient_method="exact", early_exaggeration_iter=250, n_iter=500)
    configs = [
        TSNEConfig.make(stopping="optsne", **base),
        TSNEConfig.make(stopping="optsne", **{**base, "learning_rate": 100.0}),
        TSNEConfig.make(stopping="sklearn", min_grad_norm=3e-3, n_iter_without_progress=50, **base),
        TSNEConfig.make(**{**base, "early_exaggeration_iter": 100, "n_iter": 130}),
        TSNEConfig.make(
            stopping="optsne", **{**base, "early_exaggeration_iter": 45, "n_iter": 333}
        ),
    ]
    singles = [fit(key, X, c) for c in configs]
    # A main phase of no iterations ends where the rule ends early exaggeration (it ran on to
    # the next check of another trial's rule).
    configs.append(TSNEConfig.make(stopping="optsne", **{**base, "n_iter": 0}))
    singles.append(fit(key, X, configs[-1]))
    diverging = TSNEConfig.make(stopping="optsne", **{**base, "learning_rate": 1e12})
    res = tsnejax.fit_batch([key] * 7, X, [*configs, diverging], batch="map")
    assert res.diverged_at[6] > 0 and (res.diverged_at[:6] == -1).all()  # the others go on
    ended = [s.early_exaggeration_iter for s in singles]
    assert res.early_exaggeration_iter[:6].tolist() == ended
    assert res.trial_iter[:6].tolist() == [s.total_iter for s in singles]
    assert singles[5].total_iter == ended[5] < 250
    assert max(ended[:3]) < 250 and ended[4] == 45  # rules fired; the last one's cap did
    assert len(set(res.trial_iter[:6].tolist())) >= 4
    assert res.stop_rule_at[3] == -1 and (res.stop_rule_at[[0, 1, 2]] > 0).all()
    assert res.total_iter == 750 and res.n_compiles <= 2
    for b, single in enumerate(singles):
        np.testing.assert_array_equal(res.embeddings[b], single.embedding)
        assert res.phases.tables[b] == single.phases
        assert res.kl_divergence[b] == pytest.approx(single.kl_divergence, rel=1e-6)


def test_a_batch_of_other_lengths_ends_each_trial_at_its_own(digits, key):
    """Configs differing only in n_iter (same phase starts) all ran the first one's length
    without a word; each now ends at its own."""
    X = digits[0][:300]
    configs = [TSNEConfig.make(negative_gradient_method="exact", n_iter=n) for n in (100, 300)]
    res = tsnejax.fit_batch([key, key], X, configs)
    assert res.trial_iter.tolist() == [350, 550] and res.total_iter == 550
    for b, c in enumerate(configs):
        np.testing.assert_array_equal(res.embeddings[b], fit(key, X, c).embedding)


@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_a_sweep_over_stopping_rules_records_where_each_ended(tmp_path, mode):
    """A grid over rule sets (names and objects), each trial its own fit or all one batch,
    and the results say where a rule ended early exaggeration; a rule object's label is its
    fields (config_json failed on it: 'KLBelow' object is not iterable)."""
    from tsnejax.sweep import load_data, read_table, run_sweep, spec_from_dict
    from tsnejax.sweep.spec import config_json, expand_trials

    spec = spec_from_dict(
        {
            "name": "rules",
            "data": {"name": "digits", "n_points": 400},
            "fixed": {"n_iter": 200, "early_exaggeration_iter": 100},
            "grid": {"stopping": {"fixed": "fixed", "optsne": "optsne", "kl": KLBelow(0.37)}},
            "run": {"metrics": ["kl"]},
        }
    )
    summary = run_sweep(spec, tmp_path / "out", mode=mode)
    assert summary.mode == mode
    rows = {r["stopping"]: r for r in read_table(tmp_path / "out" / "results.csv")}
    data = load_data(spec.data)
    for t in expand_trials(spec, len(data.X), data.digest):
        ref = fit(jax.random.key(t.seed), data.X, t.config)
        label = {"fixed": "fixed", "optsne": "optsne"}.get(t.config.schedule.stopping, "kl")
        row = rows[label]
        assert int(row["n_iter"]) == ref.total_iter and float(row["kl"]) == ref.kl_divergence
        ended = row.get("early_exaggeration_iter")
        assert (
            (ended in ("", None)) if label == "fixed" else int(ended) == ref.early_exaggeration_iter
        )
    assert int(rows["kl"]["early_exaggeration_iter"]) == 10
    assert config_json(TSNEConfig.make(stopping=KLBelow(0.37)))["stopping"] == repr(KLBelow(0.37))
