"""Choosing the perplexity by pBIC (Cao & Wang 2017): the criterion and select_perplexity."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import tsnejax
from tsnejax import perplexity_selection
from tsnejax.metrics import pbic

SHORT = dict(early_exaggeration_iter=37, n_iter=63, negative_gradient_method="exact")


@settings(max_examples=50, deadline=None)
@given(
    kl=st.floats(0.0, 10.0),
    perplexity=st.floats(1.0, 1000.0),
    n=st.integers(2, 10_000_000),
)
def test_pbic_is_cao_and_wangs_formula(kl, perplexity, n):
    value = pbic(kl, perplexity, n)
    assert isinstance(value, float)
    assert value == pytest.approx(2 * kl + np.log(n) * perplexity / n, rel=1e-12)


def test_pbic_on_arrays_under_grad_and_bad_input():
    kl = np.array([0.9, np.nan, 0.7])
    out = pbic(kl, np.array([5.0, 10.0, 30.0]), 1797)
    assert out.shape == (3,) and np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()
    g = jax.grad(lambda k, p: pbic(k, p, 1797), argnums=(0, 1))(jnp.float32(0.8), jnp.float32(30))
    assert float(g[0]) == pytest.approx(2.0) and float(g[1]) == pytest.approx(np.log(1797) / 1797)
    with pytest.raises(ValueError, match="n_points must be >= 2"):
        pbic(0.5, 30.0, 1)
    with pytest.raises(ValueError, match="perplexity must be finite and >= 1"):
        pbic(0.5, 0.5, 100)
    with pytest.raises(ValueError, match="perplexity must be finite and >= 1"):
        pbic(0.5, np.array([30.0, np.nan]), 100)


@pytest.fixture(scope="module")
def X(digits):
    return digits[0][:500]


WARNED: dict[str, list] = {}


@pytest.fixture(scope="module")
def selection(X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = tsnejax.select_perplexity(jax.random.key(7), X, [40.0, 5.0, 15.0], SHORT, kl="exact")
    WARNED["selection"] = [str(w.message) for w in caught]
    return s


def test_select_perplexity_ranks_the_candidates_by_pbic(X, selection):
    s = selection
    assert s.mode == "sequential"  # "auto" on one CPU device
    assert s.perplexities.tolist() == [40.0, 5.0, 15.0]  # in the order given
    # Each candidate's exact KL, under its own P, is the KL its run reported (the exact
    # gradient's): P was sliced and calibrated per candidate, not shared or mispadded.
    np.testing.assert_allclose(s.kl, [r.kl_divergence for r in s.runs], rtol=1e-4)
    np.testing.assert_allclose(s.pbic, 2 * s.kl + np.log(500) * s.perplexities / 500, rtol=1e-9)
    best = int(np.argmin(s.pbic))
    assert s.perplexity == s.perplexities[best] == 15.0
    np.testing.assert_array_equal(s.embedding, s.embeddings[best])
    # A candidate's run is the fit a user gets at that perplexity (same key), bit for bit.
    alone = tsnejax.fit(jax.random.key(7), X, tsnejax.TSNEConfig.make(perplexity=15.0, **SHORT))
    np.testing.assert_array_equal(s.embedding, alone.embedding)
    # A wider P is easier to match (the trend pBIC's penalty balances).
    assert s.kl[0] < s.kl[2] < s.kl[1]
    # Sparse rows are the same data (their count was read as 0: "too large for 0 points").
    sparse = tsnejax.select_perplexity(
        jax.random.key(7), sp.csr_matrix(X), [40.0, 5.0, 15.0], SHORT
    )
    np.testing.assert_array_equal(sparse.embeddings, s.embeddings)
    assert s.table().count("<- least pBIC") == 1 and f"{s.perplexity:10g}" in s.table()
    assert (s.diverged_at == -1).all()
    # A minimum inside the candidates: nothing to warn about (test_a_diverged... has the edge).
    assert WARNED["selection"] == []


def test_a_batch_of_candidates_is_one_program_with_the_same_ranking(X, selection):
    s = tsnejax.select_perplexity(jax.random.key(7), X, [40.0, 5.0, 15.0], SHORT, mode="map")
    assert s.mode == "map" and s.runs.n_compiles == 1 and s.runs.affinities.neighbors.ndim == 3
    # Single fits up to rounding, which early exaggeration amplifies (P padded to the widest).
    np.testing.assert_allclose(s.kl, selection.kl, rtol=2e-3)
    assert s.perplexity == selection.perplexity


def test_a_diverged_candidate_is_left_out(X, selection, monkeypatch):
    real = perplexity_selection.fit

    def best_diverges(key, X, config, **kwargs):
        if config.affinities.perplexity == selection.perplexity:
            raise tsnejax.DivergenceError("diverged", 50, real(key, X, config, **kwargs).state)
        return real(key, X, config, **kwargs)

    monkeypatch.setattr(perplexity_selection, "fit", best_diverges)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = tsnejax.select_perplexity(jax.random.key(7), X, [40.0, 5.0, 15.0], SHORT)
    assert np.isnan(s.pbic[2]) and s.diverged_at.tolist() == [-1, -1, 50] and s.runs[2] is None
    assert s.perplexity == s.perplexities[np.nanargmin(s.pbic)] == 40.0
    # Of the two left, the least pBIC is the larger: the minimum may lie beyond it.
    assert [str(w.message) for w in caught] == [
        "perplexities [15.0] diverged and are left out of the choice.",
        "the least pBIC is at the largest candidate, perplexity=40; the minimum may lie beyond "
        "it: add larger perplexities to the candidates.",
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(perplexities=[5.0, 5.0]), "repeated values"),
        (dict(perplexities=[5.0, 600.0]), "perplexity=600 is too large for 500 points"),
        (
            dict(perplexities=[5.0, 40.0], config=dict(n_neighbors=25)),
            r"perplexity=40 needs more neighbours than the kNN graph has \(k=25\)",
        ),
        (dict(perplexities=[]), "empty list"),
        (dict(kl="approx"), "kl='approx' is not a valid option"),
        (dict(config=dict(affinity_method="uniform")), "affinity method 'uniform'"),
        (dict(mode="parallel"), "mode='parallel' is not a valid option"),
    ],
)
def test_select_perplexity_names_bad_input(X, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tsnejax.select_perplexity(jax.random.key(0), X, **kwargs)


def test_default_candidates_fit_the_data(digits):
    assert perplexity_selection._candidates(None, 1797) == perplexity_selection.DEFAULT_PERPLEXITIES
    assert perplexity_selection._candidates(None, 100) == (5.0, 10.0, 20.0, 30.0)
    # An explicit graph width leaves out the defaults above it (30 on 25 neighbours was an
    # error asking to lower a perplexity the user had not given).
    assert perplexity_selection._candidates(
        None, 1797, tsnejax.TSNEConfig.make(n_neighbors=25)
    ) == (5.0, 10.0, 20.0)
    with pytest.raises(ValueError, match=r"perplexity <= n_neighbors = 7 leaves \[5.0\]"):
        perplexity_selection._candidates(None, 1797, tsnejax.TSNEConfig.make(n_neighbors=7))
    with pytest.raises(ValueError, match="too few to compare perplexities"):
        tsnejax.select_perplexity(jax.random.key(0), digits[0][:20])


def test_every_candidate_diverging_is_an_error(X):
    with pytest.raises(ValueError, match="every candidate's run diverged"):
        tsnejax.select_perplexity(
            jax.random.key(7), X, [5.0, 15.0], {**SHORT, "learning_rate": 1e12}
        )


def test_estimator_and_cli_choose_the_perplexity_by_pbic(X, tmp_path):
    import json
    import pickle

    from tsnejax import TSNE
    from tsnejax.cli import main

    short = dict(early_exaggeration_iter=37, n_iter=63, negative_gradient_method="exact")
    est = TSNE(perplexity="pbic", random_state=7, **short).fit(X)
    sel = tsnejax.select_perplexity(jax.random.key(7), X, config=short)
    assert est.pbic_ == dict(zip(sel.perplexities.tolist(), sel.pbic.tolist(), strict=True))
    assert est.perplexity_ == sel.perplexity == est.config_.affinities.perplexity
    # The fit is the chosen candidate's run: a plain fit at that perplexity, same key.
    plain = TSNE(perplexity=sel.perplexity, random_state=7, **short).fit(X)
    np.testing.assert_array_equal(est.embedding_, plain.embedding_)
    assert est.timings_["select_perplexity"] > est.timings_["optimize"]  # the run reused
    # With a callback to call, the chosen perplexity's fit runs again (and calls it).
    calls = []
    refit = TSNE(perplexity="pbic", random_state=7, **short).fit(
        X, callbacks=lambda it, kl, Y: calls.append(it)
    )
    assert calls and "select_perplexity" not in refit.timings_
    np.testing.assert_array_equal(refit.embedding_, est.embedding_)
    best = int(np.argmin(sel.pbic))
    assert est.kl_divergence_ == pytest.approx(sel.kl[best], rel=1e-3)
    again = pickle.loads(pickle.dumps(est))
    assert again.pbic_ == est.pbic_ and again.perplexity == "pbic"
    assert plain.pbic_ is None  # a number: no selection
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "o"
    args = ["--early-exaggeration-iter", "37", "--n-iter", "63", "--method", "exact"]
    assert main(["embed", "--input", str(tmp_path / "X.npy"), "--out", str(out), *args,
                 "--perplexity", "pbic", "--seed", "7"]) == 0  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    assert m["perplexity_selection"]["perplexity"] == m["config"]["perplexity"] == sel.perplexity
    np.testing.assert_allclose(m["perplexity_selection"]["pbic"], sel.pbic, rtol=1e-6)
    np.testing.assert_array_equal(np.load(out / "embedding.npy"), est.embedding_)


@pytest.mark.parametrize(
    "perplexity, fit_kwargs, message",
    [
        ("auto", {}, "perplexity='auto' is not a number, a list of numbers or 'pbic'"),
        ("pbic", {"affinities": "P"}, r"needs X and no \['affinities'\]"),
        ("pbic", {"mesh": "points"}, r"needs X and no \['mesh'\]"),
    ],
)
def test_estimator_names_a_bad_perplexity(X, perplexity, fit_kwargs, message):
    from tsnejax import TSNE

    mesh = None
    if "affinities" in fit_kwargs:
        knn = tsnejax.nearest_neighbors(X, k=30)
        fit_kwargs = {"affinities": tsnejax.perplexity_affinities(knn, 10.0)}
    elif "mesh" in fit_kwargs:
        mesh, fit_kwargs = jax.make_mesh((1,), ("points",)), {}
    with pytest.raises(ValueError, match=message):
        TSNE(perplexity=perplexity, mesh=mesh).fit(X, **fit_kwargs)


def test_cli_names_a_bad_perplexity(tmp_path, capsys):
    from tsnejax.cli import main

    assert main(["embed", "--out", str(tmp_path / "o"), "--perplexity", "5", "pbic"]) == 1
    assert "give numbers, or 'pbic' alone" in capsys.readouterr().err


def test_candidates_take_a_stopping_rule_singly_and_as_a_batch(X):
    config = {**SHORT, "early_exaggeration_iter": 250, "n_iter": 500, "stopping": "optsne"}
    with pytest.warns(UserWarning, match="the least pBIC is at the largest candidate"):
        s = tsnejax.select_perplexity(jax.random.key(7), X, [5.0, 15.0], config)
    assert s.mode == "sequential"
    alone = tsnejax.fit(jax.random.key(7), X, tsnejax.TSNEConfig.make(perplexity=15.0, **config))
    np.testing.assert_array_equal(s.embeddings[1], alone.embedding)
    assert s.runs[1].total_iter == alone.total_iter < 750  # opt-SNE's rule ended the run early
    # One batch (it was refused): each candidate still ends where its rule says.
    with pytest.warns(UserWarning, match="the least pBIC is at the largest candidate"):
        b = tsnejax.select_perplexity(jax.random.key(7), X, [5.0, 15.0], config, mode="map")
    assert b.runs.trial_iter.tolist() == [r.total_iter for r in s.runs]
    assert b.runs.early_exaggeration_iter.tolist() == [r.early_exaggeration_iter for r in s.runs]
    np.testing.assert_allclose(b.kl, s.kl, rtol=1e-2)
