"""TSNE as a scikit-learn estimator: clone, pipelines, grid search, pickling, the estimator
checks (issue #20)."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from tsnejax import TSNE, trustworthiness_scorer
from tsnejax.metrics import trustworthiness

SHORT = dict(early_exaggeration_iter=25, n_iter=50, random_state=0)

#: scikit-learn checks a t-SNE cannot pass, with the reason (also in docs/estimator.md).
EXPECTED_FAILED = {
    "check_transformer_general": (
        "fit_transform(X) returns the optimised embedding; fit(X).transform(X) places the "
        "points of X anew into it (openTSNE's transform), so the two differ by design"
    ),
    "check_transformer_data_not_an_array": "the same fit_transform vs transform comparison",
}


@pytest.fixture(scope="module")
def fitted(digits):
    X = digits[0][:400]
    return TSNE(**SHORT).fit(X), X


def test_pickle_and_joblib_round_trip_then_transform(fitted, tmp_path):
    est, X = fitted
    before = est.transform(X[:25])
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.embedding_, est.embedding_)
    np.testing.assert_array_equal(loaded.transform(X[:25]), before)
    joblib.dump(est, tmp_path / "tsne.joblib")
    again = joblib.load(tmp_path / "tsne.joblib")
    np.testing.assert_array_equal(again.transform(X[:25]), before)
    # The compiled step is rebuilt on demand and continues the run.
    from tsnejax.run import optimize

    res = optimize(again.stepper_, again.state_, again.affinities_, 10)
    assert np.isfinite(np.asarray(res.state.embedding)).all()


def test_pickling_is_refused_clearly_for_an_unpicklable_optax_object(digits):
    import optax

    est = TSNE(optimizer=optax.chain(optax.scale_by_adam(), optax.scale(-1.0)))
    try:
        pickle.dumps(est.optimizer)
    except Exception:
        with pytest.raises(TypeError, match="optimizer=GradientTransformation.*name or spec"):
            pickle.dumps(est)
    else:  # this Optax version's objects pickle: so does the estimator
        pickle.loads(pickle.dumps(est))
    pickle.loads(pickle.dumps(TSNE(optimizer="adam:b1=0.9")))


def test_clone_keeps_params_and_drops_fit(fitted):
    est, _ = fitted
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert not hasattr(c, "embedding_")
    with pytest.raises(NotFittedError):
        c.transform(np.zeros((3, 64)))


def test_pipeline_scaler_then_tsne(digits):
    X = digits[0][:300]
    pipe = make_pipeline(StandardScaler(), TSNE(**SHORT))
    Y = pipe.fit_transform(X)
    assert Y.shape == (300, 2) and np.isfinite(Y).all()
    assert list(pipe.get_feature_names_out()) == ["tsne0", "tsne1"]
    assert pipe.transform(X[:10]).shape == (10, 2)


def test_grid_search_over_perplexity_with_trustworthiness(digits):
    X = digits[0][:360]
    search = GridSearchCV(
        TSNE(**SHORT), {"perplexity": [5.0, 15.0]}, scoring=trustworthiness_scorer(5), cv=2
    )
    search.fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores > 0.5).all()
    assert search.best_params_["perplexity"] in (5.0, 15.0)
    # The scorer is the trustworthiness of held-out points placed by transform.
    best = search.best_estimator_
    t = trustworthiness_scorer(5)(best, X[:60])
    assert t == pytest.approx(trustworthiness(X[:60], best.transform(X[:60]), 5))
    # Given uncalled, scikit-learn calls it as the scorer (every fold was a TypeError -> NaN).
    assert trustworthiness_scorer(best, X[:60]) == t
    with pytest.raises(ValueError, match="n_neighbors must be"):
        trustworthiness_scorer("5")
    # ... and it is the estimator's score, so no scoring= is needed (was "should have a
    # 'score' method")
    assert best.score(X[:60]) == t
    from sklearn.model_selection import cross_val_score

    assert np.isfinite(cross_val_score(TSNE(**SHORT), X, cv=2)).all()


def test_scikit_learn_max_iter_and_init():
    """scikit-learn's max_iter (both phases: 1000 = 250 + 750) and init were TypeErrors."""
    assert TSNE(max_iter=1000)._config().schedule.n_iter == 750
    assert TSNE(max_iter=300, early_exaggeration_iter=100)._config().schedule.n_iter == 200
    assert TSNE(max_iter=300, preset="sklearn")._config().schedule.n_iter == 50
    with pytest.raises(ValueError, match="both set the run's length"):
        TSNE(max_iter=1000, n_iter=500)._config()
    with pytest.raises(ValueError, match="at least early_exaggeration_iter=250"):
        TSNE(max_iter=100)._config()
    # ... and its init (scikit-learn's docs write TSNE(init="random", learning_rate="auto"))
    assert TSNE(init="random")._config().initialization == "random"
    with pytest.raises(ValueError, match="init .* and initialization .* are both set"):
        TSNE(init="random", initialization="spectral")._config()


