"""Presets reproduce each peer's conventions; estimator wiring of presets and optimizer specs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from tsnejax import TSNE
from tsnejax.config import TSNEConfig
from tsnejax.gradients import exact_kl_divergence
from tsnejax.init import pca
from tsnejax.optim import get_hyperparams
from tsnejax.pipeline import fit


def test_preset_table_and_overrides():
    sk_config = TSNEConfig.from_preset("sklearn")
    sk = sk_config.flat()
    assert (sk["learning_rate_rule"], sk["gains_rule"], sk["gradient_scale"]) == (
        "sklearn",
        "sklearn",
        4,
    )
    assert (sk_config.total_iter, sk["n_neighbors"], sk["recenter"], sk["max_step_norm"]) == (
        1000,
        "3p+1",
        False,
        None,
    )
    assert (sk["initial_momentum"], sk["final_momentum"]) == (0.5, 0.8)
    fi = TSNEConfig.from_preset("fitsne", n_iter=100)
    assert fi.total_iter == 350 and fi.optimizer.learning_rate_rule == "fitsne"
    # The default config is the openTSNE preset.
    ot = TSNEConfig.from_preset("opentsne")
    assert ot == TSNEConfig()
    with pytest.raises(ValueError, match="preset"):
        TSNEConfig.from_preset("cuml")
    with pytest.raises(ValueError, match="not TSNEConfig settings"):
        TSNEConfig.from_preset("sklearn", n_iterations=5)


def test_estimator_preset_and_optimizer_spec():
    est = TSNE(preset="sklearn", n_iter=100, optimizer={"name": "adam", "learning_rate": 0.5})
    cfg = est._config().flat()
    assert cfg["n_iter"] == 100 and cfg["early_exaggeration_iter"] == 250  # override + preset
    assert cfg["optimizer"] == "adam" and cfg["learning_rate"] == 0.5
    assert cfg["gradient_scale"] == 4
    assert TSNE(max_step_norm=None)._config().optimizer.max_step_norm is None
    assert TSNE()._config().optimizer.max_step_norm == 5.0
    spec = TSNE(optimizer="adam:b1=0.8,learning_rate=2")._config().optimizer
    assert (spec.transform, spec.kwargs, spec.learning_rate) == ("adam", (("b1", 0.8),), 2)
    assert TSNE(learning_rate="N/12")._config().optimizer.learning_rate == "N/12"
    with pytest.raises(ValueError, match="learning_rate"):
        TSNE(learning_rate="M/12")._config()
    with pytest.raises(ValueError, match="'name'"):
        TSNE(optimizer={"learning_rate": 1.0})._config()
    with pytest.raises(ValueError, match="optimizer"):
        TSNE(optimizer="adamw_typo")._config()
    with pytest.raises(ValueError, match="optimizer must be"):
        TSNE(optimizer=3)._config()


def test_sklearn_k_rule_and_fit_records_hyperparams(digits, key):
    X = digits[0][:300]
    res = fit(
        key,
        X,
        TSNEConfig.from_preset("sklearn", n_iter=20, early_exaggeration_iter=20, perplexity=10),
    )
    assert res.affinities.neighbors.shape[1] >= 31  # k = 3 * 10 + 1
    hp = get_hyperparams(res.state.opt_state)
    assert float(hp["learning_rate"]) == 50.0  # max(300 / 12 / 4, 50)
    assert float(hp["momentum"]) == pytest.approx(0.8)


def test_optsne_stops_early_and_switches_phase(digits, key):
    X, _ = digits
    cfg = TSNEConfig.make(stopping="optsne", early_exaggeration_iter=400, n_iter=2000)
    res = fit(key, X, cfg)
    assert 0 < res.early_exaggeration_iter < 400
    assert res.early_exaggeration_iter < res.total_iter < cfg.total_iter
    hp = get_hyperparams(res.state.opt_state)
    assert res.phases.at(res.early_exaggeration_iter)["exaggeration"] == 1.0
    assert float(hp["learning_rate"]) == pytest.approx(len(X))  # opentsne rule, main phase
    # The last two KL reports differ by less than the tolerance per iteration.
    (i0, k0), (i1, k1) = res.kl_history[-2:]
    assert (k0 - k1) / k0 / (i1 - i0) < cfg.schedule.optsne_tol
    with pytest.raises(ValueError, match="exaggeration_decay"):
        fit(key, X, TSNEConfig.make(stopping="optsne", exaggeration_decay="linear"))


@pytest.mark.slow
def test_sklearn_preset_matches_sklearn_exact(digits):
    """Same P (scikit-learn's, all pairs) and init: final KL within 1 % of sklearn's exact."""
    from scipy.spatial.distance import squareform
    from sklearn.manifold import TSNE as SKTSNE
    from sklearn.manifold._t_sne import _joint_probabilities
    from sklearn.metrics import pairwise_distances

    X = digits[0]
    Y0 = np.asarray(pca(X, 2), dtype=np.float32)
    ref = SKTSNE(method="exact", init=Y0.copy(), random_state=0).fit(X)
    P = squareform(_joint_probabilities(pairwise_distances(X, squared=True), 30.0, 0))
    cfg = TSNEConfig.from_preset("sklearn", negative_gradient_method="exact")
    ours = fit(jax.random.key(0), None, cfg, affinities=sp.csr_matrix(P), initialization=Y0)
    assert ours.total_iter == ref.n_iter_ + 1 == 1000
    assert abs(ours.kl_divergence - ref.kl_divergence_) / ref.kl_divergence_ < 0.01


@pytest.mark.slow
def test_opentsne_preset_matches_opentsne(digits):
    """Same P and init as openTSNE (FFT gradients both): exact KL of the results within 1 %."""
    import openTSNE

    X = digits[0]
    Y0 = np.asarray(pca(X, 2), dtype=np.float64)
    aff = openTSNE.affinity.PerplexityBasedNN(X, perplexity=30, method="exact", random_state=0)
    ref = openTSNE.TSNE(negative_gradient_method="fft", random_state=0).fit(
        affinities=aff, initialization=Y0.copy()
    )
    cfg = TSNEConfig.from_preset("opentsne", negative_gradient_method="interpolation")
    ours = fit(jax.random.key(0), None, cfg, affinities=aff.P, initialization=Y0)
    from tsnejax.affinity import precomputed_affinities

    P = precomputed_affinities(aff.P)
    kl = jax.jit(exact_kl_divergence)
    kl_ref = float(kl(jnp.asarray(np.asarray(ref), jnp.float32), P))
    kl_ours = float(kl(jnp.asarray(ours.embedding), P))
    assert abs(kl_ours - kl_ref) / kl_ref < 0.01
