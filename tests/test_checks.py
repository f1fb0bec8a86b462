"""Bad input gets a ValueError naming the parameter and the fix (issue #2 catalogue)."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tsnejax
from tsnejax import TSNE, TSNEConfig, fit
from tsnejax._checks import check_key, float_dtype


def _X(n=50, d=4):
    return np.random.default_rng(0).normal(size=(n, d))


def test_nan_rows_are_counted_and_located():
    X = _X()
    X[[3, 7, 11], 1] = np.nan
    X[20, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"X has 4 row\(s\) with NaN or inf values \(first: 3, 7, 11, 20\)"
    ):
        TSNE().fit(X)
    # an empty column (a CSV's blank feature) made every row "bad": the rows were blamed
    X = _X()
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"all in column\(s\) \[2\]: drop or impute those col"):
        TSNE().fit(X)


def test_missing_values_of_pandas_and_masked_arrays_are_named_by_row():
    pd = pytest.importorskip("pandas")
    from tsnejax._checks import check_data

    X = _X()
    # pandas' nullable dtypes: pd.NA was "non-numeric dtype object"; without NA they read as
    # the plain array does.
    df = pd.DataFrame({"a": pd.array(X[:, 0], dtype="Float64"), "b": X[:, 1]})
    np.testing.assert_array_equal(check_data(df), check_data(X[:, :2]))
    df.loc[[4, 9], "a"] = pd.NA
    with pytest.raises(
        ValueError, match=r"X has 2 row\(s\) with NaN or inf values \(first: 4, 9\)"
    ):
        TSNE().fit(df)
    # A masked array's masked entries were embedded as the values under the mask.
    m = np.ma.masked_array(X, mask=np.zeros_like(X, bool))
    np.testing.assert_array_equal(check_data(m), check_data(X))
    m[[2, 6], 1] = np.ma.masked
    with pytest.raises(ValueError, match=r"masked entries in 2 row\(s\) \(first: 2, 6\).*filled"):
        TSNE().fit(m)


def test_date_and_duration_columns_are_named():
    """A DataFrame's datetime column was embedded as nanoseconds since 1970 (1.6e18), which
    outweighed every other feature: the embedding was the time order."""
    pd = pytest.importorskip("pandas")
    X = _X()
    df = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    for t in (
        pd.date_range("2020-01-01", periods=len(df), freq="h"),
        pd.date_range("2020-01-01", periods=len(df), freq="h", tz="UTC"),
        pd.to_timedelta(np.arange(len(df)), unit="D"),
    ):
        with pytest.raises(ValueError, match=r"X column\(s\) \['when'\] hold dates or durat"):
            TSNE().fit(df.assign(when=t))
    with pytest.raises(ValueError, match=r"X \(dtype datetime64\[D\]\) hold dates"):
        TSNE().fit(np.arange(80).astype("datetime64[D]").reshape(40, 2))


@pytest.mark.float32_only("1e300 is within float64's range")
def test_float64_overflow_to_float32_is_reported():
    X = _X()
    X[5, 0] = 1e300
    with pytest.raises(
        ValueError, match=r"1 row\(s\) with values beyond the float32 range \(first: 5\)"
    ):
        TSNE().fit(X)


@pytest.mark.float32_only("the warning is about the float32 cast")
def test_an_offset_float32_cannot_resolve_is_reported_at_the_callers_line(recwarn):
    """1e6 + N(0, 1) in float64 was cast to float32 without a word: the exact kNN recall fell
    to 0.97 and the 15th distances were off by up to 8 %."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    with pytest.warns(UserWarning, match=r"X lies 1.\d+e\+05x its spread .*column 1\)") as w:
        TSNE(n_iter=0, early_exaggeration_iter=0).fit(X + [0.0, 1e6, 0.0])
    assert w[0].filename == __file__  # the user's line, not a line inside tsnejax
    near_constant = np.column_stack([X[:, :2], 1 + 1e-12 * X[:, 2]])  # no distance sees it
    for fine in (X + 1e3, (X + 1e6).astype(np.float32), np.ones((40, 3)) * 1e6, near_constant):
        TSNE(n_iter=0, early_exaggeration_iter=0).fit(fine)
    assert not [r for r in recwarn if "its spread" in str(r.message)]


