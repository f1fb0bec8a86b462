"""Go on optimising a finished run with new values: openTSNE's ``TSNEEmbedding.optimize``.

``tsnejax.fit(key, X).optimize(250, exaggeration=4)`` runs 250 more iterations from where the
run stands (embedding, gains, velocity, iteration count), at the run's last phase values with
the ones given replaced, and returns a new :class:`tsnejax.TSNEResult` whose history,
records and phase table are the whole run's. Nothing is modified in place (openTSNE's
``inplace=False``); the compiled step is the run's own, so nothing recompiles unless a new
value is compiled in (a dof, a schedule).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from tsnejax import shard
from tsnejax._checks import check_int
from tsnejax.build import ADAPTIVE_AUTO_LEARNING_RATE
from tsnejax.optim import ADAPTIVE
from tsnejax.run import Stepper, optimize
from tsnejax.schedules import Phases, auto_learning_rate, resolve_learning_rate

__all__ = ["optimize_more", "next_values", "standing_kl"]


def standing_kl(stepper: Stepper, Y: Any, P: Any, dof: Any) -> float:
    """The backend's KL of ``Y`` (nats), for a run whose loop reported none (it ran nothing)."""
    return float(jax.jit(stepper.kl_divergence, static_argnums=3)(Y, P, dof, stepper.allocate(Y)))


def next_values(result: Any, n: int, given: dict[str, Any]) -> dict[str, Any]:
    """The phase values of the continuation: the run's last phase's, with ``given`` (``None``
    entries left out) in place. ``learning_rate="auto"``, or an exaggeration given under an
    ``"auto"`` learning rate, takes the config's rule at the new exaggeration (openTSNE's
    ``n / exaggeration``), as each :meth:`optimize` call of openTSNE recomputes it."""
    values = dict(result.phases.at(int(result.total_iter)))
    given = {k: v for k, v in given.items() if v is not None}
    config = result.config
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
        o, ex = config.optimizer, float(given.get("exaggeration", values["exaggeration"]))
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
    t_start = time.perf_counter()
    n = result.affinities.n_points
    given = dict(
        values, exaggeration=exaggeration, learning_rate=learning_rate, momentum=momentum, dof=dof
    )
    phase = next_values(result, n, given)
    start = int(result.total_iter)
    kept = [i for i, s in enumerate(result.phases.starts) if s < start]
    phases = Phases(
        tuple(result.phases.starts[i] for i in kept) + (start,),
        tuple(result.phases.values[i] for i in kept) + (phase,),
    )
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
        chunk_size=result.config.chunk_size if result.config is not None else 50,
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
    timings = {
        "compile": out.compile_seconds,
        "compile_ahead": out.ahead_seconds,
        "optimize": out.run_seconds,
        "total": time.perf_counter() - t_start,
    }
    grids = list(result.grids) + [g for g in out.grids if g not in result.grids]
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
