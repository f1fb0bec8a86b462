"""Spectral initialisation: openTSNE's diffusion map of P, wired into fit, fit_batch and sweeps."""

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from tsnejax import TSNEConfig
from tsnejax.affinity import perplexity_affinities, to_scipy
from tsnejax.init import spectral
from tsnejax.knn import exact_knn
from tsnejax.pipeline import prepare


@pytest.fixture(scope="module")
def P(digits):
    return perplexity_affinities(exact_knn(digits[0], 90), 30.0)


def test_spectral_is_opentsnes_diffusion_map(P):
    """Each axis correlates with openTSNE's spectral initialisation of the same P at > 0.999
    (openTSNE scales its kept vectors by eigenvalues in the solver's order, and jitters with
    its own generator); PC1-like scale 1e-4 as for PCA."""
    opentsne_init = pytest.importorskip("openTSNE.initialization")
    Y = np.asarray(spectral(P, 2, jax.random.key(0)))
    ref = opentsne_init.spectral(to_scipy(P), 2, random_state=0)
    assert Y.shape == (P.n_points, 2) and Y[:, 0].std() == pytest.approx(1e-4, rel=1e-3)
    for j in range(2):
        assert abs(np.corrcoef(Y[:, j], ref[:, j])[0, 1]) > 0.999
    np.testing.assert_array_equal(Y, np.asarray(spectral(P, 2, jax.random.key(0))))
    # a scipy P gives the same up to float32 rounding (it is converted), and 3-D works
    by_scipy = np.asarray(spectral(to_scipy(P), 2, jax.random.key(0)))
    np.testing.assert_allclose(by_scipy, Y, rtol=1e-3, atol=1e-9)
    assert spectral(P, 3, jax.random.key(0)).shape == (P.n_points, 3)


def test_spectral_bad_input_is_named():
    lonely = sp.csr_matrix(np.array([[0, 0.5, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="2 points have no affinity"):
        spectral(lonely, 1)
    with pytest.raises(ValueError, match="needs more than n_components"):
        spectral(sp.csr_matrix(np.full((3, 3), 1 / 6) - np.eye(3) / 6), 2)


def test_fit_starts_from_the_spectral_embedding_of_its_P(digits):
    X = digits[0][:600]
    key = jax.random.key(3)
    prep = prepare(key, X, TSNEConfig.make(initialization="spectral"))
    want = spectral(prep.P, 2, jax.random.split(key)[1])  # fit's initialisation key
    np.testing.assert_array_equal(np.asarray(prep.Y0), np.asarray(want))
    # P alone is enough (PCA needs X): a precomputed P gets a spectral start
    only_p = prepare(key, None, TSNEConfig.make(initialization="spectral"), affinities=prep.P)
    np.testing.assert_array_equal(np.asarray(only_p.Y0), np.asarray(want))
    with pytest.raises(ValueError, match="initialization='pca' needs X; pass X, init.*spectral"):
        prepare(key, None, TSNEConfig.make(), affinities=prep.P)
    with pytest.raises(ValueError, match="initialization='spectrl' is not a valid option"):
        TSNEConfig.make(initialization="spectrl")
