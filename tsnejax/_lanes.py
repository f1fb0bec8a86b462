"""Row sums that XLA's CPU backend vectorises, and gathers that fetch two values at once.

XLA's CPU reduction keeps one add chain per output row: sequential, bound by the add's latency
and not vectorised, while its elementwise code is vectorised. Adding :data:`LANES` contiguous
column groups elementwise first (a pairwise tree) leaves an eighth of the chain; XLA fuses the
groups' producers into that elementwise code. Measured on the 2-core CPU
(``docs/gradients.md``): the exact repulsion at N = 5000, 28 -> 15 ms. Results differ from
``jnp.sum`` only by float reassociation. (Not in the attraction: there it took MNIST-70k from
30 to 22-26 ms, but a vmapped batch then rounded differently from its trials run one at a time.)

:func:`complex_lanes` packs pairs of columns as ``complex64`` so that one ``jnp.take`` fetches
two values: XLA's CPU gather costs per element fetched more than per byte. Measured
(``benchmarks/bench_attraction.py``, ``docs/gradients.md``): the 2-D attraction at MNIST-70k
37.2 -> 24.4 ms, the interpolation's read-back of three potentials at 70k points 7.0 -> 3.3 ms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsnejax._types import Array

#: Column groups added elementwise before the reduction.
LANES = 8


def tree_sum(xs: list[Array]) -> Array:
    """Pairwise sum of equally shaped arrays."""
    while len(xs) > 1:
        xs = [xs[i] + xs[i + 1] if i + 1 < len(xs) else xs[i] for i in range(0, len(xs), 2)]
    return xs[0]


def lane_sum(x: Array) -> Array:
    """``jnp.sum(x, axis=1)`` for ``x`` of shape ``(rows, m)``, as ``LANES`` column groups
    added elementwise (plus the remainder of ``m % LANES`` columns) and one shorter reduction."""
    m = x.shape[1]
    q = m // LANES
    if q < 2:
        return jnp.sum(x, axis=1)
    s = jnp.sum(tree_sum([x[:, g * q : (g + 1) * q] for g in range(LANES)]), axis=1)
    return s + jnp.sum(x[:, LANES * q :], axis=1) if m > LANES * q else s


def complex_lanes(x: Array) -> list[Array]:
    """The columns of ``x (n, c)`` as gather lanes: each pair one complex array ``(n,)``, an
    odd last column real."""
    cols = [x[:, k] for k in range(x.shape[1])]
    lanes = [jax.lax.complex(a, b) for a, b in zip(cols[0::2], cols[1::2], strict=False)]
    return lanes + cols[2 * len(lanes) :]


def lane_columns(s: Array) -> list[Array]:
    """A lane's values back as columns: ``[real, imag]`` of a complex lane, else ``[s]``."""
    return [jnp.real(s), jnp.imag(s)] if jnp.iscomplexobj(s) else [s]


def weighted(w: Array, lane: Array) -> Array:
    """``w * lane`` for real weights ``w`` (cast explicitly: strict dtype promotion)."""
    return w.astype(lane.dtype) * lane


def squared_modulus(d: Array) -> Array:
    """``|d|^2`` of a lane: the sum of both packed coordinates' squares, or ``d * d``."""
    return jnp.real(d) ** 2 + jnp.imag(d) ** 2 if jnp.iscomplexobj(d) else d * d
