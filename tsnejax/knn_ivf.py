"""A cluster-pruned kNN search (an inverted-file index, FAISS's ``IndexIVFFlat`` idea) that
jits, runs on any JAX device and needs no compiled extension: ``neighbors="ivf"``, and the
``"auto"`` choice above :data:`IVF_MIN_POINTS` points.

1. **Cells.** A PCA bisection tree (numpy, on the host) cuts the points into leaves of
   ``cluster_size``; a few Lloyd steps (on the device) move each point to the nearest of the
   ``centroid_neighbors`` centroids next to its own, so the cells become k-means cells without
   an ``n x C`` distance matrix.
2. **Probe lists.** Each cell's candidates are the members of the cells whose centroids are
   nearest to its own, in that order, cut at ``candidates`` points.
3. **Search.** The points of a cell, ``query_tile`` at a time, are compared with their cell's
   candidates (one matmul and one ``top_k``); the chosen ``k`` are measured again by direct
   differences, so every distance returned is exact and only the *set* is approximate.

The search costs ``O(n * candidates * d)`` instead of the exact search's ``O(n^2 d)``. On
MNIST-70k PCA-50 (k = 90) the defaults find 99.25 % of the exact neighbours in 11.0 s on two
CPU cores instead of 19.3 s (8192 candidates: 98.5 % in ~8 s); 250k jittered rows: 98.9 % in
41 s instead of 208 s; 1M: 171 s (``benchmarks/bench_knn.py``; docs/performance.md).
Deterministic: the same data and ``seed`` give the same graph (on a GPU, with tsnejax's
deterministic-ops flag).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_int
from tsnejax._knn_exact import KNNGraph, block_size_for, exact_knn_rows, exact_query, exact_sorted
from tsnejax._types import Array

__all__ = ["IVFSearch", "ivf_knn", "ivf_query", "IVF_MIN_POINTS", "tree_leaves"]

#: ``neighbors="auto"`` uses this search from this many points on, the exact one below (MNIST
#: PCA-50 on two CPU cores, ``bench_knn.py``: 30k exact 4.1 s vs 4.4 s, 70k 19.3 vs 11.0 s).
IVF_MIN_POINTS = 40_000


class IVFSearch(NamedTuple):
    """Effort of :func:`ivf_knn` (static: each setting compiles its own program).

    Attributes:
      cluster_size: mean points per cell (smaller cells: probe lists closer to each query).
      candidates: points each query is compared with (recall and cost grow with it).
      query_tile: queries per matmul; a cell is searched in tiles of this many rows.
      lloyd_steps: k-means steps after the tree (0: the tree's leaves are the cells).
      centroid_neighbors: centroids a point may move to in one Lloyd step.
      tile_batch: tiles searched together (vmapped) per loop step; 0: one on a CPU (vmap is
        slower there), 64 on an accelerator (a tile alone is too small to fill it).
    """

    cluster_size: int = 32
    candidates: int = 12288
    query_tile: int = 32
    lloyd_steps: int = 3
    centroid_neighbors: int = 16
    tile_batch: int = 0


def ivf_knn(X: Array, k: int, *, search: IVFSearch | None = None, seed: int = 0) -> KNNGraph:
    """Approximate Euclidean kNN of every row of ``X`` among the others (exact distances).

    Args:
      X: ``(n, d)`` float data (already in a safe unit: :func:`tsnejax.knn.nearest_neighbors`
        rescales by a power of two first).
      k: neighbours per point, ``1 <= k <= n - 1``.
      search: :class:`IVFSearch` effort.
      seed: seeds the tree's power iterations (the same seed, the same graph).

    Returns:
      :class:`KNNGraph` ``(n, k)``, nearest first. With ``candidates >= n`` it is the exact
      search.
    """
    s = _checked(search)
    X = jnp.asarray(X)
    n, d = X.shape
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    if s.candidates < k + 1:
        raise ValueError(
            f"search.candidates={s.candidates} must exceed k={k}: each query needs k others."
        )
    if s.candidates >= n:
        return KNNGraph(
            *exact_knn_rows(X, jnp.arange(n, dtype=jnp.int32), k, block_size_for(n, k, d))
        )
    X = X - jnp.mean(X, axis=0)  # smaller |x|^2: less cancellation in the matmul distances
    cells = _cells(X, s, seed)
    idx, dist = _run(X, cells, X, cells.cell, s, k, exclude_self=True)
    bs = block_size_for(n, k, d)
    return _redo_short(
        idx,
        dist,
        lambda rows: exact_knn_rows(X, jnp.asarray(rows, jnp.int32), k, min(bs, rows.size)),
    )


def ivf_query(
    R: Array, Q: Array, k: int, *, search: IVFSearch | None = None, seed: int = 0
) -> KNNGraph:
    """The ``k`` nearest rows of ``R`` (``(n, d)``) for each row of ``Q`` (``(m, d)``; queries
    are not part of the reference): cells and probe lists are built on ``R``, each query
    searches the probe list of its nearest centroid. Distances exact; ``candidates >= n``:
    the exact search. Inputs already in a safe unit (:func:`tsnejax.knn.knn_query`)."""
    s = _checked(search)
    R, Q = jnp.asarray(R), jnp.asarray(Q)
    (n, d), m = R.shape, Q.shape[0]
    k = check_int("k", k, minimum=1)
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} reference points; use k <= {n}.")
    if s.candidates < k:
        raise ValueError(f"search.candidates={s.candidates} must be at least k={k}.")
    bs = max(1, min(block_size_for(n, k, d), m))
    if s.candidates >= n:
        return KNNGraph(*exact_query(R, Q, k, bs))
    center = jnp.mean(R, axis=0)
    R, Q = R - center, Q - center
    cells = _cells(R, s, seed)
    nearest, _ = exact_query(cells.mu, Q, 1, max(1, min(block_size_for(len(cells.sizes), 1, d), m)))
    idx, dist = _run(R, cells, Q, np.asarray(nearest[:, 0]), s, k, exclude_self=False)
    return _redo_short(
        idx, dist, lambda rows: exact_query(R, jnp.take(Q, rows, axis=0), k, min(bs, rows.size))
    )


def _redo_short(idx: Array, dist: Array, exact: Callable) -> KNNGraph:
    """Rows whose probe list held fewer than k candidates (flagged by an infinite last
    distance; possible only for tiny or extremely uneven cells), searched again by
    ``exact(rows) -> (idx, dist)``."""
    short = np.flatnonzero(~np.isfinite(np.asarray(dist[:, -1])))
    if short.size:
        fix_idx, fix_dist = exact(short)
        idx, dist = idx.at[short].set(fix_idx), dist.at[short].set(fix_dist)
    return KNNGraph(idx, dist)


def _checked(search: IVFSearch | None) -> IVFSearch:
    s = search or IVFSearch()
    for name in IVFSearch._fields:
        lowest = 0 if name in ("lloyd_steps", "tile_batch") else 1
        check_int(f"search.{name}", getattr(s, name), minimum=lowest)
    return s


class _Cells(NamedTuple):
    """The reference grouped by cell: row order, each cell's start and size, each cell's
    probe list ``(C, P)``, centroids ``(C, d)`` and each row's cell (host)."""

    order: Array
    starts: Array
    sizes: np.ndarray
    probe: Array
    mu: Array
    cell: np.ndarray


#: Probe-list length in units of the cells an average list needs (candidates / cluster size).
PROBE_FACTOR = 2


def _cells(X: Array, s: IVFSearch, seed: int) -> _Cells:
    leaf = tree_leaves(np.asarray(X), s.cluster_size, seed)
    n_cells = int(leaf.max()) + 1
    nbrs = min(s.centroid_neighbors, n_cells)
    mu, cell = _lloyd(X, jnp.asarray(leaf), n_cells, s.lloyd_steps, nbrs)
    # Enough cells that their members fill the candidate list (at 250k the fullest list needed
    # 440 cells, the median 380); a list that falls short is redone exactly. Twice the cells an
    # average list needs: the top_k over centroids took 5.0 s at 250k with four times, 3.2 s.
    n_probe = min(n_cells, PROBE_FACTOR * -(-s.candidates // s.cluster_size))
    probe, _ = exact_query(mu, mu, n_probe, block_size_for(n_cells, n_probe, X.shape[1]))
    cell = np.asarray(cell)
    order, starts, sizes = _grouped(cell, n_cells)
    return _Cells(order, starts, sizes, probe, mu, cell)


def _grouped(cell: np.ndarray, n_cells: int) -> tuple[Array, Array, np.ndarray]:
    """Rows sorted by cell (stable), each cell's first position (device) and size (host)."""
    sizes = np.bincount(cell, minlength=n_cells)
    order = np.argsort(cell, kind="stable").astype(np.int32)
    return jnp.asarray(order), jnp.asarray(np.cumsum(sizes) - sizes, jnp.int32), sizes


def _run(
    X: Array, cells: _Cells, Qx: Array, q_cell: np.ndarray, s: IVFSearch, k: int, **kw
) -> tuple[Array, Array]:
    q_order, q_starts, q_sizes = _grouped(q_cell, len(cells.sizes))
    tiles = -(-q_sizes // s.query_tile)
    tile_cell = np.repeat(np.arange(len(q_sizes), dtype=np.int32), tiles)
    first_tile = np.repeat(np.cumsum(tiles) - tiles, tiles)
    tile_offset = (np.arange(tile_cell.size) - first_tile) * s.query_tile
    return _search(
        X,
        cells.order,
        cells.starts,
        jnp.asarray(cells.sizes, jnp.int32),
        cells.probe,
        Qx,
        q_order,
        q_starts,
        jnp.asarray(q_sizes, jnp.int32),
        jnp.asarray(tile_cell),
        jnp.asarray(tile_offset, jnp.int32),
        k=k,
        tile=s.query_tile,
        candidates=s.candidates,
        batch=s.tile_batch or (1 if jax.default_backend() == "cpu" else 64),
        **kw,
    )


def tree_leaves(X: np.ndarray, leaf_size: int, seed: int = 0, power_steps: int = 4) -> np.ndarray:
    """``(n,) int32`` leaf number of each row in a PCA bisection tree with leaves of at most
    ``leaf_size`` rows: each node splits at the median (in whole leaves) of its rows'
    projection on their leading principal direction (``power_steps`` power iterations from a
    seeded random start). Leaves are numbered in depth-first order, so nearby numbers are
    nearby cells."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    label = np.empty(n, np.int32)
    stack, next_leaf = [np.arange(n)], 0
    while stack:
        rows = stack.pop()
        m = rows.size
        if m <= leaf_size:
            label[rows] = next_leaf
            next_leaf += 1
            continue
        Z = X[rows] - X[rows].mean(axis=0)
        v = rng.standard_normal(d).astype(X.dtype)
        for _ in range(power_steps):
            v = Z.T @ (Z @ v)
            v /= np.linalg.norm(v) + np.finfo(X.dtype).tiny
        left = leaf_size * (-(-m // leaf_size) // 2)
        part = np.argpartition(Z @ v, left - 1)
        stack.append(rows[part[left:]])
        stack.append(rows[part[:left]])
    return label


@functools.partial(jax.jit, static_argnames=("n_cells", "steps", "nbrs"))
def _lloyd(X: Array, cell: Array, n_cells: int, steps: int, nbrs: int) -> tuple[Array, Array]:
    """Centroids ``(C, d)`` and cells ``(n,)`` after ``steps`` local Lloyd steps."""

    def means(cell: Array, old: Array) -> Array:
        count = jax.ops.segment_sum(jnp.ones(X.shape[0], X.dtype), cell, n_cells)
        total = jax.ops.segment_sum(X, cell, n_cells)
        return jnp.where(count[:, None] > 0, total / jnp.maximum(count, 1)[:, None], old)

    def step(carry: tuple[Array, Array], _) -> tuple[tuple[Array, Array], None]:
        mu, cell = carry
        near, _ = exact_query(mu, mu, nbrs, block_size_for(n_cells, nbrs, X.shape[1]))
        options = jnp.take(near, cell, axis=0)  # (n, nbrs): the own centroid and its neighbours
        # One option at a time: each is a fused gather-difference-sum with an (n,) result,
        # where all at once would hold an (n, nbrs, d) array (3.5 GB at 70k x 784).
        d2 = jnp.stack(
            [jnp.sum((X - jnp.take(mu, options[:, j], axis=0)) ** 2, axis=1) for j in range(nbrs)],
            axis=1,
        )
        cell = jnp.take_along_axis(options, jnp.argmin(d2, axis=1)[:, None], axis=1)[:, 0]
        return (means(cell, mu), cell), None

    mu = means(cell, jnp.zeros((n_cells, X.shape[1]), X.dtype))
    (mu, cell), _ = jax.lax.scan(step, (mu, cell), None, steps)
    return mu, cell


@functools.partial(jax.jit, static_argnames=("k", "tile", "candidates", "batch", "exclude_self"))
def _search(
    X: Array,
    order: Array,
    starts: Array,
    sizes: Array,
    probe: Array,
    Qx: Array,
    q_order: Array,
    q_starts: Array,
    q_sizes: Array,
    tile_cell: Array,
    tile_offset: Array,
    *,
    k: int,
    tile: int,
    candidates: int,
    batch: int = 1,
    exclude_self: bool = True,
) -> tuple[Array, Array]:
    """Each tile's queries (rows of ``Qx`` grouped by cell: ``q_order``, ``q_starts``,
    ``q_sizes``) against its cell's probe list of reference rows (``X`` grouped by
    ``order``, ``starts``, ``sizes``); results in query-row order. ``exclude_self``: the
    queries are the reference rows themselves (row i never finds i)."""
    n, d = X.shape
    m = Qx.shape[0]
    # Cell-sorted copies: a tile's queries are one slice, a probe cell's members one segment.
    Xs = jnp.pad(jnp.take(X, order, axis=0), ((0, 1), (0, 0)))
    sq = jnp.sum(Xs * Xs, axis=1)
    ids = jnp.pad(order, (0, 1), constant_values=-1)
    Qs = jnp.pad(jnp.take(Qx, q_order, axis=0), ((0, tile), (0, 0)))
    q_all = jnp.pad(q_order, (0, tile), constant_values=-1)
    slot = jnp.arange(candidates, dtype=jnp.int32)

    def one_tile(t: Array) -> tuple[Array, Array, Array]:
        c, off = tile_cell[t], tile_offset[t]
        first = q_starts[c] + off
        Q = jax.lax.dynamic_slice_in_dim(Qs, first, tile)
        q_ids = jnp.where(
            off + jnp.arange(tile) < q_sizes[c],
            jax.lax.dynamic_slice_in_dim(q_all, first, tile),
            -1,
        )
        cells = probe[c]
        count = jnp.take(sizes, cells)
        end = jnp.cumsum(count)
        j = jnp.minimum(jnp.searchsorted(end, slot, side="right"), cells.shape[0] - 1)
        pos = jnp.take(starts, jnp.take(cells, j)) + slot - (jnp.take(end, j) - jnp.take(count, j))
        real = slot < end[-1]
        pos = jnp.where(real, pos, n)  # n: a zero padding row
        cand = jnp.where(real, jnp.take(ids, pos), -1)
        d2 = jnp.take(sq, pos)[None, :] - 2.0 * (Q @ jnp.take(Xs, pos, axis=0).T)
        bad = cand[None, :] < 0
        if exclude_self:
            bad = bad | (cand[None, :] == q_ids[:, None])
        d2 = jnp.where(bad, jnp.inf, d2)
        _, best = jax.lax.top_k(-d2, k)
        found = jnp.take(cand, best)
        idx, dist = exact_sorted(Q, X, jnp.maximum(found, 0))
        # Too few real candidates: flag the row (its last distance infinite) for the caller.
        dist = dist.at[:, -1].set(jnp.where(jnp.any(found < 0, axis=1), jnp.inf, dist[:, -1]))
        return q_ids, idx, dist

    steps = jnp.arange(tile_cell.shape[0])
    q_ids, idx, dist = jax.lax.map(one_tile, steps, batch_size=batch if batch > 1 else None)
    rows = jnp.where(q_ids < 0, m, q_ids).reshape(-1)
    out_idx = jnp.zeros((m + 1, k), jnp.int32).at[rows].set(idx.reshape(-1, k), mode="drop")
    out_dist = jnp.full((m + 1, k), jnp.inf, X.dtype).at[rows].set(dist.reshape(-1, k), mode="drop")
    return out_idx[:m], out_dist[:m]
