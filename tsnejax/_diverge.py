"""Why a run diverged: each step classifies a non-finite outcome, the host words the error.

A step fails in one of three ways, told apart inside the program at no cost (the checks were
already computed for ``StepInfo.finite``): the gradient came back NaN/inf at a finite embedding
(a backend's fault, or an embedding too large for float32's sums), the update turned a finite
gradient into a NaN/inf embedding (the optimizer's settings), or the update proposed a step far
beyond ``max_step_norm`` (a runaway learning rate that clipping would hide). The advice differs.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from tsnejax._scale import explode_limit
from tsnejax._types import Array
from tsnejax.optim import DIVERGENCE_STEP_RATIO

__all__ = [
    "DivergenceError",
    "CAUSES",
    "CAUSE_WORDS",
    "step_cause",
    "raise_divergence",
    "spread",
]

#: ``StepInfo.cause`` codes: 0 ("") a good step, then the first failure found, in this order.
CAUSES = ("", "gradient", "update", "step")


#: A few words per cause, for messages that name it in passing.
CAUSE_WORDS = {
    "gradient": "the gradient became NaN/inf",
    "update": "the update made the embedding NaN/inf",
    "step": "a runaway step",
}


class DivergenceError(FloatingPointError):
    """The embedding or gradient became NaN/inf; ``state`` holds the last finite state
    (``None`` from :func:`tsnejax.diff.fit`, which does not freeze) and ``cause`` one of
    ``"gradient"``, ``"update"``, ``"step"`` (:data:`CAUSES`)."""

    def __init__(self, message: str, iteration: int, state: Any, cause: str = ""):
        super().__init__(message)
        self.iteration = iteration
        self.state = state
        self.cause = cause


def step_cause(grad: Array, Y: Array, exploded: Array) -> Array:
    """``int32`` index into :data:`CAUSES` for one step (0: the step is good)."""
    return jnp.where(
        ~jnp.all(jnp.isfinite(grad)),
        1,
        jnp.where(~jnp.all(jnp.isfinite(Y)), 2, jnp.where(exploded, 3, 0)),
    ).astype(jnp.int32)


def spread(Y: Array) -> np.ndarray:
    """``(trials,)`` standard deviation of each embedding's coordinates (one: shape (1,)).
    On the host where this process holds the whole array (eager ``jnp`` compiles a reshape and
    a std per shape); an embedding spread over several processes is reduced on the devices."""
    if getattr(Y, "is_fully_addressable", True):
        return np.asarray(Y, np.float64).reshape(-1, Y.shape[-2] * Y.shape[-1]).std(axis=1)
    flat = jnp.reshape(Y, (-1, Y.shape[-2] * Y.shape[-1]))
    return np.asarray(jnp.std(flat, axis=1), np.float64)


_WHAT = {
    "gradient": "the gradient of {method!r} came back NaN/inf at a finite embedding",
    "update": "the optimizer's update turned a finite gradient into a NaN/inf embedding",
    "step": (
        f"the update proposed a step over {DIVERGENCE_STEP_RATIO:g} x max_step_norm (which "
        "clipping would hide)"
    ),
}
_ADVICE = {
    "gradient": (
        "A custom Backend: evaluate its gradient at err.state.embedding (its finite input). A "
        "built-in method: lower the learning rate (try learning_rate='auto'), use a smaller "
        "exaggeration, or a larger dof if dof < 1."
    ),
    "update": (
        "Check the optimizer's settings (a learning rate or an Optax object's own arguments); "
        "lower the learning rate (try learning_rate='auto') or keep max_step_norm on."
    ),
    "step": (
        "Lower the learning rate (try learning_rate='auto'), use a smaller exaggeration, or a "
        "larger dof if dof < 1."
    ),
}


def raise_divergence(
    it: int, cause: int, state: Any, where: str, method: str, checkpoint: Any
) -> None:
    """Raise :class:`DivergenceError` for a failure at iteration ``it`` (``where``: the phase
    description), saving the last finite ``state`` when a checkpoint is armed."""
    name = CAUSES[cause] if 0 < cause < len(CAUSES) else "step"
    saved = ""
    if checkpoint is not None:
        path = checkpoint.save(state, iteration=int(state.iteration), diverged_at=it)
        saved = f" The last finite state (iteration {int(state.iteration)}) is saved in "
        saved += f"{str(path)!r}."
    n, dim = state.embedding.shape[-2:]
    s, limit = float(spread(state.embedding).max()), explode_limit(n, dim)
    advice = _ADVICE[name]
    if s > limit:  # e.g. a user's initialization at 1e6: float32 loses Z
        advice = (
            f"The last finite embedding's standard deviation was {s:.3g}, over {limit:.3g}"
            " (10 x the extent of the points at unit density): rescale a large initialization "
            "(t-SNE starts at ~1e-4) or lower the learning rate."
        )
    raise DivergenceError(
        f"t-SNE diverged at iteration {it} ({where}): {_WHAT[name].format(method=method)}. "
        + advice
        + saved,
        it,
        state,
        name,
    )
