"""TSNEResult.optimize (openTSNE's TSNEEmbedding.optimize): going on from a finished run with
the same or new values; the result before it is left as it was."""

import jax
import numpy as np
import optax
import pytest

import tsnejax
from tsnejax import run
from tsnejax.schedules import Phases


@pytest.fixture(scope="module")
def X(digits):
    return digits[0][:500]


@pytest.mark.parametrize("method", ["exact", "interpolation"])
def test_going_on_equals_the_longer_run(X, method):
    """fit(n_iter=100) then .optimize(150) is fit(n_iter=250), bit for bit: embedding, KL
    history, gradient norms."""
    cfg = tsnejax.TSNEConfig.make(
        n_iter=100, early_exaggeration_iter=100, negative_gradient_method=method
    )
    key = jax.random.key(0)
    first = tsnejax.fit(key, X, cfg)
    before = first.embedding.copy()
    more = first.optimize(150)
    longer = tsnejax.fit(key, X, cfg.replace(n_iter=250))
    assert more.total_iter == 350 and more.config == first.config
    # the step is the run's own: a program compiles only for a grid the run had not used
    assert more.n_compiles == len([g for g in more.grids if g not in first.grids])
    np.testing.assert_array_equal(more.embedding, longer.embedding)
    assert more.kl_history == longer.kl_history and more.kl_divergence == longer.kl_divergence
    np.testing.assert_array_equal(more.records, longer.records)
    assert more.phases.at(349) == longer.phases.at(349)
    # the first result is untouched (openTSNE's inplace=False)
    assert first.total_iter == 200 and len(first.records) == 200
    np.testing.assert_array_equal(first.embedding, before)