def test_warnings_point_at_the_users_line():
    """Each warning's stacklevel was counted by hand (2, 3 or 4 frames), so most pointed at a
    line inside tsnejax (``pipeline.py:423``, ``cli.py:415``) whichever entry point was used."""
    from tsnejax.metrics import evaluate

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    blob = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)  # -> 1e-14
    cases = [
        (lambda: TSNE(n_iter=5).fit(blob), "collapsed"),  # run.py
        (lambda: TSNE(n_jobs=2, n_iter=0, early_exaggeration_iter=0).fit(X), "n_jobs=2"),
        (lambda: evaluate(X, np.zeros((60, 2)), np.arange(60) % 3), "cpd = NaN"),
        (lambda: TSNE(initialization=X[:, :2] * 10, n_iter=0).fit(X), "standard dev"),
    ]
    for call, fragment in cases:
        with pytest.warns(Warning, match=fragment) as w:
            call()
        mine = [r for r in w if fragment in str(r.message)]
        assert mine[0].filename == __file__, (fragment, mine[0].filename)


def test_perplexity_too_large_gives_largest_allowed():
    with pytest.raises(
        ValueError, match=r"perplexity=60 is too large for 50 points.*largest allowed is 49"
    ):
        TSNE(perplexity=60).fit(_X(50))
    # An explicit graph narrower than the perplexity: named before the search runs.
    with pytest.raises(ValueError, match=r"perplexity=30 needs more .*k=10.*n_neighbors"):
        fit(jax.random.key(0), _X(50), TSNEConfig.make(perplexity=30, n_neighbors=10))


@pytest.mark.parametrize(
    "X, fragment",
    [
        (np.zeros(10), r"must be 2-D .* X\[None, :\] for a single sample"),
        (np.zeros((2, 3, 4)), "must be 2-D"),
        (np.zeros((3, 2)), "at least 4 points"),
        (np.zeros((0, 2)), "empty"),
        (np.array([["a", "b"]] * 10), "non-numeric dtype"),
        (np.array([[object()] * 2] * 10), "non-numeric dtype"),
        (np.ones((10, 2), complex), "complex"),
    ],
)
def test_bad_arrays(X, fragment):
    with pytest.raises(ValueError, match=fragment):
        TSNE(perplexity=2).fit(X)


