"""Stopping rules: each phase ends when its KL or gradient norm says so, not at a fixed count.

A rule set is any object with

- ``every``: iterations between checks;
- ``check(phase) -> check``: a fresh check for ``phase`` (``"early"``: early exaggeration,
  ``"main"``: the rest), called as ``check(iteration, kl, grad_norm) -> stop`` by
  :func:`tsnejax.run.optimize` (``stop=``, ``stop_every=``) every ``every`` iterations, with
  the KL of the embedding after ``iteration`` steps and the norm of the last step's gradient
  as the optimizer applied it (``gradient_scale`` included; times the gains with the classic
  optimizer, as scikit-learn's ``grad_norm`` is). In a batched run both are
  ``(n_trials,)`` arrays and the check returns one bool per trial;
- ``keeps_total``: when early exaggeration stops early, the main phase runs until
  ``early_exaggeration_iter + n_iter`` in all (scikit-learn's ``max_iter``) rather than
  ``n_iter`` more (opt-SNE's caps).

:func:`run_staged` runs early exaggeration until its check stops it (or its length), moves the
main phase's table to start there, and runs it until its check stops it. With a checkpoint,
each save records the phase and what its check was asked and said; a resumed run replays that
record into a fresh check, so it stops where the uninterrupted run does. Built in:
:class:`SklearnStopping` (``stopping="sklearn"``) and
:class:`tsnejax.opt_sne.OptSNEStopping` (``stopping="optsne"``); ``TSNEConfig.stopping``
takes any such object too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np

from tsnejax._checks import check_int, check_positive
from tsnejax._replay import Recorded, replayed
from tsnejax.opt_sne import OptSNEStopping
from tsnejax.run import OptimizeResult
from tsnejax.schedules import Phases

__all__ = [
    "Stopping",
    "SklearnStopping",
    "OptSNEStopping",
    "STOPPING_RULES",
    "SKLEARN_SETTINGS",
    "get_stopping",
    "check_stopping",
    "check_staged",
    "run_staged",
    "switched_table",
]

#: ``check(iteration, kl, grad_norm) -> stop`` (one bool, or one per trial).
Check = Callable[[int, Any, Any], Any]

STOPPING_RULES = ("fixed", "optsne", "sklearn")
#: scikit-learn's settings of its rule (given to the estimator or CLI, they turn it on).
SKLEARN_SETTINGS = ("min_grad_norm", "n_iter_without_progress")


class Stopping(Protocol):
    """What ``TSNEConfig.stopping`` takes besides its names (see the module docstring)."""

    every: int
    keeps_total: bool

    def check(self, phase: str) -> Check: ...


@dataclasses.dataclass(frozen=True)
class SklearnStopping:
    """scikit-learn's rules (``sklearn.manifold.TSNE``'s ``_gradient_descent``).

    Every ``every`` (50) iterations: stop when the gradient norm is at most ``min_grad_norm``,
    or when the KL has not improved on its best for more than ``n_iter_without_progress``
    iterations. In early exaggeration only the first applies (scikit-learn's patience there is
    the phase's length, so the second never fires); an early stop there starts the main phase,
    which still ends at ``early_exaggeration_iter + n_iter`` (scikit-learn's ``max_iter``).
    The gradient norm is scikit-learn's: of gains x gradient with the classic optimizer, the
    gradient scaled by ``gradient_scale`` (4 with ``preset="sklearn"``, as scikit-learn's).
    """

    min_grad_norm: float = 1e-7
    n_iter_without_progress: int = 300
    every: int = 50
    keeps_total: bool = True

    def __post_init__(self):
        check_positive("min_grad_norm", self.min_grad_norm, allow_zero=True)
        check_int("n_iter_without_progress", self.n_iter_without_progress, minimum=1)
        check_int("every", self.every, minimum=1)

    def check(self, phase: str) -> Check:
        patience = self.n_iter_without_progress if phase == "main" else None
        return _SklearnCheck(self.min_grad_norm, patience)


class _SklearnCheck:
    """One phase's state: the best KL so far and where it was (per trial in a batch)."""

    def __init__(self, min_grad_norm: float, patience: int | None):
        self.min_grad_norm, self.patience = min_grad_norm, patience
        self.best: np.ndarray | None = None
        self.best_at: np.ndarray | None = None

    def __call__(self, iteration: int, kl: Any, grad_norm: Any) -> Any:
        kl, norm = np.asarray(kl, np.float64), np.asarray(grad_norm, np.float64)
        if self.best is None:
            self.best, self.best_at = np.full(kl.shape, np.inf), np.full(kl.shape, iteration)
        better = kl < self.best
        self.best = np.where(better, kl, self.best)
        self.best_at = np.where(better, iteration, self.best_at)
        stop = norm <= self.min_grad_norm
        if self.patience is not None:
            stop = stop | (~better & (iteration - self.best_at > self.patience))
        return stop


def get_stopping(schedule: Any) -> Stopping | None:
    """The rule set of a :class:`tsnejax.config.ScheduleConfig` (``None``: the fixed schedule)."""
    s = schedule.stopping
    if isinstance(s, str):
        if s == "fixed":
            return None
        if s == "optsne":
            return OptSNEStopping(schedule.optsne_tol)
        return SklearnStopping(schedule.min_grad_norm, schedule.n_iter_without_progress)
    return s


def check_stopping(name: str, value: Any) -> None:
    """A config validator: one of :data:`STOPPING_RULES` or a rule-set object."""
    if isinstance(value, str):
        if value not in STOPPING_RULES:
            raise ValueError(
                f"{name}={value!r} is not one of {STOPPING_RULES}; or pass a rule set with "
                "'every', 'keeps_total' and 'check(phase)' (tsnejax.stopping)."
            )
        return
    missing = [a for a in ("every", "keeps_total", "check") if not hasattr(value, a)]
    if missing or not callable(value.check):
        raise ValueError(
            f"{name} must be one of {STOPPING_RULES} or a rule set (tsnejax.stopping.Stopping: "
            f"'every', 'keeps_total', 'check(phase)'), got {type(value).__name__} without "
            f"{missing or ['a callable check']}."
        )
    check_int(f"{name}.every", value.every, minimum=1)
    try:
        hash(value)
    except TypeError:
        raise ValueError(
            f"{name} must be hashable, as every config value is (a frozen dataclass, e.g. "
            f"tsnejax.stopping.SklearnStopping), got {type(value).__name__}."
        ) from None


def check_staged(config: Any) -> None:
    """Raise where a stopping rule cannot run: with a decayed exaggeration."""
    rule = config.schedule.stopping
    name = rule if isinstance(rule, str) else type(rule).__name__
    if config.schedule.exaggeration_decay != "step":
        raise ValueError(
            f"exaggeration_decay must be 'step' with stopping={name!r} (the rule decides when "
            "early exaggeration ends)."
        )


class _StagedSaver:
    """The run's checkpoint, each save carrying the phase and its check's record."""

    def __init__(self, inner: Any, phase: str, ended: int | None, check: Recorded):
        self.inner, self.every = inner, inner.every
        self.record = {"phase": phase, "ended": ended, "calls": check.calls}

    def save(self, state: Any, **extra: Any) -> Any:
        return self.inner.save(state, stopping=self.record, **extra)


def _head(first: OptimizeResult) -> dict:
    """What the main phase's call goes on from: the early phase's KL history and records."""
    leaves = jax.tree.leaves(first.records)
    ran = any(np.shape(a)[0] for a in leaves)
    return {"kl_history": first.kl_history, "records": leaves if ran else None}


def switched_table(phases: Phases, early_iter: int, ended: int) -> tuple[Phases, Phases]:
    """``(main, ran)``: the main phase's table (from ``early_iter`` on in ``phases``) moved to
    start at ``ended``, where early exaggeration ended, and the whole table that then runs."""
    main = phases.shifted(early_iter)
    delta = ended - early_iter
    main = Phases(tuple(s + delta for s in main.starts), main.values)
    before = [i for i, s in enumerate(phases.starts) if s < ended]
    ran = Phases(
        tuple(phases.starts[i] for i in before) + main.starts,
        tuple(phases.values[i] for i in before) + main.values,
    )
    return main, ran


def run_staged(
    run: Callable[..., OptimizeResult],
    state: Any,
    phases: Phases,
    *,
    early_iter: int,
    n_iter: int,
    stopping: Stopping,
    callbacks=(),
    callbacks_every: int | None = None,
    checkpoint: Any = None,
    resumed: dict | None = None,
    head: dict | None = None,
) -> tuple[OptimizeResult, int, Phases]:
    """Early exaggeration until ``stopping`` ends it, then the main phase until it ends that.

    Args:
      run: :func:`tsnejax.run.optimize` with the stepper, P and settings bound.
      state: the start (one run), at iteration 0 or where a checkpoint left it.
      phases: the fixed schedule's table; its phase at ``early_iter`` is the main phase.
      early_iter, n_iter: the most iterations of each phase (see ``keeps_total``).
      callbacks, callbacks_every: the user's, at their own interval.
      checkpoint: a :class:`tsnejax.checkpoint.Checkpoint`; every save also holds, under the
        meta key ``"stopping"``, the phase, where early exaggeration ended and what the phase's
        check was asked and answered.
      resumed: that record, read back from the checkpoint ``state`` came from: the check is
        replayed to where it was, so the resumed run ends as the uninterrupted one.
      head: the checkpoint's ``kl_history`` and ``records`` (``checkpoint.load_resumed``), kept
        at the head of the result's.

    Returns:
      ``(result, iteration where early exaggeration ended, the phase table that ran)``.
    """
    kw = dict(callbacks=callbacks, callbacks_every=callbacks_every, stop_every=stopping.every)
    record = resumed or {"phase": "early", "ended": None, "calls": []}
    if record["phase"] not in ("early", "main"):
        raise ValueError(f"a checkpoint's stopping record has phase {record['phase']!r}.")
    t = int(state.iteration)
    first = None
    if record["phase"] == "early":
        check = replayed(stopping, "early", record["calls"])
        over = t >= early_iter or check.said_stop
        if not over:
            saver = None if checkpoint is None else _StagedSaver(checkpoint, "early", None, check)
            first = run(
                state=state,
                n_iter=early_iter - t,
                phases=phases,
                stop=check,
                checkpoint=saver,
                resumed=head,
                **kw,
            )
            state = first.state
            if first.stopped_early and first.stop_rule_at is None:  # a user callback stopped
                return first, int(state.iteration), phases
        ended, main_calls = int(state.iteration), []
    else:
        ended, main_calls = int(record["ended"]), record["calls"]
    main_table, ran = switched_table(phases, early_iter, ended)
    main_end = ended + (early_iter + n_iter - ended if stopping.keeps_total else n_iter)
    check = replayed(stopping, "main", main_calls)
    done = check.said_stop
    saver = None if checkpoint is None else _StagedSaver(checkpoint, "main", ended, check)
    second = run(
        state=state,
        n_iter=0 if done else max(main_end - int(state.iteration), 0),
        phases=main_table,
        stop=check,
        checkpoint=saver,
        resumed=head if first is None else _head(first),
        **kw,
    )
    if first is None:
        return second, ended, ran
    return (
        second._replace(
            compile_seconds=first.compile_seconds + second.compile_seconds,
            ahead_seconds=first.ahead_seconds + second.ahead_seconds,
            run_seconds=first.run_seconds + second.run_seconds,
            n_compiles=first.n_compiles + second.n_compiles,
            grids=first.grids + [g for g in second.grids if g not in first.grids],
        ),
        ended,
        ran,
    )
