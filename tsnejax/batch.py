"""Many fits as one vmapped program: over keys, hyperparameters, perplexities.

:func:`fit_batch` is the batched :func:`tsnejax.fit`: one kNN graph, P for each distinct
affinity setting (calibrated on the first k columns of the shared graph and padded to one
shape), one initial embedding per key, and a single :func:`tsnejax.run.optimize` over the
stacked states, sharded over a ``Mesh`` axis ``"trials"`` when one is given. Configs may differ
in any dynamic setting (:data:`tsnejax.config.DYNAMIC_FIELDS`: learning rate, exaggerations,
momenta, dof, perplexity, initialization, iteration counts, stopping rules) but must share the
static signature. Trials with a stopping rule, or whose iteration counts differ, each keep
their own phase table and end at their own iteration (:mod:`tsnejax._staged_batch`); a trial
that has ended is frozen while the others go on. Each trial equals its own
:func:`tsnejax.fit` with the same key and config (exact kNN) up to float rounding, which early
exaggeration amplifies (docs/loop.md, "Batched states", has the measured sizes). With
``checkpoint=`` a batch killed mid-run resumes where its last save left it: each trial's state,
which trials are frozen (ended, stopped, diverged) and each stopping rule's record.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax import checkpoint as ck
from tsnejax._checks import check_key, outside_stacklevel
from tsnejax._loop_checks import check_hooks
from tsnejax._loop_host import batch_start
from tsnejax._staged_batch import TrialStages
from tsnejax.affinity import Affinities, as_affinities, pad_affinities
from tsnejax.build import (
    affinity_key,
    check_optimizer,
    config_perplexities,
    phase_table,
    stepper_for,
)
from tsnejax.config import TSNEConfig, static_signature
from tsnejax.extend import optimize_batch_more, standing_kls
from tsnejax.knn import KNNGraph, precomputed_knn
from tsnejax.knn_metric import check_input, graph_search
from tsnejax.pipeline import (
    affinities_from_graph,
    as_config,
    check_fit_memory,
    check_one_source,
    initial_embedding,
    precomputed_graph,
)
from tsnejax.run import Stepper, TSNEState, init_state, optimize
from tsnejax.schedules import Phases, TrialPhases
from tsnejax.stopping import check_staged, get_stopping

__all__ = ["BatchResult", "fit_batch", "shared_graphs", "stack_affinities"]


class BatchResult(NamedTuple):
    embeddings: np.ndarray  # (n_trials, n, d); a diverged trial's last finite embedding
    kl_divergence: np.ndarray  # (n_trials,) final KL (nan where diverged)
    diverged_at: np.ndarray  # (n_trials,) iteration of divergence, -1 where finite
    kl_history: list[tuple[int, np.ndarray]]
    state: TSNEState  # batched final state
    affinities: Affinities  # stacked (n_trials, ...) or shared
    # the stacked phase table; one table per trial (TrialPhases, ``.tables``) when trials
    # switch phase or end at their own iterations
    phases: Phases | TrialPhases
    method: str
    total_iter: int  # iterations of the longest trial (``trial_iter`` has each one's)
    timings: dict[str, float]
    grids: list
    n_compiles: int
    stepper: Stepper
    neighbors: KNNGraph | None
    # (n_trials,) why each diverged ("gradient", "update", "step"; "" where finite)
    diverged_cause: np.ndarray | None = None
    # (n_trials,) where each trial's main phase began (a stopping rule moves it)
    early_exaggeration_iter: np.ndarray | None = None
    # (n_trials,) where each trial's stopping rule stopped it (-1: it did not); None without
    stop_rule_at: np.ndarray | None = None
    # the checkpoint's iteration the batch went on from (0: fresh)
    resumed_from: int = 0
    # per trial and step, what ``record`` returned: (n_trials, total_iter, ...) (default: the
    # gradient norm); zeros after a trial froze: its own are ``records[b, :trial_iter[b]]``
    records: Any = None
    configs: tuple[TSNEConfig, ...] | None = None  # each trial's config

    def optimize(self, n_iter: int, **values: Any) -> BatchResult:
        """``n_iter`` more iterations of every finite trial from where the batch stands, as
        :meth:`tsnejax.TSNEResult.optimize` goes on with one run: a new result.

        Keyword values (``exaggeration``, ``learning_rate``, ``momentum``, ``dof``, an
        injected hyperparameter) are one number for every trial or one per trial; the
        finite trials must share their iteration (diverged ones stay frozen). ``callbacks``,
        ``callbacks_every``, ``record``, ``verbose``, ``mesh`` (the trials' mesh, to stay
        sharded) and ``batch`` as :func:`fit_batch` takes them.
        """
        return optimize_batch_more(self, n_iter, **values)

    @property
    def trial_iter(self) -> np.ndarray:
        """``(n_trials,)`` iterations each trial ran (both phases): its own length unless its
        stopping rule ended it earlier, or where it diverged (a frozen trial's step count)."""
        return np.asarray(self.state.iteration, np.int64)


def stack_affinities(Ps: Sequence[Affinities]) -> Affinities:
    """Affinities padded to one shape and stacked on a leading trial axis."""
    width = max(P.neighbors.shape[1] for P in Ps)
    n_extra = max(P.extra_neighbors.shape[0] for P in Ps)
    padded = [pad_affinities(P, width, n_extra) for P in Ps]
    return jax.tree.map(lambda *a: jnp.stack(a), *padded)


def _warn_repeated_trials(configs: list[TSNEConfig], Ps: list[Affinities], Y0: jax.Array) -> None:
    """Warn when trials are one run repeated: the same config, P and initial embedding (the
    keys only draw a random initialisation, so with PCA's several keys change nothing)."""
    if len(configs) < 2 or getattr(Y0, "is_fully_addressable", True) is False:
        return
    starts = np.asarray(Y0)
    groups: list[list[int]] = []
    for b in range(len(configs)):
        for g in groups:
            a = g[0]
            if Ps[a] is Ps[b] and configs[a] == configs[b] and np.array_equal(starts[a], starts[b]):
                g.append(b)
                break
        else:
            groups.append([b])
    repeated = [g for g in groups if len(g) > 1]
    if repeated:
        warnings.warn(
            f"fit_batch: trials {repeated} repeat one run each (the same config, P and initial "
            "embedding: a key only draws a random initialisation, which these trials do not "
            "use); use initialization='random' or vary a setting.",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )


def _as_list(x: Any, n: int, name: str) -> list:
    """``x`` per trial: a list/tuple of ``n`` entries, or one value shared by all (a NamedTuple
    such as :class:`Affinities` is one value, not a sequence)."""
    if isinstance(x, list | tuple) and not hasattr(x, "_fields"):
        if len(x) != n:
            raise ValueError(f"{name} has {len(x)} entries for {n} keys.")
        return list(x)
    return [x] * n


def shared_graphs(
    X: Any, configs: Sequence[TSNEConfig], key: Any
) -> tuple[KNNGraph, dict[tuple, KNNGraph]]:
    """One kNN search per distinct (neighbours, metric, metric_params) of ``configs``, of the
    largest k any of them needs, and each config's graph as its first k columns.

    Returns ``(the first config's full graph, {affinity_key(config, n): its graph})``.
    """
    n = X.shape[0]
    wanted = {affinity_key(c, n) for c in configs}
    graphs: dict[tuple, KNNGraph] = {}
    for search in {k[0] for k in wanted}:  # (neighbors, metric, metric_params)
        k_max = max(k[3] for k in wanted if k[0] == search)
        graphs[search] = graph_search(
            X, k_max, method=search[0], metric=search[1], metric_params=search[2], key=key
        )
    subs = {}
    for k in wanted:
        g = graphs[k[0]]
        subs[k] = precomputed_knn(g.indices[:, : k[3]], g.distances[:, : k[3]])
    return graphs[affinity_key(configs[0], n)[0]], subs


def fit_batch(
    keys: Any,
    X: Any = None,
    configs: TSNEConfig | Sequence[TSNEConfig] = TSNEConfig(),
    *,
    affinities: Affinities | Sequence[Affinities] | None = None,
    neighbors: KNNGraph | tuple[Any, Any] | Any = None,
    initializations: Any = None,
    mesh: jax.sharding.Mesh | None = None,
    batch: str = "auto",
    callbacks: Sequence[Any] = (),
    callbacks_every: int | None = None,
    record: Any = None,
    verbose: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
) -> BatchResult:
    """Fit one trial per key (and per config) as one vmapped run.

    Args:
      keys: ``(n_trials,)`` keys (``jax.random.split(key, 4)``) or a list of keys; each is
        split into (kNN seed, init) as :func:`tsnejax.fit` does. The kNN graph is computed
        once, with the first key's kNN seed.
      X: ``(n, d)`` data (may be omitted with ``affinities`` and ``initializations``).
      configs: one config for every trial, or one per key (a dict of flat names is a config).
      affinities: P shared by every trial, or one per trial (instead of X's kNN graph).
      neighbors: a precomputed kNN graph for every trial, as :func:`tsnejax.fit` takes it
        (a :class:`KNNGraph`, ``(indices, distances)`` or a sparse distance matrix): each
        trial's P is calibrated on the whole graph, as its ``fit(neighbors=)`` does.
      initializations: an ``(n, d)`` array for every trial, or one per trial.
      mesh: shard the trials over its axis ``"trials"``.
      batch: ``"vmap"``, ``"map"`` or ``"auto"`` (:func:`tsnejax.run.optimize`): with
        ``"map"`` (the CPU default) each trial is its own ``fit`` up to rounding.
      callbacks: ``callback(iteration, kl (n_trials,), embeddings) -> stop``.
      record: ``(state, info) -> pytree`` after every step (:func:`tsnejax.run.optimize`);
        ``records`` stacks it per trial, ``(n_trials, total_iter, ...)`` (default: the
        gradient norm).
      checkpoint: path of an ``.npz`` file. If it exists (from an interrupted batch with the
        same data, configs and keys) the batch resumes from it: every trial's state, which
        trials are frozen and where (diverged, stopped by their rule, at their own length)
        and each rule's record, so it ends as the uninterrupted batch. Saved every
        ``checkpoint_every`` iterations (default the chunk size), at the end and when a
        callback stops the batch. Each save carries the KL history, so a resumed batch's
        ``kl_history`` is whole; ``resumed_from`` says where it went on.

    Returns:
      a :class:`BatchResult`. A trial that diverges is frozen at its last finite state and
      reported in ``diverged_at``; the others finish. Under a stopping rule each trial's
      checks fall where its own ``fit`` checks, its early exaggeration ends where its rule
      says (``early_exaggeration_iter``) and it stops there too (``trial_iter``,
      ``stop_rule_at``): with the exact gradient, measured bit for bit equal to its ``fit``.
    """
    t_start = time.perf_counter()
    if not isinstance(keys, list | tuple) and (
        getattr(keys, "ndim", 1) == 0  # a typed key (iterating it failed inside JAX)
        or (getattr(keys, "dtype", None) == np.uint32 and np.shape(keys) == (2,))  # a raw one
    ):
        raise ValueError(
            "keys must be one key per trial, e.g. jax.random.split(key, n_trials), got a single "
            "key; tsnejax.fit runs one trial."
        )
    try:
        keys = list(keys)
    except TypeError:  # None, a number: "'NoneType' object is not iterable"
        raise ValueError(
            "keys must be one key per trial, e.g. jax.random.split(jax.random.key(0), "
            f"n_trials); got {type(keys).__name__}."
        ) from None
    n_trials = len(keys)
    if n_trials == 0:
        raise ValueError("fit_batch needs at least one key.")
    for i, k in enumerate(keys):
        check_key(k, f"keys[{i}]")
    if checkpoint is not None:
        ck.check_path(checkpoint)
    configs = [as_config(c).validate() for c in _as_list(configs, n_trials, "configs")]
    for c in configs:
        check_optimizer(c)
    check_hooks(callbacks, record)
    rules = [get_stopping(c.schedule) for c in configs]
    for c, rule in zip(configs, rules, strict=True):
        if rule is not None:
            check_staged(c)
    sig = static_signature(configs[0]).flat()
    for i, c in enumerate(configs[1:], 1):
        other = static_signature(c).flat()
        differ = [k for k in sig if other[k] != sig[k]]
        if differ:
            shown = ", ".join(f"{k} ({sig[k]!r:.40} vs {other[k]!r:.40})" for k in differ)
            raise ValueError(
                f"fit_batch: configs[0] and configs[{i}] differ in static settings: {shown}. "
                "Only tsnejax.config.DYNAMIC_FIELDS may vary within a batch (a schedule or "
                "optimizer object is compiled in); run the others as another batch."
            )
    timings: dict[str, float] = {}
    split = [jax.random.split(k) for k in keys]
    Xv = check_input(X, configs[0].affinities.metric) if X is not None else None
    graph = _given_graph(neighbors, affinities, Xv)
    if Xv is None and affinities is None and graph is None:
        raise ValueError("fit_batch needs X unless affinities or precomputed neighbors are given.")
    shared = None if affinities is None else _as_list(affinities, n_trials, "affinities")[0]
    per_device = -(-n_trials // (mesh.size if mesh is not None else 1))
    check_fit_memory(configs[0], Xv, affinities=shared, neighbors=graph, batch=per_device)
    knn = None
    t0 = time.perf_counter()
    if affinities is None:
        n = Xv.shape[0] if graph is None else graph.indices.shape[0]
        for c in configs:
            config_perplexities(c, n)
        if graph is None:
            knn, subs = shared_graphs(Xv, configs, split[0][0])
        else:  # every trial's P on the whole graph, as fit(neighbors=) calibrates it
            knn, subs = graph, {affinity_key(c, n): graph for c in configs}
        timings["knn"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        built = {}
        for c in configs:
            key = affinity_key(c, n)
            if key not in built:
                built[key] = affinities_from_graph(subs[key], c, key[2])
        Ps = [built[affinity_key(c, n)] for c in configs]
    else:
        given = _as_list(affinities, n_trials, "affinities")
        checked = {id(P): as_affinities(P, "affinities") for P in given}  # each distinct P once
        Ps = [checked[id(P)] for P in given]
        n = Ps[0].n_points
        for i, P in enumerate(Ps):
            if P.n_points != n:  # was a stacking error from inside JAX
                raise ValueError(
                    f"affinities[{i}] describes {P.n_points} points and affinities[0] {n}; the "
                    "trials of a batch embed the same points."
                )
    distinct = {id(P): P for P in Ps}
    if len(distinct) == 1:
        P, P_axis = Ps[0], None
    else:
        P, P_axis = stack_affinities(Ps), 0
    jax.block_until_ready(P)
    timings["affinities"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    inits = _as_list(initializations, n_trials, "initializations")
    if initializations is not None and not isinstance(initializations, list | tuple):
        arr = np.asarray(initializations)
        if arr.ndim == 3:
            inits = list(arr)
    Y0 = jnp.stack(
        [
            initial_embedding(split[b][1], Xv, n, configs[b], inits[b], Ps[b])
            for b in range(n_trials)
        ]
    )
    timings["init"] = time.perf_counter() - t0
    _warn_repeated_trials(configs, Ps, Y0)
    stepper, optimizer = stepper_for(configs[0], n)
    tables = [phase_table(c, n) for c in configs]
    early = [c.schedule.early_exaggeration_iter for c in configs]
    lengths = [c.schedule.n_iter for c in configs]
    stages = None
    own = len({t.starts for t in tables}) > 1 or len(set(zip(early, lengths, strict=True))) > 1
    if any(rules) or own:
        # Trials that switch phase or end at their own iterations: one table each.
        phases: Phases | TrialPhases = TrialPhases(tables)
        stages = TrialStages(rules, phases, early, lengths)
    else:
        phases = Phases.stack(tables)
    total = max(c.total_iter for c in configs)
    chunk = configs[0].chunk_size
    state, saved, saver = init_state(Y0, optimizer), None, None
    if checkpoint is not None:
        digest = ck.fingerprint([ck.config_fingerprint(c) for c in configs], keys, Y0, P)
        state, saved = _resume(checkpoint, optimizer, state, digest, total, stages)
        meta = {"fingerprint": digest, "total_iter": total}
        annotate = None if stages is None else lambda: {"stopping": stages.record()}
        saver = ck.Checkpoint(checkpoint, checkpoint_every, meta, annotate)
    live = np.asarray([True] * n_trials if saved is None else saved["trials"]["active"])
    start = batch_start(np.asarray(state.iteration), live)
    result = optimize(
        stepper,
        state,
        P,
        total - start if live.any() else 0,
        phases=phases,
        chunk_size=chunk,
        mesh=mesh,
        P_axis=P_axis,
        batch=batch,
        callbacks=callbacks,
        callbacks_every=callbacks_every,
        verbose=verbose,
        stop=stages,
        stop_every=None if stages is None else stages.next_check,
        record=record,
        checkpoint=saver,
        resumed=saved,
    )
    timings["compile"] = result.compile_seconds
    timings["compile_ahead"] = result.ahead_seconds
    timings["optimize"] = result.run_seconds
    timings["total"] = time.perf_counter() - t_start
    if result.kl_history and result.kl_history[-1][0] == int(result.state.iteration.max()):
        kl = np.asarray(result.kl_history[-1][1], np.float64)
    else:  # nothing ran (a finished batch resumed, or no iterations)
        kl = standing_kls(stepper, result.state, P, P_axis, phases, result.diverged_at)
    return BatchResult(
        np.asarray(result.state.embedding),
        kl,
        result.diverged_at,
        result.kl_history,
        result.state,
        P,
        phases,
        stepper.backend.name,
        total,
        timings,
        result.grids,
        result.n_compiles,
        stepper,
        knn,
        result.diverged_cause,
        np.asarray(early, np.int64) if stages is None else stages.ended.copy(),
        None if stages is None else stages.stopped_at.copy(),
        0 if saved is None else int(saved["iteration"]),
        result.records,
        tuple(configs),
    )


def _given_graph(neighbors: Any, affinities: Any, X: Any) -> KNNGraph | None:
    """``fit_batch``'s ``neighbors``, checked: a precomputed graph of X's points, or None."""
    check_one_source(affinities, neighbors, "fit_batch")
    if neighbors is None:
        return None
    graph = precomputed_graph(neighbors)
    if graph is None:
        raise ValueError(
            f"fit_batch: neighbors={neighbors!r} is not a precomputed kNN graph (a KNNGraph, "
            "(indices, distances) or a sparse distance matrix); a search method is each "
            "config's setting: configs=[c.replace(neighbors=...) for c in configs]."
        )
    if X is not None and graph.indices.shape[0] != X.shape[0]:
        raise ValueError(
            f"fit_batch: neighbors describes {graph.indices.shape[0]} points but X has "
            f"{X.shape[0]} rows."
        )
    return graph


def _resume(
    path: Any, optimizer: Any, state: TSNEState, digest: str, total: int, stages: Any
) -> tuple[TSNEState, dict | None]:
    """The batch's state and the metadata saved with it at ``path`` (fresh if none is)."""
    if not Path(path).exists():
        return state, None
    state = ck.resume(path, optimizer, state, digest, total)
    meta = ck.load_resumed(path)
    if "trials" not in meta or (stages is not None and "stopping" not in meta):
        raise ValueError(
            f"checkpoint {str(path)!r} was not written by fit_batch (it holds no record of "
            "the batch's trials); delete it or choose another checkpoint path."
        )
    if stages is not None:
        stages.restore(meta["stopping"])
    return state, meta
