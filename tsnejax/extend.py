"""Go on optimising a finished run with new values: openTSNE's ``TSNEEmbedding.optimize``.

``tsnejax.fit(key, X).optimize(250, exaggeration=4)`` runs 250 more iterations from where the
run stands (embedding, gains, velocity, iteration count), at the run's last phase values with
the ones given replaced, and returns a new :class:`tsnejax.TSNEResult` whose history,
records and phase table are the whole run's. Nothing is modified in place (openTSNE's
``inplace=False``); the compiled step is the run's own, so a program compiles only for a
value compiled in (a new dof, a schedule) or a grid the run had not used.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax import shard
from tsnejax._checks import check_dof, check_int, check_momentum, check_positive
from tsnejax._diverge import CAUSES
from tsnejax._loop_host import trial_meta
from tsnejax.build import ADAPTIVE_AUTO_LEARNING_RATE
from tsnejax.config import FLAT_FIELDS, TSNEConfig
from tsnejax.optim import ADAPTIVE, get_hyperparams
from tsnejax.run import Stepper, optimize
from tsnejax.schedules import (
    Phases,
    TrialPhases,
    auto_learning_rate,
    check_phase_value,
    resolve_learning_rate,
)

__all__ = [
    "optimize_more",
    "optimize_batch_more",
    "next_values",
    "check_more_values",
    "extended",
    "standing_kl",
    "standing_kls",
    "trial_table",
]


def standing_kl(stepper: Stepper, Y: Any, P: Any, dof: Any) -> float:
    """The backend's KL of ``Y`` (nats), for a run whose loop reported none (it ran nothing)."""
    return float(jax.jit(stepper.kl_divergence, static_argnums=3)(Y, P, dof, stepper.allocate(Y)))


def standing_kls(
    stepper: Stepper, state: Any, P: Any, P_axis: int | None, phases: Any, diverged: Any
) -> np.ndarray:
    """Each trial's KL where it stands (nan where it diverged), when the loop ran nothing."""
    out = []
    for b, it in enumerate(np.asarray(state.iteration)):
        if diverged is not None and diverged[b] >= 0:
            out.append(np.nan)
            continue
        Y = state.embedding[b]
        Pb = P if P_axis is None else jax.tree.map(lambda a, b=b: a[b], P)
        dof = np.asarray(trial_table(phases, b).at(int(it)).get("dof", 1.0))
        out.append(standing_kl(stepper, Y, Pb, jnp.asarray(dof, Y.dtype)))
    return np.asarray(out, np.float64)


def trial_table(phases: Phases | TrialPhases, b: int) -> Phases:
    """Trial ``b``'s own table of a batch's stacked ``Phases`` or ``TrialPhases``."""
    if isinstance(phases, TrialPhases):
        return phases.tables[b]
    pick = [{k: v[b] if np.ndim(v) == 1 else v for k, v in vals.items()} for vals in phases.values]
    return Phases(phases.starts, tuple(pick))


def next_values(
    values: dict[str, Any], config: Any, n: int, given: dict[str, Any]
) -> dict[str, Any]:
    """The phase values a run goes on with: ``values`` (its last phase's) with ``given``
    (``None`` entries left out) in place. ``learning_rate="auto"``, or an exaggeration given
    under an ``"auto"`` learning rate, takes ``config``'s rule at the new exaggeration
    (openTSNE's ``n / exaggeration``), as each ``optimize`` call of openTSNE recomputes it."""
    values = dict(values)
    given = {k: v for k, v in given.items() if v is not None}
    for name, check in _CHECKS.items():
        if name in given and not (name == "learning_rate" and isinstance(given[name], str)):
            given[name] = check(name, given[name])
    lr = given.get("learning_rate")
    auto = lr == "auto" or (
        lr is None
        and "exaggeration" in given
        and config is not None
        and config.optimizer.learning_rate == "auto"
        and "learning_rate" in values
    )
    if isinstance(lr, str) and lr != "auto":
        given["learning_rate"] = float(resolve_learning_rate(lr, n))
    elif auto:
        if config is None or config.optimizer.is_object:
            raise ValueError(
                "learning_rate='auto' needs the run's config with a registry optimizer (an "
                "Optax object's learning rate is its own): pass a number."
            )
        o, ex = config.optimizer, given.get("exaggeration", values["exaggeration"])
        if callable(ex):
            raise ValueError(
                "learning_rate='auto': the run's exaggeration is a schedule where it stands; "
                "give exaggeration= too (or a learning_rate number)."
            )
        ex = float(ex)
        if o.transform in ADAPTIVE:
            given["learning_rate"] = float(ADAPTIVE_AUTO_LEARNING_RATE[o.transform])
        else:
            rule = auto_learning_rate(
                n,
                lambda step: ex,
                rule=o.learning_rate_rule,
                early_exaggeration=config.schedule.early_exaggeration,
            )
            given["learning_rate"] = float(rule(0))
    return {**values, **given}


