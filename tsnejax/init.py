"""Initial embeddings: PCA (default), spectral (from P), random (explicit key), or a user array.

PCA, spectral and random initialisations are rescaled so the first coordinate has standard
deviation 1e-4 (openTSNE ``rescale``, Kobak & Linderman 2021): small enough that the early
exaggeration phase starts from a compact configuration.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from tsnejax._checks import (
    check_embedding,
    check_int,
    check_key,
    check_n_components,
    check_option,
    check_positive,
    check_scalar,
    float_dtype,
)
from tsnejax._device import to_device
from tsnejax._types import Array, ArrayLike, PRNGKey
from tsnejax.memory import check_memory, pca_bytes

__all__ = [
    "pca",
    "spectral",
    "principal_components",
    "random",
    "rescale",
    "user",
    "TARGET_STD",
    "EXACT_PCA_FLOPS",
    "PCA_SOLVERS",
    "pca_solver",
]

TARGET_STD = 1e-4
#: Exact PCA while the cheaper of the (d, d) covariance (n d^2 flops) and the (n, n) Gram matrix
#: (n^2 d) costs at most this; a randomized SVD above (O(n d k), what scikit-learn's
#: ``PCA(svd_solver="auto")`` picks for large inputs). MNIST-70k at d = 784 (4.3e10) stays exact;
#: (300, 20 000) takes the Gram matrix; (2000, 50 000) the randomized SVD. The covariance alone
#: needed 3.2 GB and an O(d^3) eigendecomposition at d = 20 000: a crash (issue #22).
EXACT_PCA_FLOPS = 5e10


def rescale(Y: Array, target_std: float = TARGET_STD) -> Array:
    """Scale ``Y`` so that ``std(Y[:, 0]) == target_std`` (a constant column is left unscaled)."""
    check_scalar("target_std", target_std, check_positive)
    if np.ndim(Y) != 2 or not jnp.issubdtype(jnp.result_type(Y), jnp.number):
        raise ValueError(f"Y must be a numeric (n, d) embedding, got {type(Y).__name__}.")
    std = jnp.std(Y[:, 0])
    return jnp.where(std > 0, Y * (target_std / jnp.where(std > 0, std, 1.0)), Y)


def _flip(scores: np.ndarray, components: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signs fixed so the largest-magnitude loading of each component is positive (scikit-learn's
    ``svd_flip``): a deterministic result whatever the solver."""
    rows = np.argmax(np.abs(components), axis=0)
    signs = np.sign(components[rows, np.arange(components.shape[1])])
    signs = np.where(signs == 0, 1.0, signs)
    return scores * signs, components * signs


PCA_SOLVERS = ("auto", "covariance", "gram", "randomized")


def pca_solver(n: int, d: int) -> str:
    """The solver ``solver="auto"`` picks for an ``(n, d)`` matrix (see :data:`EXACT_PCA_FLOPS`)."""
    if min(float(n) * d * d, float(n) * n * d) > EXACT_PCA_FLOPS:
        return "randomized"
    return "covariance" if d <= n else "gram"


def principal_components(
    X: ArrayLike, k: int, *, solver: str = "auto", seed: int = 0
) -> tuple[np.ndarray, str]:
    """The top ``k`` principal-component scores of ``X`` (centred), float64, and the solver used.

    ``solver="auto"``: ``"covariance"`` (eigendecomposition of the ``(d, d)`` covariance; n >= d)
    or ``"gram"`` (of the ``(n, n)`` Gram matrix; n < d) while their cost is at most
    :data:`EXACT_PCA_FLOPS`, else ``"randomized"`` (Halko et al. 2011 with 7 power iterations,
    scikit-learn's ``randomized_svd``; ``seed`` fixes its test matrix). The first two are exact;
    all three fix signs as scikit-learn does. Memory: one centred float64 copy of ``X`` plus
    ``min(n, d)^2`` (the chosen solver's square).
    """
    check_option("solver", solver, PCA_SOLVERS)
    X = np.asarray(X)
    n, d = X.shape
    k = min(k, n, d)
    if solver == "auto":
        solver = pca_solver(n, d)
    Xc = X.astype(np.float64, copy=True)
    Xc -= Xc.mean(axis=0)
    if solver == "covariance":
        _, vecs = np.linalg.eigh(Xc.T @ Xc / n)
        comps = vecs[:, ::-1][:, :k]
        scores, _ = _flip(Xc @ comps, comps)
        return scores, "covariance"
    if solver == "gram":
        vals, vecs = np.linalg.eigh(Xc @ Xc.T)
        u = vecs[:, ::-1][:, :k]
        s = np.sqrt(np.maximum(vals[::-1][:k], 0.0))
        comps = (Xc.T @ u) / np.where(s > 0, s, 1.0)  # (d, k) right singular vectors
        scores, _ = _flip(u * s, comps)
        return scores, "gram"
    from sklearn.utils.extmath import randomized_svd

    u, s, vt = randomized_svd(Xc, k, n_iter=7, random_state=seed, flip_sign=False)
    scores, _ = _flip(u * s, vt.T)
    return scores, "randomized"


