"""The heavy-tailed output kernel shared by every gradient backend (Kobak et al. 2019).

:math:`w(d^2) = (1 + d^2/\\alpha)^{-\\alpha}` with ``alpha = dof``; ``dof = 1`` is the Cauchy
kernel of t-SNE, ``dof -> inf`` approaches SNE's Gaussian. A Python ``dof = inf`` takes that
limit exactly, :math:`w = e^{-d^2}` with unit force factor (a traced ``dof`` must be finite).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from tsnejax._types import Array, Scalar


def _is_one(dof: Scalar) -> bool:
    return isinstance(dof, int | float) and float(dof) == 1.0


def _is_inf(dof: Scalar) -> bool:
    return isinstance(dof, int | float) and math.isinf(dof)


def kernel(d2: Array, dof: Scalar) -> Array:
    """:math:`w = (1 + d^2/\\alpha)^{-\\alpha}`."""
    if _is_inf(dof):
        return jnp.exp(-d2)
    if _is_one(dof):
        return 1.0 / (1.0 + d2)
    return jnp.exp(-dof * jnp.log1p(d2 / dof))


def inv_base(d2: Array, dof: Scalar) -> Array:
    """:math:`(1 + d^2/\\alpha)^{-1}`: the factor each pair force carries."""
    if _is_inf(dof):
        return jnp.ones_like(d2)
    return 1.0 / (1.0 + d2 / dof)


def log_kernel(d2: Array, dof: Scalar) -> Array:
    """:math:`\\log w = -\\alpha \\log(1 + d^2/\\alpha)`."""
    if _is_inf(dof):
        return -d2
    return -dof * jnp.log1p(d2 / dof)


def kernel_and_force(d2: Array, dof: Scalar) -> tuple[Array, Array]:
    """``(w, w / (1 + d^2/alpha))`` with a single division per pair (the exact hot loop)."""
    if _is_inf(dof):
        w = jnp.exp(-d2)
        return w, w
    inv = 1.0 / (1.0 + d2) if _is_one(dof) else 1.0 / (1.0 + d2 / dof)
    w = inv if _is_one(dof) else jnp.exp(dof * jnp.log(inv))
    return w, w * inv