def test_scikit_learn_and_opentsne_signature_parameters():
    """scikit-learn's method, angle, min_grad_norm, n_iter_without_progress and openTSNE's theta
    were TypeErrors in a drop-in call; method maps onto negative_gradient_method, the
    stopping settings turn on stopping="sklearn" (tests/test_stopping.py), angle and theta
    warn that they change nothing."""
    import pickle
    import warnings

    assert TSNE(method="exact")._config().gradient.method == "exact"
    assert TSNE(method="barnes_hut")._config().gradient.method == "auto"
    with pytest.raises(ValueError, match="method='fft' .* must be 'exact' or 'barnes_hut'"):
        TSNE(method="fft")._config()
    with pytest.raises(ValueError, match="method .* and negative_gradient_method .* both set"):
        TSNE(method="exact", negative_gradient_method="splat")._config()
    for name, value in [("angle", 0.5), ("theta", 0.5)]:
        with pytest.warns(UserWarning, match=f"{name}={value!r} has no effect"):
            TSNE(**{name: value})._config()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TSNE()._config()  # nothing given, nothing said
    # a lambda metric cannot pickle: the error names the parameter (was a bare PicklingError)
    with pytest.raises(TypeError, match="its metric=function object cannot"):
        pickle.dumps(TSNE(metric=lambda a, b: 0.0))


def test_feature_names_and_count_are_checked(digits):
    pd = pytest.importorskip("pandas")
    X = digits[0][:200]
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(X.shape[1])])
    est = TSNE(**SHORT).fit(df)
    assert est.n_features_in_ == 64 and est.feature_names_in_[0] == "px0"
    with pytest.raises(ValueError, match="feature names should match"):
        est.transform(df.iloc[:5, :10])
    plain = TSNE(**SHORT).fit(X)
    with pytest.raises(ValueError, match="X has 10 features, but TSNE is expecting 64"):
        plain.transform(X[:5, :10])


def test_tags_say_what_it_is():
    tags = TSNE(random_state=0).__sklearn_tags__()
    assert tags.requires_fit and tags.transformer_tags is not None
    assert not tags.non_deterministic and TSNE().__sklearn_tags__().non_deterministic
    assert TSNE(random_state=np.random.RandomState(0)).__sklearn_tags__().non_deterministic
    assert not tags.input_tags.allow_nan and not tags.target_tags.required


def test_init_does_no_work_and_stores_arguments_as_given():
    est = TSNE(perplexity=[10, 30], learning_rate="N/12", optimizer={"name": "adam"})
    assert est.perplexity == [10, 30] and est.optimizer == {"name": "adam"}
    assert not any(k.endswith("_") for k in vars(est))


def test_numpydoc_documents_every_parameter():
    import re

    doc = TSNE.__doc__
    # a header line names one parameter or several ("a, b, c : ..."), at 4 spaces of indent
    documented = {
        name.strip()
        for header in re.findall(r"\n    (\w[\w, ]*?) :", doc)
        for name in header.split(",")
    }
    for name in TSNE().get_params():
        assert name in documented, name


@pytest.mark.slow
@parametrize_with_checks(
    [TSNE(perplexity=2, **SHORT)], expected_failed_checks=lambda est: EXPECTED_FAILED
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
