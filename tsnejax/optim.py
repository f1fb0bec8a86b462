"""Optimizers as Optax ``GradientTransformation``s, starting with the classic t-SNE rule.

The classic rule (Jacobs 1988 delta-bar-delta gains with momentum, as in bhtsne, FIt-SNE,
openTSNE and scikit-learn) reads the previous update to set the gains, so it is one
transform whose state is ``(count, gains, velocity)`` and which applies the learning rate
itself:

.. math::
    g \\leftarrow \\begin{cases} g + 0.2 & \\text{if the step kept descending} \\\\
                                 \\text{floor}(0.8\\,g) & \\text{otherwise} \\end{cases}
    \\qquad v \\leftarrow \\mu v - \\eta\\, g \\odot \\nabla, \\qquad y \\leftarrow y + v

Any other Optax transformation (``optax.adam(...)``) can be used in its place; the registry
:data:`OPTIMIZERS` names the ones tsnejax tests (``make_optimizer("adam", learning_rate=1.0)``).

Hyperparameters that change by phase (learning rate, momentum) are injected
(``optax.inject_hyperparams``): the step sets them from the phase table
(:class:`tsnejax.schedules.Phases`) before each update, so they can be read
(:func:`get_hyperparams`), overwritten (:func:`set_hyperparams`) and vmapped without
recompiling.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsnejax._checks import check_momentum, check_option, check_positive, check_scalar
from tsnejax._spec import parse_spec
from tsnejax._types import Array, ScalarOrSchedule

__all__ = [
    "check_optimizer_args",
    "ClassicState",
    "StepClipState",
    "classic",
    "clip_rows",
    "clip_row_norm",
    "clip_step_norm",
    "get_hyperparams",
    "step_exploded",
    "DIVERGENCE_STEP_RATIO",
    "set_hyperparams",
    "make_optimizer",
    "parse_optimizer_spec",
    "scale_learning_rate",
    "scales_with_gradient",
    "check_drivable",
    "OPTIMIZERS",
    "ADAPTIVE",
    "GAINS_RULES",
]

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
    # shape=(): largest row norm of the last update before clipping, over max_step_norm (0
    # without clipping). Clipping keeps a runaway learning rate finite; this exposes it.
    step_ratio: Array


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
    max_grad_norm: float | None = None,
) -> optax.GradientTransformation:
    """Momentum + gains update (the t-SNE default optimizer).

    Wrap it in ``optax.inject_hyperparams(classic, static_args=("gains_rule",))`` to make
    ``learning_rate``, ``momentum``, ``min_gain`` and ``max_step_norm`` readable, overwritable
    and vmappable state; the updates are identical (tested).

    Args:
      learning_rate: step size, a number or an Optax schedule of the step count.
      momentum: momentum coefficient, number or schedule (openTSNE 1.0.4: 0.8 throughout).
      min_gain: floor of the gains (see ``gains_rule``).
      gains_rule: which peer's gains update to reproduce; see :data:`GAINS_RULES`.
      max_step_norm: clip each row of the update to this norm (openTSNE default 5); ``None``
        disables. The clipped update is what momentum carries forward, as in openTSNE.
      max_grad_norm: clip each row of the incoming gradient first (openTSNE ``max_grad_norm``,
        default ``None``; its ``transform`` uses 0.25).

    Returns:
      An Optax ``GradientTransformation``; its updates are added to the embedding.
    """
    check_option("gains_rule", gains_rule, GAINS_RULES)
    check_scalar("learning_rate", learning_rate, check_positive, schedule=True)
    check_scalar("momentum", momentum, check_momentum, schedule=True)

    def init_fn(params: Array) -> ClassicState:
        return ClassicState(
            count=jnp.zeros((), jnp.int32),
            gains=jnp.ones_like(params),
            velocity=jnp.zeros_like(params),
            step_ratio=jnp.zeros((), jnp.result_type(params)),
        )

    def update_fn(updates: Array, state: ClassicState, params: Array | None = None):
        del params
        grad = updates if max_grad_norm is None else _clip_grad_rows(updates, max_grad_norm)
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
        ratio = jnp.zeros((), grad.dtype)
        if max_step_norm is not None:
            ratio = jnp.max(jnp.linalg.norm(velocity, axis=-1)) / max_step_norm
            velocity = clip_rows(velocity, max_step_norm)
        velocity = velocity.astype(grad.dtype)
        new = ClassicState(
            state.count + 1, gains.astype(grad.dtype), velocity, ratio.astype(grad.dtype)
        )
        return velocity, new

    return optax.GradientTransformation(init_fn, update_fn)


def _clip_grad_rows(x: Array, max_norm: float) -> Array:
    # openTSNE scales by max_norm / (norm + 1e-6) where that is below 1.
    coeff = max_norm / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)
    return jnp.where(coeff < 1, x * coeff, x)


def _stateless(fn: Callable[[Array], Array]) -> optax.GradientTransformation:
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        return fn(updates), state

    return optax.GradientTransformation(init_fn, update_fn)


#: A classic update whose largest row, before clipping, exceeds this many times
#: ``max_step_norm`` counts as divergence (see :func:`step_exploded`). Default runs stay far
#: below it: the largest ratio over a whole run was measured in docs/optimizers.md.
DIVERGENCE_STEP_RATIO = 1e3


def step_exploded(opt_state: optax.OptState) -> Array:
    """Whether a :func:`classic` or :func:`clip_step_norm` in ``opt_state`` just saw a step
    larger than :data:`DIVERGENCE_STEP_RATIO` times its ``max_step_norm`` (a runaway learning
    rate that clipping would otherwise hide); ``False`` when there is none."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=_has_ratio) if _has_ratio(x)]
    if not found:
        return jnp.bool_(False)
    return jnp.any(jnp.stack([x.step_ratio > DIVERGENCE_STEP_RATIO for x in found]))


