"""FIt-SNE-style repulsion: Lagrange interpolation on a grid, kernel sums by FFT (Linderman 2019).

The domain ``[lo, lo + span]`` (square over all coordinates) is cut into ``n_boxes`` boxes per
axis, each with ``p`` equispaced nodes at ``(j + 1/2) / p`` of the box; all ``m = n_boxes * p``
nodes per axis are then equispaced with spacing ``delta = span / m``, so node-to-node kernel
matrices are Toeplitz and apply by FFT on a zero-padded ``(2m)^d`` circulant. For a point in a
box at local coordinate ``t``, the Lagrange weights
:math:`L_j(t) = \\prod_{l \\ne j} (t - \\tau_l)/(\\tau_j - \\tau_l)` spread its charges to the
``p^d`` nodes of its box and gather potentials back.

With :math:`u = 1 + d^2/\\alpha`, the force kernel :math:`K_f = u^{-(\\alpha+1)}` and the
normalisation kernel :math:`K_z = u^{-\\alpha}` (for ``dof = 1``: :math:`(1+d^2)^{-2}` and
:math:`(1+d^2)^{-1}`):

.. math::
    \\phi^0_i = \\sum_j K_f(y_i, y_j), \\quad \\phi^y_i = \\sum_j K_f(y_i, y_j)\\, y_j, \\quad
    R_i = y_i \\phi^0_i - \\phi^y_i, \\quad Z = \\sum_i \\sum_{j \\ne i} K_z(y_i, y_j).

Z has its own kernel (unit charges against :math:`K_z`) instead of FIt-SNE's four-charge
identity for ``dof = 1``, with no cancellation between :math:`(1 + |y|^2)\\phi^0`,
:math:`2 y \\cdot \\phi^y` and :math:`\\phi^{|y|^2}`; and it needs no inverse transform:
:math:`\\sum_i \\phi^z_i = \\sum_x q_x (K_z * q)_x` over the nodes ``x``, which Parseval reads off
the unit charges' spectrum. The points' own terms are taken out as the grid reads them back
(:func:`tsnejax.gradients._grid.self_charge`) rather than as ``N`` (FIt-SNE's, exact only if the
interpolation were): on sparse embeddings that difference dominated Z. Both kernels are
even, so their spectra are real and come from the
``(m + 1)^d`` non-negative quadrant (:func:`tsnejax.gradients._grid.even_kernel_spectrum`).
Per step: 2 half-size kernel spectra, ``d + 1`` forward and ``d + 1`` inverse transforms of size
``(2m)^d``, run one after another (:func:`tsnejax.gradients._grid.fft_potentials`).

Grid size: ``n_boxes = max(min_num_intervals, span / ints_in_interval)`` rounded up on the
ladder of :mod:`tsnejax.gradients._grid` and capped at ``max_boxes`` (openTSNE's rule with its
own list and a cap of 1000); chosen on the host between chunks.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_int, check_points, check_positive, outside_stacklevel
from tsnejax._types import Array, Scalar
from tsnejax.affinity import Affinities
from tsnejax.gradients._attraction import attraction, kl_from_z
from tsnejax.gradients._backend import Backend, grid_backend
from tsnejax.gradients._collective import charge, mask_rows, psum
from tsnejax.gradients._grid import (
    choose_size,
    domain,
    even_kernel_spectrum,
    fft_potentials,
    gather,
    host_span,
    node_spectrum,
    nonneg_offsets,
    self_charge,
    spectral_energy,
    spread,
    spread_by_box,
    tensor_product,
)
from tsnejax.gradients._kernel import kernel_and_force

__all__ = [
    "InterpolationGrid",
    "lagrange_weights",
    "interpolation_repulsion",
    "interpolation_z",
    "node_stencil",
    "interpolation_gradient",
    "interpolation_kl_divergence",
    "interpolation_backend",
    "even_kernel_spectra",
    "DEFAULT_MAX_BOXES",
    "WIDE_BOXES",
    "grid_for_span",
    "warn_wide_boxes",
]

#: Cap on boxes per axis by embedding dimension (openTSNE caps 2-D at 1000). A 3-D grid of
#: b boxes runs FFTs of (6b)^3 points: 32 boxes cost ~0.6 s per repulsion on the 2-core CPU
#: (48: 2.4 s), so 3-D stays coarse and loses accuracy once the span exceeds ~32 units
#: (measurements in docs/gradients.md).
DEFAULT_MAX_BOXES = {1: 1000, 2: 1000, 3: 32}
#: Minimum boxes per axis by dimension (openTSNE/FIt-SNE: 50 in 1-D and 2-D).
DEFAULT_MIN_BOXES = {1: 50, 2: 50, 3: 18}
#: A grid held by ``max_boxes`` to boxes wider than this many times ``ints_in_interval`` warns.
#: Force error of a finished digits embedding (2-D, span 139, p = 3) by box width in units:
#: 0.037 at 1, 0.13 at 1.5, 0.35 at 2, 1.6 at 3 (``benchmarks/bench_box_width.py``).
WIDE_BOXES = 1.5


class InterpolationGrid(NamedTuple):
    """Static structure of the interpolation grid (hashable)."""

    n_boxes: int
    n_interpolation_points: int


def lagrange_weights(t: Array, p: int) -> Array:
    """``(..., p)`` Lagrange basis values at ``t`` for nodes ``(j + 1/2) / p``, ``j < p``."""
    tau = [(j + 0.5) / p for j in range(p)]
    cols = []
    for j in range(p):
        num = jnp.ones_like(t)
        den = 1.0
        for m in range(p):
            if m != j:
                num = num * (t - tau[m])
                den *= tau[j] - tau[m]
        cols.append(num / den)
    return jnp.stack(cols, axis=-1)


def even_kernel_spectra(m: int, spacing: Array, d: int, dof: Scalar, z_only: bool = False) -> Array:
    """Real spectra ``(2, (2m,)*(d-1), m + 1)`` of ``K_f``, ``K_z`` on nodes ``spacing`` apart
    (``(1, ...)``: ``K_z`` alone with ``z_only``)."""
    r2 = sum(o * o for o in nonneg_offsets(m, spacing, d))
    k_z, k_f = kernel_and_force(r2, dof)
    return even_kernel_spectrum(k_z[None] if z_only else jnp.stack([k_f, k_z]), m)


def _boxes(Y: Array, lo: Array, h: Array, grid: InterpolationGrid) -> tuple[Array, Array]:
    """Each point's box ``(n, d) int32`` and per-axis Lagrange weights ``(n, d, p)``."""
    nb, p = grid
    u = (Y - lo) / h
    box = jnp.clip(jnp.floor(u), 0, nb - 1)
    return box.astype(jnp.int32), lagrange_weights(u - box, p)