def test_new_values_replace_the_last_phases(X):
    """An exaggeration under learning_rate="auto" takes openTSNE's n / exaggeration; values
    given are the phase the run goes on with (equal to the loop given that phase)."""
    cfg = tsnejax.TSNEConfig.make(
        n_iter=100, early_exaggeration_iter=100, negative_gradient_method="exact"
    )
    first = tsnejax.fit(jax.random.key(0), X, cfg)
    ex = first.optimize(60, exaggeration=4.0)
    assert ex.phases.starts[-1] == 200 and ex.phases.at(200) == {
        "exaggeration": 4.0,
        "dof": 1.0,
        "learning_rate": 500 / 4,
        "momentum": 0.8,
    }
    phase = Phases.of(exaggeration=4.0, learning_rate=125.0, momentum=0.8, dof=1.0)
    by_hand = run.optimize(first.stepper, first.state, first.affinities, 60, phases=phase)
    np.testing.assert_array_equal(ex.embedding, np.asarray(by_hand.state.embedding))
    # a rate expression, momentum and dof (a new dof is compiled in: one program)
    heavy = ex.optimize(20, learning_rate="N/12", momentum=0.5, dof=0.5)
    assert heavy.phases.at(260) == {
        "exaggeration": 4.0,
        "dof": 0.5,
        "learning_rate": 500 / 12,
        "momentum": 0.5,
    }
    assert heavy.total_iter == 280 and heavy.n_compiles == 1
    assert [t for t, _ in heavy.kl_history][-2:] == [260, 280]
    # a fixed rate in the config stays fixed under a new exaggeration
    fixed = tsnejax.fit(jax.random.key(0), X, cfg.replace(learning_rate=200.0))
    assert fixed.optimize(10, exaggeration=4.0).phases.at(200)["learning_rate"] == 200.0
    # standing inside an exaggeration decay, "auto" needs the exaggeration to go on with
    decay = cfg.replace(n_iter=20, exaggeration_decay="linear", exaggeration_decay_iter=100)
    decaying = tsnejax.fit(jax.random.key(0), X, decay)
    with pytest.raises(ValueError, match="exaggeration is a schedule where it stands"):
        decaying.optimize(10, learning_rate="auto")
    assert decaying.optimize(10, learning_rate="auto", exaggeration=2.0).phases.at(120) == {
        "exaggeration": 2.0,
        "dof": 1.0,
        "learning_rate": 250.0,
        "momentum": 0.8,
    }
    with pytest.raises(ValueError, match="n_iter must be >= 0"):
        first.optimize(-1)
    with pytest.raises(ValueError, match=r"\['bogus'\] not in the optimizer state"):
        first.optimize(10, bogus=1.0)
    # a setting the step was built with is named (it was Python's TypeError or "could not
    # convert string to float" from inside the loop); an injected value is checked as a phase's
    for values, message in [
        ({"optimizer": optax.adam(1.0)}, r"\['optimizer'\] are fixed when the run's step"),
        ({"negative_gradient_method": "exact"}, r"\['negative_gradient_method'\] are fixed"),
        ({"min_gain": "high"}, "phase value min_gain='high' must be a number"),
        ({"min_gain": float("inf")}, "phase value min_gain=inf must be finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            first.optimize(10, **values)
    # values a config refuses are refused here too, before anything runs (a negative
    # exaggeration or rate, a momentum of 1.5 ran; dof 0 and NaN diverged)
    bad = [
        ("exaggeration", -1.0, "exaggeration must be finite and > 0"),
        ("exaggeration", float("nan"), "exaggeration must be finite and > 0"),
        ("learning_rate", -5.0, "learning_rate must be finite and > 0"),
        ("learning_rate", "N/0", "must give a rate > 0"),
        ("momentum", 1.5, r"a momentum must be in \[0, 1\)"),
        ("dof", 0.0, "dof must be finite and > 0"),
        ("learning_rate", [1.0, 2.0], "learning_rate must be a real number"),
    ]
    for name, value, message in bad:
        with pytest.raises(ValueError, match=message):
            first.optimize(10, **{name: value})


def test_an_optax_objects_run_goes_on_with_its_own_rate(X):
    cfg = tsnejax.TSNEConfig.make(
        n_iter=30,
        early_exaggeration_iter=30,
        optimizer=optax.adam(1.0),
        negative_gradient_method="exact",
    )
    first = tsnejax.fit(jax.random.key(0), X, cfg)
    with pytest.raises(ValueError, match="an Optax object's learning rate is its own"):
        first.optimize(10, learning_rate="auto")
    more = first.optimize(20, exaggeration=3.0)
    assert more.total_iter == 80 and more.phases.at(60)["exaggeration"] == 3.0
    # a record of one's own: this call's steps only
    own = first.optimize(5, record=lambda state, info: state.iteration)
    np.testing.assert_array_equal(own.records, np.arange(61, 66))


def test_a_batch_goes_on_as_the_longer_batch_and_per_trial_values(X):
    """BatchResult.optimize: every finite trial goes on (a diverged one stays frozen), equal to
    the longer batch bit for bit; values per trial equal each trial's own continuation."""
    cfg = tsnejax.TSNEConfig.make(
        n_iter=100, early_exaggeration_iter=100, negative_gradient_method="exact"
    )
    keys = list(jax.random.split(jax.random.key(0), 4))
    rates = (100.0, "auto", "N/12", 1e12)  # the last one diverges
    configs = [cfg.replace(learning_rate=lr) for lr in rates]
    first = tsnejax.fit_batch(keys, X, configs, batch="map")
    more = first.optimize(100)
    longer = tsnejax.fit_batch(keys, X, [c.replace(n_iter=200) for c in configs], batch="map")
    np.testing.assert_array_equal(more.embeddings, longer.embeddings)
    np.testing.assert_array_equal(more.records, longer.records)
    np.testing.assert_array_equal(more.kl_divergence, longer.kl_divergence)
    assert more.trial_iter.tolist() == [300, 300, 300, first.trial_iter[3]]
    assert more.diverged_at.tolist() == longer.diverged_at.tolist() and more.n_compiles == 0
    assert [t for t, _ in more.kl_history] == [t for t, _ in longer.kl_history]
    # one exaggeration per trial; the "auto" rate follows it, fixed rates stay
    ex = first.optimize(40, exaggeration=[1.0, 2.0, 4.0, 4.0])
    assert ex.phases.at(200)["learning_rate"][:3].tolist() == [100.0, 250.0, 500 / 12]
    for i, e in enumerate((1.0, 2.0, 4.0)):
        own = tsnejax.fit(keys[i], X, configs[i]).optimize(40, exaggeration=e)
        np.testing.assert_array_equal(ex.embeddings[i], own.embedding)
    with pytest.raises(ValueError, match="exaggeration has 2 values for 4 trials"):
        first.optimize(10, exaggeration=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"\['perplexity'\] are fixed when the run's step"):
        first.optimize(10, perplexity=50.0)
    # trials that ended apart do not go on together
    apart = tsnejax.fit_batch(keys[:2], X, [cfg, cfg.replace(n_iter=50)], batch="map")
    with pytest.raises(ValueError, match=r"stand at iterations \[200, 150\]"):
        apart.optimize(10)
