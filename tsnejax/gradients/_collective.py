"""Reductions over the points, on one device or across a mesh axis of point shards.

Every backend computes with the rows it holds. On one device (``axis_name=None``) these helpers
are the plain reductions; inside ``shard_map`` over a mesh axis of points
(:mod:`tsnejax.shard`) they add the collective that makes a per-shard quantity global: grids
and sums are ``psum``-ed, the domain bounds ``pmin``/``pmax``-ed, and the positions that the
attraction and the exact repulsion read are all-gathered. ``valid`` marks real rows (a shard's
padding rows carry no charge, no Z term and get a zero gradient).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsnejax._types import Array


def psum(x: Array, axis_name: str | None) -> Array:
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def all_points(x: Array, axis_name: str | None) -> Array:
    """Every shard's rows, in order (``(n_total, ...)``); ``x`` itself on one device."""
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def bounds(Y: Array, valid: Array | None, axis_name: str | None) -> tuple[Array, Array]:
    """``(min, max)`` over all coordinates of the real points of every shard."""
    if valid is None:
        lo, hi = jnp.min(Y), jnp.max(Y)
    else:
        inf = jnp.asarray(jnp.inf, Y.dtype)
        lo = jnp.min(jnp.where(valid[:, None], Y, inf))
        hi = jnp.max(jnp.where(valid[:, None], Y, -inf))
    if axis_name is None:
        return lo, hi
    return jax.lax.pmin(lo, axis_name), jax.lax.pmax(hi, axis_name)


def charge(Y: Array, valid: Array | None) -> Array:
    """``(n, 1)`` unit charges, zero on padding rows."""
    if valid is None:
        return jnp.ones((Y.shape[0], 1), Y.dtype)
    return valid[:, None].astype(Y.dtype)


def count(Y: Array, valid: Array | None, axis_name: str | None) -> Array | int:
    """Number of real points over all shards (a Python int on one device)."""
    if valid is None:
        return Y.shape[0]
    return psum(jnp.sum(valid, dtype=Y.dtype), axis_name)


def mask_rows(x: Array, valid: Array | None) -> Array:
    """``x`` with padding rows set to zero."""
    return x if valid is None else jnp.where(valid[:, None], x, 0)