def gains_of(opt_state: optax.OptState) -> Array | None:
    """The gains of the first :func:`classic` in ``opt_state`` (``None`` when there is none)."""
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_classic) if _is_classic(x)]
    return found[0].gains if found else None


def _is_classic(x: Any) -> bool:
    return isinstance(x, ClassicState)


def _has_ratio(x: Any) -> bool:
    return isinstance(x, ClassicState | StepClipState)


def clip_row_norm(max_norm: float) -> optax.GradientTransformation:
    """Clip each row of the incoming gradient to ``max_norm`` (openTSNE ``max_grad_norm``).

    Put it first in an ``optax.chain``; openTSNE's ``max_norm / (norm + 1e-6)`` scaling.
    """
    return _stateless(lambda g: _clip_grad_rows(g, max_norm))


class StepClipState(NamedTuple):
    """State of :func:`clip_step_norm`."""

    # shape=(): largest row norm of the last update before clipping, over max_norm.
    step_ratio: Array


def clip_step_norm(max_norm: float) -> optax.GradientTransformation:
    """Clip each row of the outgoing update to ``max_norm`` (``max_step_norm`` for any optimizer).

    Put it last in an ``optax.chain``. Unlike :func:`classic`'s own ``max_step_norm`` the
    inner optimizer's momentum does not see the clipping. The state records the unclipped
    ratio, so a runaway step stops the run (:func:`step_exploded`) as with :func:`classic`.
    """

    def init_fn(params):
        return StepClipState(jnp.zeros((), jnp.result_type(params)))

    def update_fn(updates, state, params=None):
        del params
        ratio = jnp.max(jnp.linalg.norm(updates, axis=-1)) / max_norm
        return clip_rows(updates, max_norm), StepClipState(ratio.astype(state.step_ratio.dtype))

    return optax.GradientTransformation(init_fn, update_fn)


_INJECTED = (optax.InjectHyperparamsState, optax.schedules.InjectStatefulHyperparamsState)


def _is_injected(x: Any) -> bool:
    return isinstance(x, _INJECTED)


def get_hyperparams(opt_state: optax.OptState) -> dict[str, Array]:
    """Every injected hyperparameter in ``opt_state`` (the values of the last update).

    Exaggeration and dof are not optimizer state: they are inputs of the step, given per phase
    (:class:`tsnejax.schedules.Phases`).
    """
    out: dict[str, Array] = {}
    for x in jax.tree.leaves(opt_state, is_leaf=_is_injected):
        if _is_injected(x):
            out.update(x.hyperparams)
    return out


def set_hyperparams(opt_state: optax.OptState, **values: Any) -> optax.OptState:
    """Return ``opt_state`` with injected hyperparameters replaced (jittable, vmappable).

    Values are cast to the stored dtype and shape-checked so that the compiled step is reused.
    A hyperparameter given as a schedule is recomputed at the next update, overriding the set
    value; set numbers. Raises ``ValueError`` for a name that is not in the state.
    """
    known = get_hyperparams(opt_state)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"set_hyperparams: {unknown} not in the optimizer state; it holds {sorted(known)} "
            "(a phase table takes these and the step's own exaggeration and dof). Wrap the "
            "optimizer with optax.inject_hyperparams (tsnejax.optim.make_optimizer does) to "
            "expose them, or leave them out of the phase table."
        )

    def cast(old: Array, new: Any) -> Array:
        new = jnp.asarray(new, jnp.result_type(old))
        if new.shape != jnp.shape(old):
            raise ValueError(f"set_hyperparams: shape {new.shape} != stored {jnp.shape(old)}.")
        return new

    def replace(x: Any) -> Any:
        if _is_injected(x):
            hp = {k: cast(v, values[k]) if k in values else v for k, v in x.hyperparams.items()}
            return x._replace(hyperparams=hp)
        return x

    return jax.tree.map(replace, opt_state, is_leaf=_is_injected)