def node_stencil(Y: Array, lo: Array, h: Array, grid: InterpolationGrid) -> tuple[Array, Array]:
    """Flat stencil ``(idx, w)``, each ``(n, p**d)``: node indices and Lagrange weights of each
    point on boxes ``h`` wide from ``lo`` (points outside are clipped to the edge boxes)."""
    return _flat(*_boxes(Y, lo, h, grid), grid)


def _flat(box: Array, W: Array, grid: InterpolationGrid) -> tuple[Array, Array]:
    """``(idx, w)`` flat stencils of points in boxes ``box`` with per-axis weights ``W``."""
    nb, p = grid
    nodes = box[..., None] * p + jnp.arange(p, dtype=jnp.int32)
    w, idx = tensor_product(W, nodes, nb * p)
    return idx, w


class _Stencil(NamedTuple):
    idx: Array  # (n, p^d) node indices
    w: Array  # (n, p^d) weights
    spacing: Array  # node spacing
    box: Array  # (n, d) box of each point
    W: Array  # (n, d, p) per-axis weights


def _stencil(
    Y: Array, grid: InterpolationGrid, valid: Array | None, axis_name: str | None
) -> _Stencil:
    """:func:`node_stencil` on the embedding's own domain, and the node spacing."""
    lo, span = domain(Y, valid, axis_name)
    h = span / grid.n_boxes
    box, W = _boxes(Y, lo, h, grid)
    idx, w = _flat(box, W, grid)
    return _Stencil(idx, w, h / grid.n_interpolation_points, box, W)


