"""Shared machinery of the grid backends: size ladder, tensor-product weights, spreading,
gathering and FFT convolution with a kernel sampled on a uniform node grid.

Static vs dynamic: the number of nodes per axis is a Python int (it shapes arrays) chosen on
the host from a fixed ladder between scan chunks; the domain ``[min, max]`` of the embedding and
hence the node spacing are traced and follow the embedding every step, so no point can ever
fall outside the grid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._lanes import complex_lanes, lane_columns, weighted
from tsnejax._types import Array, Scalar
from tsnejax.gradients._collective import bounds
from tsnejax.gradients._kernel import kernel_and_force
from tsnejax.gradients._scatter import add_at, sorted_sum


def _smooth_ladder(lo: int, hi: int, ratio: float) -> tuple[int, ...]:
    """5-smooth sizes (FFT-friendly) growing by about ``ratio`` from ``lo`` to ``hi``."""
    smooth = [n for n in range(lo, hi + 1) if _largest_prime_factor(n) <= 5]
    out = [smooth[0]]
    for n in smooth[1:]:
        if n >= out[-1] * ratio - 1e-9:
            out.append(n)
    if out[-1] != smooth[-1]:
        out.append(smooth[-1])
    return tuple(out)


def _largest_prime_factor(n: int) -> int:
    p, last = 2, 1
    while n > 1 and p * p <= n:
        while n % p == 0:
            n //= p
            last = p
        p += 1
    return max(last, n) if n > 1 else last


#: Boxes (interpolation) or pixels (splat) per axis: 5-smooth sizes ~1.2x apart, so a full run
#: passes through a handful of sizes (each a compile) and rounding up costs < 20 % of nodes.
LADDER = _smooth_ladder(8, 2048, 1.2)


def choose_size(
    target: float, *, minimum: int, maximum: int, ladder: Sequence[int] = LADDER
) -> int:
    """Smallest ladder size >= ``max(target, minimum)``, capped at ``maximum``."""
    want = max(float(target), float(minimum))
    for n in ladder:
        if n >= want:
            return int(min(n, maximum))
    return int(maximum)


def host_span(Y: Array | np.ndarray) -> float:
    """``max - min`` over all coordinates as a Python float, computed where ``Y`` lives (a NumPy
    array stays on the host: the loop sizes its next grid while the device is busy)."""
    if isinstance(Y, np.ndarray):
        return float(Y.max() - Y.min())
    return float(jnp.max(Y) - jnp.min(Y))


def domain(
    Y: Array, valid: Array | None = None, axis_name: str | None = None
) -> tuple[Array, Array]:
    """Square (cubic) domain over all coordinates, as openTSNE: ``(lo, span)`` scalars (over the
    real rows of every shard, :mod:`tsnejax.gradients._collective`)."""
    lo, hi = bounds(Y, valid, axis_name)
    span = hi - lo
    # A collapsed embedding (all points equal) still needs a positive box width.
    return lo, jnp.maximum(span, jnp.asarray(1e-6, Y.dtype))


def tensor_product(weights: Array, nodes: Array, n_per_axis: int) -> tuple[Array, Array]:
    """Combine per-axis stencils into flat ones.

    Args:
      weights: ``(n, d, s)`` weight of each of ``s`` nodes along each axis.
      nodes: ``(n, d, s) int32`` node index along each axis.
      n_per_axis: nodes per axis (row-major flattening).

    Returns:
      ``(w, idx)`` of shape ``(n, s**d)``.
    """
    n, d, s = weights.shape
    w = weights[:, 0, :]
    idx = nodes[:, 0, :]
    for a in range(1, d):
        w = (w[:, :, None] * weights[:, a, None, :]).reshape(n, -1)
        idx = (idx[:, :, None] * n_per_axis + nodes[:, a, None, :]).reshape(n, -1)
    return w, idx


def spread(
    idx: Array, w: Array, charges: Array, n_nodes: int, deterministic: bool = False
) -> Array:
    """Scatter-add ``charges (n, c)`` with stencil weights onto ``(n_nodes, c)`` nodes
    (``deterministic``: without atomics, :func:`tsnejax.gradients._scatter.sorted_sum`)."""
    contrib = w[:, :, None] * charges[:, None, :]
    return add_at(idx, contrib, n_nodes, deterministic)


def spread_by_box(box: Array, weights: Array, charges: Array, n_boxes: int, stride: int) -> Array:
    """:func:`spread` without atomics, by boxes: ``(n_nodes, c)`` node charges.

    Each point sits in box ``box (n, d)`` (ints in ``[0, n_boxes)``) whose nodes along an axis
    are ``b * stride + j`` for ``j < s``, with weights ``weights (n, d, s)`` (interpolation:
    ``stride = s = p``, disjoint boxes; splat: cells with ``stride = 1``, ``s = 2``, shared
    corners). The points are summed per box with
    :func:`tsnejax.gradients._scatter.sorted_sum` (a sort of ``n`` keys, not ``n s^d``), then
    each of the ``s^d`` box-local offsets is laid onto the node grid by reshaping (disjoint) or
    by strided padding and a fixed sum (shared nodes): the same bits on every run.
    """
    n, d, s = weights.shape
    c = charges.shape[1]
    w = weights[:, 0, :]
    flat = box[:, 0]
    for a in range(1, d):
        w = (w[:, :, None] * weights[:, a, None, :]).reshape(n, -1)
        flat = flat * n_boxes + box[:, a]
    per_box = sorted_sum(flat, (w[:, :, None] * charges[:, None, :]).reshape(n, -1), n_boxes**d)
    per_box = per_box.reshape((n_boxes,) * d + (s,) * d + (c,))
    if stride == s:  # disjoint boxes: interleave (box, offset) pairs along each axis
        order = [i for a in range(d) for i in (a, d + a)] + [2 * d]
        m = n_boxes * s
        return jnp.transpose(per_box, order).reshape(m**d, c)
    m = (n_boxes - 1) * stride + s
    nodes = jnp.zeros((m,) * d + (c,), charges.dtype)
    zero = jnp.zeros((), charges.dtype)
    for offset in itertools.product(range(s), repeat=d):
        part = per_box[(slice(None),) * d + offset]
        cfg = [(o, m - o - (n_boxes - 1) * stride - 1, stride - 1) for o in offset] + [(0, 0, 0)]
        nodes = nodes + jax.lax.pad(part, zero, cfg)
    return nodes.reshape(m**d, c)


def gather(idx: Array, w: Array, values: Array) -> Array:
    """Interpolate node ``values (n_nodes, c)`` back to the points: ``(n, c)`` (two channels
    per gather, :func:`tsnejax._lanes.complex_lanes`)."""
    sums = [
        jnp.sum(weighted(w, jnp.take(v, idx, mode="clip")), axis=1) for v in complex_lanes(values)
    ]
    return jnp.stack([col for s in sums for col in lane_columns(s)], axis=1)


def circulant_offsets(n_per_axis: int, spacing: Array, dim: int) -> list[Array]:
    """Signed offsets along each axis of the ``(2m)^d`` circulant embedding, broadcastable.

    Index ``k`` stands for offset ``k`` (``k < m``) or ``k - 2m`` (``k >= m``), times ``spacing``.
    """
    m = n_per_axis
    k = jnp.arange(2 * m)
    return _along_each_axis(jnp.where(k < m, k, k - 2 * m).astype(spacing.dtype) * spacing, dim)


def _along_each_axis(values: Array, dim: int) -> list[Array]:
    """``values (L,)`` reshaped to lie along axis ``a`` of a ``dim``-D array, for each ``a``."""
    return [values.reshape([-1 if b == a else 1 for b in range(dim)]) for a in range(dim)]


def _forward(x: Array, m: int, d: int) -> Array:
    """Spectrum of ``x`` (``(c, m, ..., m)``) zero-padded to ``(2m)^d``, axis by axis.

    One 1-D transform per axis with ``n=2m`` pads implicitly and skips the all-zero half in
    the first stages: measured 2.75x faster than ``rfftn`` of the padded array at m = 600
    (and the 1-D transforms use both cores).
    """
    out = jnp.fft.rfft(x, n=2 * m, axis=-1)
    for axis in range(1, d):
        out = jnp.fft.fft(out, n=2 * m, axis=-1 - axis)
    return out


def _inverse(f: Array, m: int, d: int) -> Array:
    """Inverse of :func:`_forward`, keeping only the first ``m`` outputs per axis."""
    for axis in range(d - 1, 0, -1):
        f = jax.lax.slice_in_dim(jnp.fft.ifft(f, axis=-1 - axis), 0, m, axis=f.ndim - 1 - axis)
    return jnp.fft.irfft(f, n=2 * m, axis=-1)[..., :m]


def kernel_spectrum(kernels: Array, m: int) -> Array:
    """Spectrum of kernels sampled on the ``(2m)^d`` circulant: ``(k, 2m, ..., m + 1)``."""
    d = kernels.ndim - 1
    out = jnp.fft.rfft(kernels, axis=-1)
    for axis in range(1, d):
        out = jnp.fft.fft(out, axis=-1 - axis)
    return out


def nonneg_offsets(n_per_axis: int, spacing: Array, dim: int) -> list[Array]:
    """Offsets ``0..m`` along each axis times ``spacing``, broadcastable to ``(m + 1)^d``."""
    return _along_each_axis(jnp.arange(n_per_axis + 1).astype(spacing.dtype) * spacing, dim)


def even_kernel_spectrum(kernels: Array, m: int) -> Array:
    """Real spectrum of kernels even in every axis, from their ``(m + 1)^d`` non-negative quadrant.

    A kernel with ``K(..., -x, ...) = K(..., x, ...)`` has a real, even spectrum, so each axis
    needs only ``m + 1`` real transforms of its even extension (a DCT-I done by ``rfft``) instead
    of ``2m`` complex ones, and ``(m + 1)^d`` kernel evaluations instead of ``(2m)^d``: about
    half of :func:`kernel_spectrum`'s time or less at m = 600-720 on the 2-core CPU.

    Args:
      kernels: ``(k, (m + 1,)*d)`` kernels at offsets ``0..m`` (:func:`nonneg_offsets`).

    Returns:
      ``(k, (2m,)*(d-1), m + 1)`` real, laid out as :func:`kernel_spectrum`.
    """
    return jnp.stack([_even_spectrum(kernel, m) for kernel in kernels])


def _even_spectrum(kernel: Array, m: int) -> Array:
    d = kernel.ndim
    out = kernel
    for axis in range(1, d + 1):
        mirrored = jnp.flip(jax.lax.slice_in_dim(out, 1, m, axis=d - axis), axis=-axis)
        even = jnp.concatenate([out, mirrored], axis=-axis)  # length 2m along the axis
        out = jnp.real(jnp.fft.rfft(even, axis=-axis))
    for axis in range(2, d + 1):  # full length 2m on all but the last axis, by evenness
        mirrored = jnp.flip(jax.lax.slice_in_dim(out, 1, m, axis=d - axis), axis=-axis)
        out = jnp.concatenate([out, mirrored], axis=-axis)
    return out


def node_spectrum(values: Array, m: int, d: int) -> Array:
    """Spectrum ``(2m, ..., m + 1)`` of one channel's ``(m**d,)`` node values, zero-padded."""
    return _forward(values.reshape((m,) * d), m, d)


