"""The compiled chunk behind :func:`tsnejax.run.optimize`: a ``fori_loop`` of steps with a
traced trip count, its batched forms (``vmap`` or ``lax.map`` over trials, ``shard_map`` over a
mesh), and the state types it carries."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tsnejax._checks import check_option
from tsnejax._compile import Compiled, compile_ahead, compiled
from tsnejax._types import Array
from tsnejax.schedules import STEP_INPUTS, is_static_number, values_at

__all__ = [
    "TSNEState",
    "StepInfo",
    "BATCH_MODES",
    "chunk_fn",
    "chunk_program",
    "join_grids",
    "resolve_batch",
    "split_values",
    "static_values",
    "pad_trials",
    "grad_norm",
    "record_shapes",
]


class TSNEState(NamedTuple):
    """Carried through the loop (a leading trial axis on every leaf in a batched run)."""

    embedding: Array  # (n, d)
    opt_state: optax.OptState
    iteration: Array  # shape=(), int32: iterations done so far


class StepInfo(NamedTuple):
    """Per-step diagnostics (returned, never fed back)."""

    finite: Array  # bool: embedding and gradient finite, and no exploded step (optim)
    grad_norm: Array  # Frobenius norm of the (scaled) gradient
    cause: Array  # int32: why the step is not finite (tsnejax._diverge.CAUSES; 0 = it is)
    # norm of gains * gradient with the classic optimizer (scikit-learn's grad_norm), else of
    # the gradient: what stopping rules read
    gained_norm: Array


def grad_norm(state: TSNEState, info: StepInfo) -> Array:
    """The default record: the gradient norm of each step."""
    del state
    return info.grad_norm


def chunk_fn(stepper: Any, max_steps: int, static: dict, grid: Hashable, record: Callable):
    """``(state, P, values, active, n_steps, want_kl) -> (state, ok, bad_at, bad_cause, records,
    kl, norm)`` for one state (``norm``: the last step's ``gained_norm``, for stopping rules);
    ``static`` holds the phase's schedules and a compiled-in dof."""

    def chunk(state, P, values, active, n_steps, want_kl):
        merged = {**static, **values}
        shapes = jax.eval_shape(record, state, _info0(state.embedding.dtype))
        buf = jax.tree.map(lambda s: jnp.zeros((max_steps, *s.shape), s.dtype), shapes)

        def body(i, carry):
            st, ok, bad_at, bad_cause, buf, norm = carry
            new, info = stepper.step(st, P, values_at(merged, st.iteration), grid)
            good = ok & info.finite
            # Freeze on the last finite state so the host can report and save it.
            st = jax.tree.map(lambda a, b: jnp.where(good, a, b), new, st)
            bad_at = jnp.where(ok & ~info.finite, new.iteration, bad_at)
            bad_cause = jnp.where(ok & ~info.finite, info.cause, bad_cause)
            # A frozen trial's steps (run by vmap, undone above) record zeros, as under map.
            rec = jax.tree.map(lambda r: jnp.where(ok, r, jnp.zeros_like(r)), record(new, info))
            buf = jax.tree.map(lambda b, r: b.at[i].set(r), buf, rec)
            norm = jnp.where(good, info.gained_norm.astype(norm.dtype), norm)
            return st, good, bad_at, bad_cause, buf, norm

        nan = jnp.asarray(jnp.nan, state.embedding.dtype)
        init = (state, active, jnp.int32(-1), jnp.int32(0), buf, nan)
        state, ok, bad_at, bad_cause, buf, norm = jax.lax.fori_loop(0, n_steps, body, init)
        dof = values_at(merged, state.iteration).get("dof", STEP_INPUTS["dof"])
        # The KL of the chunk's last embedding, in the same program (2 % of a 50-step chunk).
        kl = jax.lax.cond(
            want_kl,
            lambda: stepper.kl_divergence(state.embedding, P, dof, grid).astype(nan.dtype),
            lambda: nan,
        )
        return state, ok, bad_at, bad_cause, buf, kl, norm.astype(nan.dtype)

    return chunk


def _info0(dtype: Any) -> StepInfo:
    zero = jnp.zeros((), dtype)
    return StepInfo(jnp.bool_(True), zero, jnp.int32(0), zero)


def record_shapes(record: Callable, state: TSNEState, batched: bool) -> Any:
    """What ``record`` returns for one step of ``state`` (a trial's, in a batch), as shapes
    (``jax.ShapeDtypeStruct`` leaves), found without running it."""
    one = jax.tree.map(lambda a: a[0], state) if batched else state
    return jax.eval_shape(record, one, _info0(one.embedding.dtype))


def join_grids(grids: Sequence[Hashable]) -> Hashable:
    """The grid that serves every member of a batch: the largest (grids are size tuples)."""
    real = [g for g in grids if g is not None]
    return max(real) if real else None


def static_values(values: dict) -> dict:
    """The compiled-in part of a phase's ``values``: schedules and a numeric dof."""
    return {
        k: float(v) if k == "dof" and not callable(v) else v
        for k, v in values.items()
        if callable(v) or (k == "dof" and is_static_number(v))
    }


def split_values(values: dict, dtype: Any, n_trials: int | None) -> tuple[dict, dict]:
    """``(static, traced)``: schedules and a numeric dof are compiled in; other numbers are
    arrays (``(n_trials,)`` in a batch)."""
    static, traced = static_values(values), {}
    for k, v in values.items():
        if k in static:
            continue
        if n_trials is None:
            traced[k] = jnp.asarray(v, dtype)
        else:
            a = jnp.asarray(v, dtype)
            if a.ndim == 1 and 0 < a.shape[0] < n_trials:  # padded batch: repeat the last
                a = jnp.concatenate([a, jnp.repeat(a[-1:], n_trials - a.shape[0])])
            traced[k] = jnp.broadcast_to(a, (n_trials,))
    return static, traced


def over_trials(fn: Callable, P_axis: int | None) -> Callable:
    """``fn`` over the trial axis one trial after another inside one program (``lax.map``).
    A frozen trial (diverged, or stopped by a rule) runs no steps: its chunk costs its KL."""

    def mapped(state, P, values, active, n_steps, want_kl):
        def one(xs):
            st, p, v, a = xs
            steps = jnp.where(a, n_steps, 0)
            return fn(st, p if P_axis == 0 else P, v, a, steps, want_kl)

        return jax.lax.map(one, (state, P if P_axis == 0 else None, values, active))

    return mapped


def chunk_program(
    stepper, chunk_size, static, grid, record, args, n_trials, mesh, P_axis, batch, ahead=False
) -> Compiled | bool:
    """The chunk's compiled program (:func:`tsnejax._compile.compiled`), or with ``ahead`` start
    compiling it for a later chunk (:func:`tsnejax._compile.compile_ahead`: whether it started)."""
    static_key = tuple(sorted(static.items(), key=lambda kv: kv[0]))
    key = (chunk_size, static_key, grid, record, n_trials is not None, P_axis, id(mesh), batch)

    def build():
        fn = chunk_fn(stepper, chunk_size, static, grid, record)
        if n_trials is None:
            return fn
        axes = (0, P_axis, 0, 0, None, None)
        fn = jax.vmap(fn, in_axes=axes) if batch == "vmap" else over_trials(fn, P_axis)
        if mesh is not None:
            spec = jax.sharding.PartitionSpec
            specs = tuple(spec("trials") if a == 0 else spec() for a in axes)
            fn = jax.shard_map(
                fn, mesh=mesh, in_specs=specs, out_specs=spec("trials"), check_vma=False
            )
        return fn

    if ahead:
        return compile_ahead(stepper, key, build, args, keep=mesh)
    return compiled(stepper, key, build, args, keep=mesh)


BATCH_MODES = ("auto", "vmap", "map")


def resolve_batch(batch: str, platform: str | None = None) -> str:
    """``"auto"`` -> ``"map"`` on a CPU, ``"vmap"`` on an accelerator (see :func:`optimize`)."""
    check_option("batch", batch, BATCH_MODES)
    if batch != "auto":
        return batch
    platform = jax.default_backend() if platform is None else platform
    return "map" if platform == "cpu" else "vmap"


def pad_trials(tree: Any, size: int) -> Any:
    """Pad the trial axis to ``size`` with copies of the last trial (dropped afterwards)."""

    def pad(x):
        extra = size - x.shape[0]
        return x if extra <= 0 else jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)
