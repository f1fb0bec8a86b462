"""Initial embeddings: PCA (default), random (explicit key), or a user array.

PCA and random initialisations are rescaled so the first coordinate has standard deviation
1e-4 (openTSNE ``rescale``, Kobak & Linderman 2021): small enough that the early exaggeration
phase starts from a compact configuration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_embedding, check_n_components, float_dtype
from tsnejax._types import Array, ArrayLike, PRNGKey

__all__ = ["pca", "random", "rescale", "user", "TARGET_STD"]

TARGET_STD = 1e-4


def rescale(Y: Array, target_std: float = TARGET_STD) -> Array:
    """Scale ``Y`` so that ``std(Y[:, 0]) == target_std`` (a constant column is left unscaled)."""
    std = jnp.std(Y[:, 0])
    return jnp.where(std > 0, Y * (target_std / jnp.where(std > 0, std, 1.0)), Y)


def pca(X: ArrayLike, n_components: int = 2, *, target_std: float = TARGET_STD) -> Array:
    """Top principal components of ``X`` (centred), rescaled to ``target_std`` on the first axis.

    Computed on the host in float64 from the ``(d, d)`` covariance (cost ``O(n d^2)``; no
    compilation, which on small data costs more than the PCA). Component signs are fixed so
    the largest-magnitude loading of each is positive (scikit-learn's ``svd_flip``), so the
    result is deterministic.

    Returns:
      ``(n, n_components)`` embedding.
    """
    n_components = check_n_components(n_components)
    X = np.asarray(X, np.float64)
    if X.shape[1] < n_components:
        raise ValueError(
            f"initialization='pca' needs n_features >= n_components ({n_components}), got "
            f"{X.shape[1]}; use initialization='random'."
        )
    Xc = X - X.mean(axis=0)
    _, vecs = np.linalg.eigh(Xc.T @ Xc / X.shape[0])
    comps = vecs[:, ::-1][:, :n_components]
    signs = np.sign(comps[np.argmax(np.abs(comps), axis=0), np.arange(n_components)])
    comps = comps * np.where(signs == 0, 1.0, signs)
    Y = Xc @ comps
    std = Y[:, 0].std()
    if std > 0:
        Y = Y * (target_std / std)
    return jnp.asarray(Y, float_dtype())


def random(
    key: PRNGKey, n_samples: int, n_components: int = 2, *, target_std: float = TARGET_STD
) -> Array:
    """Isotropic Gaussian initialisation with standard deviation ``target_std``."""
    n_components = check_n_components(n_components)
    return target_std * jax.random.normal(key, (n_samples, n_components), float_dtype())


def user(Y: ArrayLike, n_samples: int, n_components: int = 2) -> Array:
    """A validated copy of a user's initial embedding (used as is, not rescaled)."""
    return jnp.asarray(check_embedding(Y, n_samples, n_components), float_dtype())