def _after(x: Array, prev: Array | None) -> Array:
    """``x``, available only once ``prev`` is computed (orders independent transforms)."""
    if prev is None:
        return x
    x, _ = jax.lax.optimization_barrier((x, prev))
    return x


def fft_potentials(
    node_values: Array, fk: Array, m: int, pairs: Sequence[tuple[int, int]]
) -> tuple[Array, dict[int, Array]]:
    """Convolve node channels with kernels given by their spectra, one transform at a time.

    Args:
      node_values: ``(m**d, c)`` charges on the nodes.
      fk: ``(k, (2m,)*(d-1), m + 1)`` kernel spectra (:func:`kernel_spectrum` or
        :func:`even_kernel_spectrum`).
      pairs: ``(channel, kernel)`` products to return, in order.

    Returns:
      ``(m**d, len(pairs))`` potentials at the nodes and the channel spectra used, by channel.

    Each transform waits for the previous one: transforming all channels as one batch, or
    letting XLA run the independent ones concurrently, falls out of the CPU cache above
    m = 500 (the whole MNIST-70k repulsion at m = 720: 65 ms batched, 56 ms ordered;
    ``benchmarks/bench_grid_fft.py``).
    """
    d = fk.ndim - 1
    grid = node_values.T.reshape((node_values.shape[1],) + (m,) * d)
    spectra: dict[int, Array] = {}
    out: list[Array] = []
    prev = None
    for c, k in pairs:
        if c not in spectra:
            prev = spectra[c] = _forward(_after(grid[c], prev), m, d)
        prev = _inverse(_after(spectra[c], prev) * fk[k], m, d)
        out.append(prev.reshape(-1))
    return jnp.stack(out, axis=1).astype(node_values.dtype), spectra


