"""An approximate search index for new points, kept from ``fit``: the reference's kNN graph.

openTSNE's ``transform`` queries the Annoy index it built during ``fit``; an exact search of
10k new points among 60k reference rows costs ~1.9 s on two CPU cores (a 10k x 60k x 50
matmul and a top-k over 600M distances). :class:`GraphIndex` reuses what ``fit`` already has,
the reference's kNN graph, and searches it the way graph indices do (pynndescent, NSG), in two
fixed-shape rounds that jit and vectorise:

1. **Entry**: exact distances from each query to ``n_entry`` random reference rows (one small
   matmul); the ``seeds`` nearest of them start the search.
2. **Hop**: the seeds and their ``hop_width`` graph neighbours form a candidate pool; exact
   distances to each distinct candidate (ids sorted, repeats masked), the best kept.
3. **Refine**: the best ``refine`` candidates' ``refine_width`` graph neighbours join the
   current best ``k``; exact distances again, the ``k`` nearest returned.

Every distance returned is exact (direct differences), only the *set* is approximate: on MNIST
(PCA-50, 10k test rows into 60k training rows, the fit's 90-NN graph) the defaults find 95 % of
the true 25 nearest neighbours in ~0.6 s instead of ~1.9 s (``benchmarks/bench_transform.py``).
Rows whose pool holds fewer than ``k`` distinct points are redone by the exact search.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_int, float_dtype
from tsnejax._knn_exact import KNNGraph, exact_query
from tsnejax._types import Array, ArrayLike, PRNGKey

__all__ = ["GraphIndex", "build_graph_index", "graph_query", "complete_query", "GraphSearch"]


class GraphIndex(NamedTuple):
    """A reference set prepared for approximate kNN queries (a pytree of arrays).

    Attributes:
      data: ``(n, D)`` reference rows, centred on ``center`` and divided by ``unit``.
      graph: ``(n, g) int32`` each row's nearest reference rows (the fit's kNN graph).
      entry: ``(s,) int32`` rows every search starts from (a random sample).
      center: ``(D,)`` the reference mean (input units).
      unit: ``()`` a power of two: data = (X - center) / unit keeps squared distances in range.
    """

    data: Array
    graph: Array
    entry: Array
    center: Array
    unit: Array


class GraphSearch(NamedTuple):
    """Effort of :func:`graph_query` (static: each setting compiles its own program).

    The defaults found 95 % of the exact 25 nearest neighbours on MNIST-60k with a 90-NN
    graph; ``seeds=8`` gave 97 % at 1.7x the time, ``refine=0`` 85 % at 0.7x.
    """

    seeds: int = 4  # entry rows the search starts from, per query
    hop_width: int = 90  # graph neighbours of each seed in the first pool
    refine: int = 8  # best candidates whose neighbours form the second pool (0: one round)
    refine_width: int = 30  # graph neighbours of each of those


def build_graph_index(
    X_ref: ArrayLike, graph: ArrayLike, *, key: PRNGKey | None = None, n_entry: int = 4096
) -> GraphIndex:
    """Index ``X_ref (n, D)`` by its kNN ``graph``: a :class:`tsnejax.knn.KNNGraph` or an
    ``(n, g)`` integer array of neighbour rows (``TSNEResult.neighbors`` from ``fit``).

    ``n_entry`` random rows (``key``, default ``jax.random.key(0)``) seed every search. Built
    on the host with NumPy: a handful of one-off device programs would cost more to compile
    than the work they do.
    """

    idx = graph.indices if isinstance(graph, KNNGraph) else graph
    idx = np.asarray(idx)
    X = np.asarray(X_ref)
    if X.ndim != 2 or idx.ndim != 2 or idx.shape[0] != X.shape[0]:
        raise ValueError(
            f"graph has shape {idx.shape}; it must be (n, k) neighbour rows of the "
            f"{X.shape[0] if X.ndim else 0} reference rows X_ref {X.shape}."
        )
    if not np.issubdtype(idx.dtype, np.integer) or idx.shape[1] < 1:
        raise ValueError("graph must hold integer neighbour indices, at least one per row.")
    n = X.shape[0]
    if idx.size and (idx.max() >= n):
        raise ValueError(f"graph refers to row {int(idx.max())} but X_ref has {n} rows.")
    # Missing neighbours (pynndescent writes -1) become self-loops: repeats are masked anyway.
    idx = np.asarray(idx, np.int32)
    if idx.size and idx.min() < 0:
        idx = np.where(idx < 0, np.arange(n, dtype=np.int32)[:, None], idx)
    n_entry = check_int("n_entry", n_entry, minimum=1)
    bits = [0] if key is None else np.asarray(jax.random.key_data(key)).ravel().tolist()
    rng = np.random.default_rng([int(b) for b in bits])
    entry = np.sort(rng.choice(n, min(n_entry, n), replace=False)).astype(np.int32)
    dtype = float_dtype()
    center = X.mean(axis=0, dtype=np.float64).astype(dtype)
    data = X.astype(dtype, copy=False) - center
    top = float(np.max(np.abs(data))) if data.size else 0.0
    # A power of two keeps squared distances of 1e30- or 1e-30-scale data in range, exactly.
    unit = 2.0 ** round(np.log2(top)) if np.isfinite(top) and top > 0 else 1.0
    return GraphIndex(
        jnp.asarray(data if unit == 1.0 else data / dtype.type(unit)),
        jnp.asarray(idx),
        jnp.asarray(entry),
        jnp.asarray(center, dtype),
        jnp.asarray(unit, dtype),
    )


def _distinct_distances(q: Array, data: Array, pool: Array) -> tuple[Array, Array]:
    """Pool ids sorted, squared distances with every repeat after the first set to inf."""
    pool = jnp.sort(pool, axis=1)  # one int32 key: several times faster than argsort on CPU
    repeat = jnp.concatenate([jnp.zeros_like(pool[:, :1], bool), pool[:, 1:] == pool[:, :-1]], 1)
    diff = q[:, None, :] - jnp.take(data, pool, axis=0)
    d2 = jnp.sum(diff * diff, axis=-1)
    return pool, jnp.where(repeat, jnp.inf, d2)


def _nearest(pool: Array, d2: Array, k: int) -> tuple[Array, Array]:
    neg, j = jax.lax.top_k(-d2, k)
    return jnp.take_along_axis(pool, j, axis=1), -neg


@functools.partial(jax.jit, static_argnames=("k", "search", "block_size"))
def _search(
    index: GraphIndex, Q: Array, k: int, search: GraphSearch, block_size: int
) -> tuple[Array, Array]:
    data, entry = index.data, index.entry
    m = Q.shape[0]
    g = index.graph.shape[1]
    hop = index.graph[:, : min(search.hop_width, g)]
    ref = index.graph[:, : min(search.refine_width, g)]
    seeds = min(search.seeds, entry.shape[0])
    Q = (Q - index.center) / index.unit
    n_blocks = -(-m // block_size)
    Qb = jnp.pad(Q, ((0, n_blocks * block_size - m), (0, 0))).reshape(n_blocks, block_size, -1)
    E = jnp.take(data, entry, axis=0)
    sq_e = jnp.sum(E * E, axis=1)

    def one_block(q: Array) -> tuple[Array, Array]:
        b = q.shape[0]
        _, j = jax.lax.top_k(2.0 * (q @ E.T) - sq_e[None, :], seeds)  # nearest entries
        s = jnp.take(entry, j)
        pool = jnp.concatenate([s, jnp.take(hop, s, axis=0).reshape(b, -1)], axis=1)
        first = max(k, search.refine)
        if pool.shape[1] < first:  # repeats of a seed: masked, so the row falls back to exact
            pool = jnp.concatenate([pool, jnp.repeat(s[:, :1], first - pool.shape[1], 1)], 1)
        ids, d2 = _nearest(*_distinct_distances(q, data, pool), first)
        if search.refine:
            more = jnp.take(ref, ids[:, : search.refine], axis=0).reshape(b, -1)
            pool = jnp.concatenate([ids[:, :k], more], axis=1)
            ids, d2 = _nearest(*_distinct_distances(q, data, pool), k)
        return ids[:, :k], jnp.sqrt(d2[:, :k]) * index.unit

    idx, dist = jax.lax.map(one_block, Qb)
    return idx.reshape(-1, k)[:m], dist.reshape(-1, k)[:m]


def graph_query(
    index: GraphIndex,
    Q: ArrayLike,
    k: int,
    search: GraphSearch | None = None,
    *,
    block_size: int | None = None,
    complete: bool = True,
):
    """Approximate ``k`` nearest reference rows of each query row ``Q (m, D)``.

    Returns a :class:`tsnejax.knn.KNNGraph` ``(m, k)``: indices into the reference, exact
    Euclidean distances in the input units, nearest first. Queries whose candidate pools held
    fewer than ``k`` distinct rows (a sparse graph, a tiny reference) are searched exactly;
    with ``complete=False`` they are left with infinite distances and nothing waits for the
    device (:func:`complete_query` fills them later).
    """

    search = GraphSearch() if search is None else search
    n, D = index.data.shape
    Qa = jnp.asarray(Q, index.data.dtype)
    if Qa.ndim != 2 or Qa.shape[1] != D:
        raise ValueError(f"Q has shape {tuple(Qa.shape)}; it must be (m, {D}) like the index.")
    k = check_int("k", k, minimum=1)
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} reference points; use k <= {n}.")
    m = Qa.shape[0]
    if m == 0:
        return KNNGraph(jnp.zeros((0, k), jnp.int32), jnp.zeros((0, k), Qa.dtype))
    pool = search.seeds * (1 + min(search.hop_width, index.graph.shape[1]))
    bs = block_size or max(1, min(m, (1 << 23) // max(1, pool * D)))
    idx, dist = _search(index, Qa, k, search, int(bs))
    knn = KNNGraph(idx, dist)
    return complete_query(index, Qa, knn) if complete else knn


def complete_query(index: GraphIndex, Q: ArrayLike, knn):
    """``knn`` with every row that has an infinite distance replaced by the exact search."""

    dist = np.asarray(knn.distances)
    bad = np.flatnonzero(~np.all(np.isfinite(dist), axis=1))
    if not bad.size:
        return knn
    Qs = (jnp.asarray(Q, index.data.dtype)[bad] - index.center) / index.unit
    k = knn.indices.shape[1]
    fix_idx, fix_dist = exact_query(index.data, Qs, k, int(min(bad.size, 1024)))
    return KNNGraph(
        knn.indices.at[bad].set(fix_idx), knn.distances.at[bad].set(fix_dist * index.unit)
    )
