"""A stopping rule's check that keeps what it was asked and said, so a checkpoint can carry it,
and a fresh check brought back to where a checkpoint left it by asking it all again (a check's
state is whatever its inputs made it). Single runs (:func:`tsnejax.stopping.run_staged`) and
the trials of a batch (:class:`tsnejax._staged_batch.TrialStages`) keep one per phase."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Recorded", "replayed"]


class Recorded:
    """``check(iteration, kl, grad_norm) -> stop`` for one run, recording
    ``[iteration, kl, grad_norm, stop]`` per call in ``calls``."""

    def __init__(self, check: Callable[[int, Any, Any], Any], calls: list):
        self.check, self.calls = check, calls

    def __call__(self, iteration: int, kl: Any, grad_norm: Any) -> Any:
        stop = self.check(iteration, kl, grad_norm)
        self.calls.append([int(iteration), float(kl), float(grad_norm), bool(stop)])
        return stop

    @property
    def said_stop(self) -> bool:
        """Whether the last call said stop."""
        return bool(self.calls and self.calls[-1][3])


def replayed(stopping: Any, phase: str, calls: list) -> Recorded:
    """A fresh check of the rule set ``stopping`` for ``phase``, asked again each of ``calls``;
    ``ValueError`` if it answers one otherwise than it did (a check that is not a function of
    its inputs cannot be resumed)."""
    check = Recorded(stopping.check(phase), [])
    for iteration, kl, norm, said in calls:
        if bool(check(iteration, kl, norm)) != bool(said):
            raise ValueError(
                f"the stopping rule {stopping!r} answers its {phase!r} check at iteration "
                f"{iteration} otherwise than when the checkpoint was written ({bool(said)}): a "
                "resumable check must depend only on the (iteration, kl, grad_norm) it is given."
            )
    return check