def spectral_energy(fq: Array, fk: Array, m: int) -> Array:
    """``sum_x q(x) (K * q)(x)`` over the nodes, by Parseval: no inverse transform.

    ``fq`` is one channel's spectrum (from :func:`fft_potentials`), ``fk`` a real (even-kernel)
    spectrum. The last axis holds frequencies ``0..m`` of ``2m``: the others appear twice in the
    full spectrum.
    """
    d = fq.ndim
    power = jnp.real(fq) ** 2 + jnp.imag(fq) ** 2
    twice = jnp.full((m + 1,), 2.0, fk.dtype).at[0].set(1.0).at[m].set(1.0)
    return jnp.sum(power * fk * twice) / (2 * m) ** d


def fft_convolve(
    node_values: Array, kernels: Array, n_per_axis: int, pairs: Sequence[tuple[int, int]]
) -> Array:
    """Aperiodic convolution of node values with sampled kernels via a zero-padded circulant.

    Args:
      node_values: ``(m**d, c)`` charges on the nodes.
      kernels: ``(k, (2m,)*d)`` kernels sampled at the circulant offsets.
      pairs: ``(channel, kernel)`` products to return, in order.

    Returns:
      ``(m**d, len(pairs))`` potentials at the nodes.
    """
    return fft_potentials(node_values, kernel_spectrum(kernels, n_per_axis), n_per_axis, pairs)[0]


