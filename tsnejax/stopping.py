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
main phase's table to start there, and runs it until its check stops it. Built in:
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


def check_staged(config: Any, checkpoint: Any = None) -> None:
    """Raise where a stopping rule cannot run: with a checkpoint or a decayed exaggeration."""
    rule = config.schedule.stopping
    name = rule if isinstance(rule, str) else type(rule).__name__
    if checkpoint is not None:
        raise ValueError(
            f"checkpoint is not supported with stopping={name!r} (its phase switch is decided "
            "on the fly); use stopping='fixed'."
        )
    if config.schedule.exaggeration_decay != "step":
        raise ValueError(
            f"exaggeration_decay must be 'step' with stopping={name!r} (the rule decides when "
            "early exaggeration ends)."
        )


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
) -> tuple[OptimizeResult, int, Phases]:
    """Early exaggeration until ``stopping`` ends it, then the main phase until it ends that.

    Args:
      run: :func:`tsnejax.run.optimize` with the stepper, P and settings bound.
      phases: the fixed schedule's table; its phase at ``early_iter`` is the main phase.
      early_iter, n_iter: the most iterations of each phase (see ``keeps_total``).
      callbacks, callbacks_every: the user's, at their own interval.

    Returns:
      ``(result, iteration where early exaggeration ended, the phase table that ran)``.
    """
    kw = dict(callbacks=callbacks, callbacks_every=callbacks_every, stop_every=stopping.every)
    first = run(state=state, n_iter=early_iter, phases=phases, stop=stopping.check("early"), **kw)
    ended = int(first.state.iteration)
    if first.stopped_early and first.stop_rule_at is None:  # a user callback asked to stop
        return first, ended, phases
    # The main phase's table, moved to start where early exaggeration ended.
    main_table = phases.shifted(early_iter)
    delta = ended - early_iter
    main_table = Phases(tuple(s + delta for s in main_table.starts), main_table.values)
    main_iter = early_iter + n_iter - ended if stopping.keeps_total else n_iter
    second = run(
        state=first.state,
        n_iter=main_iter,
        phases=main_table,
        stop=stopping.check("main"),
        **kw,
    )
    before = [i for i, s in enumerate(phases.starts) if s < ended]
    ran = Phases(
        tuple(phases.starts[i] for i in before) + main_table.starts,
        tuple(phases.values[i] for i in before) + main_table.values,
    )
    records = jax.tree.map(lambda a, b: np.concatenate([a, b]), first.records, second.records)
    return (
        second._replace(
            kl_history=first.kl_history + second.kl_history,
            records=records,
            compile_seconds=first.compile_seconds + second.compile_seconds,
            ahead_seconds=first.ahead_seconds + second.ahead_seconds,
            run_seconds=first.run_seconds + second.run_seconds,
            n_compiles=first.n_compiles + second.n_compiles,
            grids=first.grids + [g for g in second.grids if g not in first.grids],
        ),
        ended,
        ran,
    )