def test_integer_and_bool_inputs_are_converted():
    X = (np.random.default_rng(0).random((40, 5)) * 10).astype(np.int64)
    Y = TSNE(perplexity=5, early_exaggeration_iter=10, n_iter=10).fit_transform(X)
    assert Y.dtype == float_dtype() and Y.shape == (40, 2)  # float64 under JAX_ENABLE_X64


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"negative_gradient_method": "bh"}, "negative_gradient_method='bh'"),
        ({"neighbors": "annoy"}, "neighbors='annoy'"),
        ({"initialization": "spectrl"}, "initialization='spectrl' is not a valid option"),
        ({"learning_rate": "fast"}, "learning_rate='fast'"),
        ({"learning_rate": -1.0}, "learning_rate must be finite and > 0"),
        ({"learning_rate": "N/0"}, "learning_rate='N/0' must give a rate > 0"),  # was 1/0 in fit
        # A string failed inside Optax's update with a message about line searches; NaN diverged.
        ({"optimizer": 'adam:b1="x"'}, "optimizer 'adam': b1='x' must be a finite number"),
        ({"optimizer": "adam:b1=NaN"}, "optimizer 'adam': b1=nan must be a finite number"),
        ({"optimizer": "adam:b1=2"}, "optimizer 'adam': b1=2 must be in "),  # both ran
        ({"optimizer": "classic:min_gain=-1"}, "min_gain=-1 must be in "),
        ({"perplexity": -5.0}, "perplexity must be finite and > 0"),
        ({"perplexity": 0.5}, "perplexity=0.5 is below 1"),  # was "k must be >= 1" at 0.2
        ({"perplexity": (30.0, 0.9)}, "perplexity=0.9 is below 1"),
        ({"final_momentum": 1.0}, r"final_momentum=1.0: a momentum must be in \[0, 1\)"),
        ({"initial_momentum": 1.5}, "initial_momentum=1.5"),
        ({"dof": 0.0}, "dof must be finite and > 0"),
        ({"n_components": 0}, "n_components=0 must be a positive integer"),
        ({"n_components": 2.5}, "n_components=2.5 must be a positive integer"),
        (
            {"n_components": 4, "negative_gradient_method": "interpolation"},
            "n_components=4 needs the exact gradient: negative_gradient_method='interpolation'",
        ),
        ({"n_iter": -1}, "n_iter must be >= 0"),
        ({"early_exaggeration": float("nan")}, "early_exaggeration must be finite"),
    ],
)
def test_bad_options(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        TSNE(**kwargs).fit(_X())


def test_config_validate_is_usable_alone():
    with pytest.raises(ValueError, match="chunk_size"):
        TSNEConfig.make(chunk_size=0).validate()


def test_user_initialization_shape_checked():
    with pytest.raises(ValueError, match=r"initialization must have shape \(50, 2\)"):
        TSNE(perplexity=10, initialization=np.zeros((49, 2))).fit(_X())


def test_initialization_with_every_row_at_one_point_is_refused():
    # The gradient is exactly zero there: the run used to return the start unchanged.
    with pytest.raises(ValueError, match="initialization: all 50 rows are the same point"):
        TSNE(perplexity=10, initialization=np.full((50, 2), 3.0)).fit(_X())


def test_perplexity_and_momentum_below_their_bounds_elsewhere():
    from tsnejax.affinity import perplexity_affinities
    from tsnejax.knn import exact_knn
    from tsnejax.transform import TransformConfig

    with pytest.raises(ValueError, match="perplexity=0.3 is below 1"):
        perplexity_affinities(exact_knn(_X(), 5), 0.3)
    with pytest.raises(ValueError, match="perplexity=0.5 is below 1"):
        TransformConfig(perplexity=0.5).validate()
    with pytest.raises(ValueError, match="final_momentum=1.0"):
        TransformConfig(final_momentum=1.0).validate()
    assert TransformConfig(perplexity=1.0, final_momentum=0.0).validate()
    # openTSNE's placement by one neighbour: k = 1 with perplexity k / 3
    assert TransformConfig(k=1, perplexity=1 / 3).validate()


@pytest.mark.parametrize("scale", [1e30, 1e15, 1e-15, 1e-30])
def test_huge_and_tiny_magnitudes_give_the_unit_scale_affinities(scale):
    """Neighbours and P do not depend on units; float32 squares of 1e30 overflow and of 1e-30
    underflow, so both are computed in rescaled units (a power of two, exact)."""
    from tsnejax.affinity import perplexity_affinities, to_scipy
    from tsnejax.knn import nearest_neighbors

    X = _X(200, 5)
    ref = to_scipy(perplexity_affinities(nearest_neighbors(X, 30), 10.0)).toarray()
    g = nearest_neighbors(X * scale, 30)
    P = to_scipy(perplexity_affinities(g, 10.0)).toarray()
    assert np.abs(P - ref).max() <= 1e-5 * ref.max()
    np.testing.assert_allclose(
        np.asarray(g.distances) / scale, np.asarray(nearest_neighbors(X, 30).distances), rtol=1e-5
    )
    Y = TSNE(perplexity=10, early_exaggeration_iter=20, n_iter=20, random_state=0).fit_transform(
        X * scale
    )
    assert np.isfinite(Y).all()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 40),
    d=st.integers(1, 6),
    bad=st.lists(
        st.tuples(
            st.integers(0, 39), st.integers(0, 5), st.sampled_from([np.nan, np.inf, -np.inf])
        ),
        min_size=0,
        max_size=5,
    ),
    seed=st.integers(0, 2**16),
)
def test_validator_never_lets_a_nan_through(n, d, bad, seed):
    from tsnejax._checks import check_data

    X = np.random.default_rng(seed).normal(size=(n, d))
    hit = {(i, j) for i, j, _ in bad if i < n and j < d}
    for i, j, v in bad:
        if i < n and j < d:
            X[i, j] = v
    if hit:
        with pytest.raises(ValueError, match="NaN or inf"):
            check_data(X)
    else:
        assert np.isfinite(check_data(X)).all()


