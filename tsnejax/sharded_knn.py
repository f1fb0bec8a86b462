"""Exact kNN with the data split by rows over a mesh axis ``"points"``: a ring search.

Each device holds ``n / D`` rows, which are both its queries and its block of the database.
In ``D`` steps every device compares its queries with the block it holds (blocked matmul and
``lax.top_k``, then the chosen candidates measured again by direct differences, as the
single-device search :func:`tsnejax.knn.exact_knn`), merges them into its running ``k`` best,
and passes the block on to the next device (``ppermute``). No device ever holds more than two
blocks of the data, so the search scales past one device's memory; it moves ``n d`` floats
per device in all. With processes joined by ``jax.distributed`` the mesh spans hosts.

The result is exact: it equals the single-device search up to ties between equidistant
neighbours (``tests/test_shard.py`` checks recall 1 against :func:`tsnejax.knn.exact_knn`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from tsnejax._checks import check_data, check_int
from tsnejax._knn_exact import KNNGraph, exact_sorted
from tsnejax.shard import (
    POINTS,
    auto_mesh,
    gather_points,
    padded_size,
    place_rows,
    points_axis_size,
)

__all__ = ["sharded_knn", "QUERY_BLOCK"]

#: Queries compared with a database block at once (a ``QUERY_BLOCK x n / D`` distance tile).
QUERY_BLOCK = 256


def sharded_knn(X, k: int, mesh: Mesh, *, query_block: int = QUERY_BLOCK) -> KNNGraph:
    """The exact ``k`` nearest other rows of every row of ``X``, searched over ``mesh``.

    Args:
      X: ``(n, d)`` data (every process passes the same array; each places its own rows).
      k: neighbours per point, ``1 <= k <= n - 1``.
      mesh: a mesh with an axis ``"points"`` (:func:`tsnejax.shard.point_mesh`).
      query_block: queries per distance tile.

    Returns:
      :class:`tsnejax.KNNGraph` on the host (in every process), nearest first; pass it to
      :func:`tsnejax.fit` as ``neighbors=``.
    """
    X = check_data(X)
    n, d = X.shape
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    mesh = auto_mesh(mesh)
    shards = points_axis_size(mesh)
    qb = check_int("query_block", query_block, minimum=1)
    n_pad = padded_size(n, shards)
    local = n_pad // shards
    # Centred (as the single-device search) and in float32; padding rows are masked out.
    Xc = (X - X.mean(axis=0, dtype=np.float64)).astype(np.float32)
    Xp = np.concatenate([Xc, np.zeros((n_pad - n, d), np.float32)])
    search = _ring_search(mesh, shards, local, n, k, qb)
    idx, dist = search(place_rows(Xp, mesh))
    return KNNGraph(
        jnp.asarray(gather_points(idx, n)), jnp.asarray(gather_points(dist, n), jnp.float32)
    )


@functools.lru_cache(maxsize=16)
def _ring_search(mesh: Mesh, shards: int, local: int, n: int, k: int, qb: int):
    rows = PartitionSpec(POINTS)
    blocks = -(-local // qb)
    perm = [(s, (s + 1) % shards) for s in range(shards)]

    def shard_fn(Xq):
        me = jax.lax.axis_index(POINTS)
        q_ids = me * local + jnp.arange(local, dtype=jnp.int32)
        pad = blocks * qb - local
        Q = jnp.pad(Xq, ((0, pad), (0, 0))).reshape(blocks, qb, -1)
        Q_ids = jnp.pad(q_ids, (0, pad), constant_values=-1).reshape(blocks, qb)
        kk = min(k, local)

        def step(t, carry):
            block, best_i, best_d = carry
            owner = (me - t) % shards  # whose rows this block is
            ids = owner * local + jnp.arange(local, dtype=jnp.int32)
            sq = jnp.sum(block * block, axis=1)
            out_of_range = ids[None, :] >= n

            def one(args):
                q, qid, bi, bd = args
                d2 = jnp.sum(q * q, axis=1)[:, None] + sq[None, :] - 2.0 * (q @ block.T)
                d2 = jnp.where(out_of_range | (ids[None, :] == qid[:, None]), jnp.inf, d2)
                _, cand = jax.lax.top_k(-d2, kk)
                ci, cd = exact_sorted(q, block, cand)
                gi = ids[ci]
                # top_k fills with masked (padding, self) entries when the block has too few
                cd = jnp.where((gi >= n) | (gi == qid[:, None]), jnp.inf, cd)
                all_i = jnp.concatenate([bi, gi], axis=1)
                all_d = jnp.concatenate([bd, cd], axis=1)
                order = jnp.argsort(all_d, axis=1, stable=True)[:, :k]
                return jnp.take_along_axis(all_i, order, 1), jnp.take_along_axis(all_d, order, 1)

            best_i, best_d = jax.lax.map(one, (Q, Q_ids, best_i, best_d))
            block = jax.lax.ppermute(block, POINTS, perm)
            return block, best_i, best_d

        init = (
            Xq,
            jnp.zeros((blocks, qb, k), jnp.int32),
            jnp.full((blocks, qb, k), jnp.inf, jnp.float32),
        )
        _, best_i, best_d = jax.lax.fori_loop(0, shards, step, init)
        return best_i.reshape(-1, k)[:local], best_d.reshape(-1, k)[:local]

    mapped = jax.shard_map(
        shard_fn, mesh=mesh, in_specs=rows, out_specs=(rows, rows), check_vma=False
    )
    return jax.jit(mapped)
