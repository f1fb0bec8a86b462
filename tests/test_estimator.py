import numpy as np
import pytest

from tsnejax import TSNE, TSNEConfig, fit
from tsnejax.metrics import knn_accuracy


def test_digits_defaults_match_opentsne_quality(digits):
    """Must-show 4: KL within 3 % of openTSNE's, 10-NN accuracy >= 0.97."""
    import openTSNE

    X, y = digits
    ours = TSNE(random_state=0).fit(X)
    ref = openTSNE.TSNE(random_state=0, n_jobs=2).fit(X.astype(np.float64))
    assert ours.embedding_.shape == (len(X), 2)
    assert ours.n_iter_ == 750
    assert abs(ours.kl_divergence_ - ref.kl_divergence) / ref.kl_divergence < 0.03
    assert knn_accuracy(ours.embedding_, y, k=10) >= 0.97


def test_same_random_state_gives_identical_embedding(digits):
    X = digits[0][:300]
    kw = dict(random_state=3, initialization="random", early_exaggeration_iter=50, n_iter=50)
    a = TSNE(**kw).fit_transform(X)
    b = TSNE(**kw).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    c = TSNE(**{**kw, "random_state": 4}).fit_transform(X)
    assert not np.allclose(a, c)
    # scikit-learn's convention: a RandomState (or Generator) gives the seed and advances.
    rs = np.random.RandomState(7)
    est = TSNE(**{**kw, "random_state": rs}).fit(X)
    assert est.random_state_ == np.random.RandomState(7).randint(2**31 - 1)
    np.testing.assert_array_equal(
        est.embedding_, TSNE(**{**kw, "random_state": est.random_state_}).fit_transform(X)
    )
    gen = TSNE(**{**kw, "random_state": np.random.default_rng(7)}).fit(X)
    assert gen.random_state_ == np.random.default_rng(7).integers(2**31 - 1)


def test_random_state_may_be_a_jax_key(digits):
    # A JAX library's own randomness: the key is used as given (it was a ValueError), and
    # jax.random.key(3) is what random_state=3 means.
    import pickle

    import jax

    X = digits[0][:300]
    kw = dict(initialization="random", early_exaggeration_iter=50, n_iter=50)
    by_seed = TSNE(random_state=3, **kw).fit(X)
    by_key = TSNE(random_state=jax.random.key(3), **kw).fit(X)
    np.testing.assert_array_equal(by_key.embedding_, by_seed.embedding_)
    raw = TSNE(random_state=jax.random.PRNGKey(3), **kw).fit(X)
    np.testing.assert_array_equal(raw.embedding_, by_seed.embedding_)
    assert not by_key.__sklearn_tags__().non_deterministic
    new = X[:20] + 0.5
    again = pickle.loads(pickle.dumps(by_key))
    np.testing.assert_array_equal(again.transform(new), by_seed.transform(new))
    with pytest.raises(ValueError, match="random_state must be one key"):
        TSNE(random_state=jax.random.split(jax.random.key(0), 3), **kw).fit(X)
    with pytest.raises(ValueError, match="random_state must be an int seed, a jax.random.key"):
        TSNE(random_state="3", **kw).fit(X)


def test_perplexity_as_a_numpy_array_is_a_tuple():
    # np.array([5, 30]) was an unhashable config (TypeError) until it became a tuple.
    est = TSNE(perplexity=np.array([5.0, 30.0]))
    assert est._config().affinities.perplexity == (5.0, 30.0)
    assert TSNEConfig.make(perplexity=[5, 30]).affinities.perplexity == (5, 30)


def test_fit_with_precomputed_affinities_and_user_init(digits, key):
    from tsnejax.affinity import perplexity_affinities, to_scipy
    from tsnejax.knn import exact_knn

    X = digits[0][:300]
    P = to_scipy(perplexity_affinities(exact_knn(X, 30), 10.0))
    Y0 = np.random.default_rng(0).normal(size=(300, 2)) * 1e-4
    res = fit(
        key,
        None,
        TSNEConfig.make(early_exaggeration_iter=50, n_iter=50),
        affinities=P,
        initialization=Y0,
    )
    assert res.embedding.shape == (300, 2) and np.isfinite(res.kl_divergence)
    with pytest.raises(ValueError, match="initialization='pca' needs X"):
        fit(key, None, TSNEConfig.make(n_iter=10), affinities=P)


@pytest.mark.parametrize("dim", [1, 3])
def test_other_dimensions(digits, dim):
    X, y = digits
    Y = TSNE(n_components=dim, random_state=0, n_iter=250).fit_transform(X[:500])
    assert Y.shape == (500, dim) and np.isfinite(Y).all()


