"""Host-side pieces of :func:`tsnejax.run.optimize`: where chunks end, the progress bar, the
stopping check over a batch, and the records and padding of batched runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from tsnejax.schedules import Phases

__all__ = ["boundaries", "stop_trials", "advance_bar", "unpad", "stack_records"]


def boundaries(
    t: int, end: int, every: Sequence[int], phases: Phases, extra: int | None = None
) -> int:
    nxt = [end] if extra is None else [end, extra]
    nxt += [(t // e + 1) * e for e in every if e]
    s = phases.next_start(t)
    if s is not None:
        nxt.append(s)
    return min(x for x in nxt if x > t)


def stop_trials(stop, t, value, norm, active, n_trials) -> tuple[np.ndarray, np.ndarray]:
    """A batch's trials that go on after the ``stop`` check, and those it stopped (frozen)."""
    live = np.asarray(active)
    said = stop(t, value[:n_trials], np.asarray(norm)[:n_trials])
    hit = np.broadcast_to(np.asarray(said, bool), (n_trials,))
    hit = np.concatenate([hit, np.repeat(hit[-1:], live.shape[0] - n_trials)])  # padding
    return live & ~hit, live & hit


def advance_bar(bar: Any, length: int, kl: float | None, *, last: bool) -> None:
    """Move the progress bar, drawing it once per call (the KL set without a redraw; the last
    segment is drawn by ``close``), so a log shows one line per update and one at 100 %."""
    if kl is not None:
        bar.set_postfix(kl=f"{kl:.4f}", refresh=False)
    if last:
        bar.n += length
    else:
        bar.update(length)


def unpad(tree: Any, n_trials: int | None) -> Any:
    return tree if n_trials is None else jax.tree.map(lambda x: x[:n_trials], tree)


def stack_records(recs: list, batched: bool, n_trials: int | None) -> Any:
    if not recs:
        return np.zeros((n_trials, 0) if batched else (0,))
    axis = 1 if batched else 0
    out = jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *recs)
    return unpad(out, n_trials)
