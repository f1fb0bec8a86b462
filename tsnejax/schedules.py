"""Schedules of a t-SNE run: the phase table, and Optax-style schedules (``step -> value``).

A run is a sequence of *phases*: from iteration ``start`` on, hyperparameters take the phase's
values (exaggeration, dof, and any hyperparameter in the optimizer state, such as
``learning_rate`` and ``momentum``). :class:`Phases` is that table; :func:`tsnejax.run.optimize`
splits its chunks at every start, so a boundary takes effect at exactly that iteration, and
passes the values into the step as inputs. A value is a number (traced: it can differ per
vmapped trial without recompiling) or an Optax schedule of the iteration (compiled into the
program; used for decaying exaggeration).

``step`` counts optimizer updates from 0. The early-exaggeration phase is steps
``0 .. early_iter - 1``; openTSNE runs it as a separate ``optimize`` call, which is the same as
two phases with the optimizer state carried across.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp
import numpy as np
import optax

from tsnejax._checks import (
    check_hashable,
    check_int,
    check_momentum,
    check_option,
    check_positive,
    check_scalar,
)
from tsnejax._types import Array

__all__ = [
    "Phases",
    "STEP_INPUTS",
    "two_phase",
    "exaggeration_schedule",
    "momentum_schedule",
    "auto_learning_rate",
    "resolve_learning_rate",
    "check_learning_rate",
    "LR_RULES",
    "EXAGGERATION_DECAYS",
]

LR_RULES = ("opentsne", "fitsne", "sklearn", "cuml")
EXAGGERATION_DECAYS = ("step", "linear", "exponential")
#: Phase values the step itself consumes (defaults 1 and 1); every other name is set in the
#: optimizer state (:func:`tsnejax.optim.set_hyperparams`) before the update.
STEP_INPUTS = {"exaggeration": 1.0, "dof": 1.0}

Value = float | Array | Callable[[Array], Array]


class Phases(NamedTuple):
    """A phase table: ``values[i]`` holds from iteration ``starts[i]`` to ``starts[i + 1]``.

    Build it with :meth:`of` (later phases list only what changes). Every phase holds every
    name. In a batched run a number may be an array with one value per trial (:meth:`stack`);
    all trials then share the starts and the schedule-valued entries.

    Attributes:
      starts: ``(n_phases,)`` increasing iteration numbers, the first 0.
      values: per phase, ``{name: number | (n_trials,) array | schedule}``.
    """

    starts: tuple[int, ...]
    values: tuple[dict[str, Value], ...]

    @classmethod
    def of(cls, table: Mapping[int, Mapping[str, Value]] | None = None, **constant: Value):
        """``Phases.of({0: {"exaggeration": 12.0}, 250: {"exaggeration": 1.0}})``.

        Keyword values hold in every phase (``Phases.of(exaggeration=4.0)``: one phase). A
        later phase inherits what it does not list. Raises ``ValueError`` for a negative or
        non-integer start, or a name that the first phase does not define.
        """
        table = dict(table or {})
        for s in table:
            if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
                raise ValueError(
                    f"phase start {s!r} must be an integer >= 0 (a table maps starts to dicts "
                    "of values; constant values go in as keywords)."
                )
        table.setdefault(0, {})
        starts = sorted(table)
        values: list[dict[str, Value]] = []
        current = dict(constant)
        for i, s in enumerate(starts):
            new = dict(table[s])
            unknown = sorted(set(new) - set(current)) if i else []
            if unknown:
                raise ValueError(
                    f"phase at iteration {s} sets {unknown}, which the first phase does not "
                    "define; give every name a value at iteration 0."
                )
            current = {**current, **new}
            values.append(dict(current))
        for v in values:
            for name, x in v.items():
                check_phase_value(name, x)
        return cls(tuple(int(s) for s in starts), tuple(values))

    def index(self, iteration: int) -> int:
        """The phase that holds at ``iteration``."""
        return int(np.searchsorted(np.asarray(self.starts), iteration, side="right") - 1)

    def at(self, iteration: int) -> dict[str, Value]:
        """The values that hold at ``iteration``."""
        return self.values[self.index(iteration)]

    def next_start(self, iteration: int) -> int | None:
        """The first phase start after ``iteration`` (``None``: the last phase holds)."""
        i = self.index(iteration) + 1
        return self.starts[i] if i < len(self.starts) else None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.values[0]))

    def shifted(self, start: int) -> Phases:
        """The table from iteration ``start`` on, with the phase holding at ``start`` first."""
        i = self.index(start)
        starts = (start, *self.starts[i + 1 :])
        return Phases(starts, self.values[i:])

    def replace(self, **values: Value) -> Phases:
        """Every phase with ``values`` set (e.g. ``dof=0.5``)."""
        for name, x in values.items():
            check_phase_value(name, x)
        return Phases(self.starts, tuple({**v, **values} for v in self.values))

    def describe(self, iteration: int) -> str:
        """``"phase 2 of 3 (from iteration 250): exaggeration=1, learning_rate=1797"``."""
        i = self.index(iteration)
        parts = []
        for name, x in sorted(self.values[i].items()):
            if callable(x):
                parts.append(f"{name}={float(x(max(iteration - 1, 0))):g} (scheduled)")
            elif np.ndim(x) == 0:
                parts.append(f"{name}={float(x):g}")
            else:
                parts.append(f"{name}=per trial")
        return f"phase {i + 1} of {len(self.starts)} (from iteration {self.starts[i]}): " + (
            ", ".join(parts)
        )

    @staticmethod
    def stack(tables: Sequence[Phases]) -> Phases:
        """One table for a batch: numbers become ``(n_trials,)`` arrays (equal ones stay
        numbers). The tables must share starts, names and schedule-valued entries."""
        first = tables[0]
        for t in tables[1:]:
            if t.starts != first.starts:
                raise ValueError(
                    f"batched phases must share their starts; got {first.starts} and {t.starts}."
                )
            if [sorted(v) for v in t.values] != [sorted(v) for v in first.values]:
                raise ValueError("batched phases must define the same names in every phase.")
        values = []
        for i, v0 in enumerate(first.values):
            out: dict[str, Value] = {}
            for name, x0 in v0.items():
                xs = [t.values[i][name] for t in tables]
                if callable(x0):
                    if any(x != x0 for x in xs):
                        raise ValueError(
                            f"batched phases: {name!r} is a schedule that differs between "
                            "trials; schedules are compiled in and must be shared."
                        )
                    out[name] = x0
                elif all(np.ndim(x) == 0 and float(x) == float(x0) for x in xs):
                    out[name] = x0
                else:
                    out[name] = np.asarray([np.asarray(x, np.float64) for x in xs])
            values.append(out)
        return Phases(first.starts, tuple(values))


class TrialPhases:
    """One phase table per trial, read by :func:`tsnejax.run.optimize` as one stacked table.

    ``at(t)`` stacks the trials' values at ``t`` (numbers that differ become ``(n_trials,)``
    arrays, as :meth:`Phases.stack` does); ``starts`` is every trial's starts together, so a
    chunk ends wherever any trial's phase changes. ``tables[b]`` may be replaced between chunks.
    """

    def __init__(self, tables: list[Phases]):
        self.tables = list(tables)

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(sorted({s for table in self.tables for s in table.starts}))

    @property
    def values(self) -> tuple[dict[str, Any], ...]:
        return (self.at(0),)

    def at(self, iteration: int) -> dict[str, Any]:
        now = [Phases((0,), (table.at(iteration),)) for table in self.tables]
        return Phases.stack(now).values[0]

    def next_start(self, iteration: int) -> int | None:
        nxt = [s for s in (t.next_start(iteration) for t in self.tables) if s is not None]
        return min(nxt) if nxt else None

    def replace(self, **values: Any) -> TrialPhases:
        return TrialPhases([table.replace(**values) for table in self.tables])

    def describe(self, iteration: int) -> str:
        seen: dict[str, list[int]] = {}
        for b, table in enumerate(self.tables):
            seen.setdefault(table.describe(iteration), []).append(b)
        if len(seen) == 1:
            return next(iter(seen))
        return "; ".join(f"trials {trials}: {text}" for text, trials in seen.items())

    def __repr__(self) -> str:
        return f"TrialPhases({self.tables!r})"


def check_phase_value(name: str, x: Any) -> None:
    """Raise unless ``x`` is a phase value: a finite number (``dof`` may be ``inf``), a 1-D
    array of them (one per trial) or a schedule of the iteration."""
    if callable(x):
        return
    a = np.asarray(x)
    if a.dtype.kind not in "iuf" or a.ndim > 1:
        raise ValueError(
            f"phase value {name}={x!r} must be a number, a 1-D array (one per trial) or a "
            "schedule of the iteration."
        )
    if name != "dof" and not np.all(np.isfinite(a)):
        raise ValueError(f"phase value {name}={x!r} must be finite.")
    positive = name in ("exaggeration", "learning_rate", "dof")
    if (positive and not np.all(a > 0)) or (name == "momentum" and not np.all((a >= 0) & (a < 1))):
        # a negative exaggeration or rate, a momentum of 1 ran without a word (the config
        # refuses each; a phase table is the loop's own way in)
        bounds = "in [0, 1)" if name == "momentum" else "> 0"
        raise ValueError(f"phase value {name}={x!r} must be {bounds}.")


def values_at(values: Mapping[str, Value], iteration: Array) -> dict[str, Array | float]:
    """Evaluate schedule-valued entries at ``iteration`` (traced); numbers pass through."""
    return {k: (v(iteration) if callable(v) else v) for k, v in values.items()}


def is_static_number(x: Any) -> bool:
    """A Python number (compiled into the program) rather than an array."""
    return isinstance(x, int | float) and not isinstance(x, bool) and not math.isnan(x)


__all__ += [
    "check_phase_value",
    "values_at",
    "is_static_number",
    "ExaggerationDecay",
    "PerExaggeration",
    "TrialPhases",
]


def _finite(name: str, x: Any) -> float:
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x!r}.")
    return float(x)


def two_phase(first: float, second: float, boundary: int) -> optax.Schedule:
    """``first`` for steps ``< boundary``, ``second`` from then on."""
    check_scalar("first", first, _finite)
    check_scalar("second", second, _finite)
    boundary = check_int("boundary", boundary, minimum=0)
    if boundary <= 0:
        return optax.constant_schedule(second)
    return optax.join_schedules(
        [optax.constant_schedule(first), optax.constant_schedule(second)], [boundary]
    )


def exaggeration_schedule(
    early: float = 12.0,
    early_iter: int = 250,
    late: float = 1.0,
    *,
    decay: Literal["step", "linear", "exponential"] | optax.Schedule = "step",
    decay_iter: int = 150,
) -> optax.Schedule:
    """Early exaggeration for ``early_iter`` steps, then ``late`` (1 = plain t-SNE).

    ``decay="step"`` switches at once (openTSNE, FIt-SNE, scikit-learn). ``"linear"`` goes from
    ``early`` to ``late`` over the next ``decay_iter`` steps (GPGPU-SNE / tfjs-tsne / HDILib:
    exaggeration 4 for 250 steps, then 150 steps of decay). ``"exponential"`` decays
    geometrically, ``early * (late / early) ** (t / decay_iter)``, over the same steps. A
    schedule (``optax.cosine_decay_schedule(12.0, 150, alpha=1 / 12)``) gives the exaggeration
    at each of those steps, counted from 0 (Optax's convention).
    """
    if not callable(decay):
        check_option("decay", decay, EXAGGERATION_DECAYS)
    check_scalar("early", early, check_positive)
    check_scalar("late", late, check_positive)
    early_iter = check_int("early_iter", early_iter, minimum=0)
    decay_iter = check_int("decay_iter", decay_iter, minimum=0)
    if decay == "step" or decay_iter <= 0:
        return two_phase(early, late, early_iter)
    return ExaggerationDecay(float(early), float(late), int(early_iter), int(decay_iter), decay)


@dataclasses.dataclass(frozen=True)
class ExaggerationDecay:
    """``early`` until ``start``, then a linear or geometric decay to ``late`` over ``length``
    steps, or a user's schedule of the steps since ``start``. A hashable schedule: equal
    settings share compiled programs."""

    early: float
    late: float
    start: int
    length: int
    kind: Literal["linear", "exponential"] | optax.Schedule

    def __call__(self, step: Array) -> Array:
        step = jnp.asarray(step)
        if callable(self.kind):
            inside = jnp.asarray(self.kind(step - self.start))
            after = jnp.where(step < self.start + self.length, inside, self.late)
            return jnp.where(step < self.start, self.early, after)
        frac = jnp.clip((step - self.start) / self.length, 0.0, 1.0)
        if self.kind == "linear":
            return self.early + (self.late - self.early) * frac
        return self.early * (self.late / self.early) ** frac


@dataclasses.dataclass(frozen=True)
class PerExaggeration:
    """``n / exaggeration(step)``: openTSNE's ``learning_rate="auto"`` under a scheduled
    exaggeration (hashable)."""

    n: float
    exaggeration: Callable[[Array], Array]

    def __call__(self, step: Array) -> Array:
        return self.n / jnp.asarray(self.exaggeration(step))


def momentum_schedule(initial: float = 0.8, final: float = 0.8, switch_iter: int = 250):
    """openTSNE 1.0.4 uses 0.8 throughout; FIt-SNE/scikit-learn/cuML use 0.5 then 0.8 at 250."""
    check_scalar("initial", initial, check_momentum)
    check_scalar("final", final, check_momentum)
    return two_phase(initial, final, switch_iter)


def auto_learning_rate(
    n: int,
    exaggeration: optax.Schedule,
    *,
    rule: Literal["opentsne", "fitsne", "sklearn"] = "opentsne",
    early_exaggeration: float = 12.0,
) -> optax.Schedule:
    """``learning_rate="auto"`` as a schedule.

    - ``"opentsne"``: ``n / exaggeration(step)`` for the current phase, no floor (so N/12 in
      early exaggeration and N afterwards with exaggeration 1).
    - ``"fitsne"``: ``max(200, n / early_exaggeration)`` throughout.
    - ``"sklearn"``: ``max(n / early_exaggeration / 4, 50)`` throughout (scikit-learn keeps the
      factor 4 in its gradient, so this equals ``n / early_exaggeration`` elsewhere).
    - ``"cuml"``: ``max(n / 3, 1)`` throughout (cuML's ``learning_rate_method="adaptive"``).
    """
    check_option("learning_rate rule", rule, LR_RULES)
    n = check_int("n", n, minimum=1)
    if not callable(exaggeration):
        raise ValueError(
            f"exaggeration must be a schedule of the step (e.g. lambda step: 12.0), got "
            f"{type(exaggeration).__name__}."
        )
    if rule == "opentsne":
        return PerExaggeration(float(n), exaggeration)
    if rule == "cuml":
        return optax.constant_schedule(max(n / 3.0, 1.0))
    if rule == "fitsne":
        return optax.constant_schedule(max(200.0, n / early_exaggeration))
    return optax.constant_schedule(max(n / early_exaggeration / 4.0, 50.0))


_LR_EXPR = re.compile(r"^\s*(?:(\d+(?:\.\d*)?)\s*\*\s*)?N\s*(?:/\s*(\d+(?:\.\d*)?))?\s*$")


def resolve_learning_rate(value: Any, n: int | None) -> Any:
    """A number, ``"auto"``, an expression in ``N`` such as ``"N/12"`` or ``"0.5*N"``, or a
    schedule of the iteration.

    Returns the number for ``n`` points (``"auto"`` and schedules unchanged; ``n=None`` only
    validates).
    """
    if not isinstance(value, str) or value == "auto":
        return value
    m = _LR_EXPR.match(value)
    if m is None:
        raise ValueError(
            f"learning_rate={value!r}: use a number, 'auto', or an expression like 'N/12', "
            "'N' or '0.5*N' (N = number of points)."
        )
    num, den = float(m.group(1) or 1.0), float(m.group(2) or 1.0)
    if not (num > 0 and den > 0):  # 'N/0' used to pass the config and divide by zero in fit
        raise ValueError(f"learning_rate={value!r} must give a rate > 0 (N = number of points).")
    return 1.0 if n is None else num * n / den


def check_learning_rate(name: str, v: Any) -> None:
    """Raise unless ``v`` is a rate > 0, ``"auto"``, an expression in N or a schedule."""
    if isinstance(v, str):
        resolve_learning_rate(v, None)
    elif callable(v):  # an Optax schedule wherever a rate is accepted
        _check_learning_rate_schedule(name, v)
    else:
        check_positive(name, v)


def _check_learning_rate_schedule(name: str, schedule: Callable[[Any], Any]) -> None:
    """Raise unless ``schedule`` is hashable and maps iteration 0 to a finite rate >= 0 (a
    warm-up may start at 0).

    The schedule is compiled into the run (a static part of the config), so it must be
    hashable; it is probed once at iteration 0 so that a wrong signature or a negative rate is
    named here rather than deep in the first step.
    """
    check_hashable(name, schedule, "an Optax schedule or a hashable callable of the iteration")
    try:
        rate = np.asarray(schedule(np.int32(0)))
    except Exception as err:  # noqa: BLE001 (any failure of the user's callable)
        raise ValueError(
            f"{name}: the schedule failed at iteration 0 ({type(err).__name__}: {err}); it "
            "must map the iteration count to a rate, like optax.linear_schedule(...)."
        ) from None
    if rate.shape != () or rate.dtype.kind not in "iuf" or not (np.isfinite(rate) and rate >= 0):
        raise ValueError(
            f"{name}: the schedule gives {rate!r} at iteration 0; it must give one finite "
            "rate >= 0 per iteration."
        )
