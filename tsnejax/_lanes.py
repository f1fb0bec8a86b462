"""Row sums that XLA's CPU backend vectorises.

XLA's CPU reduction keeps one add chain per output row: sequential, bound by the add's latency
and not vectorised, while its elementwise code is vectorised. Adding :data:`LANES` contiguous
column groups elementwise first (a pairwise tree) leaves an eighth of the chain; XLA fuses the
groups' producers into that elementwise code. Measured on the 2-core CPU
(``docs/gradients.md``): the exact repulsion at N = 5000, 28 -> 15 ms. Results differ from
``jnp.sum`` only by float reassociation. (Not in the attraction: there it took MNIST-70k from
30 to 22-26 ms, but a vmapped batch then rounded differently from its trials run one at a time.)
"""

from __future__ import annotations

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
