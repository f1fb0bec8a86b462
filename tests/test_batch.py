"""fit_batch: whole fits over keys and hyperparameters as one program."""

import jax
import numpy as np
import pytest

import tsnejax
from tsnejax.config import TSNEConfig

SHORT = dict(early_exaggeration_iter=37, n_iter=63, negative_gradient_method="exact")


def _close(a, b, rel=1e-5):
    """Equal to ``rel`` of the embedding's scale (coordinates near 0 have no relative sense)."""
    assert np.abs(a - b).max() <= rel * np.abs(b).max()


@pytest.fixture(scope="module")
def X(digits):
    return digits[0][:500]


def test_fit_batch_over_four_keys_equals_four_fits(X):
    """Acceptance (#17): a batch of whole fits over 4 keys (random init) equals 4 fits."""
    config = TSNEConfig.make(initialization="random", **SHORT)
    keys = jax.random.split(jax.random.key(0), 4)
    batch = tsnejax.fit_batch(keys, X, config)
    assert batch.embeddings.shape == (4, len(X), 2) and (batch.diverged_at == -1).all()
    for i in range(4):
        single = tsnejax.fit(keys[i], X, config)
        _close(batch.embeddings[i], single.embedding)
        assert batch.kl_divergence[i] == pytest.approx(single.kl_divergence, rel=1e-5)
    # Keys change the random initialisation, hence the embedding.
    assert np.abs(batch.embeddings[0] - batch.embeddings[1]).max() > 1.0


def test_fit_batch_on_a_mesh_from_make_mesh(X):
    # jax.make_mesh gives Explicit axes, where shard_map refused the unplaced batch (ValueError
    # from inside the loop); the mesh's axes are now taken as Auto.
    config = TSNEConfig.make(initialization="random", **SHORT)
    keys = jax.random.split(jax.random.key(0), 2)
    mesh = jax.make_mesh((1,), ("trials",))
    assert mesh.axis_types == (jax.sharding.AxisType.Explicit,)
    sharded = tsnejax.fit_batch(keys, X, config, mesh=mesh)
    plain = tsnejax.fit_batch(keys, X, config)
    _close(sharded.embeddings, plain.embeddings)


def test_fit_batch_over_hyperparameters_and_a_diverging_trial(X):
    base = TSNEConfig.make(**SHORT)
    configs = [
        base.replace(learning_rate="N/12"),
        base.replace(exaggeration=2.0, early_exaggeration=6.0),
        base.replace(learning_rate=1e12),  # the step guard stops it
        base.replace(initial_momentum=0.5),
    ]
    keys = [jax.random.key(7)] * 4
    batch = tsnejax.fit_batch(keys, X, configs)
    assert batch.diverged_at[2] > 0 and np.isnan(batch.kl_divergence[2])
    assert (np.delete(batch.diverged_at, 2) == -1).all()
    for i in (0, 1, 3):
        # Same dof in every trial: the batch's kernel is the single run's, so each trial is
        # its own fit (bit-identical when measured; 1e-5 leaves room for other CPUs).
        single = tsnejax.fit(keys[i], X, configs[i])
        _close(batch.embeddings[i], single.embedding)
        assert batch.kl_divergence[i] == pytest.approx(single.kl_divergence, rel=1e-5)
    with pytest.raises(tsnejax.DivergenceError) as err:
        tsnejax.fit(keys[2], X, configs[2])
    assert batch.diverged_at[2] == err.value.iteration


def test_fit_batch_over_dof(X):
    """dof differs between trials: the batch traces it (``exp(dof * log(inv))``) where a single
    run compiles ``dof = 1`` in as ``1 / (1 + d^2)``, so each trial is its own fit up to that
    rounding, which early exaggeration amplifies: measured <= 5e-4 of the scale after 100
    iterations on two CPUs, KL within 1e-5 (a wrong dof or momentum moves both by > 1e-2)."""
    base = TSNEConfig.make(**SHORT)
    configs = [base, base.replace(dof=0.8, initial_momentum=0.5)]
    keys = [jax.random.key(7)] * 2
    batch = tsnejax.fit_batch(keys, X, configs)
    for i in (0, 1):
        single = tsnejax.fit(keys[i], X, configs[i])
        _close(batch.embeddings[i], single.embedding, rel=2e-3)
        assert batch.kl_divergence[i] == pytest.approx(single.kl_divergence, rel=1e-4)
    assert (
        np.abs(batch.embeddings[0] - batch.embeddings[1]).max()
        > 1e-2 * np.abs(batch.embeddings[0]).max()
    )


def test_fit_batch_over_perplexities_pads_P(X):
    """Perplexities batch together: P of each calibrated on the shared graph, padded to one
    shape. Each trial is its own fit on that P, up to the order of summing padding zeros."""
    configs = [TSNEConfig.make(perplexity=p, **SHORT) for p in (10.0, 30.0)]
    keys = [jax.random.key(0)] * 2
    batch = tsnejax.fit_batch(keys, X, configs)
    assert batch.affinities.neighbors.ndim == 3  # stacked
    for i, p in enumerate((10.0, 30.0)):
        graph = batch.neighbors
        k = 3 * int(p)
        P = tsnejax.perplexity_affinities(
            tsnejax.knn.precomputed_knn(graph.indices[:, :k], graph.distances[:, :k]), p
        )
        single = tsnejax.fit(keys[i], X, configs[i], affinities=P)
        assert batch.kl_divergence[i] == pytest.approx(single.kl_divergence, rel=1e-3)


