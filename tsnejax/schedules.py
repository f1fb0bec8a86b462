"""Optax-style schedules (``step -> value``) for t-SNE phases.

``step`` counts optimizer updates from 0. The early-exaggeration phase is steps
``0 .. early_iter - 1``; openTSNE runs it as a separate ``optimize`` call, which is the same
as a piecewise-constant schedule with the optimizer state carried across.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
import optax

from tsnejax._checks import check_option
from tsnejax._types import Array

__all__ = [
    "two_phase",
    "exaggeration_schedule",
    "momentum_schedule",
    "auto_learning_rate",
    "LR_RULES",
    "EXAGGERATION_DECAYS",
]

LR_RULES = ("opentsne", "fitsne", "sklearn", "cuml")
EXAGGERATION_DECAYS = ("step", "linear", "exponential")


def two_phase(first: float, second: float, boundary: int) -> optax.Schedule:
    """``first`` for steps ``< boundary``, ``second`` from then on."""
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
    decay: Literal["step", "linear", "exponential"] = "step",
    decay_iter: int = 150,
) -> optax.Schedule:
    """Early exaggeration for ``early_iter`` steps, then ``late`` (1 = plain t-SNE).

    ``decay="step"`` switches at once (openTSNE, FIt-SNE, scikit-learn). ``"linear"`` goes from
    ``early`` to ``late`` over the next ``decay_iter`` steps (GPGPU-SNE / tfjs-tsne / HDILib:
    exaggeration 4 for 250 steps, then 150 steps of decay). ``"exponential"`` decays
    geometrically, ``early * (late / early) ** (t / decay_iter)``, over the same steps.
    """
    check_option("decay", decay, EXAGGERATION_DECAYS)
    if decay == "step" or decay_iter <= 0:
        return two_phase(early, late, early_iter)

    def schedule(step: Array) -> Array:
        frac = jnp.clip((jnp.asarray(step) - early_iter) / decay_iter, 0.0, 1.0)
        if decay == "linear":
            return early + (late - early) * frac
        return early * (late / early) ** frac

    return schedule


def momentum_schedule(initial: float = 0.8, final: float = 0.8, switch_iter: int = 250):
    """openTSNE 1.0.4 uses 0.8 throughout; FIt-SNE/scikit-learn/cuML use 0.5 then 0.8 at 250."""
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
    if rule == "opentsne":

        def schedule(step: Array) -> Array:
            return n / jnp.asarray(exaggeration(step))

        return schedule
    if rule == "cuml":
        return optax.constant_schedule(max(n / 3.0, 1.0))
    if rule == "fitsne":
        return optax.constant_schedule(max(200.0, n / early_exaggeration))
    return optax.constant_schedule(max(n / early_exaggeration / 4.0, 50.0))
