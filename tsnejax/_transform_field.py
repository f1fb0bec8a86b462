"""The fixed reference's repulsion on new points (:func:`tsnejax.transform.transform`): summed
exactly in blocks, or from a frozen grid (the ``"interpolation"`` method: the reference's charges
spread and convolved once by FFT, then only interpolated at the new points each step) and how
large that grid is."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from tsnejax._types import Array
from tsnejax.gradients._grid import LADDER, choose_size, fft_potentials, gather, spread
from tsnejax.gradients._kernel import kernel_and_force
from tsnejax.gradients.interpolation import (
    DEFAULT_MAX_BOXES,
    DEFAULT_MIN_BOXES,
    WIDE_BOXES,
    InterpolationGrid,
    even_kernel_spectra,
    node_stencil,
)


@functools.partial(jax.jit, static_argnames=("dof", "block"))
def exact_reference_repulsion(
    Y: Array, Y_ref: Array, dof: float, block: int = 2048
) -> tuple[Array, Array]:
    """``(R, Z)`` per new point summed exactly over the reference, ``block`` rows at a time
    (``dof`` compiled in, as the loop's is: a traced ``inf`` made every gradient NaN)."""
    n, d = Y_ref.shape
    nblk = -(-n // block)
    pad = nblk * block - n
    R_pad = jnp.pad(Y_ref, ((0, pad), (0, 0))).reshape(nblk, block, d)
    valid = (jnp.arange(nblk * block) < n).reshape(nblk, block)

    def body(carry, xs):
        R, Z = carry
        Yb, ok = xs
        diff = Y[:, None, :] - Yb[None, :, :]
        d2 = jnp.sum(diff * diff, axis=-1)
        k_z, k_f = kernel_and_force(d2, dof)
        k_z, k_f = jnp.where(ok, k_z, 0.0), jnp.where(ok, k_f, 0.0)
        return (R + jnp.einsum("mb,mbd->md", k_f, diff), Z + jnp.sum(k_z, axis=1)), None

    init = (jnp.zeros_like(Y), jnp.zeros(Y.shape[0], Y.dtype))
    (R, Z), _ = jax.lax.scan(body, init, (R_pad, valid))
    return R, Z


class ReferenceField(NamedTuple):
    """The fixed reference's potentials on a frozen grid (a pytree of arrays)."""

    lo: Array  # shape=(): lower corner of the square domain
    h: Array  # shape=(): box width
    phi: Array  # (m**d, d + 2): force potentials of charges 1, y_1..y_d; Z potential


@functools.partial(jax.jit, static_argnames=("dof", "grid", "padding"))
def reference_field(
    Y_ref: Array, dof: float, grid: InterpolationGrid, padding: float = 0.25
) -> ReferenceField:
    """Spread the reference charges on the padded grid and convolve once by FFT."""
    n, d = Y_ref.shape
    nb, p = grid
    m = nb * p
    lo0, hi0 = jnp.min(Y_ref), jnp.max(Y_ref)
    span0 = jnp.maximum(hi0 - lo0, jnp.asarray(1e-6, Y_ref.dtype))
    lo = lo0 - padding * span0
    h = span0 * (1 + 2 * padding) / nb
    idx, w = node_stencil(Y_ref, lo, h, grid)
    charges = jnp.concatenate([jnp.ones((n, 1), Y_ref.dtype), Y_ref], axis=1)
    grid_q = spread(idx, w, charges, m**d)
    fk = even_kernel_spectra(m, h / p, d, dof)
    pairs = [(c, 0) for c in range(d + 1)] + [(0, 1)]
    phi, _ = fft_potentials(grid_q, fk, m, pairs)
    return ReferenceField(lo, h, phi)


def field_repulsion(
    Y: Array, field: ReferenceField, grid: InterpolationGrid
) -> tuple[Array, Array]:
    """``(R (m, d), Z (m,))`` at new points from the frozen field (no FFT per step)."""
    d = Y.shape[1]
    nb, p = grid
    idx, w = node_stencil(Y, field.lo, field.h, grid)
    pot = gather(idx, w, field.phi)
    return Y * pot[:, :1] - pot[:, 1 : d + 1], pot[:, d + 1]


def frozen_grid_boxes(
    span: float, d: int, ints_in_interval: float, min_num_intervals: int | None
) -> tuple[int, bool]:
    """``(boxes per axis, wide)`` of the frozen grid over a padded domain ``span`` units wide:
    one box per ``ints_in_interval`` units within the per-dimension bounds, and whether the cap
    (32 boxes in 3-D) leaves boxes wider than ``WIDE_BOXES`` times that, where the repulsion's
    error passes ~10 % (3-D digits, span 100: 4.7-unit boxes, new points placed up to the
    embedding's whole scale away from the exact sums)."""
    nb = choose_size(
        span / ints_in_interval,
        minimum=min_num_intervals or DEFAULT_MIN_BOXES[d],
        maximum=DEFAULT_MAX_BOXES[d],
        ladder=LADDER,
    )
    return nb, span / nb > WIDE_BOXES * ints_in_interval