def _scale(learning_rate_scale: float) -> optax.GradientTransformation:
    return optax.scale(learning_rate_scale)


def scale_learning_rate(scale: float = 1.0) -> optax.GradientTransformation:
    """Multiply updates by an injected ``learning_rate_scale`` (settable per phase).

    How an Optax object given by the user gets a learning rate per phase: its updates are
    scaled by what the ``"auto"`` rule would change (1/12 during early exaggeration under the
    openTSNE rule), see :mod:`tsnejax.config`.
    """
    return optax.inject_hyperparams(_scale)(learning_rate_scale=scale)


def check_drivable(transform: optax.GradientTransformation, dim: int = 2) -> Any:
    """Raise ``ValueError`` naming ``optimizer`` unless ``transform`` takes the loop's calls,
    ``init(Y)`` and ``update(gradient, state, Y)`` on an ``(8, dim)`` float32 array; returns the
    state it made. Any failure would otherwise surface from inside the compiled loop, as the
    transformation's own exception (an AttributeError for optax.lookahead's params)."""
    params = jnp.zeros((8, dim), jnp.float32)
    try:
        state = transform.init(params)
        transform.update(jnp.full_like(params, 1e-4), state, params)
    except Exception as err:  # noqa: BLE001 - re-raised with the parameter named
        raise ValueError(_cannot_drive(err)) from err
    return state


def scales_with_gradient(transform: optax.GradientTransformation, dim: int = 2) -> bool:
    """Whether ``transform``'s first update grows in proportion to the gradient (SGD-like)
    rather than staying the same size (Adam-, Lion-like), probed on a small random problem.

    The probe gradients are tiny (norm ~1e-3), so a clipping stage in a chain does not act.
    """
    params = jnp.zeros((8, dim), jnp.float32)
    g = 1e-4 * jax.random.normal(jax.random.key(0), params.shape, jnp.float32)

    def first_move(grad: Array) -> Array:
        """The first non-zero update for a constant gradient: a wrapper that accumulates
        (``optax.MultiSteps``) returns zeros until its k-th step, and 0 / 0 read as "does
        not scale", which took the early phase's 1/12 step scale off an SGD inside it."""
        st = state
        for _ in range(16):
            upd, st = transform.update(grad, st, params)
            if bool(jnp.any(upd != 0)):
                break
        return upd

    state = check_drivable(transform, dim)
    small = first_move(g)
    large = first_move(10.0 * g)
    ratio = float(jnp.linalg.norm(large) / jnp.maximum(jnp.linalg.norm(small), 1e-30))
    return ratio > 3.0  # 10 for proportional updates, ~1 for normalised ones


def _cannot_drive(err: Exception) -> str:
    """Why the loop cannot drive an Optax transformation whose probe update raised ``err``."""
    why = f"{type(err).__name__}: {err}"
    text = (
        "optimizer: this Optax transformation fails on the update the t-SNE loop makes, "
        f"init(Y) then update(gradient, state, Y) with Y the (n, d) embedding array ({why})."
    )
    if isinstance(err, TypeError) or "fn must be provided" in str(err):
        # optax.lbfgs, polyak_sgd, contrib.momo, reduce_on_plateau, sophia: missing value=...
        return text + (
            " Line searches, Polyak step sizes, plateau rules and curvature estimates need the "
            "loss value or function, which the gradient methods do not compute; use a "
            "transformation without one (e.g. optax.scale_by_lbfgs() in a chain instead of "
            "optax.lbfgs(), optax.sgd instead of optax.polyak_sgd)."
        )
    return text + (
        " Transformations that need params of another structure (optax.lookahead's "
        "LookaheadParams) or extra update arguments cannot be driven; wrap it so that it takes "
        "the array, or use a transformation that does."
    )


def _sgd(learning_rate: ScalarOrSchedule, momentum: float = 0.8, nesterov: bool = False):
    return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


