"""What a differentiable run (:func:`tsnejax.diff.fit`) is set up from: the hyperparameter
names and defaults, the optimizer (a registry name, a ``"name:key=value"`` spec or an Optax
object), the values of its two phases, and the checks of ``hyperparams`` (concrete values
raise; traced ones outside their range make the run NaN)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsnejax._checks import (
    check_int,
    check_momentum,
    check_n_components,
    check_perplexity_value,
)
from tsnejax._spec import parse_spec
from tsnejax.build import ADAPTIVE_AUTO_LEARNING_RATE
from tsnejax.gradients import Backend, get_backend
from tsnejax.optim import (
    ADAPTIVE,
    OPTIMIZERS,
    as_transformation,
    check_drivable,
    make_optimizer,
)
from tsnejax.run import build_step

__all__ = [
    "HYPERPARAMS",
    "DEFAULTS",
    "DEFAULT_MOMENTUM",
    "ADAM_EPS_ROOT",
    "is_adaptive",
    "stepper",
    "split_spec",
    "phase_values",
    "check_hyperparams",
    "check_graph_perplexity",
    "graph_perplexity_bound",
    "hyperparam_in_range",
]

#: Names ``hyperparams`` may hold; each is differentiable.
HYPERPARAMS = (
    "perplexity",
    "early_exaggeration",
    "exaggeration",
    "learning_rate",
    "early_learning_rate",
    "momentum",
    "early_momentum",
    "dof",
)
DEFAULTS = {"perplexity": 30.0, "early_exaggeration": 12.0, "exaggeration": 1.0, "dof": 1.0}
#: Default momentum of the momentum optimizers (openTSNE's 0.8 in both phases).
DEFAULT_MOMENTUM = 0.8
#: ``eps_root`` of the registry's Adam and Nadam in a differentiable run (a spec or an Optax
#: object sets its own): ``sqrt(v)`` has an infinite derivative at ``v = 0``, so a coordinate
#: whose gradient is exactly zero throughout (a zero-padded 3-D start, all points at one place)
#: made every hypergradient NaN (0 * inf). 1e-30 is below half an ulp of any float32 ``v`` over
#: 1e-22, so the forward run is unchanged unless a gradient entry is under ~1e-11.
ADAM_EPS_ROOT = 1e-30
_SQRT_AT_ZERO = ("adam", "nadam")


def is_adaptive(optimizer: Any) -> bool:
    """Whether ``optimizer`` names an Adam-like registry optimizer (its momentum is ``b1``)."""
    return isinstance(optimizer, str) and optimizer in ADAPTIVE


def check_run_args(
    n_iter: Any, early_iter: Any, method: Any, optimizer: Any, n_components: Any
) -> tuple[int, int]:
    """``diff.fit``'s static arguments, named before anything is hashed or compiled (a list
    was "unhashable type: 'list'" from the step cache, ``n_iter=None`` an ``int()`` error)."""
    n_iter = check_int("n_iter", n_iter, minimum=0)
    early_iter = check_int("early_exaggeration_iter", early_iter, minimum=0)
    if n_iter + early_iter < 1:
        raise ValueError("n_iter and early_exaggeration_iter must be >= 0 with a positive sum.")
    if not isinstance(method, str | Backend):
        raise ValueError(
            f"method must be a gradient method's name ('exact', 'interpolation', 'splat') or a "
            f"tsnejax.gradients.Backend, got {type(method).__name__}."
        )
    if not isinstance(optimizer, str | optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be a registry name or spec ('sgd', 'adam:b1=0.5') or an Optax "
            f"GradientTransformation, got {type(optimizer).__name__}."
        )
    check_n_components(n_components)
    return n_iter, early_iter


def check_grid(grid: Any, backend: Backend, Y0: Any) -> None:
    """A grid given to ``diff.fit`` is of the kind the backend allocates (``None`` for the
    exact gradient), alone or in a schedule ``((start, grid), ...)``; another one failed inside
    the gradient ("'str' object has no attribute 'n_boxes'")."""
    if grid is None or grid == ():
        return
    pairs = isinstance(grid, tuple | list) and all(
        isinstance(e, tuple | list) and len(e) == 2 and isinstance(e[0], int) for e in grid
    )
    kind = type(backend.allocate(Y0))
    for g in [e[1] for e in grid] if pairs else [grid]:
        if not isinstance(g, kind):
            raise ValueError(
                f"grid must be what the {backend.name!r} backend's allocate returns "
                f"({kind.__name__}), or a schedule ((start_iteration, grid), ...); got "
                f"{type(g).__name__} {g!r:.40}."
            )


@functools.lru_cache(maxsize=32)
def stepper(
    method: str | Backend,
    optimizer: str | optax.GradientTransformation,
    fixed: tuple[tuple[str, Any], ...] = (),
):
    """``(Stepper, transform)`` for ``method`` and a registry name (its ``fixed`` arguments
    from a spec; rate and momentum injected, set every step) or an Optax object; cached."""
    backend = get_backend(method)
    if isinstance(optimizer, str):
        kwargs: dict[str, Any] = {"learning_rate": 1.0}  # placeholders, set every step
        if optimizer in ("sgd", "classic"):
            kwargs["momentum"] = DEFAULT_MOMENTUM
        elif optimizer in _SQRT_AT_ZERO:
            kwargs["eps_root"] = ADAM_EPS_ROOT
        transform = make_optimizer(optimizer, **{**kwargs, **dict(fixed)})
    else:
        transform = as_transformation(optimizer, "a registry name, a spec such as 'adam:b1=0.5'")
        check_drivable(transform)  # before tracing the run, whose error would be Optax's own
    return build_step(backend, transform), transform


def split_spec(optimizer: Any, hp: dict[str, Any]) -> tuple[Any, dict, dict[str, Any]]:
    """``"adam:b1=0.5,learning_rate=2"`` -> ``("adam", {"b1": 0.5}, hp + learning_rate)``: the
    spec's learning rate joins ``hp`` as a constant; its other arguments stay fixed."""
    if not isinstance(optimizer, str):
        return optimizer, {}, hp
    name, fixed = parse_spec(optimizer, "optimizer", OPTIMIZERS)
    momentum = "b1" if name in ADAPTIVE else "momentum"
    for arg, key in (("learning_rate", "learning_rate"), (momentum, "momentum")):
        if arg in fixed and key in hp:
            raise ValueError(
                f"optimizer={optimizer!r} sets {arg} and so does hyperparams[{key!r}]; keep "
                "one (in hyperparams it is differentiable)."
            )
    if "learning_rate" in fixed:
        hp = {**hp, "learning_rate": fixed.pop("learning_rate")}
    return name, fixed, hp


