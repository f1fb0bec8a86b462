"""GPGPU-SNE-style repulsion: fields on a pixel grid (Pezzotti et al. 2020).

Points are splatted bilinearly (unit charge) onto a grid of ``g`` pixels per axis covering the
square domain of the embedding; convolving that density with sampled kernels (by FFT on a
zero-padded ``(2g)^d`` circulant) gives the scalar and vector fields

.. math::
    S(p) = \\sum_j (1 + \\|p - y_j\\|^2/\\alpha)^{-\\alpha}, \\qquad
    V(p) = \\sum_j (1 + \\|p - y_j\\|^2/\\alpha)^{-(\\alpha+1)} (p - y_j),

which are read back at the points bilinearly: :math:`\\hat Z = \\sum_i (S(y_i) - s_i)`, with
:math:`s_i` the point's own charge read back at itself (:func:`self_charge`; the paper
subtracts 1), and the repulsion is :math:`V(y_i) / \\hat Z` (``dof = 1`` gives the paper's
:math:`(1+r^2)^{-1}` and :math:`(1+r^2)^{-2}`). The vector field uses one kernel per axis,
``K_f(r) r_c``, so only the density is splatted: per step ``d + 1`` kernel FFTs, 1 forward and
``d + 1`` inverse FFTs.

Resolution: ``pixels_per_unit`` pixels per embedding unit (HDILib uses 2; the default here was
chosen to meet a 5e-3 force error on mid-optimisation MNIST, see ``docs/gradients.md``); the
pixel count per axis comes from the size ladder, chosen on the host between chunks.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_int, check_points, check_positive
from tsnejax._types import Array, Scalar
from tsnejax.affinity import Affinities
from tsnejax.gradients._attraction import attraction, kl_from_z
from tsnejax.gradients._backend import Backend, grid_backend
from tsnejax.gradients._collective import charge, mask_rows, psum
from tsnejax.gradients._grid import (
    choose_size,
    circulant_offsets,
    domain,
    fft_convolve,
    gather,
    host_span,
    self_charge,
    spread,
    spread_by_box,
    tensor_product,
)
from tsnejax.gradients._kernel import kernel_and_force

__all__ = [
    "SplatGrid",
    "splat_repulsion",
    "splat_gradient",
    "splat_kl_divergence",
    "splat_backend",
    "DEFAULT_PIXELS_PER_UNIT",
]

DEFAULT_PIXELS_PER_UNIT = 4.0
DEFAULT_MAX_PIXELS = {1: 4096, 2: 2048, 3: 160}
DEFAULT_MIN_PIXELS = 64


class SplatGrid(NamedTuple):
    """Static structure of the splat grid: pixels (grid vertices) per axis (hashable)."""

    n_pixels: int


def splat_repulsion(
    Y: Array,
    dof: Scalar,
    grid: SplatGrid,
    *,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> tuple[Array, Array]:
    """Unnormalised repulsion ``V(y_i)`` ``(n, d)`` and :math:`\\hat Z` (module docstring).

    ``valid``/``axis_name``: ``Y`` is one shard of the points; the densities are summed across
    the axis before the convolution (:mod:`tsnejax.shard`). ``deterministic``: splatted
    without atomics (:mod:`tsnejax.gradients._scatter`).
    """
    d = Y.shape[1]
    g = grid.n_pixels
    lo, span = domain(Y, valid, axis_name)
    delta = span / (g - 1)
    u = (Y - lo) / delta
    cell = jnp.clip(jnp.floor(u), 0, g - 2)
    t = u - cell
    W = jnp.stack([1.0 - t, t], axis=-1)  # (n, d, 2) bilinear weights
    nodes = cell.astype(jnp.int32)[..., None] + jnp.arange(2, dtype=jnp.int32)
    w, idx = tensor_product(W, nodes, g)
    unit = charge(Y, valid)
    if deterministic:  # by cells (g - 1 per axis, corners shared)
        local = spread_by_box(cell.astype(jnp.int32), W, unit, g - 1, 1)
    else:
        local = spread(idx, w, unit, g**d)
    density = psum(local, axis_name)
    offsets = circulant_offsets(g, delta, d)
    r2 = sum(o * o for o in offsets)
    k_s, k_f = kernel_and_force(r2, dof)
    kernels = jnp.stack([k_s] + [k_f * o for o in offsets])
    fields = fft_convolve(density, kernels, g, [(0, k) for k in range(d + 1)])
    at_points = gather(idx, w, fields)  # (n, d + 1): S, V_1..V_d
    own = self_charge(w, 2, delta, dof)
    Z = psum(jnp.sum((at_points[:, 0] - own) * unit[:, 0]), axis_name)
    return at_points[:, 1:], Z


def splat_gradient(
    Y: Array,
    P: Affinities,
    dof: Scalar,
    exaggeration: Scalar,
    grid: SplatGrid,
    *,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> tuple[Array, Array]:
    """``(exaggeration * F_attr - V / Z, Z)`` with the splatted fields."""
    check_points(Y, P, axis_name)
    shard = dict(valid=valid, axis_name=axis_name, deterministic=deterministic)
    V, Z = splat_repulsion(Y, dof, grid, **shard)
    F = attraction(Y, P, dof, axis_name, deterministic)
    return mask_rows(exaggeration * F - V / Z, valid), Z


def splat_kl_divergence(
    Y: Array,
    P: Affinities,
    dof: Scalar,
    grid: SplatGrid,
    *,
    valid: Array | None = None,
    axis_name: str | None = None,
    deterministic: bool = False,
) -> Array:
    """KL with :math:`\\hat Z` from the fields (sparse terms exact)."""
    check_points(Y, P, axis_name)
    shard = dict(valid=valid, axis_name=axis_name, deterministic=deterministic)
    _, Z = splat_repulsion(Y, dof, grid, **shard)
    return kl_from_z(Y, P, dof, Z, axis_name)


def _allocate(Y: Array, *, pixels_per_unit: float, max_pixels: int | None) -> SplatGrid:
    d = int(np.shape(Y)[1])
    span = host_span(Y)
    hi = DEFAULT_MAX_PIXELS[d] if max_pixels is None else max_pixels
    return SplatGrid(
        choose_size(span * pixels_per_unit + 1, minimum=DEFAULT_MIN_PIXELS, maximum=hi)
    )


def splat_backend(
    pixels_per_unit: float = DEFAULT_PIXELS_PER_UNIT,
    max_pixels: int | None = None,
    deterministic_scatter: bool = False,
) -> Backend:
    """The ``"splat"`` gradient method (field splatting, GPGPU-SNE).

    Args:
      pixels_per_unit: grid resolution in pixels per embedding unit.
      max_pixels: cap on pixels per axis (default 2048 in 2-D).
      deterministic_scatter: splat and fold continuation rows back without atomic adds
        (:mod:`tsnejax.gradients._scatter`).
    """
    check_positive("pixels_per_unit", pixels_per_unit)
    if max_pixels is not None:
        check_int("max_pixels", max_pixels, minimum=2)
    allocate = functools.partial(_allocate, pixels_per_unit=pixels_per_unit, max_pixels=max_pixels)
    return grid_backend(
        "splat", splat_gradient, splat_kl_divergence, allocate, deterministic_scatter
    )
