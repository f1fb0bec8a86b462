"""Field validators of :mod:`tsnejax.config` (each ``(name, value) -> None``, raising
``ValueError`` that names the setting and the fix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tsnejax._checks import (
    check_dof,
    check_int,
    check_option,
    check_perplexity_value,
    check_positive,
)
from tsnejax.knn import check_search
from tsnejax.knn_ivf import IVFSearch
from tsnejax.schedules import EXAGGERATION_DECAYS

__all__ = [
    "option",
    "decay",
    "neighbor_search",
    "number",
    "positive",
    "integer",
    "perplexity_values",
    "n_neighbors_value",
    "dof_value",
]

NEIGHBOR_METHODS = ("auto", "exact", "ivf", "faiss", "faiss_hnsw", "pynndescent", "sharded")


def option(*allowed: Any) -> Callable[[str, Any], Any]:
    return lambda name, v: check_option(name, v, allowed)


def decay(name: str, v: Any) -> None:
    if not callable(v):  # a schedule object is accepted wherever a name selects one
        check_option(name, v, EXAGGERATION_DECAYS)


def neighbor_search(name: str, v: Any) -> None:
    if not isinstance(v, IVFSearch):  # the ivf search with a chosen effort
        check_search(name, v, NEIGHBOR_METHODS)


#: Where a schedule of a number-only field goes (a bare "must be a real number" left users there).
SCHEDULE_HOME = {
    "exaggeration": "exaggeration_decay=<schedule of the steps after early exaggeration>",
    "early_exaggeration": "exaggeration_decay=<schedule of the steps after early exaggeration>",
    "dof": "a tsnejax.schedules.Phases table whose values are Optax schedules, run with "
    "tsnejax.run.optimize (docs/loop.md, 'Phases are data')",
}
SCHEDULE_HOME["initial_momentum"] = SCHEDULE_HOME["final_momentum"] = SCHEDULE_HOME["dof"]


def number(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """``check``, with a callable (a schedule) refused by naming where schedules go."""

    def checked(name: str, v: Any) -> Any:
        if callable(v) and name in SCHEDULE_HOME:
            raise ValueError(
                f"{name} takes a number, got a {type(v).__name__}; a schedule of it goes in "
                f"{SCHEDULE_HOME[name]}."
            )
        return check(name, v)

    return checked


def positive(allow_zero: bool = False, optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> None:
        if not (optional and v is None):
            check_positive(name, v, allow_zero=allow_zero)

    return check


def integer(minimum: int = 0, optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> None:
        if not (optional and v is None):
            check_int(name, v, minimum=minimum)

    return check


def perplexity_values(name: str, v: Any) -> None:
    values = (v,) if np.ndim(v) == 0 else tuple(v)
    if len(values) == 0:
        raise ValueError(f"{name} is an empty list; give at least one value (e.g. 30).")
    for p in values:
        check_perplexity_value(name, p)


def n_neighbors_value(name: str, v: Any) -> None:
    if isinstance(v, str):
        check_option(name, v, ("3p", "3p+1"))
    else:
        check_int(name, v, minimum=1)


def dof_value(name: str, v: Any) -> None:
    check_dof(name, v)  # inf: the Gaussian kernel
