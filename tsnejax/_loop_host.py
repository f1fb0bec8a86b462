"""Host-side pieces of :func:`tsnejax.run.optimize`: where chunks end, the progress bar, the
stopping check over a batch, a batch's per-trial bookkeeping (saved with its checkpoints), and
the records and padding of batched runs, the KL values the chunks report."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np

from tsnejax._checks import outside_stacklevel
from tsnejax._chunk import record_shapes
from tsnejax._diverge import CAUSES
from tsnejax.schedules import Phases

__all__ = [
    "Checkpointer",
    "boundaries",
    "stop_trials",
    "advance_bar",
    "unpad",
    "Records",
    "trial_book",
    "history_meta",
    "resumed_history",
    "trial_meta",
    "batch_start",
    "kl_point",
]


class Checkpointer(Protocol):
    """What :func:`tsnejax.run.optimize` needs to save states (see
    :class:`tsnejax.checkpoint.Checkpoint`)."""

    every: int

    def save(self, state: Any, *, records: Any = None, **extra: Any) -> Any: ...


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


class Records:
    """A run's per-step records: the head a checkpoint saved (its leaves, ``resumed["records"]``)
    and the chunks this call adds (each a pytree of ``(length, ...)`` or ``(size, length, ...)``
    arrays); ``record`` and ``state`` give the structure when no chunk runs."""

    def __init__(
        self, head: Sequence[Any] | None, batched: bool, n_trials: int | None, record, state
    ):
        self.head = None if head is None else [np.asarray(a) for a in head]
        self.batched, self.n_trials = batched, n_trials
        self.record, self.state = record, state
        self.chunks: list[Any] = []

    def append(self, chunk: Any) -> None:
        self.chunks.append(chunk)

    def stacked(self) -> Any:
        """Everything recorded, stacked along the steps (the head first)."""
        new = stack_records(self.chunks, self.batched, self.n_trials)
        if self.head is None:
            return new
        axis = 1 if self.batched else 0
        if self.chunks:
            leaves, treedef = jax.tree.flatten(new)
            step = [np.delete(n.shape, axis).tolist()[axis:] for n in leaves]
        else:  # nothing ran: the saved leaves in the record's own structure
            shapes = record_shapes(self.record, self.state, self.batched)
            leaves, treedef = [], jax.tree.structure(shapes)
            step = [list(s.shape) for s in jax.tree.leaves(shapes)]
        if len(step) != len(self.head) or any(
            list(h.shape[axis + 1 :]) != s for h, s in zip(self.head, step, strict=False)
        ):
            raise ValueError(
                f"resumed['records'] holds {len(self.head)} arrays "
                f"{[h.shape for h in self.head]} but this run's record returns {step} per "
                "step: resume with the record function the checkpoint was written with (or "
                "drop 'records' from resumed)."
            )
        if not self.chunks:
            return jax.tree.unflatten(treedef, self.head)
        both = [np.concatenate([h, n], axis=axis) for h, n in zip(self.head, leaves, strict=True)]
        return jax.tree.unflatten(treedef, both)

    def leaves(self) -> list[np.ndarray]:
        """What a checkpoint saves: the leaves of :meth:`stacked`."""
        return jax.tree.leaves(self.stacked())


def trial_book(
    size: int, n_trials: int | None, saved: Mapping | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(active, diverged_at, cause index, stop_rule_at)``, each ``(size,)``: fresh (every
    trial running), or a resumed batch's as :func:`trial_meta` saved them (padding repeats the
    last trial, as :func:`tsnejax._chunk.pad_trials` does)."""
    if saved is None:
        return (
            np.ones(size, bool),
            np.full(size, -1, np.int64),
            np.zeros(size, np.int64),
            np.full(size, -1, np.int64),
        )
    if n_trials is None:
        raise ValueError(
            "resumed['trials'] describes a batch: the state must have a leading trial axis."
        )
    try:
        cols = [
            np.asarray(saved["active"], bool),
            np.asarray(saved["diverged_at"], np.int64),
            np.asarray([CAUSES.index(c) for c in saved["diverged_cause"]], np.int64),
            np.asarray(saved["stop_rule_at"], np.int64),
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            "resumed['trials'] must be what a batched checkpoint saved (active, "
            f"diverged_at, diverged_cause, stop_rule_at): {type(e).__name__}: {e}."
        ) from None
    if any(c.shape != (n_trials,) for c in cols):
        raise ValueError(
            f"resumed['trials'] describes {[c.shape for c in cols]} trials, the state {n_trials}."
        )
    return tuple(np.concatenate([c, np.repeat(c[-1:], size - n_trials)]) for c in cols)


def trial_meta(active, diverged, causes, stop_at, n_trials: int) -> dict:
    """What a batched checkpoint saves under ``"trials"`` (:func:`trial_book` reads it)."""
    return {
        "active": np.asarray(active)[:n_trials].tolist(),
        "diverged_at": diverged[:n_trials].tolist(),
        "diverged_cause": [CAUSES[c] for c in causes[:n_trials]],
        "stop_rule_at": stop_at[:n_trials].tolist(),
    }


def batch_start(iterations: np.ndarray, active: np.ndarray) -> int:
    """The iteration a batch resumes from: where its running trials are (frozen ones stay
    where they stopped); the last one reached if none runs."""
    live = iterations[active]
    if live.size and (live != live[0]).any():
        raise ValueError(
            "a batched state must have every running trial at the same iteration, got "
            f"{sorted(set(live.tolist()))}."
        )
    return int(live[0]) if live.size else int(iterations.max())


def history_meta(history: list[tuple[int, Any]]) -> list:
    """``kl_history`` as a checkpoint saves it (JSON: a batch's KLs as lists, NaN kept)."""
    return [[int(t), np.asarray(v).tolist()] for t, v in history]


def resumed_history(saved: Any, batched: bool, dtype: Any) -> list[tuple[int, Any]]:
    """A saved (or earlier call's) ``kl_history`` in the form the loop records: ``(t, float)``,
    or ``(t, (n_trials,) array)`` in the embedding's dtype for a batch."""
    if not saved:
        return []
    if batched:
        return [(int(t), np.asarray(v, dtype)) for t, v in saved]
    return [(int(t), float(v)) for t, v in saved]


def kl_point(kl: Any, diverged: np.ndarray, n_trials: int | None, backend: str) -> Any:
    """A chunk's KL on the host: a float (``n_trials=None``), or ``(trials,)`` with NaN for
    diverged trials. A non-finite KL of a finite embedding (a custom backend's
    ``kl_divergence`` at fault) was recorded in ``kl_history`` and returned as the run's KL
    without a word: warned."""
    value = np.asarray(kl)
    if n_trials is None:
        value = live = float(value)
    else:  # the padding trials of a sharded batch are left out
        value = np.where(diverged >= 0, np.nan, value)
        live = value[:n_trials][diverged[:n_trials] < 0]
    if not np.isfinite(live).all():
        warnings.warn(
            f"the KL divergence of {backend!r} came back NaN/inf for a finite embedding; "
            "kl_history and the result's KL hold it. A custom Backend: check its "
            "kl_divergence(Y, P, dof, grid).",
            RuntimeWarning,
            stacklevel=outside_stacklevel(),
        )
    return value