def test_more_than_three_components_run_the_exact_gradient(digits):
    """scikit-learn's method="exact" embeds in any dimension; the grid methods cannot (their
    cost grows as boxes ** d), so "auto" picks the exact gradient above 3-D."""
    import pickle

    from tsnejax.metrics import trustworthiness

    X, y = digits[0][:500], digits[1][:500]
    kw = dict(random_state=0, n_iter=300)
    flat = TSNE(n_components=2, **kw).fit(X)
    est = TSNE(n_components=5, **kw).fit(X)
    assert est.embedding_.shape == (500, 5) and est.method_ == "exact"
    # More room: a lower KL and neighbourhoods kept at least as well.
    assert est.kl_divergence_ < 0.9 * flat.kl_divergence_
    assert trustworthiness(X, est.embedding_, 10) >= trustworthiness(X, flat.embedding_, 10)
    assert knn_accuracy(est.embedding_, y, 10) >= knn_accuracy(flat.embedding_, y, 10) - 0.01
    # transform places new points with the exact repulsion (the frozen field is 1-3 D).
    new = pickle.loads(pickle.dumps(est)).transform(digits[0][500:520])
    assert new.shape == (20, 5) and np.isfinite(new).all()
    with pytest.raises(ValueError, match="method='interpolation' runs in 1-3 dimensions"):
        est.transform(digits[0][500:520], method="interpolation")
    from tsnejax.build import stepper_for

    with pytest.warns(UserWarning, match="n_components=4 runs the exact gradient"):
        stepper_for(TSNEConfig.make(n_components=4), 70_000)  # O(N^2): said before it runs


def test_params_roundtrip():
    t = TSNE(perplexity=10)
    assert t.get_params()["perplexity"] == 10
    t.set_params(perplexity=20)
    assert t.perplexity == 20
    with pytest.raises(ValueError, match="Invalid parameter .thetta."):
        t.set_params(thetta=0.5)


def test_opentsne_and_sklearn_signature_parameters():
    """metric, n_jobs and max_grad_norm, as openTSNE's and scikit-learn's TSNE take them: a
    drop-in call used to be a TypeError."""
    est = TSNE(metric="euclidean", n_jobs=None, max_grad_norm=2.0)
    assert est._config().optimizer.max_grad_norm == 2.0
    bad = np.full((20, 3), np.nan)
    with pytest.raises(ValueError, match="metric='cosin' is not a metric"):
        TSNE(metric="cosin").fit(bad)  # the metric is checked before the data
    with pytest.warns(UserWarning, match="n_jobs=8 has no effect"):
        with pytest.raises(ValueError, match="NaN"):  # the warning comes first, then X's check
            TSNE(n_jobs=8).fit(bad)


def test_constructor_callbacks_as_opentsne_takes_them(digits):
    """``TSNE(callbacks=..., callbacks_every_iters=...)`` (openTSNE's form) is fit's callbacks;
    a closure there (or a closure schedule) makes pickling fail with the parameter named."""
    import pickle

    import optax

    X = digits[0][:300]
    seen = []

    def cb(iteration, kl, embedding):
        seen.append(iteration)

    short = dict(early_exaggeration_iter=20, n_iter=20, random_state=0, perplexity=10)
    a = TSNE(callbacks=cb, callbacks_every_iters=10, **short).fit(X)
    assert seen == [10, 20, 30, 40]
    b = TSNE(**short).fit(X)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)  # callbacks change nothing
    with pytest.raises(TypeError, match="its callbacks=function object cannot"):
        pickle.dumps(TSNE(callbacks=lambda it, kl, Y: None))
    with pytest.raises(TypeError, match="its learning_rate=function object cannot"):
        pickle.dumps(TSNE(learning_rate=optax.linear_schedule(1.0, 2.0, 3)))


def test_custom_optax_optimizer(digits):
    import optax

    X = digits[0][:300]
    t = TSNE(optimizer=optax.adam(1.0), random_state=0, early_exaggeration_iter=100, n_iter=200)
    t.fit(X)
    base = TSNE(random_state=0, early_exaggeration_iter=0, n_iter=0).fit(X)
    assert t.kl_divergence_ < base.kl_divergence_


def test_a_checkpointed_fit_resumes_to_the_uninterrupted_one(digits, tmp_path):
    X = digits[0][:400]
    params = dict(random_state=0, n_iter=100, early_exaggeration_iter=100)
    full = TSNE(**params).fit(X)
    path = tmp_path / "tsne.npz"
    TSNE(**params).fit(X, checkpoint=path, callbacks=lambda it, kl, Y: it >= 150)
    resumed = TSNE(**params).fit(X, checkpoint=path, checkpoint_every=25)
    assert resumed.resumed_from_ == 150 and full.resumed_from_ == 0
    np.testing.assert_array_equal(resumed.embedding_, full.embedding_)
    assert resumed.kl_history_ == full.kl_history_ and resumed.n_iter_ == 200
    # A seed drawn at every fit could never resume; pBIC runs candidate fits of its own.
    with pytest.raises(ValueError, match="checkpoint= needs a fixed random_state"):
        TSNE(n_iter=100).fit(X, checkpoint=tmp_path / "other.npz")
    with pytest.raises(ValueError, match="needs X and no \\['checkpoint'\\]"):
        TSNE(perplexity="pbic", random_state=0).fit(X, checkpoint=tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()