#: The phase values checked as a config checks them (an injected hyperparameter is the
#: optimizer's to judge).
_CHECKS = {
    "exaggeration": check_positive,
    "learning_rate": check_positive,
    "momentum": check_momentum,
    "dof": check_dof,
}


def check_more_values(values: dict[str, Any], opt_state: Any) -> None:
    """Refuse ``optimize`` keywords that are not phase values: a setting the run's step was
    built with (``optimizer``, ``negative_gradient_method``) was Python's ``TypeError`` or
    "could not convert string to float" from inside the loop."""
    known = set(get_hyperparams(opt_state))
    fixed = sorted(k for k in values if k not in known and (k in FLAT_FIELDS or k == "optimizer"))
    if fixed:
        raise ValueError(
            f"optimize: {fixed} are fixed when the run's step is built; optimize goes on with the "
            "run's own step and takes phase values (exaggeration, learning_rate, momentum, dof, "
            f"and the optimizer's injected {sorted(known)}). To change the others, start a new "
            "run from this embedding: tsnejax.fit(key, X, config.replace(...), "
            "initialization=result.embedding)."
        )
    for name, v in values.items():
        if name in known:
            check_phase_value(name, v)


def extended(table: Phases, start: int, values: dict[str, Any]) -> Phases:
    """``table``'s phases before ``start``, then ``values`` from ``start`` on."""
    kept = [i for i, s in enumerate(table.starts) if s < start]
    return Phases(
        tuple(table.starts[i] for i in kept) + (start,),
        tuple(table.values[i] for i in kept) + (values,),
    )


def _call_stats(out: Any, grids: list, t_start: float) -> tuple[dict[str, float], list]:
    """This call's timings (compile time apart) and the run's grids with this call's added."""
    timings = {
        "compile": out.compile_seconds,
        "compile_ahead": out.ahead_seconds,
        "optimize": out.run_seconds,
        "total": time.perf_counter() - t_start,
    }
    return timings, list(grids) + [g for g in out.grids if g not in grids]


def optimize_more(
    result: Any,
    n_iter: int,
    *,
    exaggeration: float | None = None,
    learning_rate: float | str | None = None,
    momentum: float | None = None,
    dof: float | None = None,
    callbacks: Sequence[Any] = (),
    callbacks_every: int | None = None,
    record: Any = None,
    verbose: bool = False,
    **values: Any,
) -> Any:
    """``n_iter`` more iterations of ``result``'s run (see :meth:`tsnejax.TSNEResult.optimize`)."""
    n_iter = check_int("n_iter", n_iter, minimum=0)
    check_more_values(values, result.state.opt_state)
    t_start = time.perf_counter()
    n = result.affinities.n_points
    given = dict(
        values, exaggeration=exaggeration, learning_rate=learning_rate, momentum=momentum, dof=dof
    )
    start = int(result.total_iter)
    phase = next_values(result.phases.at(start), result.config, n, given)
    phases = extended(result.phases, start, phase)
    P, view = result.affinities, None
    mesh = getattr(result.state.embedding.sharding, "mesh", None)
    if mesh is not None and "points" in mesh.axis_names:  # a point-sharded run goes on sharded
        P, view = shard.shard_affinities(P, mesh), functools.partial(shard.gather_points, n=n)
    leaves = jax.tree.leaves(result.records)
    # The earlier records head this call's when both are the default gradient norms.
    head = leaves if record is None and len(leaves) == 1 and leaves[0].ndim == 1 else None
    out = optimize(
        result.stepper,
        result.state,
        P,
        n_iter,
        phases=phases,
        chunk_size=(result.config or TSNEConfig()).chunk_size,
        callbacks=callbacks,
        callbacks_every=callbacks_every,
        record=record,
        verbose=verbose,
        host_embedding=view,
        resumed={"kl_history": result.kl_history, "records": head},
    )
    Y = out.state.embedding
    end = int(out.state.iteration)
    if out.kl_history and out.kl_history[-1][0] == end:
        kl = out.kl_history[-1][1]
    else:
        kl = standing_kl(result.stepper, Y, P, phases.at(end)["dof"])
    timings, grids = _call_stats(out, result.grids, t_start)
    return result._replace(
        embedding=np.asarray(Y) if view is None else view(Y),
        kl_divergence=kl,
        total_iter=end,
        state=out.state,
        kl_history=out.kl_history,
        timings=timings,
        grids=grids,
        n_compiles=out.n_compiles,
        phases=phases,
        records=out.records,
    )


