"""Collapse, explosion and stall checks of the embedding's spread at phase ends.

A run with ``exaggeration=1e6`` shrinks the embedding to a point (standard deviation 1e-8
from 1.7 on digits) and still reports a finite KL (3.97, the KL of an embedding that carries
no information); ``exaggeration=0.01`` spreads it to 1290 (a healthy digits run ends near 33);
a learning rate of 1e-3 leaves it at its initial 1e-4. None of these is an error, so each gives
an :class:`EmbeddingScaleWarning` naming the hyperparameter that usually causes it
(``docs/reliability.md`` lists the measurements).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EmbeddingScaleWarning",
    "scale_messages",
    "COLLAPSE_FRACTION",
    "EXPLODE_FACTOR",
    "STALL_ITERATIONS",
]

#: A phase that ends with the spread below this fraction of the larger of the spread at the
#: start of the run and at the start of the phase has collapsed.
COLLAPSE_FRACTION = 0.01
#: Exploded: spread above this many times ``max(n, 100) ** (1 / dim)``, the extent of ``n``
#: points at unit density (healthy runs end at 0.1-0.8 of it: digits 33 / 42, MNIST-70k
#: ~40 / 265).
EXPLODE_FACTOR = 10.0
#: A run of at least this many iterations that started small (spread < 0.01) and ended below
#: twice its initial spread did not expand.
STALL_ITERATIONS = 100


class EmbeddingScaleWarning(UserWarning):
    """The embedding collapsed, exploded or did not expand (see :mod:`tsnejax._scale`)."""


def scale_messages(
    s_run: np.ndarray,
    s_phase: np.ndarray,
    s_end: np.ndarray,
    *,
    first: int,
    last: int,
    run_start: int,
    at_end: bool,
    n: int,
    dim: int,
    where: str,
    active: np.ndarray,
) -> list[str]:
    """Warnings for the phase that ran iterations ``first``..``last`` (one per trial at most).

    ``s_*``: ``(trials,)`` standard deviations of the embedding at the run's start, the
    phase's start and now; ``active``: trials still running (diverged ones are skipped).
    """
    limit = EXPLODE_FACTOR * max(n, 100) ** (1.0 / dim)
    batched = s_end.shape[0] > 1
    out = []
    for b in np.flatnonzero(active):
        who = f"trial {b}: " if batched else ""
        ref = max(s_run[b], s_phase[b])
        if s_end[b] < COLLAPSE_FRACTION * ref:
            out.append(
                f"{who}the embedding collapsed in iterations {first}-{last} ({where}): its "
                f"standard deviation fell to {s_end[b]:.3g} from {ref:.3g}, so the KL no longer "
                "describes a usable embedding. The usual cause is too large an exaggeration "
                "(exaggeration ~1 after the early phase, early_exaggeration ~12)."
            )
        elif s_end[b] > limit:
            out.append(
                f"{who}the embedding exploded in iterations {first}-{last} ({where}): its "
                f"standard deviation is {s_end[b]:.3g}, over {limit:.3g} (10 x the extent of "
                f"{n} points at unit density). The usual cause is too large a learning rate "
                "(try learning_rate='auto'), an exaggeration below 1, or max_step_norm=None."
            )
        elif (
            at_end
            and last - run_start >= STALL_ITERATIONS
            and s_run[b] < 0.01
            and s_end[b] < 2 * s_run[b]
        ):
            out.append(
                f"{who}the embedding did not expand in {last - run_start} iterations "
                f"(standard deviation {s_end[b]:.3g}, from {s_run[b]:.3g}; {where}). The usual "
                "cause is too small a learning rate (try learning_rate='auto')."
            )
    return out
