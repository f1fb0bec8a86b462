"""opt-SNE (Belkina et al. 2019): phase lengths decided on the fly from the KL.

Early exaggeration ends once the relative KL decrease per iteration has passed its peak; the
main phase stops once it falls below ``optsne_tol``. Both runs go through
:func:`tsnejax.run.optimize` with the config's phase table; the second phase table starts
where the first run stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tsnejax.run import OptimizeResult
from tsnejax.schedules import Phases

__all__ = ["OptSNEStop", "run_optsne"]


class OptSNEStop:
    """opt-SNE rules on the KL reported every few iterations (a :func:`optimize` callback).

    The relative KL decrease per iteration, ``(KL_prev - KL) / KL_prev / iterations``, is
    measured between reports. ``"early"``: end early exaggeration once it has fallen below its
    previous value ``patience`` times (its peak has passed; the opt-SNE code also waits for the
    third decrease, since the rate is noisy). ``"main"``: stop once it is below ``tol``.
    """

    def __init__(self, phase: str, tol: float, patience: int = 3):
        self.phase, self.tol, self.patience = phase, tol, patience
        self.last: tuple[int, float] | None = None
        self.rate = -np.inf
        self.decreases = 0
        self.stopped_at: int | None = None

    def __call__(self, iteration: int, kl: float, Y: Any) -> bool:
        del Y
        last, self.last = self.last, (iteration, kl)
        if last is None:
            return False
        rate = (last[1] - kl) / abs(last[1]) / max(iteration - last[0], 1)
        previous, self.rate = self.rate, rate
        if self.phase == "early":
            self.decreases += rate < previous
            stop = self.decreases >= self.patience
        else:
            stop = rate < self.tol
        if stop:
            self.stopped_at = iteration
        return stop


def run_optsne(
    run: Any,
    state: Any,
    phases: Phases,
    *,
    early_iter: int,
    n_iter: int,
    tol: float,
    callbacks=(),
    every: int = 10,
) -> tuple[OptimizeResult, int, Phases]:
    """Early exaggeration until opt-SNE ends it, then the main phase until KL stalls.

    Args:
      run: ``optimize`` with the stepper, P and settings bound (``run(state=, n_iter=,
        phases=, callbacks=, callbacks_every=)``).
      phases: the fixed schedule's table; its phase at ``early_iter`` is the main phase.
      early_iter, n_iter: the most iterations of each phase.

    Returns:
      ``(result, iteration where early exaggeration ended, the phase table that ran)``.
    """
    early = OptSNEStop("early", tol)
    first = run(
        state=state,
        n_iter=early_iter,
        phases=phases,
        callbacks=[early, *callbacks],
        callbacks_every=every,
    )
    ended = int(first.state.iteration)
    if first.stopped_early and early.stopped_at is None:  # a user callback asked to stop
        return first, ended, phases
    # The main phase's table, moved to start where early exaggeration ended.
    main_table = phases.shifted(early_iter)
    delta = ended - early_iter
    main_table = Phases(tuple(s + delta for s in main_table.starts), main_table.values)
    main = OptSNEStop("main", tol)
    second = run(
        state=first.state,
        n_iter=n_iter,
        phases=main_table,
        callbacks=[main, *callbacks],
        callbacks_every=every,
    )
    before = [i for i, s in enumerate(phases.starts) if s < ended]
    ran = Phases(
        tuple(phases.starts[i] for i in before) + main_table.starts,
        tuple(phases.values[i] for i in before) + main_table.values,
    )
    return (
        second._replace(
            kl_history=first.kl_history + second.kl_history,
            records=np.concatenate([first.records, second.records]),
            compile_seconds=first.compile_seconds + second.compile_seconds,
            ahead_seconds=first.ahead_seconds + second.ahead_seconds,
            run_seconds=first.run_seconds + second.run_seconds,
            n_compiles=first.n_compiles + second.n_compiles,
            grids=first.grids + [g for g in second.grids if g not in first.grids],
        ),
        ended,
        ran,
    )
