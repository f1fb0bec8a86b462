"""KL divergence of an embedding: exact (blocked) or with Z from the interpolation grid."""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from tsnejax._checks import (
    GRID_MAX_COMPONENTS,
    check_dof,
    check_option,
    check_positive,
    float_dtype,
)
from tsnejax._types import ArrayLike
from tsnejax.affinity import Affinities, precomputed_affinities
from tsnejax.gradients import exact_kl_divergence, get_backend
from tsnejax.metrics.neighborhood import finite_embedding

__all__ = ["kl_divergence", "KL_METHODS"]

KL_METHODS = ("exact", "approx")


def kl_divergence(
    P: Affinities | sp.spmatrix | np.ndarray,
    Y: ArrayLike,
    dof: float = 1.0,
    *,
    method: Literal["exact", "approx"] = "exact",
    exaggeration: float = 1.0,
    corrected: bool = True,
    **grid_params: Any,
) -> float:
    """:math:`KL(P \\| Q) = \\sum_{ij} p_{ij} \\log(p_{ij} / q_{ij})` in nats.

    ``q_ij = w_ij / Z`` with ``w = (1 + d^2/dof)^{-dof}`` and ``Z = sum_{k != l} w_kl``.

    Args:
      P: symmetric affinities summing to 1 (:class:`Affinities`, scipy sparse or dense).
      Y: ``(n, c)`` embedding.
      dof: degrees of freedom of the output kernel.
      method: ``"exact"``: Z by blocked O(n^2) sums (no n x n matrix); ``"approx"``: Z from
        the interpolation grid (``grid_params`` go to it), O(n), as the optimiser reports it.
      exaggeration: the factor ``a`` P was multiplied by during early exaggeration.
      corrected: with ``exaggeration != 1``, ``True`` returns openTSNE's corrected value
        ``KL_a / a - log a``, which is identical to the plain ``KL(P||Q)``; ``False`` returns
        the objective the optimiser saw, ``KL_a = sum a p log(a p / q) = a (KL + log a)``.
    """
    check_option("method", method, KL_METHODS)
    a = check_positive("exaggeration", exaggeration)
    if not isinstance(P, Affinities):
        P = precomputed_affinities(P)
    Y = jnp.asarray(finite_embedding(Y), float_dtype())
    if Y.shape[0] != P.n_points:
        raise ValueError(f"Y must have shape ({P.n_points}, c) to match P, got {Y.shape}.")
    # dof compiled in, as the loop compiles a Python dof: traced, dof = inf (the Gaussian
    # kernel) was (1 + d2/inf)^-inf = exp(-inf * 0), and the KL came out NaN.
    dof = check_dof("dof", dof)
    if method == "exact":
        kl = float(jax.jit(exact_kl_divergence, static_argnums=2)(Y, P, dof))
    else:
        if Y.shape[1] > GRID_MAX_COMPONENTS:
            raise ValueError(
                f"method='approx' sums Z on the interpolation grid, which runs in 1-"
                f"{GRID_MAX_COMPONENTS} dimensions; Y has {Y.shape[1]}: use method='exact'."
            )
        backend = get_backend("interpolation", **grid_params)
        grid = backend.allocate(Y)
        kl = float(jax.jit(backend.kl_divergence, static_argnums=(2, 3))(Y, P, dof, grid))
    if corrected or a == 1.0:
        return kl
    return a * (kl + float(np.log(a)))