#: Optimizers by name, with the static (non-injected) arguments of each. Every entry is tested
#: by tests/test_optim_registry.py (lowers KL on digits, keeps dtype, jit, vmap, no recompile).
OPTIMIZERS: dict[str, tuple[Callable[..., optax.GradientTransformation], tuple[str, ...]]] = {
    "classic": (classic, ("gains_rule",)),
    "sgd": (_sgd, ("nesterov",)),
    "adam": (optax.adam, ()),
    "nadam": (optax.nadam, ()),
    "rmsprop": (optax.rmsprop, ("centered", "nesterov")),
    "adabelief": (optax.adabelief, ()),
    "lion": (optax.lion, ()),
}
#: Optimizers whose step does not scale with the gradient: their learning rate is a length in
#: embedding units per step, so the N-dependent ``"auto"`` rules do not apply to them.
ADAPTIVE = frozenset({"adam", "nadam", "rmsprop", "adabelief", "lion"})


def as_transformation(optimizer: Any, accepted: str) -> optax.GradientTransformation:
    """``optimizer`` as an Optax ``GradientTransformation``: itself, or what a wrapper object
    makes of itself (``optax.MultiSteps(...).gradient_transformation()``; the object used to be
    refused). Anything else raises a ValueError saying what is ``accepted``."""
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    make = getattr(optimizer, "gradient_transformation", None)
    if callable(make):
        return make()
    hint = ""
    if callable(optimizer) and hasattr(optimizer, "__name__"):  # optax.adam, not optax.adam(...)
        hint = (
            f" ({optimizer.__name__!r} is a function; if it makes a transformation, call it: "
            "optax.adam(1.0), not optax.adam)"
        )
    raise ValueError(
        f"optimizer must be {accepted} or an Optax transformation; got "
        f"{type(optimizer).__name__}{hint}."
    )


def make_optimizer(name: str, **kwargs: Any) -> optax.GradientTransformation:
    """A registry optimizer with its numeric arguments injected (readable, settable, vmappable).

    ``make_optimizer("adam", learning_rate=1.0)`` is
    ``optax.inject_hyperparams(optax.adam)(learning_rate=1.0)``. Unknown names or arguments
    raise ``ValueError`` listing the valid ones.
    """
    check_option("optimizer", name, OPTIMIZERS)
    factory, static = OPTIMIZERS[name]
    params = check_optimizer_args(name, kwargs)
    if "learning_rate" not in kwargs and params["learning_rate"].default is inspect.Parameter.empty:
        raise ValueError(f"optimizer {name!r} needs learning_rate=...")
    return optax.inject_hyperparams(factory, static_args=static)(**kwargs)


def check_optimizer_args(name: str, kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Raise unless ``kwargs`` are arguments of the registry optimizer ``name`` and those it
    takes as numbers are finite numbers, arrays or schedules (a string such as ``b1="x"`` or
    ``learning_rate="3"`` used to fail inside Optax's update, a NaN to diverge). Returns the
    factory's parameters."""
    params = inspect.signature(OPTIMIZERS[name][0]).parameters
    bad = sorted(set(kwargs) - set(params))
    if bad:
        raise ValueError(f"optimizer {name!r} has no argument {bad}; valid: {sorted(params)}.")
    for key, value in kwargs.items():
        default = params[key].default
        numeric = default is inspect.Parameter.empty or (
            isinstance(default, int | float) and not isinstance(default, bool)
        )
        if (
            not numeric
            or value is None
            or callable(value)
            or isinstance(value, jax.Array | np.ndarray)
        ):
            continue  # None switches an option off (classic's max_step_norm)
        number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
        if not (number and np.isfinite(value)):
            raise ValueError(
                f"optimizer {name!r}: {key}={value!r} must be a finite number or a schedule."
            )
        low, high, closed = _ARG_RANGES.get(key, (-np.inf, np.inf, True))
        if not ((low <= value if closed else low < value) and value < high):
            where = f"in [{low:g}, {high:g})" if closed else f"> {low:g}"
            raise ValueError(f"optimizer {name!r}: {key}={value!r} must be {where}.")
    return params


#: Ranges of the registry optimizers' numeric arguments (``(low, high, low included)``): Adam's
#: ``b1=2`` or classic's ``min_gain=-1`` used to run to nonsense without a word.
_ARG_RANGES = {
    **dict.fromkeys(("momentum", "b1", "b2", "decay"), (0.0, 1.0, True)),
    **dict.fromkeys(
        ("eps", "eps_root", "min_gain", "weight_decay", "initial_scale"), (0.0, np.inf, True)
    ),
    **dict.fromkeys(("learning_rate", "max_step_norm", "max_grad_norm"), (0.0, np.inf, False)),
}


def parse_optimizer_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"adam:learning_rate=2,b1=0.8"`` -> ``("adam", {"learning_rate": 2.0, "b1": 0.8})``.

    :func:`tsnejax._spec.parse_spec` with the optimizer registry.
    """
    return parse_spec(spec, "optimizer", OPTIMIZERS)