def phase_values(hp: dict[str, Any], n: int, optimizer: Any) -> tuple[dict, dict]:
    """Hyperparameters of the early and the main phase, as the step takes them."""
    ee = hp.get("early_exaggeration", DEFAULTS["early_exaggeration"])
    ex = hp.get("exaggeration", DEFAULTS["exaggeration"])
    dof = hp.get("dof", DEFAULTS["dof"])
    early = {"exaggeration": ee, "dof": dof}
    main = {"exaggeration": ex, "dof": dof}
    if "learning_rate" in hp:
        main["learning_rate"] = hp["learning_rate"]
        early["learning_rate"] = hp.get("early_learning_rate", hp["learning_rate"])
    elif isinstance(optimizer, str):
        if is_adaptive(optimizer):
            rate = ADAPTIVE_AUTO_LEARNING_RATE.get(optimizer, 1.0)
            main["learning_rate"] = early["learning_rate"] = rate
        else:  # openTSNE's "auto": N / exaggeration in each phase
            main["learning_rate"] = n / ex
            early["learning_rate"] = hp.get("early_learning_rate", n / ee)
    elif "early_learning_rate" in hp:
        early["learning_rate"] = hp["early_learning_rate"]
    name = "b1" if is_adaptive(optimizer) else "momentum"
    if "momentum" in hp:
        main[name] = hp["momentum"]
        early[name] = hp.get("early_momentum", hp["momentum"])
    elif "early_momentum" in hp:
        early[name] = hp["early_momentum"]
        main[name] = DEFAULT_MOMENTUM if name == "momentum" else 0.9
    if set(early) != set(main):
        raise ValueError(
            "hyperparams: early_learning_rate needs learning_rate too when the optimizer is an "
            "Optax object (it has no default rate to fall back on)."
        )
    return early, main


