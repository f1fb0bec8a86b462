"""k-nearest-neighbour graphs with a fixed k: exact blocked search, pynndescent, or precomputed.

Every backend returns a :class:`KNNGraph` with self-matches removed, neighbours sorted by
distance, and Euclidean (not squared) distances. The exact search never builds an N x N
matrix: it processes ``block_size`` query rows at a time (memory ``O(block_size * N)``).
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_int, check_option, float_dtype
from tsnejax._types import Array, ArrayLike, PRNGKey

__all__ = [
    "KNNGraph",
    "exact_knn",
    "pynndescent_knn",
    "precomputed_knn",
    "nearest_neighbors",
    "default_k",
    "EXACT_BUDGET",
    "exact_limit",
]

#: ``neighbors="auto"`` uses the exact search while ``n**2 * (n_features + 100)`` stays below this
#: budget, pynndescent above. ``benchmarks/bench_knn.py`` on a 2-core CPU measured the exact
#: search at ~2.4e-11 * n^2 * (d + 100) seconds (MNIST-70k PCA-50: 17 s; 40k x 784: 34 s)
#: while pynndescent costs 33-44 s in a fresh process at 10k-70k (numba compilation
#: included), so the budget sits at ~40 s of exact search: ~106k points at d = 50, ~44k at
#: d = 784. On a GPU the exact search is far cheaper; pass ``method="exact"`` explicitly there.
EXACT_BUDGET = 1.7e12


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


def default_k(n: int, perplexity: float) -> int:
    """openTSNE's rule: ``min(n - 1, int(3 * perplexity))``."""
    return int(min(n - 1, int(3 * perplexity)))


