"""Which grid the next chunk will want, guessed on the host while the current chunk runs.

A grid backend sizes its grid from the embedding's span (:mod:`tsnejax.gradients._grid`), and
after early exaggeration the span grows by a shrinking factor per chunk (MNIST-5k to 20k,
50-iteration chunks: x1.37-1.43, 1.20, 1.13, 1.10, 1.08, ...: each factor's excess over 1 is
0.5-0.85 of the previous one). :func:`predict_grid` asks the backend's own ``allocate`` for the
grid of the current embedding scaled by the damped last factor, so the loop
(:func:`tsnejax.run.optimize`) can compile that chunk's program while this one executes. A
wrong guess costs only background work: the loop still allocates from the real embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

__all__ = ["GROWTH_DAMPING", "MAX_GROWTH", "host_spans", "growth", "predict_grid"]

#: The next chunk's span factor is ``1 + GROWTH_DAMPING * (last factor - 1)``...
GROWTH_DAMPING = 0.6
#: ... at most this (the first chunk after exaggeration grows 10-20x: no guide to the next).
MAX_GROWTH = 1.5


def host_spans(Y: np.ndarray) -> np.ndarray:
    """Span (max - min over all coordinates) of ``(n, d)`` -> ``()``, ``(t, n, d)`` -> ``(t,)``."""
    flat = Y.reshape(Y.shape[0], -1) if Y.ndim == 3 else Y.reshape(1, -1)
    spans = flat.max(axis=1) - flat.min(axis=1)
    return spans if Y.ndim == 3 else spans[0]


def growth(prev: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Damped span factor for the next chunk from the last one (1 where the span shrank)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, now / prev, 1.0)
    return np.clip(1.0 + GROWTH_DAMPING * (r - 1.0), 1.0, MAX_GROWTH)


def predict_grid(
    allocate: Callable[[np.ndarray], Hashable],
    Y: np.ndarray,
    factor: np.ndarray,
    join: Callable[[list], Hashable],
) -> Hashable:
    """``allocate`` of ``Y`` scaled by ``factor`` (per trial for a ``(t, n, d)`` batch, whose
    grids ``join`` combines)."""
    if Y.ndim == 3:
        return join([allocate(Y[b] * factor[b]) for b in range(Y.shape[0])])
    return allocate(Y * factor)
