"""The exact blocked search and the graph type shared by :mod:`tsnejax.knn` and
:mod:`tsnejax.knn_index` (so neither imports the other's internals)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import float_dtype
from tsnejax._device import to_device
from tsnejax._types import Array, ArrayLike

__all__ = [
    "KNNGraph",
    "block_size_for",
    "exact_sorted",
    "exact_knn_rows",
    "exact_query",
    "remeasured",
    "rescaled",
    "unit_for",
    "largest_magnitude",
    "times_unit",
    "SAFE_MAGNITUDE",
]


class KNNGraph(NamedTuple):
    """A fixed-k neighbour graph.

    Attributes:
      indices: ``(n, k) int32``; row ``i`` lists its ``k`` nearest other points, nearest first.
      distances: ``(n, k)`` float; Euclidean distances in the input units (not squared).
    """

    indices: Array
    distances: Array

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


def block_size_for(n: int, k: int, d: int, budget: int = 1 << 27) -> int:
    """Rows per block so that ``block * max(n, k * d)`` stays within ``budget`` elements."""
    return int(max(1, min(n, budget // max(n, k * d, 1))))


def exact_sorted(Q: Array, X: Array, idx: Array) -> tuple[Array, Array]:
    """Distances of queries ``Q`` to candidates ``X[idx]`` by direct differences, sorted.

    The matmul form used to pick the candidates cancels catastrophically for near neighbours of
    points far from the origin; the chosen ones are measured again exactly. The sort is stable,
    so equal distances (integer data has many) keep ``top_k``'s order: the first ``k`` columns
    of a ``K``-neighbour graph are then the ``k``-neighbour graph (sweeps and ``fit_batch``
    slice one graph for several perplexities).
    """
    diff = Q[:, None, :] - jnp.take(X, idx, axis=0)
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
    order = jnp.argsort(dist, axis=1, stable=True)
    return (
        jnp.take_along_axis(idx, order, axis=1).astype(jnp.int32),
        jnp.take_along_axis(dist, order, axis=1),
    )


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def exact_knn_rows(X: Array, rows: Array, k: int, block_size: int) -> tuple[Array, Array]:
    n, d = X.shape
    m = rows.shape[0]
    n_blocks = -(-m // block_size)
    # Centring first shrinks |x|^2 and so the cancellation in |x|^2 + |y|^2 - 2 x.y.
    X = X - jnp.mean(X, axis=0)
    sq = jnp.sum(X * X, axis=1)
    rows = jnp.pad(rows, (0, n_blocks * block_size - m), mode="edge").reshape(n_blocks, -1)

    def one_block(block_rows: Array) -> tuple[Array, Array]:
        Xb = jnp.take(X, block_rows, axis=0)
        d2 = sq[block_rows][:, None] + sq[None, :] - 2.0 * (Xb @ X.T)
        # Exclude the point itself explicitly (duplicates may tie with it at distance 0).
        d2 = jnp.where(jnp.arange(n, dtype=jnp.int32)[None, :] == block_rows[:, None], jnp.inf, d2)
        _, idx = jax.lax.top_k(-d2, k)
        return exact_sorted(Xb, X, idx)

    idx, dist = jax.lax.map(one_block, rows)
    return idx.reshape(-1, k)[:m], dist.reshape(-1, k)[:m]


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def exact_query(R: Array, Q: Array, k: int, block_size: int) -> tuple[Array, Array]:
    m = Q.shape[0]
    n_blocks = -(-m // block_size)
    center = jnp.mean(R, axis=0)
    R, Q = R - center, Q - center
    sq = jnp.sum(R * R, axis=1)
    Qb = jnp.pad(Q, ((0, n_blocks * block_size - m), (0, 0))).reshape(n_blocks, block_size, -1)

    def one_block(q: Array) -> tuple[Array, Array]:
        d2 = jnp.sum(q * q, axis=1)[:, None] + sq[None, :] - 2.0 * (q @ R.T)
        _, idx = jax.lax.top_k(-d2, k)
        return exact_sorted(q, R, idx)

    idx, dist = jax.lax.map(one_block, Qb)
    return idx.reshape(-1, k)[:m], dist.reshape(-1, k)[:m]


@functools.partial(jax.jit, static_argnames=("block_size",))
def remeasured(X: Array, idx: Array, block_size: int) -> tuple[Array, Array]:
    """Each row's candidates ``idx`` (``(n, k)``) with exact distances, re-sorted
    (:func:`exact_sorted` in blocks of ``block_size`` rows)."""
    n, k = idx.shape
    n_blocks = -(-n // block_size)
    rows = jnp.arange(n_blocks * block_size, dtype=jnp.int32).reshape(n_blocks, -1)
    rows = jnp.minimum(rows, n - 1)

    def one_block(r: Array) -> tuple[Array, Array]:
        return exact_sorted(jnp.take(X, r, axis=0), X, jnp.take(idx, r, axis=0))

    i, d = jax.lax.map(one_block, rows)
    return i.reshape(-1, k)[:n], d.reshape(-1, k)[:n]


#: Largest magnitudes searched as they are: squared distances of such data neither overflow nor
#: underflow float32 (a power-of-two rescaling is exact, so it changes no result, but it costs a
#: pass over the data and a program per shape for the distances' ``* unit``).
SAFE_MAGNITUDE = (2.0**-30, 2.0**30)


def rescaled(X: ArrayLike) -> tuple[Array, float]:
    """``X`` in units of a power of two near its largest magnitude, and that unit (1 when the
    largest magnitude is within :data:`SAFE_MAGNITUDE`, or 0).

    Squared distances of 1e30-scale data overflow float32 and those of 1e-30-scale data
    underflow; neighbours do not depend on the unit, and a power of two rescales exactly.
    A device array is rescaled on the device (only the scalar maximum comes to the host); a
    host array on the host, then copied (eager device arithmetic would compile per shape).
    """
    if not isinstance(X, jax.Array):
        X = np.asarray(X, dtype=float_dtype())
        top = largest_magnitude(X)
    else:
        X = X.astype(float_dtype())
        top = float(jnp.max(jnp.abs(X))) if X.size else 0.0
    unit = unit_for(top)
    return to_device(X if unit == 1.0 else X / np.asarray(unit, X.dtype)), unit


def largest_magnitude(X: np.ndarray) -> float:
    """``max |x|`` over a host array (0 when it is empty)."""
    return float(max(X.max(), -X.min())) if X.size else 0.0


def unit_for(top: float) -> float:
    """The power-of-two unit for data whose largest magnitude is ``top`` (see :func:`rescaled`)."""
    lo, hi = SAFE_MAGNITUDE
    rescale = np.isfinite(top) and top > 0 and not lo <= top <= hi
    return 2.0 ** round(np.log2(top)) if rescale else 1.0


def times_unit(dist: Array, unit: float) -> Array:
    """Distances back in the data's unit (nothing to do, and no program, for a unit of 1)."""
    return dist if unit == 1.0 else dist * unit


def drop_self(idx: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's self-match, wherever it sits, and keep the first ``k`` others.

    A row without a self-match (exact duplicates can displace it) loses its farthest entry.
    """
    is_self = idx == np.arange(idx.shape[0])[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)
