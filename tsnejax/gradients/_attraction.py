"""Sparse attractive term over the symmetric P (shared by every repulsion backend).

.. math::
    F^{attr}_i = \\sum_j p_{ij} \\, (1 + \\|y_i - y_j\\|^2/\\alpha)^{-1} (y_i - y_j)

(openTSNE/FIt-SNE scale: one quarter of the true gradient's attractive part). Neighbours'
coordinates are gathered with ``jnp.take`` from the padded neighbour lists (measured 3x faster
on CPU than ``Y[idx]`` fancy indexing, ``../shared/PERFORMANCE.md``), two coordinates per
gather packed as one complex number. Points with more entries than the ELL
width continue in extra rows whose results are summed back with ``segment_sum`` (one scatter
per extra row, not per entry).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsnejax._blocks import map_row_blocks
from tsnejax._lanes import complex_lanes, lane_columns, squared_modulus, weighted
from tsnejax._types import Array, Scalar
from tsnejax.affinity import Affinities
from tsnejax.gradients._collective import all_points, psum
from tsnejax.gradients._kernel import inv_base, log_kernel
from tsnejax.gradients._scatter import add_at


def _lane_diffs(
    own: list[Array], lanes: list[Array], neighbors: Array
) -> tuple[list[Array], Array]:
    """Per-lane ``y_row - y_neighbor`` for ELL rows (``own``: the rows' lanes, ``(rows,)``
    each; ``lanes``: every point's) and the squared distances ``(rows, w)``."""
    diffs = [
        o[:, None] - jnp.take(a, neighbors, mode="clip") for o, a in zip(own, lanes, strict=True)
    ]
    return diffs, sum(squared_modulus(d) for d in diffs)


#: Rows per block of the main ELL part on the CPU: blocks of 2048 rows keep the gathered
#: neighbour coordinates in cache instead of materialising (n, w) arrays. MNIST-70k (w = 120):
#: the attraction alone 56 -> 19 ms, a whole early-phase iteration 40 -> 35 ms. Accelerators
#: take all rows at once (a serial loop over blocks would idle them).
CPU_ROW_BLOCK = 2048


def _row_block(n: int) -> int | None:
    return CPU_ROW_BLOCK if jax.default_backend() == "cpu" and n > 2 * CPU_ROW_BLOCK else None


def attraction(
    Y: Array,
    P: Affinities,
    dof: Scalar = 1.0,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> Array:
    """Attractive forces ``(n, d)`` (without exaggeration; multiply by it outside).

    ``axis_name``: ``Y`` and the rows of ``P`` are this shard's points (continuation rows owned
    by local row indices); neighbour indices are global, read after an all-gather.
    ``deterministic``: continuation rows are folded back without atomics
    (:mod:`tsnejax.gradients._scatter`).
    """
    n = Y.shape[0]
    lanes, own = complex_lanes(all_points(Y, axis_name)), complex_lanes(Y)

    def rows(nbr: Array, w: Array, *own_block: Array) -> Array:
        diffs, d2 = _lane_diffs(list(own_block), lanes, nbr)
        coef = w * inv_base(d2, dof)
        sums = [jnp.sum(weighted(coef, d), axis=1) for d in diffs]
        return jnp.stack([c for s in sums for c in lane_columns(s)], axis=1)

    main = map_row_blocks(rows, (P.neighbors, P.weights, *own), _row_block(n))
    extra_own = [jnp.take(o, P.extra_rows, mode="clip") for o in own]
    extra = rows(P.extra_neighbors, P.extra_weights, *extra_own)
    return main + add_at(P.extra_rows, extra, n, deterministic)


def sum_p_log_kernel(
    Y: Array, P: Affinities, dof: Scalar = 1.0, axis_name: str | None = None
) -> Array:
    """:math:`\\sum_{ij} p_{ij} \\log w_{ij}`, the data term of the KL divergence."""
    lanes, own = complex_lanes(all_points(Y, axis_name)), complex_lanes(Y)
    _, d2 = _lane_diffs(own, lanes, P.neighbors)
    extra_own = [jnp.take(o, P.extra_rows, mode="clip") for o in own]
    _, ed2 = _lane_diffs(extra_own, lanes, P.extra_neighbors)
    local = jnp.sum(P.weights * log_kernel(d2, dof)) + jnp.sum(
        P.extra_weights * log_kernel(ed2, dof)
    )
    return psum(local, axis_name)


def sum_p_log_p(P: Affinities, axis_name: str | None = None) -> Array:
    """:math:`\\sum_{ij} p_{ij} \\log p_{ij}` (entropy term of the KL; zeros contribute 0)."""

    def plogp(p: Array) -> Array:
        return jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))

    return psum(plogp(P.weights) + plogp(P.extra_weights), axis_name)


def kl_from_z(
    Y: Array, P: Affinities, dof: Scalar, Z: Array, axis_name: str | None = None
) -> Array:
    """:math:`KL = \\sum p \\log p - \\sum p \\log w + \\log Z` given a backend's ``Z``."""
    return sum_p_log_p(P, axis_name) - sum_p_log_kernel(Y, P, dof, axis_name) + jnp.log(Z)
