"""Checks of what the loop is given (:mod:`tsnejax.run`): the optimizer, the start, the
updates, callbacks, ``record``, sharded states and a batch's P. Each raises ``ValueError``
naming the parameter and the fix, before anything is traced where it can."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import (
    check_finite_rows,
    check_int,
    check_positive,
    check_scalar,
    float_dtype,
    numeric_array,
)
from tsnejax.schedules import Phases


def check_transformation(optimizer: Any, name: str = "optimizer") -> Any:
    """Raise unless ``optimizer`` is an Optax ``GradientTransformation`` (``init``, ``update``);
    a name or number used to pass :func:`tsnejax.run.build_step` and fail inside the loop."""
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise ValueError(
            f"{name} must be an optax.GradientTransformation, got {type(optimizer).__name__} "
            f"{optimizer!r:.40}; e.g. tsnejax.optim.make_optimizer('classic', learning_rate=1.0, "
            "momentum=0.8) or optax.adam(1.0)."
        )
    return optimizer


def check_start(embedding: Any) -> Any:
    """A start embedding, ``(n, d)`` or ``(n_trials, n, d)``, as a float array.

    Integers become floats (they failed inside the gradient); NaN or inf rows of a concrete
    array are named (they diverged at iteration 1 with a message blaming the learning rate).
    """
    if not isinstance(embedding, jax.Array):
        numeric_array("the start embedding", embedding)
    Y = jnp.asarray(embedding)
    if Y.ndim not in (2, 3):
        raise ValueError(
            f"the start embedding must be (n, d) or (n_trials, n, d), got shape {Y.shape}; "
            "a 1-D embedding is Y[:, None]."
        )
    if not jnp.issubdtype(Y.dtype, jnp.floating):
        Y = Y.astype(float_dtype())
    if not isinstance(Y, jax.core.Tracer) and getattr(Y, "is_fully_addressable", True):
        check_finite_rows(
            np.asarray(Y).reshape(-1, Y.shape[-1]),
            "the start embedding",
            "start from finite values",
        )
    return Y


def check_update_shapes(updates: Any, params: Any) -> None:
    """At trace time: the optimizer's updates have the embedding's structure and shapes (an
    ``(n, 1)`` update was broadcast over every axis without a word)."""
    got = [jnp.shape(u) for u in jax.tree.leaves(updates)]
    want = [jnp.shape(p) for p in jax.tree.leaves(params)]
    if got != want:
        raise ValueError(
            f"the optimizer returned updates of shape {got} for an embedding of shape {want}; "
            "an Optax transformation must return one update per parameter, of its shape."
        )


def check_callbacks(callbacks: Any) -> list:
    """Callbacks as a list: one callable or a sequence of them (openTSNE takes both), each
    taking ``(iteration, kl, embedding)``."""
    if callbacks is None:
        return []
    if callable(callbacks):
        callbacks = [callbacks]
    if not isinstance(callbacks, Iterable) or isinstance(callbacks, str):
        raise ValueError(
            f"callbacks must be a callable or a sequence of callables, got "
            f"{type(callbacks).__name__}."
        )
    found = list(callbacks)
    for i, cb in enumerate(found):
        if not callable(cb):
            raise ValueError(
                f"callbacks[{i}] is {type(cb).__name__}, not callable; a callback is "
                "callback(iteration, kl, embedding) -> stop."
            )
        check_arity(f"callbacks[{i}]", cb, 3, "(iteration, kl, embedding)")
    return found


def check_callable(name: str, f: Any, form: str) -> Any:
    """Raise unless ``f`` is callable with the arguments ``form`` names."""
    if not callable(f):
        raise ValueError(f"{name} must be a function {form}, got {type(f).__name__} {f!r:.40}.")
    return check_arity(name, f, form.count(",") + 1, form)


def check_hooks(callbacks: Any, record: Any) -> None:
    """``fit``'s and ``fit_batch``'s ``callbacks`` and ``record``, checked before the kNN
    search (the loop checks them again)."""
    check_callbacks(callbacks)
    if record is not None:
        check_callable("record", record, "(state, info)")


def check_arity(name: str, f: Any, n_args: int, form: str) -> Any:
    """Raise unless ``f`` can be called with ``n_args`` positional arguments (a two-argument
    callback failed with Python's TypeError after the kNN search, P and the first chunk)."""
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):  # some builtins and C callables have none to read
        return f
    try:
        signature.bind(*range(n_args))
    except TypeError:
        raise ValueError(
            f"{name} must take {n_args} arguments {form}; its signature is {signature}."
        ) from None
    return f


def says_stop(i: int, answer: Any) -> bool:
    """A callback's answer as a bool (``None`` goes on), naming the callback when it is not
    one (an array's answer was NumPy's "truth value ... is ambiguous")."""
    try:
        return bool(answer)
    except (TypeError, ValueError):
        raise ValueError(
            f"callbacks[{i}] returned {type(answer).__name__} of shape {np.shape(answer)}; a "
            "callback returns True to stop the run, False or None to go on."
        ) from None


def check_state(state: Any) -> Any:
    """Raise unless ``state`` has a :class:`TSNEState`'s fields (the loop's and a checkpoint's
    input; "'NoneType' object has no attribute 'embedding'" from inside, or an empty save)."""
    if not all(hasattr(state, a) for a in ("embedding", "opt_state", "iteration")):
        raise ValueError(
            "state must be a TSNEState (tsnejax.init_state(Y0, optimizer), or a result's "
            f".state), got {type(state).__name__}."
        )
    return state


