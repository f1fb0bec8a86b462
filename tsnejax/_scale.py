"""Collapse, explosion and stall checks of the embedding's spread at phase ends.

A run with ``exaggeration=1e6`` shrinks the embedding to a point (standard deviation 1e-8
from 1.7 on digits) and still reports a finite KL (3.97, the KL of an embedding that carries
no information); ``exaggeration=0.01`` spreads it to 1290 (a healthy digits run ends near 33);
a learning rate of 1e-3 leaves it at its initial 1e-4. None of these is an error, so each gives
an :class:`EmbeddingScaleWarning` naming the hyperparameter that usually causes it
(``docs/reliability.md`` lists the measurements).
"""

from __future__ import annotations

import warnings

import numpy as np

from tsnejax._checks import outside_stacklevel

__all__ = [
    "EmbeddingScaleWarning",
    "scale_messages",
    "unrecovered",
    "check_initial_spread",
    "explode_limit",
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


def explode_limit(n: int, dim: int) -> float:
    """The spread above which an embedding of ``n`` points in ``dim`` dimensions has exploded."""
    return EXPLODE_FACTOR * max(n, 100) ** (1.0 / dim)


def check_initial_spread(Y: np.ndarray, source: str) -> None:
    """Refuse an initial embedding that cannot move, warn about one too large to optimise.

    ``Y``: ``(n, dim)`` on the host; ``source``: ``"array"`` (the user's), ``"pca"`` or
    ``"random"``. All rows at one point give a gradient of exactly zero for ever: a
    ``ValueError`` for a user's array; for ``"pca"`` it means every row of ``X`` is the same,
    whose one-point embedding is faithful, so a warning. A user's array spread beyond
    :func:`explode_limit` starts where float32 loses the kernel sums (a 1e6-scale start made
    Z round to 0 and the first step diverge), so a warning naming the fix.
    """
    n, dim = Y.shape
    if np.ptp(Y) == 0:
        if source == "array":
            raise ValueError(
                f"initialization: all {n} rows are the same point, where the t-SNE gradient is "
                "exactly zero and nothing can move; pass distinct rows (e.g. the 'pca' or "
                "'random' initialization, or add noise of standard deviation 1e-4)."
            )
        if source == "pca":
            warnings.warn(
                f"X: all {n} rows are identical, so every point is placed at one location (the "
                "PCA initialization has no spread and the gradient is zero).",
                EmbeddingScaleWarning,
                stacklevel=outside_stacklevel(),
            )
        return
    std = float(np.std(Y))
    limit = explode_limit(n, dim)
    if source == "array" and std > limit:
        warnings.warn(
            f"initialization has standard deviation {std:.3g}, over {limit:.3g} (10 x the extent "
            f"of {n} points at unit density): at that scale the gradients fade and float32 loses "
            "the kernel sums, so the run may stall or diverge. t-SNE starts small ('pca' and "
            "'random' use 1e-4; openTSNE warns above 1e-2): rescale it, e.g. "
            "Y0 * (1e-4 / Y0[:, 0].std()).",
            EmbeddingScaleWarning,
            stacklevel=outside_stacklevel(),
        )


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
    pending: dict[int, tuple[float, str]],
) -> list[str]:
    """Warnings for the phase that ran iterations ``first``..``last`` (one per trial at most).

    ``s_*``: ``(trials,)`` standard deviations of the embedding at the run's start, the
    phase's start and now; ``active``: trials still running (diverged ones are skipped).
    ``pending``: collapses of earlier phases, ``trial -> (spread before, message)``, kept here
    until the run's end (``at_end``) and warned only where the embedding has not recovered:
    an exaggerated phase contracts a small data set whose kNN graph spans much of it (digits'
    first 200 rows at k = 90 fall to a standard deviation of 4e-14 in openTSNE's run too) and
    the next phase expands it again to openTSNE's quality.
    """
    limit = explode_limit(n, dim)
    batched = s_end.shape[0] > 1
    out = []
    for b in np.flatnonzero(active):
        who = f"trial {b}: " if batched else ""
        ref = max(s_run[b], s_phase[b])
        if s_end[b] < COLLAPSE_FRACTION * ref:
            msg = (
                f"{who}the embedding collapsed in iterations {first}-{last} ({where}): its "
                f"standard deviation fell to {s_end[b]:.3g} from {ref:.3g}, so the KL no longer "
                "describes a usable embedding. The usual cause is too large an exaggeration "
                "(exaggeration ~1 after the early phase, early_exaggeration ~12)."
            )
            if not at_end:
                pending.setdefault(int(b), (float(ref), msg))
            elif int(b) in pending:  # name the phase where it collapsed
                out.extend(unrecovered({int(b): pending.pop(int(b))}, s_end) or [msg])
            else:
                out.append(msg)
            continue
        if at_end and int(b) in pending:
            late = unrecovered({int(b): pending.pop(int(b))}, s_end)
            if late:
                out.extend(late)
                continue
        if s_end[b] > limit:
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


def unrecovered(pending: dict[int, tuple[float, str]], s_end: np.ndarray) -> list[str]:
    """The pending collapses (see :func:`scale_messages`) whose trial still has under
    :data:`COLLAPSE_FRACTION` of its spread from before the collapse."""
    return [
        f"{msg} It had not recovered by the end of the run (standard deviation {s_end[b]:.3g})."
        for b, (ref, msg) in sorted(pending.items())
        if s_end[b] < COLLAPSE_FRACTION * ref
    ]