def test_anndata_gets_an_error_naming_what_to_pass():
    class AnnData:  # the attributes tsnejax recognises, without the anndata package
        obs_names = ["a", "b"]
        obsm = {"X_pca": np.zeros((2, 2)), "X_umap": np.zeros((2, 2))}
        X = np.zeros((2, 3))

    from tsnejax import TSNE

    with pytest.raises(ValueError, match=r"AnnData object.*adata.obsm\['X_pca'\].*'X_umap'"):
        TSNE().fit(AnnData())


def test_keys_and_configs_are_named_when_wrong():
    import jax

    from tsnejax import fit, fit_batch

    X = _X()
    with pytest.raises(ValueError, match="key must be a JAX random key such as jax.random"):
        fit(0, X, TSNEConfig.make(perplexity=10))  # was JAX's "invalid PRNG key data"
    with pytest.raises(ValueError, match=r"keys\[1\] must be a JAX random key"):
        fit_batch([jax.random.key(0), 1], X)
    with pytest.raises(ValueError, match="config must be a TSNEConfig or a dict"):
        fit(jax.random.key(0), X, "fast")
    # A dict of flat names is the config TSNEConfig.make builds (checked before any work).
    with pytest.raises(ValueError, match="perplexity=0.5 is below 1"):
        fit(jax.random.key(0), X, {"perplexity": 0.5})
    assert check_key(jax.random.PRNGKey(0)) is not None  # the raw uint32[2] form too


def test_misplaced_arguments_get_the_form_that_works():
    import jax
    import optax

    from tsnejax import fit_batch

    X = _X()
    with pytest.raises(ValueError, match="one key per trial, e.g. jax.random.split"):
        fit_batch(jax.random.key(0), X)  # was "iteration over a 0-d key array"
    with pytest.raises(ValueError, match="one key per trial"):
        fit_batch(jax.random.PRNGKey(0), X)  # a raw key was split into two "keys"
    from tsnejax import fit

    # A split batch given to fit failed inside jax.random after the kNN search and P.
    for keys in (jax.random.split(jax.random.key(0), 3), jax.random.split(jax.random.PRNGKey(0))):
        with pytest.raises(ValueError, match=r"key must be one key, got a batch of shape"):
            fit(keys, X)
    with pytest.raises(ValueError, match="Arguments follow a colon: 'adam:key=value"):
        TSNE(optimizer="adam(b1=0.5)").fit(X)
    with pytest.raises(ValueError, match="or a tsnejax.gradients.Backend"):
        TSNE(negative_gradient_method=lambda Y: Y).fit(X)
    # optax.lbfgs's line search needs the loss: a TypeError from inside Optax before
    with pytest.raises(ValueError, match="optax.scale_by_lbfgs"):
        TSNE(optimizer=optax.lbfgs(), perplexity=5).fit(X)


