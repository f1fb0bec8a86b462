"""Row-blocked evaluation: ``fn`` over contiguous row blocks of equally long arrays."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from tsnejax._types import Array


def map_row_blocks(fn: Callable[..., Array], arrays: tuple[Array, ...], block: int | None) -> Array:
    """``fn(*arrays)`` computed ``block`` rows at a time (``lax.map`` over ``dynamic_slice``s,
    no padding copies, then the remainder); ``fn`` must act row by row and return ``(rows, ...)``.
    ``block=None`` (or not smaller than the rows) evaluates all rows at once."""
    n = arrays[0].shape[0]
    if block is None or block >= n:
        return fn(*arrays)
    n_full = (n // block) * block

    def one(i: Array) -> Array:
        return fn(*(jax.lax.dynamic_slice_in_dim(a, i * block, block) for a in arrays))

    out = jax.lax.map(one, jnp.arange(n // block))
    out = out.reshape(n_full, *out.shape[2:])
    if n_full == n:
        return out
    return jnp.concatenate([out, fn(*(a[n_full:] for a in arrays))])