def test_fit_batch_takes_a_precomputed_graph_and_records_every_step(X):
    """``neighbors=`` as ``fit`` takes it (each trial's P calibrated on the whole graph; X may
    be left out), and ``record``/``records``: each trial's steps, zeros once it froze (under
    vmap too, which runs a frozen trial's steps and undoes them)."""
    graph = tsnejax.knn.exact_knn(X, 90)
    base = TSNEConfig.make(**SHORT)
    configs = [base.replace(perplexity=10.0), base, base.replace(learning_rate=1e12)]
    keys = list(jax.random.split(jax.random.key(0), 3))
    mapped = tsnejax.fit_batch(keys, X, configs, neighbors=graph, batch="map")
    assert mapped.neighbors is not None and mapped.records.shape == (3, 100)
    for i in range(2):
        single = tsnejax.fit(keys[i], X, configs[i], neighbors=graph)
        np.testing.assert_array_equal(mapped.embeddings[i], single.embedding)
        np.testing.assert_array_equal(mapped.records[i], single.records)
    d = int(mapped.diverged_at[2])
    assert 0 < d < 100 and (mapped.records[2, d:] == 0).all() and (mapped.records[2, :d] > 0).all()
    vmapped = tsnejax.fit_batch(keys, X, configs, neighbors=graph, batch="vmap")
    assert vmapped.diverged_at[2] == d and (vmapped.records[2, d:] == 0).all()
    # A record of one's own, per trial and step; X left out (random starts).
    norms = lambda state, info: {"norm": info.grad_norm, "it": state.iteration}  # noqa: E731
    pairs = (graph.indices, graph.distances)
    randomly = [c.replace(initialization="random") for c in configs]
    own = tsnejax.fit_batch(keys, None, randomly, neighbors=pairs, batch="map", record=norms)
    assert own.embeddings.shape == (3, len(X), 2) and own.records["norm"].shape == (3, 100)
    np.testing.assert_array_equal(own.records["it"][0], np.arange(1, 101))
    with pytest.raises(ValueError, match="not a precomputed kNN graph"):
        tsnejax.fit_batch(keys, X, configs, neighbors="ivf")
    with pytest.raises(ValueError, match="fit_batch: pass affinities or neighbors, not both"):
        tsnejax.fit_batch(keys, X, configs, neighbors=graph, affinities=mapped.affinities)
    with pytest.raises(ValueError, match="fit: pass affinities or neighbors, not both"):
        tsnejax.fit(keys[0], X, configs[0], neighbors=graph, affinities=single.affinities)
    with pytest.raises(ValueError, match="describes 500 points but X has 400"):
        tsnejax.fit_batch(keys, X[:400], configs, neighbors=graph)


def test_fit_batch_rejects_static_differences(X):
    base = TSNEConfig.make(**SHORT)
    with pytest.raises(ValueError, match="configs\\[1\\] differ in static settings: optimizer"):
        tsnejax.fit_batch(
            jax.random.split(jax.random.key(0), 2), X, [base, base.replace(optimizer="adam")]
        )
    import optax  # a learning-rate schedule is compiled in, so trials cannot differ in it

    warm = base.replace(learning_rate=optax.linear_schedule(10.0, 100.0, 20))
    with pytest.raises(ValueError, match="static settings: learning_rate"):
        tsnejax.fit_batch(jax.random.split(jax.random.key(0), 2), X, [base, warm])
    with pytest.raises(ValueError, match="2 entries for 3 keys"):
        tsnejax.fit_batch(jax.random.split(jax.random.key(0), 3), X, [base, base])
    for keys in (None, 3):  # "'NoneType' object is not iterable"
        with pytest.raises(ValueError, match="keys must be one key per trial"):
            tsnejax.fit_batch(keys, X, base)
    # A dict of flat names is a config here too, as in tsnejax.fit (was an AttributeError).
    keys = jax.random.split(jax.random.key(0), 2)
    # Two keys with PCA initialisation are one run twice: said before it runs.
    with pytest.warns(UserWarning, match=r"trials \[\[0, 1\]\] repeat one run"):
        a = tsnejax.fit_batch(keys, X, SHORT)
    with pytest.warns(UserWarning, match="repeat one run"):
        b = tsnejax.fit_batch(keys, X, [base, dict(SHORT)])
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    np.testing.assert_array_equal(a.embeddings[0], a.embeddings[1])
    # Were a stacking error and a shard_map error from inside JAX.
    from tsnejax.affinity import perplexity_affinities
    from tsnejax.knn import exact_knn

    Ps = [perplexity_affinities(exact_knn(X[:m], 90), 30.0) for m in (500, 400)]
    with pytest.raises(ValueError, match="affinities\\[1\\] describes 400 points and aff"):
        tsnejax.fit_batch(keys, None, base, affinities=Ps, initializations=np.ones((500, 2)))
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("foo",))
    with pytest.raises(ValueError, match="a batch of trials is split over an axis named 'trials'"):
        tsnejax.fit_batch(keys, X, base.replace(initialization="random"), mesh=mesh)
