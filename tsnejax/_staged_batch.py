"""A batch whose trials switch phase and end at their own iterations (stopping rules, lengths).

:func:`tsnejax.stopping.run_staged` runs one trial as two :func:`tsnejax.run.optimize` calls;
a batch cannot split there, since its trials switch at different iterations. Instead one call
runs every trial on the same clock: each trial keeps its own phase table
(:class:`tsnejax.schedules.TrialPhases`, read as one stacked table at every chunk), and the
``stop`` hook (:class:`TrialStages`) asks each trial's own check at the rule's iterations — a
fresh check per trial and phase, as a single run has. A trial whose early check fires gets the
main phase from that iteration on (its table's main part moved there, as ``run_staged`` does);
one whose main check fires, or which has run its own length, is frozen while the others go on
(so trials may also differ in ``early_exaggeration_iter`` and ``n_iter``). Schedules see each
trial's true iteration, and the checks fall on the iterations a single run checks at, so each
trial is its own :func:`tsnejax.fit` up to the float rounding of a batch. :meth:`record` is
what a batch's checkpoint keeps of it (each trial's phase, switch and check record), and
:meth:`restore` brings a fresh hook back there, so a resumed batch ends as the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tsnejax._replay import Recorded, replayed
from tsnejax.schedules import TrialPhases
from tsnejax.stopping import Stopping, switched_table

__all__ = ["TrialStages"]


class TrialStages:
    """The ``stop`` hook of a batch whose trials end, or switch phase, at their own iterations.

    Trial ``b`` has the rule set ``rules[b]`` (``None``: the fixed schedule, whose table
    switches at ``early_iter[b]``), at most ``early_iter[b]`` iterations of early exaggeration
    and ``n_iter[b]`` of the main phase. :meth:`next_check` is the loop's ``stop_every``: the
    next iteration any trial's rule checks at or any trial ends. Attributes, each
    ``(n_trials,)``: ``ended``, where each trial's early exaggeration ended; ``ends``, the most
    iterations it may run; ``stopped_at``, where its rule stopped it (-1: it did not).
    """

    def __init__(
        self,
        rules: Sequence[Stopping | None],
        phases: TrialPhases,
        early_iter: Sequence[int],
        n_iter: Sequence[int],
    ):
        self.rules, self.phases = list(rules), phases
        self.early_iter = np.asarray(early_iter, np.int64)
        self.n_iter = np.asarray(n_iter, np.int64)
        self.stage = ["early" if r is not None else "fixed" for r in self.rules]
        self.checks = [None if r is None else Recorded(r.check("early"), []) for r in self.rules]
        self.ended = self.early_iter.copy()
        self.ends = self.early_iter + self.n_iter
        self.stopped_at = np.full(len(self.rules), -1, np.int64)

    def next_check(self, t: int) -> int | None:
        """The first iteration after ``t`` where the hook must run."""
        out = []
        for b, stage in enumerate(self.stage):
            if stage == "done":
                continue
            if self.ends[b] > t:
                out.append(int(self.ends[b]))
            if self.rules[b] is not None:
                out.append((t // self.rules[b].every + 1) * self.rules[b].every)
        return min(out) if out else None

    def _to_main(self, b: int, t: int) -> None:
        rule, early = self.rules[b], int(self.early_iter[b])
        if t < early:
            self.phases.tables[b] = switched_table(self.phases.tables[b], early, t)[1]
        self.ended[b] = t
        self.ends[b] = (early + self.n_iter[b]) if rule.keeps_total else t + self.n_iter[b]
        self.stage[b] = "main"
        self.checks[b] = Recorded(rule.check("main"), [])

    def record(self) -> dict:
        """Each trial's phase (``"early"``, ``"main"``, ``"fixed"``, ``"done"``), where its
        early exaggeration ended, where its rule stopped it and what its current check was
        asked and said (``[iteration, kl, grad_norm, stop]`` per call), JSON-serialisable."""
        return {
            "stage": list(self.stage),
            "ended": self.ended.tolist(),
            "stopped_at": self.stopped_at.tolist(),
            "calls": [None if c is None else c.calls for c in self.checks],
        }

    def restore(self, record: dict) -> None:
        """Bring this fresh hook to where :meth:`record` left another one for the same trials:
        tables switched where early exaggeration ended, each check replayed from its record."""
        n = len(self.rules)
        if any(len(record.get(k) or ()) != n for k in ("stage", "ended", "stopped_at", "calls")):
            raise ValueError(f"a batch checkpoint's stopping record does not describe {n} trials.")
        for b, (rule, stage) in enumerate(zip(self.rules, record["stage"], strict=True)):
            allowed = ("fixed", "done") if rule is None else ("early", "main", "done")
            if stage not in allowed:
                raise ValueError(f"a batch checkpoint says trial {b} is in phase {stage!r}.")
            if rule is not None and stage != "early":
                self._to_main(b, int(record["ended"][b]))
            if stage in ("early", "main"):
                self.checks[b] = replayed(rule, stage, record["calls"][b])
            self.stage[b] = stage
        self.stopped_at = np.asarray(record["stopped_at"], np.int64)

    def __call__(self, t: int, kl: Any, grad_norm: Any) -> np.ndarray:
        kl, grad_norm = np.asarray(kl, np.float64), np.asarray(grad_norm, np.float64)
        hit = np.zeros(len(self.stage), bool)
        for b, stage in enumerate(self.stage):
            if stage == "done" or not np.isfinite(kl[b]):  # NaN: the loop froze it (diverged)
                hit[b] = stage == "done"
                continue
            if stage == "fixed":
                if t >= self.ends[b]:
                    self.stage[b], hit[b] = "done", True
                continue
            if stage == "early" and t > self.early_iter[b]:  # its table switched there
                self._to_main(b, int(self.early_iter[b]))
            on_rule = t % self.rules[b].every == 0
            said = on_rule and bool(self.checks[b](t, float(kl[b]), float(grad_norm[b])))
            if self.stage[b] == "early":
                if said or t >= self.early_iter[b]:
                    self._to_main(b, t)
                    if t >= self.ends[b]:  # a main phase of no iterations (n_iter=0)
                        self.stage[b], hit[b] = "done", True
                continue
            if said:
                self.stopped_at[b] = t
            if said or t >= self.ends[b]:
                self.stage[b], hit[b] = "done", True
        return hit
