"""Type aliases shared across tsnejax (no logic)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import jax
from jax.typing import ArrayLike

Array = jax.Array
PRNGKey = jax.Array
Scalar = float | jax.Array
#: A number, or an Optax-style schedule ``step -> value``.
ScalarOrSchedule = float | Callable[[jax.Array], jax.Array]

__all__ = ["Array", "ArrayLike", "PRNGKey", "Scalar", "ScalarOrSchedule", "GradientFn"]


class GradientFn(Protocol):
    """``(Y, P, dof, exaggeration) -> (gradient, Z)``.

    ``gradient`` has the shape of ``Y`` and follows the openTSNE/FIt-SNE scale
    (one quarter of the true KL gradient); ``Z`` is the kernel normaliser
    :math:`\\sum_{i \\ne j} w_{ij}`.
    """

    def __call__(
        self, Y: Array, P: object, dof: Scalar, exaggeration: Scalar
    ) -> tuple[Array, Array]: ...
