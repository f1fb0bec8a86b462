"""Sparse attractive term over the symmetric P (shared by every repulsion backend).

.. math::
    F^{attr}_i = \\sum_j p_{ij} \\, (1 + \\|y_i - y_j\\|^2/\\alpha)^{-1} (y_i - y_j)

(openTSNE/FIt-SNE scale: one quarter of the true gradient's attractive part). Each coordinate
is gathered with ``jnp.take`` from the padded neighbour lists: measured 3x faster on CPU than
``Y[idx]`` fancy indexing (``../shared/PERFORMANCE.md``). Points with more entries than the ELL
width continue in extra rows whose results are summed back with ``segment_sum`` (one scatter
per extra row, not per entry).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsnejax._blocks import map_row_blocks
from tsnejax._types import Array, Scalar
from tsnejax.affinity import Affinities
from tsnejax.gradients._collective import all_points, psum
from tsnejax.gradients._kernel import inv_base, log_kernel
from tsnejax.gradients._scatter import add_at


def _row_diffs(
    Y: Array, Y_all: Array, rows: Array | None, neighbors: Array
) -> tuple[list[Array], Array]:
    """Per-coordinate ``y_row - y_neighbor`` for a block of ELL rows (``rows`` index the held
    rows ``Y``, ``neighbors`` all points ``Y_all``), and squared distances."""
    diffs = []
    for c in range(Y.shape[1]):
        own = Y[:, c : c + 1] if rows is None else jnp.take(Y[:, c], rows, mode="clip")[:, None]
        diffs.append(own - jnp.take(Y_all[:, c], neighbors, mode="clip"))
    return diffs, sum(d * d for d in diffs)


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
    Y_all = all_points(Y, axis_name)
    cols = [Y_all[:, c] for c in range(Y.shape[1])]

    def rows(Yb: Array, nbr: Array, w: Array) -> Array:
        diffs = [Yb[:, c : c + 1] - jnp.take(y, nbr, mode="clip") for c, y in enumerate(cols)]
        coef = w * inv_base(sum(d * d for d in diffs), dof)
        return jnp.stack([jnp.sum(coef * d, axis=1) for d in diffs], axis=1)

    main = map_row_blocks(rows, (Y, P.neighbors, P.weights), _row_block(Y.shape[0]))
    ediffs, ed2 = _row_diffs(Y, Y_all, P.extra_rows, P.extra_neighbors)
    ecoef = P.extra_weights * inv_base(ed2, dof)
    extra = jnp.stack([jnp.sum(ecoef * d, axis=1) for d in ediffs], axis=1)
    return main + add_at(P.extra_rows, extra, n, deterministic)


def sum_p_log_kernel(
    Y: Array, P: Affinities, dof: Scalar = 1.0, axis_name: str | None = None
) -> Array:
    """:math:`\\sum_{ij} p_{ij} \\log w_{ij}`, the data term of the KL divergence."""
    Y_all = all_points(Y, axis_name)
    _, d2 = _row_diffs(Y, Y_all, None, P.neighbors)
    _, ed2 = _row_diffs(Y, Y_all, P.extra_rows, P.extra_neighbors)
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
