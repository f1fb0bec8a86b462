"""Interpolation while the grid is cheap, the exact sums once they cost less: chosen per chunk.

FIt-SNE's grid grows with the embedding's span (one box per unit), not with N, so for a few
thousand points the late-phase grid costs more than all N^2 pairs: MNIST-5k ends with a span of
~178, 180 boxes per axis, 35 ms per repulsion (relative force error 3.7 %), while the exact sums
take 11 ms and have no error (2-core CPU, ``docs/performance.md``). Before each chunk the host
sizes the interpolation grid as :mod:`tsnejax.gradients.interpolation` does and runs the exact
method instead when ``N^2 <= exact_ratio * (2 m)^d``, ``m`` nodes per axis (the FFTs work on the
``(2m)^d`` circulant): measured, an exact pair costs ~0.5 ns and an FFT grid point ~27 ns at
N = 3000-8000, crossings at ratios 44-69. Where ``max_boxes`` caps the grid at boxes too wide
for accuracy (3-D), exact is taken up to :data:`WIDE_EXACT_COST` times the grid's cost.

The static structure is an :class:`AdaptiveGrid`; every exact chunk shares one program (its
grid field is blanked), so a run compiles at most one program more than plain interpolation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from tsnejax.gradients._backend import Backend
from tsnejax.gradients._grid import host_span
from tsnejax.gradients.exact import exact_backend
from tsnejax.gradients.interpolation import (
    InterpolationGrid,
    grid_for_span,
    interpolation_backend,
    warn_wide_boxes,
)

__all__ = ["AdaptiveGrid", "EXACT_RATIO", "WIDE_EXACT_COST", "adaptive_backend", "prefers_exact"]

#: Exact when ``N^2 <= EXACT_RATIO * (2m)^d`` (the measured crossings, above).
EXACT_RATIO = 50.0
#: Where ``max_boxes`` holds the grid to wide boxes (:data:`WIDE_BOXES`: in 3-D, 32 boxes past
#: ~50 units of span), exact while it costs at most this many times the grid: the grid's
#: error is then large. MNIST-25k in 3-D (``benchmarks/bench_box_width.py``): exact late chunks
#: end at exact KL 1.985 in 85 s of optimisation, the 32-box grid at 2.210 in 76 s (exact
#: throughout: 1.976, 113 s; docs/gradients.md).
WIDE_EXACT_COST = 2.5


class AdaptiveGrid(NamedTuple):
    """Static structure of one chunk: ``exact`` or the interpolation ``grid`` (ordered so a
    batch's largest member, :func:`tsnejax._chunk.join_grids`, runs exact if any wants it)."""

    exact: bool
    grid: InterpolationGrid


def prefers_exact(n: int, grid: InterpolationGrid, dim: int, ratio: float = EXACT_RATIO) -> bool:
    """Whether ``n`` points cost less exactly than on ``grid`` in ``dim`` dimensions."""
    m = grid.n_boxes * grid.n_interpolation_points
    return float(n) ** 2 <= ratio * float(2 * m) ** dim


def adaptive_backend(
    n_interpolation_points: int = 3,
    min_num_intervals: int | None = None,
    ints_in_interval: float = 1.0,
    max_boxes: int | None = None,
    deterministic_scatter: bool = False,
    exact_ratio: float = EXACT_RATIO,
) -> Backend:
    """The ``"adaptive"`` gradient method: :func:`tsnejax.gradients.interpolation_backend`'s
    grid (same parameters) or :func:`tsnejax.gradients.exact_backend`, per chunk.

    Args:
      exact_ratio: exact when ``N^2 <= exact_ratio * (2m)^d`` (``m`` grid nodes per axis); 0:
        never (plain interpolation), ``inf``: always.
    """
    ratio = float(exact_ratio)
    if not ratio >= 0.0:  # also NaN
        raise ValueError(
            f"exact_ratio must be >= 0 (0: never exact, inf: always), got {exact_ratio!r}."
        )
    grid_b = interpolation_backend(
        n_interpolation_points,
        min_num_intervals,
        ints_in_interval,
        max_boxes,
        deterministic_scatter,
    )
    exact_b = exact_backend(deterministic_scatter=deterministic_scatter)
    blank = InterpolationGrid(0, int(n_interpolation_points))

    sizing = functools.partial(
        grid_for_span,
        p=int(n_interpolation_points),
        min_num_intervals=min_num_intervals,
        ints_in_interval=ints_in_interval,
        max_boxes=max_boxes,
    )

    def allocate(Y) -> AdaptiveGrid:
        n, dim = Y.shape[-2], Y.shape[-1]
        grid, wide = sizing(host_span(Y), dim)
        if prefers_exact(n, grid, dim, ratio * (WIDE_EXACT_COST if wide else 1.0)):
            return AdaptiveGrid(True, blank)
        if wide:  # only where the coarse grid is used
            warn_wide_boxes(dim, grid.n_boxes, ints_in_interval)
        return AdaptiveGrid(False, grid)

    def gradient(Y, P, dof, exaggeration, grid: AdaptiveGrid, **shard):
        if grid.exact:
            return exact_b.gradient(Y, P, dof, exaggeration, None, **shard)
        return grid_b.gradient(Y, P, dof, exaggeration, grid.grid, **shard)

    def kl(Y, P, dof, grid: AdaptiveGrid, **shard):
        if grid.exact:
            return exact_b.kl_divergence(Y, P, dof, None, **shard)
        return grid_b.kl_divergence(Y, P, dof, grid.grid, **shard)

    return Backend("adaptive", gradient, kl, allocate, shardable=True)