def pca(X: ArrayLike, n_components: int = 2, *, target_std: float = TARGET_STD) -> Array:
    """Top principal components of ``X`` (centred), rescaled to ``target_std`` on the first axis.

    Computed on the host in float64 (no compilation, which on small data costs more than the
    PCA) by :func:`principal_components`: the covariance, the Gram matrix or a randomized SVD,
    whichever the shape makes cheap. Component signs are fixed so the largest-magnitude loading
    of each is positive (scikit-learn's ``svd_flip``), so the result is deterministic.

    Returns:
      ``(n, n_components)`` embedding.
    """
    n_components = check_n_components(n_components)
    check_scalar("target_std", target_std, check_positive)
    if not sp.issparse(X) and (np.ndim(X) != 2 or np.asarray(X).dtype.kind not in "biuf"):
        raise ValueError(f"X must be a numeric (n, d) array, got {type(X).__name__}.")
    if sp.issparse(X):  # above tsnejax.knn_metric.SPARSE_DENSE_ELEMENTS cells: ARPACK
        from sklearn.decomposition import PCA

        fitted = PCA(n_components, svd_solver="arpack", random_state=0).fit(X)
        Y, _ = _flip(fitted.transform(X), fitted.components_.T)
        return to_device(Y * (target_std / max(Y[:, 0].std(), 1e-300)), float_dtype())
    X = np.asarray(X)
    if X.shape[1] < n_components:
        raise ValueError(
            f"initialization='pca' needs n_features >= n_components ({n_components}), got "
            f"{X.shape[1]}; use initialization='random'."
        )
    solver = pca_solver(*X.shape)
    check_memory(
        f"PCA initialisation ({solver} solver) of a {X.shape[0]} x {X.shape[1]} matrix",
        pca_bytes(X.shape[0], X.shape[1], solver),
        "reduce the features first (e.g. PCA to 50) or pass initialization='random'",
        device="host",
    )
    Y, _ = principal_components(X, n_components, solver=solver)
    std = Y[:, 0].std()
    if std > 0:
        Y = Y * (target_std / std)
    return to_device(Y, float_dtype())


def random(
    key: PRNGKey, n_samples: int, n_components: int = 2, *, target_std: float = TARGET_STD
) -> Array:
    """Isotropic Gaussian initialisation with standard deviation ``target_std``."""
    n_components = check_n_components(n_components)
    key = check_key(key)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    check_scalar("target_std", target_std, check_positive)
    return target_std * jax.random.normal(key, (n_samples, n_components), float_dtype())


def user(Y: ArrayLike, n_samples: int, n_components: int = 2) -> Array:
    """A validated copy of a user's initial embedding (used as is, not rescaled)."""
    return to_device(check_embedding(Y, n_samples, n_components), float_dtype())


def spectral(
    P: Any,
    n_components: int = 2,
    key: PRNGKey | None = None,
    *,
    tol: float = 1e-4,
    jitter: float = 0.01,
    target_std: float = TARGET_STD,
) -> Array:
    """Diffusion-map initialisation from the affinities (openTSNE's ``"spectral"``).

    The generalised eigenproblem ``P v = lambda D v`` (``D`` the row sums: the random walk on
    P) is solved for its ``n_components + 1`` largest eigenvalues with ARPACK; the first,
    trivial eigenvector (lambda = 1) is dropped and each other is scaled by its eigenvalue.
    Signs are fixed (largest-magnitude entry positive), the first axis is rescaled to
    ``target_std`` and, from ``key``, Gaussian jitter of ``jitter`` times that added (openTSNE's
    ``add_jitter``; points with identical rows stay apart). openTSNE scales the kept vectors by
    eigenvalues in the solver's order rather than the sorted one; tsnejax uses the sorted one.

    Args:
      P: :class:`tsnejax.Affinities` or a symmetric scipy/dense ``(n, n)`` matrix.
      key: ``jax.random.key`` of the jitter (and of ARPACK's start vector); ``None``: seed 0.

    Returns:
      ``(n, n_components)`` embedding.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    from tsnejax.affinity import as_affinities, to_scipy

    n_components = check_n_components(n_components)
    check_positive("tol", tol)  # None or a string was SciPy's SystemError from ARPACK
    check_positive("jitter", jitter, allow_zero=True)
    check_positive("target_std", target_std)
    A = to_scipy(as_affinities(P, "affinities"))
    n = A.shape[0]
    if n_components + 2 > n:
        raise ValueError(
            f"initialization='spectral' needs more than n_components + 1 = {n_components + 1} "
            f"points, got {n}."
        )
    degree = np.ravel(A.sum(axis=1))
    if not np.all(degree > 0):
        raise ValueError(
            f"initialization='spectral': {int(np.sum(degree <= 0))} points have no affinity "
            "(an empty row of P); use initialization='pca'."
        )
    key = jax.random.key(0) if key is None else key
    k_arpack, k_jitter = jax.random.split(key)
    v0 = np.asarray(jax.random.uniform(k_arpack, (n,), minval=-1.0, maxval=1.0), np.float64)
    vals, vecs = eigsh(A, M=sp.diags(degree), k=n_components + 1, tol=tol, which="LM", v0=v0)
    order = np.argsort(vals)[::-1]
    Y = vecs[:, order[1:]] * vals[order[1:]]
    Y = _flip(Y, Y)[0]  # each column's largest-magnitude entry positive
    std = Y[:, 0].std()
    if std > 0:
        Y = Y * (target_std / std)
    noise = jax.random.normal(k_jitter, Y.shape, jnp.float32)
    Y = Y + jitter * Y[:, 0].std() * np.asarray(noise, np.float64)
    return to_device(Y, float_dtype())