def _charge(st: _Stencil, charges: Array, grid: InterpolationGrid, deterministic: bool) -> Array:
    """Node charges ``(m^d, c)``: a scatter-add, or by boxes without atomics."""
    nb, p = grid
    if deterministic:
        return spread_by_box(st.box, st.W, charges, nb, p)
    return spread(st.idx, st.w, charges, (nb * p) ** st.box.shape[1])


def interpolation_repulsion(
    Y: Array,
    dof: Scalar,
    grid: InterpolationGrid,
    *,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> tuple[Array, Array]:
    """Unnormalised repulsion ``R (n, d)`` and ``Z`` by interpolation (see module docstring).

    ``valid``/``axis_name``: ``Y`` is one shard of the points (:mod:`tsnejax.shard`); each shard
    charges the grid with its own points, the grids are summed across the axis, and the
    potentials are read back locally. ``deterministic``: the grid is charged without atomics
    (:mod:`tsnejax.gradients._scatter`).
    """
    d = Y.shape[1]
    m = grid.n_boxes * grid.n_interpolation_points
    st = _stencil(Y, grid, valid, axis_name)
    unit = charge(Y, valid)
    charges = jnp.concatenate([unit, Y * unit], axis=1)  # (n, d + 1)
    grid_q = psum(_charge(st, charges, grid, deterministic), axis_name)
    fk = even_kernel_spectra(m, st.spacing, d, dof)
    phi, fq = fft_potentials(grid_q, fk, m, [(c, 0) for c in range(d + 1)])  # (m^d, d + 1)
    pot = gather(st.idx, st.w, phi)  # (n, d + 1)
    R = Y * pot[:, :1] - pot[:, 1:]
    # sum_i phi_z(y_i) = sum over nodes of q_0 (K_z * q_0), read off the spectra (Parseval).
    Z = spectral_energy(fq[0], fk[1], m) - _own(st, unit, grid, dof, axis_name)
    return R, Z


def interpolation_z(
    Y: Array,
    dof: Scalar,
    grid: InterpolationGrid,
    *,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> Array:
    """``Z`` alone, as :func:`interpolation_repulsion` computes it: one forward transform."""
    d = Y.shape[1]
    m = grid.n_boxes * grid.n_interpolation_points
    st = _stencil(Y, grid, valid, axis_name)
    unit = charge(Y, valid)
    q0 = psum(_charge(st, unit, grid, deterministic), axis_name)
    fk = even_kernel_spectra(m, st.spacing, d, dof, z_only=True)
    energy = spectral_energy(node_spectrum(q0[:, 0], m, d), fk[0], m)
    return energy - _own(st, unit, grid, dof, axis_name)


def _own(
    st: _Stencil, unit: Array, grid: InterpolationGrid, dof: Scalar, axis_name: str | None
) -> Array:
    """The points' own terms in the interpolated kernel sum (:func:`self_charge`; FIt-SNE
    subtracts N, one per point)."""
    own = self_charge(st.w, grid.n_interpolation_points, st.spacing, dof)
    return psum(jnp.sum(own * unit[:, 0]), axis_name)


def interpolation_gradient(
    Y: Array,
    P: Affinities,
    dof: Scalar,
    exaggeration: Scalar,
    grid: InterpolationGrid,
    *,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> tuple[Array, Array]:
    """``(exaggeration * F_attr - R / Z, Z)`` with the interpolated repulsion."""
    check_points(Y, P, axis_name)
    shard = dict(valid=valid, axis_name=axis_name, deterministic=deterministic)
    R, Z = interpolation_repulsion(Y, dof, grid, **shard)
    grad = exaggeration * attraction(Y, P, dof, axis_name, deterministic) - R / Z
    return mask_rows(grad, valid), Z


def interpolation_kl_divergence(
    Y: Array,
    P: Affinities,
    dof: Scalar,
    grid: InterpolationGrid,
    *,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> Array:
    """KL with Z from the grid (sparse terms exact): the openTSNE FFT convention."""
    check_points(Y, P, axis_name)
    Z = interpolation_z(Y, dof, grid, valid=valid, axis_name=axis_name, deterministic=deterministic)
    return kl_from_z(Y, P, dof, Z, axis_name)


def grid_for_span(
    span: float,
    d: int,
    *,
    p: int,
    min_num_intervals: int | None,
    ints_in_interval: float,
    max_boxes: int | None,
) -> tuple[InterpolationGrid, bool]:
    """The grid for an embedding ``span`` units wide in ``d`` dimensions, and whether
    ``max_boxes`` holds its boxes to more than :data:`WIDE_BOXES` x ``ints_in_interval``."""
    lo = DEFAULT_MIN_BOXES[d] if min_num_intervals is None else min_num_intervals
    hi = DEFAULT_MAX_BOXES[d] if max_boxes is None else max_boxes
    nb = choose_size(span / ints_in_interval, minimum=lo, maximum=hi)
    return InterpolationGrid(nb, p), span > WIDE_BOXES * ints_in_interval * nb


def _allocate(Y: Array, **sizing) -> InterpolationGrid:
    d = int(np.shape(Y)[-1])
    grid, wide = grid_for_span(host_span(Y), d, **sizing)
    if wide:
        warn_wide_boxes(d, grid.n_boxes, sizing["ints_in_interval"])
    return grid


def warn_wide_boxes(d: int, n_boxes: int, ints_in_interval: float) -> None:
    """Warn (once per process and setting) that ``max_boxes`` holds the grid to boxes wider than
    :data:`WIDE_BOXES` times ``ints_in_interval``, where the repulsion's error passes ~10 %."""
    warnings.warn(
        f"The interpolation grid is capped at max_boxes={n_boxes} per axis in {d}-D and the "
        f"embedding has grown wider than {WIDE_BOXES * ints_in_interval * n_boxes:g} units, so "
        f"its boxes are over {WIDE_BOXES:g}x the requested {ints_in_interval:g} unit(s): the "
        "repulsion's error passes ~10 % there (docs/gradients.md, '3-D: the trade-off'). "
        "Raise max_boxes (the FFTs grow as (2 * n_interpolation_points * max_boxes)^d), or use "
        "negative_gradient_method='exact' where N^2 pairs per step are affordable.",
        stacklevel=outside_stacklevel(),
    )


def interpolation_backend(
    n_interpolation_points: int = 3,
    min_num_intervals: int | None = None,
    ints_in_interval: float = 1.0,
    max_boxes: int | None = None,
    deterministic_scatter: bool = False,
) -> Backend:
    """The ``"interpolation"`` gradient method.

    Args:
      n_interpolation_points: Lagrange nodes per box and axis (FIt-SNE/openTSNE: 3).
      min_num_intervals: minimum boxes per axis (default :data:`DEFAULT_MIN_BOXES`: 50, 18 in 3-D).
      ints_in_interval: embedding units per box (1: one box per unit of span).
      max_boxes: cap on boxes per axis (default :data:`DEFAULT_MAX_BOXES`: 1000, 32 in 3-D).
      deterministic_scatter: charge the grid and fold continuation rows back without atomic
        adds (:mod:`tsnejax.gradients._scatter`): the same bits on every run on any device,
        without ``--xla_gpu_deterministic_ops``; slower on a CPU, where the scatter is
        deterministic anyway.
    """
    p = check_int("n_interpolation_points", n_interpolation_points, minimum=1)
    if min_num_intervals is not None:
        check_int("min_num_intervals", min_num_intervals, minimum=1)
    if max_boxes is not None:
        check_int("max_boxes", max_boxes, minimum=1)
    check_positive("ints_in_interval", ints_in_interval)
    allocate = functools.partial(
        _allocate,
        p=p,
        min_num_intervals=min_num_intervals,
        ints_in_interval=ints_in_interval,
        max_boxes=max_boxes,
    )
    return grid_backend(
        "interpolation",
        interpolation_gradient,
        interpolation_kl_divergence,
        allocate,
        deterministic_scatter,
    )
