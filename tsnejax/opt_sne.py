"""opt-SNE (Belkina et al. 2019): phase lengths decided on the fly from the KL.

Early exaggeration ends once the relative KL decrease per iteration has passed its peak; the
main phase stops once it falls below ``optsne_tol``. ``stopping="optsne"`` is
:class:`OptSNEStopping`, run by :func:`tsnejax.stopping.run_staged`: two
:func:`tsnejax.run.optimize` calls, the second phase table starting where the first run
stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tsnejax._checks import check_int, check_positive

__all__ = ["OptSNEStop", "OptSNEStopping"]


class OptSNEStop:
    """opt-SNE's check for one phase, on the KL reported every few iterations.

    The relative KL decrease per iteration, ``(KL_prev - KL) / KL_prev / iterations``, is
    measured between reports. ``"early"``: end early exaggeration once it has fallen below its
    previous value ``patience`` times (its peak has passed; the opt-SNE code also waits for the
    third decrease, since the rate is noisy). ``"main"``: stop once it is below ``tol``. ``kl``
    may be one value or one per trial (then one decision per trial).
    """

    def __init__(self, phase: str, tol: float, patience: int = 3):
        self.phase, self.tol, self.patience = phase, tol, patience
        self.last: tuple[int, Any] | None = None
        self.rate: Any = -np.inf
        self.decreases: Any = 0

    def __call__(self, iteration: int, kl: Any, grad_norm: Any = None) -> Any:
        del grad_norm
        kl = np.asarray(kl, np.float64)
        last, self.last = self.last, (iteration, kl)
        if last is None:
            return np.zeros(kl.shape, bool)
        rate = (last[1] - kl) / np.abs(last[1]) / max(iteration - last[0], 1)
        previous, self.rate = self.rate, rate
        if self.phase == "early":
            self.decreases = self.decreases + (rate < previous)
            stop = self.decreases >= self.patience
        else:
            stop = rate < self.tol
        return stop


@dataclasses.dataclass(frozen=True)
class OptSNEStopping:
    """opt-SNE's rule set (:mod:`tsnejax.stopping`): KL every ``every`` iterations;
    ``early_exaggeration_iter`` and ``n_iter`` are the most iterations of each phase."""

    tol: float = 1e-4
    every: int = 10
    patience: int = 3
    keeps_total: bool = False

    def __post_init__(self):
        check_positive("optsne_tol", self.tol)
        check_int("every", self.every, minimum=1)
        check_int("patience", self.patience, minimum=1)

    def check(self, phase: str) -> OptSNEStop:
        return OptSNEStop(phase, self.tol, self.patience)
