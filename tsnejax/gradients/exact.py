"""Exact O(N^2) repulsion, gradient and KL divergence: the oracle for every other backend.

With :math:`w_{ij} = (1 + \\|y_i - y_j\\|^2/\\alpha)^{-\\alpha}`,
:math:`Z = \\sum_{i \\ne j} w_{ij}` and :math:`q_{ij} = w_{ij}/Z`, the KL divergence
and its gradient are

.. math::
    KL(P\\|Q) = \\sum_{ij} p_{ij} \\log p_{ij} - \\sum_{ij} p_{ij} \\log w_{ij} + \\log Z,

    \\frac{\\partial KL}{\\partial y_i} = 4 \\sum_j (p_{ij} - q_{ij})
        (1 + \\|y_i - y_j\\|^2/\\alpha)^{-1} (y_i - y_j).

Backends return the gradient without the factor 4 (openTSNE, FIt-SNE, bhtsne convention;
scikit-learn keeps it, see ``gradient_scale`` in :mod:`tsnejax.run`), and exaggeration
multiplies the attractive term. Rows are processed in blocks of ``block_size`` so memory
stays ``O(block_size * N)``; no N x N matrix is ever formed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsnejax._checks import check_int, check_points
from tsnejax._lanes import lane_sum
from tsnejax._types import Array, Scalar
from tsnejax.affinity import Affinities
from tsnejax.gradients._attraction import attraction, kl_from_z
from tsnejax.gradients._backend import Backend
from tsnejax.gradients._collective import all_points, charge, count, mask_rows, psum
from tsnejax.gradients._kernel import kernel_and_force

__all__ = [
    "exact_repulsion",
    "exact_gradient",
    "exact_kl_divergence",
    "exact_normalization",
    "exact_backend",
    "auto_block",
]

DEFAULT_BLOCK = 1024
#: Pairs per row block on the CPU: the block's intermediates (one float per pair for the
#: kernel; :func:`tsnejax._lanes.lane_sum` adds the rest elementwise) stay ~6 MB, in cache.
#: Exact repulsion per call, ms, by block rows (2-core CPU, ``docs/gradients.md``):
#: N = 5000: 14.7-14.8 at 256-320 rows vs 17.5-19.0 at 128 and 33.5 at 1024; N = 12 000:
#: 75-90 at 128 vs 105 at 64 and 245 at 1024; N = 1797: 1.9 at 1024.
CPU_BLOCK_PAIRS = 3 << 19


def auto_block(n_columns: int) -> int:
    """Rows per block for ``n_columns`` points on the default backend: about
    :data:`CPU_BLOCK_PAIRS` pairs (a multiple of 32 in [64, 1024]) on a CPU;
    :data:`DEFAULT_BLOCK` on accelerators, whose parallelism wants large blocks."""
    if jax.default_backend() != "cpu":
        return DEFAULT_BLOCK
    rows = CPU_BLOCK_PAIRS // max(1, int(n_columns)) // 32 * 32
    return int(min(DEFAULT_BLOCK, max(64, rows)))


def _blocks(n: int, block_size: int) -> tuple[int, int]:
    """Equal blocks of at most ``block_size`` rows (so padding is < one row per block)."""
    n_blocks = -(-n // max(1, min(block_size, n)))
    return -(-n // n_blocks), n_blocks


def _force_sums(w2: Array, diffs: list[Array]) -> Array:
    """``(rows, d)`` row sums of ``w2 * diff`` per axis. The first two axes are summed as one
    complex array: XLA then reads the materialised kernel block once for both instead of once
    per axis (``docs/gradients.md``)."""
    if len(diffs) < 2:
        return lane_sum(w2 * diffs[0])[:, None]
    s = lane_sum(jax.lax.complex(w2 * diffs[0], w2 * diffs[1]))
    return jnp.stack([jnp.real(s), jnp.imag(s), *(lane_sum(w2 * d) for d in diffs[2:])], axis=1)


def exact_repulsion(
    Y: Array,
    dof: Scalar = 1.0,
    *,
    block_size: int | None = None,
    valid: Array | None = None,
    axis_name: str | None = None,
) -> tuple[Array, Array]:
    """Unnormalised repulsion and Z.

    ``block_size``: rows per block (default :func:`auto_block` of the number of points).

    ``valid``/``axis_name``: ``Y`` holds one shard's rows; each row is summed against every
    real point of every shard (all-gathered) and Z is summed across the axis.

    Returns:
      ``(R, Z)`` with :math:`R_i = \\sum_{j \\ne i} w_{ij} (1 + d_{ij}^2/\\alpha)^{-1}(y_i - y_j)`
      of shape ``(n, d)`` and the scalar :math:`Z`; the repulsive force is ``R / Z``.
    """
    n, dim = Y.shape
    Y_all = all_points(Y, axis_name)
    columns = None if valid is None else all_points(valid, axis_name).astype(Y.dtype)
    if block_size is None:
        block_size = auto_block(Y_all.shape[0])
    bs, n_blocks = _blocks(n, block_size)
    pad = bs * n_blocks - n
    Yp = jnp.pad(Y, ((0, pad), (0, 0)))
    rows = charge(Y, valid)[:, 0]
    weight = jnp.pad(rows, (0, pad))

    # Each coordinate's column contiguous (``(d, n_total)``, kept apart from ``Y_all`` by the
    # barrier): the block loop then reads unit-stride vectors, not every d-th float.
    cols = jax.lax.optimization_barrier(Y_all.T)

    def pairs(Yb: Array, cols: Array) -> tuple[list[Array], Array, Array]:
        # Direct differences (not |a|^2 + |b|^2 - 2ab, which cancels in float32 and gave
        # 2.6e-4 relative force error on a final digits embedding): this is the oracle.
        diffs = [Yb[:, c : c + 1] - cols[c][None, :] for c in range(dim)]
        w, w2 = kernel_and_force(sum(d * d for d in diffs), dof)
        if columns is not None:  # padding points of other shards are not there
            w, w2 = w * columns, w2 * columns
        return diffs, w, w2

    def one_block(start: Array) -> tuple[Array, Array]:
        Yb = jax.lax.dynamic_slice_in_dim(Yp, start, bs)
        diffs, w, w2 = pairs(Yb, cols)
        if dim <= 2:
            # Z's kernel recomputed from inputs behind a barrier, in a loop of its own: with
            # one kernel block feeding both sums XLA materialises it (rows x N floats, out of
            # cache) and reads it twice, which cost more than a second division per pair
            # (2-D: 0.72-0.86x per call at N = 3000-12 000). In 3-D the force sums read the block
            # twice anyway (complex + third axis) and the extra loop cost 1.1-1.4x
            # (``benchmarks/bench_exact.py``, ``docs/gradients.md``).
            _, w, _ = pairs(*jax.lax.optimization_barrier((Yb, cols)))
        # The self pair (d2 = 0) adds exactly 1 to each row of w and nothing to the forces;
        # it is subtracted from Z below instead of masked out pair by pair.
        rep = _force_sums(w2, diffs)
        z = jnp.sum(lane_sum(w) * jax.lax.dynamic_slice_in_dim(weight, start, bs))
        return rep, z

    starts = jnp.arange(n_blocks) * bs
    rep, z = jax.lax.map(one_block, starts)
    Z = psum(jnp.sum(z), axis_name) - count(Y, valid, axis_name)
    return rep.reshape(-1, dim)[:n], Z


def exact_normalization(Y: Array, dof: Scalar = 1.0, *, block_size: int | None = None) -> Array:
    """:math:`Z = \\sum_{i \\ne j} w_{ij}` (exact, blocked)."""
    return exact_repulsion(Y, dof, block_size=block_size)[1]


def exact_gradient(
    Y: Array,
    P: Affinities,
    dof: Scalar = 1.0,
    exaggeration: Scalar = 1.0,
    *,
    block_size: int | None = None,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> tuple[Array, Array]:
    """``(gradient, Z)``: ``exaggeration * F_attr - R / Z`` (one quarter of dKL/dY at ex = 1)."""
    check_points(Y, P, axis_name)
    rep, Z = exact_repulsion(Y, dof, block_size=block_size, valid=valid, axis_name=axis_name)
    F = attraction(Y, P, dof, axis_name, deterministic)
    return mask_rows(exaggeration * F - rep / Z, valid), Z


def exact_kl_divergence(
    Y: Array,
    P: Affinities,
    dof: Scalar = 1.0,
    *,
    block_size: int | None = None,
    valid: Array | None = None,
    axis_name: str | None = None,
) -> Array:
    """Exact :math:`KL(P\\|Q)` in nats (P must sum to 1)."""
    check_points(Y, P, axis_name)
    _, Z = exact_repulsion(Y, dof, block_size=block_size, valid=valid, axis_name=axis_name)
    return kl_from_z(Y, P, dof, Z, axis_name)


def exact_backend(block_size: int | None = None, deterministic_scatter: bool = False) -> Backend:
    """The ``"exact"`` gradient method (no grid: ``allocate`` returns ``None``; ``block_size``:
    rows per block, default :func:`auto_block`);
    ``deterministic_scatter``: continuation rows folded back without atomic adds."""
    if block_size is not None:
        block_size = check_int("block_size", block_size, minimum=1)
    det = bool(deterministic_scatter)

    def gradient(Y, P, dof, exaggeration, grid, **shard):
        del grid
        return exact_gradient(
            Y, P, dof, exaggeration, block_size=block_size, deterministic=det, **shard
        )

    def kl(Y, P, dof, grid, **shard):
        del grid
        return exact_kl_divergence(Y, P, dof, block_size=block_size, **shard)

    return Backend("exact", gradient, kl, lambda Y: None, shardable=True)