def optimize_batch_more(
    result: Any,
    n_iter: int,
    *,
    exaggeration: Any = None,
    learning_rate: Any = None,
    momentum: Any = None,
    dof: Any = None,
    callbacks: Sequence[Any] = (),
    callbacks_every: int | None = None,
    record: Any = None,
    verbose: bool = False,
    mesh: Any = None,
    batch: str = "auto",
    **values: Any,
) -> Any:
    """``n_iter`` more iterations of every finite trial of a batch (see
    :meth:`tsnejax.BatchResult.optimize`); a value is one for all trials or one per trial."""
    n_iter = check_int("n_iter", n_iter, minimum=0)
    check_more_values(values, result.state.opt_state)
    t_start = time.perf_counter()
    n_trials = len(result.embeddings)
    finite = np.asarray(result.diverged_at) < 0
    at = np.asarray(result.state.iteration)
    if finite.any() and len(set(at[finite].tolist())) > 1:
        raise ValueError(
            f"BatchResult.optimize: the finite trials stand at iterations {at.tolist()}; a "
            "batch goes on when they share one (a stopping rule or their own lengths ended "
            "them apart): continue them apart, e.g. tsnejax.fit with each trial's config."
        )
    start = int(at[finite][0]) if finite.any() else int(at.max())
    given = dict(
        values, exaggeration=exaggeration, learning_rate=learning_rate, momentum=momentum, dof=dof
    )
    per_trial = {}
    for k, v in given.items():
        if v is not None and not isinstance(v, str) and np.ndim(v) == 1:
            if len(v) != n_trials:
                raise ValueError(f"{k} has {len(v)} values for {n_trials} trials.")
            per_trial[k] = list(v)
    n = result.affinities.n_points
    configs = result.configs or (None,) * n_trials
    tables = []
    for b in range(n_trials):
        mine = {k: per_trial[k][b] if k in per_trial else v for k, v in given.items()}
        table = trial_table(result.phases, b)
        values_b = next_values(table.at(start), configs[b], n, mine)
        tables.append(extended(table, start, values_b))
    if isinstance(result.phases, TrialPhases):
        phases: Phases | TrialPhases = TrialPhases(tables)
    else:
        phases = Phases.stack(tables)
    diverged = np.asarray(result.diverged_at)
    causes = result.diverged_cause if result.diverged_cause is not None else [""] * n_trials
    stop_at = result.stop_rule_at if result.stop_rule_at is not None else [-1] * n_trials
    cause_ids = [CAUSES.index(str(c)) for c in causes]
    book = trial_meta(finite, diverged, cause_ids, np.asarray(stop_at), n_trials)
    state = result.state
    if len(getattr(getattr(state.embedding, "sharding", None), "device_set", ())) > 1:
        # Laid out over a trials mesh: taken back uncommitted, as a fresh state is, so that
        # the loop places it for the mesh given (or for none).
        state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), state)
    leaves = jax.tree.leaves(result.records)
    head = leaves if record is None and len(leaves) == 1 and leaves[0].ndim == 2 else None
    chunk = (configs[0] or TSNEConfig()).chunk_size
    out = optimize(
        result.stepper,
        state,
        result.affinities,
        n_iter if finite.any() else 0,
        phases=phases,
        chunk_size=chunk,
        callbacks=callbacks,
        callbacks_every=callbacks_every,
        record=record,
        verbose=verbose,
        mesh=mesh,
        batch=batch,
        resumed={"kl_history": result.kl_history, "records": head, "trials": book},
    )
    end = int(np.asarray(out.state.iteration).max())
    if out.kl_history and out.kl_history[-1][0] == end and n_iter > 0:
        kl = np.asarray(out.kl_history[-1][1], np.float64)
    else:
        P_axis = 0 if np.ndim(result.affinities.neighbors) == 3 else None
        kl = standing_kls(
            result.stepper, out.state, result.affinities, P_axis, phases, out.diverged_at
        )
    timings, grids = _call_stats(out, result.grids, t_start)
    return result._replace(
        embeddings=np.asarray(out.state.embedding),
        kl_divergence=kl,
        diverged_at=out.diverged_at,
        kl_history=out.kl_history,
        state=out.state,
        phases=phases,
        total_iter=max(int(result.total_iter), end),
        timings=timings,
        grids=grids,
        n_compiles=out.n_compiles,
        diverged_cause=out.diverged_cause,
        records=out.records,
    )