def grid_cost(n_per_axis: int, dim: int) -> float:
    """Relative FFT cost of a ``(2m)^d`` grid (for docs/benchmarks)."""
    size = (2 * n_per_axis) ** dim
    return size * math.log2(size)


def self_charge(w: Array, p: int, spacing: Scalar, dof: Scalar) -> Array:
    """``(n,)`` what each point's own charge adds to the kernel sum read back at the point:
    :math:`\\sum_{a,b} w_a w_b K(\\|c_a - c_b\\|^2 h^2)` over its ``p^d`` nodes (``w``: its
    :func:`tensor_product` weights, ``p`` nodes per axis ``spacing`` = h apart; bilinear splat:
    ``p = 2``).

    The exact term is ``K(0) = 1``, which FIt-SNE, openTSNE and GPGPU-SNE subtract; the grid
    reads back less (~0.94 between pixels for the splat at 4 per unit; far less in wide
    interpolation boxes), an absolute error per point that dominated ``Z`` on sparse embeddings
    (negative on a few spread-out points). The own vector-field terms need no such correction:
    they cancel in pairs (odd in ``c_a - c_b``, symmetric in the weights).
    """
    d = round(math.log(w.shape[1], p))
    corners = np.array(list(itertools.product(range(p), repeat=d)))
    gap2 = ((corners[:, None, :] - corners[None, :, :]) ** 2).sum(-1)
    k_s, _ = kernel_and_force(jnp.asarray(gap2, w.dtype) * (spacing * spacing), dof)
    return jnp.einsum("na,ab,nb->n", w, k_s, w)


__all__ = [
    "LADDER",
    "host_span",
    "choose_size",
    "domain",
    "tensor_product",
    "spread",
    "spread_by_box",
    "gather",
    "circulant_offsets",
    "nonneg_offsets",
    "kernel_spectrum",
    "even_kernel_spectrum",
    "node_spectrum",
    "fft_potentials",
    "spectral_energy",
    "fft_convolve",
    "grid_cost",
    "self_charge",
]