def check_loop_inputs(stepper: Any, state: Any, P: Any, chunk_size: Any) -> int:
    """``optimize``'s positional inputs have the forms it reads (a wrong one was Python's
    ``AttributeError`` — "'NoneType' object has no attribute 'allocate'" — or a shape error
    from inside ``jnp``); returns ``chunk_size``."""
    if not all(callable(getattr(stepper, a, None)) for a in ("step", "allocate", "kl_divergence")):
        raise ValueError(
            f"stepper must be what tsnejax.run.build_step(backend, optimizer) returns, got "
            f"{type(stepper).__name__}."
        )
    check_state(state)
    leaves = jax.tree.leaves(P)
    kinds = [
        getattr(getattr(x, "dtype", None), "kind", None) or np.asarray(x).dtype.kind for x in leaves
    ]
    if not leaves or any(k not in "biuf" for k in kinds) or all(np.ndim(x) == 0 for x in leaves):
        raise ValueError(
            "P must be the affinities: tsnejax.Affinities (tsnejax.perplexity_affinities(knn) "
            "or a result's .affinities), or the arrays a custom backend reads; got "
            f"{type(P).__name__}."
        )
    return check_int("chunk_size", chunk_size, minimum=1)


def check_step_options(gradient_scale: Any, project: Any) -> None:
    """``build_step``'s ``gradient_scale`` (a number or array: it was multiplied in as it came)
    and ``project`` (a callable: "'str' object is not callable" at the first step)."""
    check_scalar("gradient_scale", gradient_scale, check_positive)
    if project is not None and not callable(project):
        raise ValueError(f"project must be a callable (Y, P) -> Y or None, got {project!r:.40}.")


def check_loop_options(phases: Any, checkpoint: Any, mesh: Any, P_axis: Any) -> Any:
    """``optimize``'s keyword objects have the forms it reads (each was an ``AttributeError``
    — "'str' object has no attribute 'values'" — or "unhashable type: 'list'"); returns the
    phase table (``None``: exaggeration 1 throughout; a mapping: ``Phases.of`` of it, where it
    was "'builtin_function_or_method' is not subscriptable")."""
    if not (phases is None or isinstance(phases, Mapping) or hasattr(phases, "values")):
        raise ValueError(
            "phases must be a tsnejax.schedules.Phases (Phases.of({0: {...}, 250: {...}})), "
            f"its mapping, or None; got {type(phases).__name__}."
        )
    if checkpoint is not None and not (
        hasattr(checkpoint, "every") and callable(getattr(checkpoint, "save", None))
    ):
        raise ValueError(
            "checkpoint must have .every and .save(state, **extra) (tsnejax.checkpoint."
            f"Checkpoint(path, every)), got {type(checkpoint).__name__}."
        )
    if mesh is not None and not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if not (P_axis is None or isinstance(P_axis, str | int)):
        raise ValueError(f"P_axis must be 'auto', 0 or None, got {P_axis!r:.40}.")
    if phases is None:
        return Phases.of(exaggeration=1.0)
    return Phases.of(phases) if isinstance(phases, Mapping) else phases


def check_state_points(P: Any, state: Any, mesh: Any) -> None:
    """Raise unless ``P`` is a pytree of arrays describing the state's points (when it says),
    and a batched state's ``mesh`` has the axis ``"trials"`` (it was a ``shard_map`` error)."""
    n_y, sharded = state.embedding.shape[-2], mesh is not None
    if sharded and np.ndim(state.iteration) == 1 and "trials" not in mesh.axis_names:
        raise ValueError(
            f"mesh has axes {tuple(mesh.axis_names)}; a batch of trials is split over an axis "
            "named 'trials', e.g. jax.make_mesh((n_devices,), ('trials',))."
        )
    if hasattr(P, "tocsr") or hasattr(P, "todense"):  # scipy: not a pytree of arrays
        raise ValueError(
            "P must be tsnejax.Affinities (a pytree of arrays), got a scipy matrix; convert it "
            "with tsnejax.affinity.precomputed_affinities(P)."
        )
    rows = getattr(P, "neighbors", None)
    if not sharded and rows is not None and rows.shape[-2] != n_y:  # was a broadcasting error
        raise ValueError(
            f"P describes {rows.shape[-2]} points but the state's embedding has {n_y} rows; "
            "pass the affinities of the embedded points."
        )


def check_P_axis(P_axis: Any, P: Any, n_trials: int) -> int | None:
    """A batched run's ``P_axis`` (0: per-trial P stacked on a leading axis; None: shared),
    ``"auto"`` read from an :class:`~tsnejax.Affinities`' shape. A shared P under the old
    default 0 failed inside ``lax.scan`` ("different leading axis sizes: 3, ..., 400")."""
    if P_axis not in ("auto", 0, None):
        raise ValueError(f"P_axis must be 'auto', 0 or None, got {P_axis!r}.")
    rows = getattr(P, "neighbors", None)
    if rows is None or np.ndim(rows) not in (2, 3):  # another pytree: its owner says
        return 0 if P_axis == "auto" else P_axis
    stacked = np.ndim(rows) == 3
    if P_axis == "auto":
        P_axis = 0 if stacked else None
    if P_axis == 0 and not stacked:
        raise ValueError(
            "P_axis=0 asks for one P per trial, but P has no trial axis (neighbors "
            f"{tuple(np.shape(rows))}); pass P_axis=None (or 'auto') to share it, or stack "
            "per-trial P with tsnejax.batch.stack_affinities."
        )
    if P_axis is None and stacked:
        raise ValueError(
            f"P_axis=None shares one P, but P is stacked (neighbors {tuple(np.shape(rows))}); "
            "pass P_axis=0 (or 'auto')."
        )
    if stacked and np.shape(rows)[0] != n_trials:
        raise ValueError(
            f"P is stacked for {np.shape(rows)[0]} trials but the state has {n_trials}; "
            "stack one P per trial (tsnejax.batch.stack_affinities)."
        )
    return P_axis
