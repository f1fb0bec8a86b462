"""Run-to-run stability: Procrustes disparity between two embeddings of the same points."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsnejax._checks import float_dtype, numeric_array
from tsnejax._types import Array, ArrayLike

__all__ = ["procrustes_disparity"]


@jax.jit
def _disparity(A: Array, B: Array) -> Array:
    A = A - jnp.mean(A, axis=0)
    B = B - jnp.mean(B, axis=0)
    A = A / jnp.linalg.norm(A)
    B = B / jnp.linalg.norm(B)
    # Best rotation (or reflection) R and scale of B onto A from the SVD of B^T A. The
    # residual equals 1 - (sum of singular values)^2, but summing it directly avoids the
    # cancellation of that form for nearly identical embeddings.
    u, s, vt = jnp.linalg.svd(B.T @ A, full_matrices=False)
    residual = A - jnp.sum(s) * (B @ (u @ vt))
    return jnp.sum(residual * residual)


def procrustes_disparity(Y1: ArrayLike, Y2: ArrayLike) -> float:
    """Sum of squared differences after centring, scaling both to unit Frobenius norm and the
    best orthogonal transform of ``Y2`` onto ``Y1`` (``scipy.spatial.procrustes``'s disparity;
    0 = identical up to similarity, 1 = unrelated)."""
    A = jnp.asarray(numeric_array("Y1", Y1), float_dtype())
    B = jnp.asarray(numeric_array("Y2", Y2), float_dtype())
    if A.ndim != 2 or A.shape != B.shape:
        raise ValueError(f"Y1 and Y2 must be 2-D with equal shapes, got {A.shape} and {B.shape}.")
    if A.shape[0] < 2:
        raise ValueError("procrustes_disparity needs at least 2 points.")
    for name, M in (("Y1", A), ("Y2", B)):
        if not bool(jnp.all(jnp.isfinite(M))):
            raise ValueError(f"{name} contains NaN or inf.")
        if float(jnp.linalg.norm(M - jnp.mean(M, axis=0))) == 0.0:
            raise ValueError(f"{name} has all points equal; the disparity is undefined.")
    return float(_disparity(A, B))