def graph_perplexity_bound(n_neighbors: int, n: int) -> float:
    """The largest perplexity a fixed ``n_neighbors`` graph of ``n`` points can calibrate
    (openTSNE's bound, as :func:`tsnejax._checks.check_perplexity`)."""
    return min(n_neighbors, n - 1)


def hyperparam_in_range(name: str, value: Any, perplexity_bound: float) -> Any:
    """Whether a (possibly traced) hyperparameter is in the range its concrete check enforces:
    a momentum in ``[0, 1)``, a perplexity in ``[1, perplexity_bound]``, anything else finite and
    positive. A boolean array; ``jnp`` so it holds under ``jax.grad`` / ``jax.vmap``."""
    v = jnp.asarray(value)
    if name in ("momentum", "early_momentum"):
        return (v >= 0) & (v < 1)
    if name == "perplexity":
        return (v >= 1) & (v <= perplexity_bound)
    return jnp.isfinite(v) & (v > 0)


def check_graph_perplexity(label: str, v: float, n_neighbors: int, n: int) -> None:
    """Raise unless perplexity ``v`` is within :func:`graph_perplexity_bound`."""
    if not v <= graph_perplexity_bound(n_neighbors, n):
        raise ValueError(
            f"{label}={v:g} needs more neighbours than the graph has: at most "
            f"{graph_perplexity_bound(n_neighbors, n):g} (n_neighbors={n_neighbors}, "
            f"{n} points); raise n_neighbors or lower it."
        )


def check_hyperparams(
    hp: Mapping[str, Any], valid: Sequence[str], n_neighbors: int, n: int
) -> dict[str, Any]:
    """:func:`tsnejax.diff.fit`'s hyperparameters: known names, scalars, and concrete values in
    range (values under ``jax.grad`` / ``jax.vmap`` are tracers: :func:`hyperparam_in_range`
    NaNs the run's output where they are out of range)."""
    if not isinstance(hp, Mapping):  # was "'float' object is not iterable"
        raise ValueError(
            f"hyperparams must be a dict of names to values, e.g. {{'perplexity': 30.0}}; got "
            f"{type(hp).__name__}."
        )
    unknown = sorted(set(hp) - set(valid))
    if unknown:
        raise ValueError(f"hyperparams: unknown name(s) {unknown}; valid: {list(valid)}.")
    out = {}
    for name, value in hp.items():
        numeric = isinstance(value, jax.core.Tracer) or np.asarray(value).dtype.kind in "biuf"
        if isinstance(value, str | bytes) or not numeric:
            raise ValueError(f"hyperparams[{name!r}] must be a number, got {value!r:.40}.")
        arr = jnp.asarray(value)
        if arr.shape != ():
            raise ValueError(
                f"hyperparams[{name!r}] must be a scalar, got shape {arr.shape}; use jax.vmap "
                "over diff.fit for several values."
            )
        if not isinstance(value, jax.core.Tracer):  # traced ones: diff.fit NaNs its output
            v, label = float(value), f"hyperparams[{name!r}]"
            if name in ("momentum", "early_momentum"):
                check_momentum(label, v)
            elif name == "perplexity":  # below 1 no calibration reaches it (the KL was NaN)
                check_perplexity_value(label, v)
                check_graph_perplexity(label, v, n_neighbors, n)
            elif not np.isfinite(v) or v <= 0:
                raise ValueError(f"{label}={v} must be finite and positive.")
        out[name] = arr
    return out
