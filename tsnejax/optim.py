"""Optimizers as Optax ``GradientTransformation``s, starting with the classic t-SNE rule.

The classic rule (Jacobs 1988 delta-bar-delta gains with momentum, as in bhtsne, FIt-SNE,
openTSNE and scikit-learn) reads the previous update to set the gains, so it is one
transform whose state is ``(count, gains, velocity)`` and which applies the learning rate
itself:

.. math::
    g \\leftarrow \\begin{cases} g + 0.2 & \\text{if the step kept descending} \\\\
                                 \\text{floor}(0.8\\,g) & \\text{otherwise} \\end{cases}
    \\qquad v \\leftarrow \\mu v - \\eta\\, g \\odot \\nabla, \\qquad y \\leftarrow y + v

Any other Optax transformation (``optax.adam(...)``) can be used in its place.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax.numpy as jnp
import optax

from tsnejax._checks import check_option
from tsnejax._types import Array, ScalarOrSchedule

__all__ = ["ClassicState", "classic", "clip_rows", "clip_row_norm", "GAINS_RULES"]

#: ``"opentsne"``: gain grows by 0.2 when ``sign(v) != sign(grad)``, else ``0.8 g + min_gain``.
#: ``"fitsne"``: same test, else ``max(0.8 g, min_gain)`` (also cuML).
#: ``"sklearn"``: grows when ``v * grad < 0`` (so not on the first step, where v = 0), else
#: ``max(0.8 g, min_gain)``.
GAINS_RULES = ("opentsne", "fitsne", "sklearn")


class ClassicState(NamedTuple):
    """State of :func:`classic`."""

    count: Array  # shape=(), dtype=int32: updates applied so far
    gains: Array  # like params
    velocity: Array  # like params: the previous update


def _value(x: ScalarOrSchedule, count: Array) -> Array:
    return x(count) if callable(x) else x


def clip_rows(x: Array, max_norm: float) -> Array:
    """Scale each row of ``x`` whose Euclidean norm exceeds ``max_norm`` down to ``max_norm``."""
    norms = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return jnp.where(norms > max_norm, x * (max_norm / jnp.where(norms > 0, norms, 1.0)), x)


def classic(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule = 0.8,
    *,
    min_gain: float = 0.01,
    gains_rule: Literal["opentsne", "fitsne", "sklearn"] = "opentsne",
    max_step_norm: float | None = 5.0,
) -> optax.GradientTransformation:
    """Momentum + gains update (the t-SNE default optimizer).

    Args:
      learning_rate: step size, a number or an Optax schedule of the step count.
      momentum: momentum coefficient, number or schedule (openTSNE 1.0.4: 0.8 throughout).
      min_gain: floor of the gains (see ``gains_rule``).
      gains_rule: which peer's gains update to reproduce; see :data:`GAINS_RULES`.
      max_step_norm: clip each row of the update to this norm (openTSNE default 5); ``None``
        disables. The clipped update is what momentum carries forward, as in openTSNE.

    Returns:
      An Optax ``GradientTransformation``; its updates are added to the embedding.
    """
    check_option("gains_rule", gains_rule, GAINS_RULES)

    def init_fn(params: Array) -> ClassicState:
        return ClassicState(
            count=jnp.zeros((), jnp.int32),
            gains=jnp.ones_like(params),
            velocity=jnp.zeros_like(params),
        )

    def update_fn(updates: Array, state: ClassicState, params: Array | None = None):
        del params
        grad = updates
        lr = _value(learning_rate, state.count)
        mu = _value(momentum, state.count)
        if gains_rule == "sklearn":
            descending = state.velocity * grad < 0
        else:
            descending = jnp.sign(state.velocity) != jnp.sign(grad)
        shrunk = state.gains * 0.8
        shrunk = shrunk + min_gain if gains_rule == "opentsne" else jnp.maximum(shrunk, min_gain)
        gains = jnp.where(descending, state.gains + 0.2, shrunk)
        velocity = mu * state.velocity - lr * gains * grad
        if max_step_norm is not None:
            velocity = clip_rows(velocity, max_step_norm)
        velocity = velocity.astype(grad.dtype)
        return velocity, ClassicState(state.count + 1, gains.astype(grad.dtype), velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def clip_row_norm(max_norm: float) -> optax.GradientTransformation:
    """Clip each row of the incoming gradient to ``max_norm`` (openTSNE ``max_grad_norm``).

    openTSNE scales by ``max_norm / (norm + 1e-6)`` where that is below 1; so does this.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        norms = jnp.linalg.norm(updates, axis=-1, keepdims=True)
        coeff = max_norm / (norms + 1e-6)
        return jnp.where(coeff < 1, updates * coeff, updates), state

    return optax.GradientTransformation(init_fn, update_fn)