def test_callbacks_and_record_of_the_wrong_arity_are_named_before_the_search(monkeypatch):
    """A two-argument callback (or a one-argument record) failed with Python's TypeError after
    the kNN search, P and the first chunk; fit and fit_batch now name it first."""
    import tsnejax.batch
    import tsnejax.pipeline

    def no_search(*args, **kwargs):
        raise AssertionError("the kNN search ran before the hooks were checked")

    monkeypatch.setattr(tsnejax.pipeline, "prepare", no_search)
    monkeypatch.setattr(tsnejax.batch, "graph_search", no_search)
    X, key = _X(), jax.random.key(0)
    keys = jax.random.split(key, 2)
    bad = [
        (dict(callbacks=lambda it, kl: None), r"callbacks\[0\] must take 3 arguments"),
        (dict(callbacks=[print, lambda it: None]), r"callbacks\[1\] .* signature is \(it\)"),
        (dict(record=lambda state: state), r"record must take 2 arguments \(state, info\)"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            fit(key, X, **kwargs)
        with pytest.raises(ValueError, match=message):
            tsnejax.batch.fit_batch(keys, X, **kwargs)


def test_gradient_kernels_name_a_wrong_y():
    import jax.numpy as jnp

    from tsnejax.affinity import perplexity_affinities
    from tsnejax.gradients import InterpolationGrid, exact_gradient
    from tsnejax.gradients.interpolation import interpolation_kl_divergence
    from tsnejax.knn import exact_knn

    P = perplexity_affinities(exact_knn(_X(), 15), 5.0)
    with pytest.raises(ValueError, match=r"Y must be 2-D .* got shape \(50,\)"):
        exact_gradient(jnp.zeros(50), P)  # was "not enough values to unpack"
    with pytest.raises(ValueError, match="Y has 40 rows but P describes 50 points"):
        interpolation_kl_divergence(jnp.ones((40, 2)), P, 1.0, InterpolationGrid(50, 3))


def test_the_open_seams_name_bad_input():
    """A user's own Affinities, start embedding, optimizer, callbacks and record hook."""
    import jax
    import jax.numpy as jnp
    import optax

    from tsnejax import fit, fit_batch, optim, run
    from tsnejax.affinity import as_affinities, check_affinities, perplexity_affinities, to_scipy
    from tsnejax.knn import exact_knn

    X = _X()
    key = jax.random.key(0)
    P = perplexity_affinities(exact_knn(X, 15), 5.0)
    Y0 = np.random.default_rng(1).normal(scale=1e-4, size=(50, 2)).astype(np.float32)
    cfg = TSNEConfig.make(perplexity=5, n_iter=10, early_exaggeration_iter=10)
    # An index out of range was clamped by the gathers without a word; a NaN weight was a
    # divergence at iteration 1 that blamed the learning rate.
    bad = {
        r"affinities.neighbors must lie in \[0, 49\]": P._replace(
            neighbors=P.neighbors.at[0, 0].set(55)
        ),
        "affinities.extra_rows must lie in": P._replace(extra_rows=P.extra_rows.at[0].set(-1)),
        "affinities.weights has 1 NaN": P._replace(weights=P.weights.at[0, 0].set(jnp.nan)),
        "the weights sum to 7, not 1": P._replace(
            weights=P.weights * 7, extra_weights=P.extra_weights * 7
        ),
        "got tuple": tuple(P),
        r"the shapes must be .* \(50, 3\)": P._replace(weights=P.weights[:, :3]),
    }
    for fragment, P_bad in bad.items():
        with pytest.raises(ValueError, match=fragment):
            fit(key, None, cfg, affinities=P_bad, initialization=Y0)
    assert check_affinities(P) is P
    # fit_batch takes a scipy P too (it failed on the matrix's missing n_points).
    starts = [Y0, -Y0]  # two trials that differ (the same start twice warns)
    sp_result = fit_batch(
        jax.random.split(key, 2), None, cfg, affinities=to_scipy(P), initializations=starts
    )
    same = fit_batch(jax.random.split(key, 2), None, cfg, affinities=P, initializations=starts)
    np.testing.assert_allclose(sp_result.embeddings, same.embeddings, rtol=1e-5, atol=1e-9)
    assert as_affinities(P) is P

    opt = optim.make_optimizer("classic", learning_rate=10.0, momentum=0.5)
    step = run.build_step("exact", opt)
    for start, fragment in [
        (Y0[:, 0], r"must be \(n, d\) or \(n_trials, n, d\), got shape \(50,\)"),
        (np.where(np.arange(50)[:, None] == 3, np.nan, Y0), r"1 row\(s\) with NaN .* \(first: 3\)"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            run.init_state(start, opt)
    # Integers used to fail inside the gradient ("complex does not accept dtype int32").
    ints = run.optimize(step, run.init_state(np.round(Y0 * 1e5).astype(int), opt), P, 5)
    floats = run.optimize(step, run.init_state(np.round(Y0 * 1e5).astype(float_dtype()), opt), P, 5)
    np.testing.assert_array_equal(ints.state.embedding, floats.state.embedding)
    with pytest.raises(ValueError, match="precomputed_affinities"):
        run.optimize(step, run.init_state(Y0, opt), to_scipy(P), 5)
    with pytest.raises(ValueError, match="learning_rate='3' must be a finite number or a sched"):
        optim.make_optimizer("adam", learning_rate="3")
    with pytest.raises(ValueError, match="learning_rate=0.0 must be > 0"):
        optim.make_optimizer("sgd", learning_rate=0.0)
    for not_an_optimizer in ("classic", 3.0):
        with pytest.raises(ValueError, match="optimizer must be an optax.GradientTransformation"):
            run.build_step("exact", not_an_optimizer)
    # An (n, 1) update was broadcast over both axes without a word.
    squash = optax.GradientTransformation(lambda p: (), lambda u, s, p=None: (u[:, :1], s))
    with pytest.raises(ValueError, match=r"updates of shape \[\(50, 1\)\] for an embedding"):
        run.optimize(run.build_step("exact", squash), run.init_state(Y0, squash), P, 5)
    with pytest.raises(ValueError, match="callbacks\\[1\\] is int, not callable"):
        run.optimize(step, run.init_state(Y0, opt), P, 5, callbacks=[lambda *a: None, 3])
    with pytest.raises(ValueError, match=r"record must be a function \(state, info\)"):
        run.optimize(step, run.init_state(Y0, opt), P, 5, record=3)
    # A callback's answer must be a truth value (an array's was NumPy's "ambiguous" error).
    with pytest.raises(ValueError, match=r"callbacks\[0\] returned ndarray of shape \(2,\)"):
        run.optimize(
            step, run.init_state(Y0, opt), P, 5, callbacks=lambda *a: np.ones(2), callbacks_every=1
        )
    # One callable is a list of one (openTSNE takes both forms); it was "not iterable".
    seen = []
    one = lambda *a: seen.append(a[0])  # noqa: E731
    fit(key, None, cfg, affinities=P, initialization=Y0, callbacks=one, callbacks_every=10)
    assert seen == [10, 20]


def _building_block_misuse():
    import optax

    from tsnejax import checkpoint, init, plot, schedules, shard
    from tsnejax.gradients import exact_backend

    X = _X()[:20]
    key = jax.random.key(0)
    state = tsnejax.init_state(np.ones((3, 2), np.float32), tsnejax.classic(1.0))
    return [
        (lambda: init.pca(None), r"X must be a numeric \(n, d\) array"),
        (lambda: init.pca(X, target_std=-1.0), "target_std must be finite and > 0"),
        (lambda: init.random(key, 10, target_std="x"), "target_std must be a number"),
        (lambda: init.random(key, -1), "n_samples must be >= 1"),
        (lambda: init.random(0, 10), "key must be a JAX random key"),
        (lambda: init.rescale(None), r"Y must be a numeric \(n, d\) embedding"),
        (lambda: init.rescale(X, float("nan")), "target_std must be finite and > 0"),
        (lambda: init.spectral(np.eye(4), tol=None), "tol must be a real number"),
        (lambda: schedules.exaggeration_schedule(-12.0), "early must be finite and > 0"),
        (lambda: schedules.exaggeration_schedule(12.0, None), "early_iter must be an integer"),
        (lambda: schedules.momentum_schedule("0.5"), "initial must be a number"),
        (lambda: schedules.momentum_schedule(0.5, 1.0), r"a momentum must be in \[0, 1\)"),
        (lambda: schedules.auto_learning_rate(100, 12.0), "exaggeration must be a schedule"),
        (lambda: exact_backend("big"), "block_size must be an integer"),
        (lambda: plot.plot_embedding(np.zeros((0, 2))), "with n >= 1"),
        (lambda: plot.plot_embedding(X[:, :2], path=3), "path must be a file path"),
        (lambda: plot.plot_embedding(X[:, :2], point_size=-1.0), "point_size must be finite"),
        (lambda: checkpoint.save_state(None, state), "path must be a file path"),
        (lambda: checkpoint.save_state("s.npz", None), "state must be a TSNEState"),
        (lambda: checkpoint.load_state(0, optax.sgd(1.0)), "checkpoint must be a file path"),
        (lambda: shard.point_mesh(2), "devices must be a non-empty list of JAX devices"),
    ]


def test_building_blocks_name_bad_arguments():
    """The functional pieces failed deep inside on a wrong argument (``IndexError: tuple index
    out of range`` for ``init.pca(None)``, SciPy's ``SystemError`` from ARPACK for a ``tol`` of
    None, ``'<=' not supported`` in the schedules, ``ZeroDivisionError`` in the plot) or ran
    with it (a negative ``target_std``, ``exaggeration_schedule(-12)``, ``save_state(path,
    None)``); each now names the parameter."""
    for call, message in _building_block_misuse():
        with pytest.raises(ValueError, match=message):
            call()