def _block_size(n: int, k: int, d: int, budget: int = 1 << 25) -> int:
    """Rows per block so that ``block * max(n, k * d)`` stays within ``budget`` elements."""
    return int(max(1, min(n, budget // max(n, k * d, 1))))


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _exact_knn(X: Array, k: int, block_size: int) -> tuple[Array, Array]:
    n, d = X.shape
    n_blocks = -(-n // block_size)
    sq = jnp.sum(X * X, axis=1)
    starts = jnp.arange(n_blocks, dtype=jnp.int32) * block_size

    def one_block(start: Array) -> tuple[Array, Array]:
        rows = start + jnp.arange(block_size, dtype=jnp.int32)
        safe_rows = jnp.minimum(rows, n - 1)
        Xb = jnp.take(X, safe_rows, axis=0)
        d2 = sq[safe_rows][:, None] + sq[None, :] - 2.0 * (Xb @ X.T)
        # Exclude the point itself explicitly (duplicates may tie with it at distance 0).
        d2 = jnp.where(jnp.arange(n, dtype=jnp.int32)[None, :] == safe_rows[:, None], jnp.inf, d2)
        _, idx = jax.lax.top_k(-d2, k)
        # Recompute the chosen distances by direct differences: the matmul form cancels
        # catastrophically for near neighbours of points far from the origin.
        diff = Xb[:, None, :] - jnp.take(X, idx, axis=0)
        dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
        order = jnp.argsort(dist, axis=1, stable=True)
        return (
            jnp.take_along_axis(idx, order, axis=1).astype(jnp.int32),
            jnp.take_along_axis(dist, order, axis=1),
        )

    idx, dist = jax.lax.map(one_block, starts)
    return idx.reshape(-1, k)[:n], dist.reshape(-1, k)[:n]


def exact_knn(X: ArrayLike, k: int, *, block_size: int | None = None) -> KNNGraph:
    """Exact Euclidean kNN by blocked matmul + ``lax.top_k`` on the default device.

    Args:
      X: ``(n, d)`` data.
      k: neighbours per point, ``1 <= k <= n - 1``.
      block_size: query rows per block (default: memory budget of 2^25 elements per block).

    Returns:
      :class:`KNNGraph` with ``(n, k)`` indices and distances.
    """
    X = jnp.asarray(X, dtype=float_dtype())
    n, d = X.shape
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    bs = (
        _block_size(n, k, d)
        if block_size is None
        else check_int("block_size", block_size, minimum=1)
    )
    idx, dist = _exact_knn(X, k, min(bs, n))
    return KNNGraph(idx, dist)


def pynndescent_knn(X: ArrayLike, k: int, *, key: PRNGKey | None = None, **kwargs) -> KNNGraph:
    """Approximate Euclidean kNN with pynndescent (numba; its first call compiles, 30-140 s).

    ``key`` seeds pynndescent's random projection trees; extra keyword arguments go to
    ``pynndescent.NNDescent``.
    """
    from pynndescent import NNDescent

    Xn = np.asarray(X, dtype=np.float32)
    n = Xn.shape[0]
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    seed = 0 if key is None else int(jax.random.randint(key, (), 0, 2**31 - 1))
    index = NNDescent(Xn, n_neighbors=k + 1, random_state=seed, **kwargs)
    idx, dist = index.neighbor_graph
    idx, dist = _drop_self(np.asarray(idx), np.asarray(dist), k)
    return KNNGraph(jnp.asarray(idx, jnp.int32), jnp.asarray(dist, float_dtype()))


def _drop_self(idx: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's self-match, wherever it sits, and keep the first ``k`` others.

    A row without a self-match (exact duplicates can displace it) loses its farthest entry.
    """
    is_self = idx == np.arange(idx.shape[0])[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)


def precomputed_knn(indices: ArrayLike, distances: ArrayLike) -> KNNGraph:
    """Validate a user kNN graph: ``(n, k)`` indices in range, no self-loops, finite distances >= 0.

    Rows are re-sorted by distance.
    """
    idx = np.asarray(indices)
    dist = np.asarray(distances)
    if idx.ndim != 2 or dist.shape != idx.shape:
        raise ValueError(
            "neighbors: precomputed (indices, distances) must both have shape (n, k); "
            f"got {idx.shape} and {dist.shape}."
        )
    if idx.dtype.kind not in "iu":
        raise ValueError(f"neighbors: indices must be integers, got dtype {idx.dtype}.")
    n, k = idx.shape
    if k < 1 or n < 2:
        raise ValueError(
            f"neighbors: need at least 2 points and 1 neighbour, got shape {idx.shape}."
        )
    if (idx < 0).any() or (idx >= n).any():
        raise ValueError(f"neighbors: indices must lie in [0, {n - 1}].")
    if (idx == np.arange(n)[:, None]).any():
        rows = np.flatnonzero((idx == np.arange(n)[:, None]).any(axis=1))
        raise ValueError(
            f"neighbors: {len(rows)} row(s) list the point itself as a neighbour (first: "
            f"{int(rows[0])}); drop the self column (usually the first) before passing them."
        )
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise ValueError("neighbors: distances must be finite and non-negative.")
    order = np.argsort(dist, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    return KNNGraph(jnp.asarray(idx, jnp.int32), jnp.asarray(dist, float_dtype()))


def nearest_neighbors(
    X: ArrayLike,
    k: int,
    *,
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    key: PRNGKey | None = None,
) -> KNNGraph:
    """kNN graph of ``X`` with the chosen backend.

    ``"auto"`` uses the exact search up to :func:`exact_limit` points and pynndescent above,
    so small and mid-sized problems never pay numba's compile time.
    """
    check_option("neighbors", method, ("auto", "exact", "pynndescent"))
    n, d = np.shape(X)
    if method == "auto":
        method = "exact" if n <= exact_limit(d) else "pynndescent"
    if method == "exact":
        return exact_knn(X, k)
    return pynndescent_knn(X, k, key=key)


def exact_limit(n_features: int) -> int:
    """Largest N for which ``neighbors="auto"`` picks the exact search (see EXACT_BUDGET)."""
    return int(np.sqrt(EXACT_BUDGET / (max(n_features, 1) + 100)))
