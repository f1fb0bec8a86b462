"""The full t-SNE pipeline as one function: data -> kNN -> P -> init -> optimisation.

:func:`fit` is what :class:`tsnejax.TSNE` and ``tsnejax embed`` call; every stage is also a
public function of its own module (``knn``, ``affinity``, ``init``, ``build``, ``run``).
Defaults follow openTSNE 1.0.4: perplexity 30, k = 3 * perplexity, PCA init rescaled to std
1e-4, 250 iterations at exaggeration 12 then 500 at exaggeration 1, learning rate
N / exaggeration, momentum 0.8, gains ``0.8 g + 0.01``, steps clipped to 5.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import scipy.sparse as sp

from tsnejax import checkpoint as ck
from tsnejax import init as init_lib
from tsnejax import memory, shard
from tsnejax._checks import check_key, check_option, outside_stacklevel
from tsnejax._loop_checks import check_hooks
from tsnejax._scale import check_initial_spread
from tsnejax._types import Array, PRNGKey
from tsnejax.affinity import (
    Affinities,
    as_affinities,
    check_affinities,
    perplexity_affinities,
    uniform_affinities,
)
from tsnejax.build import (
    check_optimizer,
    config_perplexities,
    memory_plan,
    n_neighbors,
    phase_table,
    stepper_for,
)
from tsnejax.config import INIT_METHODS, TSNEConfig
from tsnejax.extend import optimize_more, standing_kl
from tsnejax.knn import IVFSearch, KNNGraph, precomputed_knn
from tsnejax.knn_metric import (
    FAST_METRICS,
    check_input,
    comparable,
    from_euclidean,
    graph_search,
    sparse_knn_graph,
)
from tsnejax.run import Stepper, TSNEState, init_state, optimize
from tsnejax.schedules import Phases
from tsnejax.stopping import check_staged, get_stopping, run_staged

__all__ = [
    "TSNEResult",
    "fit",
    "prepare",
    "initial_embedding",
    "Prepared",
    "check_fit_memory",
    "precomputed_graph",
    "check_one_source",
]


class TSNEResult(NamedTuple):
    embedding: np.ndarray  # (n, n_components)
    kl_divergence: float  # KL of the final embedding (nats; Z from the backend)
    method: str  # the gradient method used (``"auto"`` resolved)
    total_iter: int  # iterations run, both phases (config.n_iter counts the main phase)
    state: TSNEState  # final optimizer state (resume with tsnejax.run.optimize)
    affinities: Affinities
    kl_history: list[tuple[int, float]]
    timings: dict[str, float]  # seconds per stage, compile time apart
    grids: list  # grid structures used (``None`` for the exact method)
    n_compiles: int  # chunk programs compiled during the optimisation
    stepper: Stepper  # the compiled-once step; resume with optimize(stepper, state, P, n)
    early_exaggeration_iter: int  # where the main phase began (differs under opt-SNE)
    neighbors: KNNGraph | None = None  # the kNN graph P came from (None: P was given)
    phases: Phases | None = None  # the phase table that was run (resume with it)
    records: Any = None  # per-step records (default: gradient norms)
    resumed_from: int = 0  # the checkpoint's iteration the optimisation went on from (0: fresh)
    config: TSNEConfig | None = None  # the config that ran

    def optimize(self, n_iter: int, **values: Any) -> TSNEResult:
        """``n_iter`` more iterations from where the run stands, as openTSNE's
        ``TSNEEmbedding.optimize``: a new result, this one unchanged.

        Keyword values replace the run's last phase values: ``exaggeration``, ``learning_rate``
        (a number, ``"N/12"`` or ``"auto"``: the config's rule at the new exaggeration, as is an
        exaggeration given under an ``"auto"`` rate), ``momentum``, ``dof``, any injected
        hyperparameter of the optimizer; ``callbacks``, ``callbacks_every``, ``record`` and
        ``verbose`` as :func:`fit` takes them. The history, records (default ones) and phase
        table of the result are the whole run's (:mod:`tsnejax.extend`).
        """
        return optimize_more(self, n_iter, **values)


class Prepared(NamedTuple):
    """What the optimisation starts from (host stages of :func:`fit`)."""

    P: Affinities
    Y0: Array
    knn: KNNGraph | None
    timings: dict[str, float]


def _n_points(neighbors: Any) -> int:
    """Points a precomputed kNN graph describes (a sparse matrix's rows, else its indices')."""
    return int(neighbors.shape[0] if sp.issparse(neighbors) else np.shape(neighbors[0])[0])


def precomputed_graph(neighbors: Any) -> KNNGraph | None:
    """``neighbors`` checked as a precomputed kNN graph (a :class:`KNNGraph`, ``(indices,
    distances)`` or a sparse ``(n, n)`` distance matrix); ``None`` for a search's name or
    effort (``"ivf"``, :class:`IVFSearch`)."""
    if isinstance(neighbors, KNNGraph):
        return precomputed_knn(neighbors.indices, neighbors.distances)
    if sp.issparse(neighbors):  # kneighbors_graph(mode="distance"), scanpy's obsp distances
        return sparse_knn_graph(neighbors, "neighbors")
    effort = isinstance(neighbors, IVFSearch)  # a search's effort, not (indices, distances)
    if isinstance(neighbors, tuple | list) and len(neighbors) == 2 and not effort:
        return precomputed_knn(*neighbors)
    return None


def check_one_source(affinities: Any, neighbors: Any, who: str) -> None:
    """Refuse both a P and a kNN graph to calibrate one from (the graph would be ignored)."""
    if affinities is not None and neighbors is not None:
        raise ValueError(
            f"{who}: pass affinities or neighbors, not both (P would ignore the graph)."
        )


def _graph(X: Any, neighbors: Any, k: int, key: PRNGKey, mesh: Any, config: TSNEConfig) -> KNNGraph:
    given = precomputed_graph(neighbors)
    if given is not None:
        return given
    if X is None:
        raise ValueError("X is required unless affinities or precomputed neighbors are given.")
    a = config.affinities
    if neighbors == "sharded" and mesh is not None and a.metric in FAST_METRICS:
        from tsnejax.sharded_knn import sharded_knn

        return from_euclidean(sharded_knn(comparable(X, a.metric), k, mesh), a.metric)
    # X passed check_data in prepare
    return graph_search(
        X, k, method=neighbors, metric=a.metric, metric_params=a.metric_params, key=key
    )


def as_config(config: TSNEConfig | Mapping[str, Any]) -> TSNEConfig:
    """A :class:`TSNEConfig`, or a dict of the flat names :meth:`TSNEConfig.make` takes."""
    if isinstance(config, Mapping):
        return TSNEConfig.make(**config)
    if not isinstance(config, TSNEConfig):
        raise ValueError(
            f"config must be a TSNEConfig or a dict of its flat names, got {type(config).__name__}."
        )
    return config


def affinities_from_graph(knn: KNNGraph, config: TSNEConfig, perplexities: Sequence[float]):
    """P of ``config.affinities.method`` on ``knn``."""
    method = config.affinities.method
    if callable(method):
        P = method(knn)
        if sp.issparse(P) or isinstance(P, np.ndarray):  # as fit(affinities=) takes them
            return as_affinities(P, "affinity_method's result")
        if not isinstance(P, Affinities):
            raise ValueError(
                f"affinity_method {method!r} returned {type(P).__name__}; it must return "
                "tsnejax.Affinities or a symmetric (n, n) scipy or numpy matrix."
            )
        return check_affinities(P, "affinity_method's result")
    if method == "uniform":
        return uniform_affinities(knn)
    return perplexity_affinities(knn, tuple(perplexities))


def prepare(
    key: PRNGKey,
    X: Any,
    config: TSNEConfig,
    *,
    affinities: Affinities | sp.spmatrix | None = None,
    neighbors: KNNGraph | tuple[Any, Any] | sp.spmatrix | None = None,
    initialization: Any = None,
    mesh: Any = None,
) -> Prepared:
    """kNN graph, P and the initial embedding, as :func:`fit` computes them from ``key``
    (``mesh``: where ``neighbors="sharded"`` searches)."""
    timings: dict[str, float] = {}
    check_one_source(affinities, neighbors, "fit")
    k_knn, k_init = jax.random.split(key)
    Xv = check_input(X, config.affinities.metric) if X is not None else None
    shards = 1 if mesh is None else shard.points_axis_size(mesh)
    check_fit_memory(config, Xv, affinities=affinities, neighbors=neighbors, shards=shards)
    t0 = time.perf_counter()
    knn = None
    if affinities is None:
        if Xv is not None:
            n = Xv.shape[0]
        elif neighbors is not None:
            n = _n_points(neighbors)
        else:
            raise ValueError("X is required unless affinities or precomputed neighbors are given.")
        perps = config_perplexities(config, n)
        spec = neighbors if neighbors is not None else config.affinities.neighbors
        knn = _graph(Xv, spec, n_neighbors(config, n, max(perps)), k_knn, mesh, config)
        jax.block_until_ready(knn)
        timings["knn"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        P = affinities_from_graph(knn, config, perps)
    else:
        P = as_affinities(affinities)
    jax.block_until_ready(P)
    n = P.n_points
    if Xv is not None and Xv.shape[0] != n:
        raise ValueError(f"X has {Xv.shape[0]} rows but the affinities describe {n} points.")
    timings["affinities"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    Y0 = initial_embedding(k_init, Xv, n, config, initialization, P)
    jax.block_until_ready(Y0)
    timings["init"] = time.perf_counter() - t0
    return Prepared(P, Y0, knn, timings)


def check_fit_memory(
    config: TSNEConfig,
    X: Any,
    *,
    affinities: Any = None,
    neighbors: Any = None,
    batch: int = 1,
    shards: int = 1,
) -> None:
    """Every stage's memory estimate (:func:`tsnejax.build.memory_plan`) against the free
    memory, before any work starts; ``batch``: trials run at once per device; ``shards``:
    devices the points are split over."""
    if affinities is not None:
        if not isinstance(affinities, Affinities) and not hasattr(affinities, "shape"):
            return  # not a P: as_affinities names the type
        n = int(affinities.n_points if isinstance(affinities, Affinities) else affinities.shape[0])
    elif X is not None:
        n = int(X.shape[0])
    elif neighbors is not None:
        n = _n_points(neighbors)
    else:
        return
    # A sparse X kept sparse is searched and reduced on the host, in scikit-learn's memory;
    # precomputed distances are neither searched nor reduced (PCA becomes spectral).
    host = X is None or sp.issparse(X) or config.affinities.metric == "precomputed"
    d = None if host else int(X.shape[1])
    plan = memory_plan(
        config,
        n,
        d,
        search=affinities is None and neighbors is None,
        calibrate=affinities is None,
        batch=batch,
        shards=shards,
    )
    memory.check_plan(plan)


def initial_embedding(
    key: PRNGKey,
    X: np.ndarray | None,
    n: int,
    config: TSNEConfig,
    initialization: Any = None,
    affinities: Affinities | None = None,
) -> Array:
    """The initial embedding ``config.initialization`` (or the ``initialization`` array) gives;
    ``"spectral"`` is computed from ``affinities``."""
    spec = config.initialization if initialization is None else initialization
    if isinstance(spec, str):
        check_option("initialization", spec, INIT_METHODS)
        if spec == "spectral":
            if affinities is None:
                raise ValueError("initialization='spectral' needs the affinities P.")
            Y0 = init_lib.spectral(affinities, config.n_components, key)
        elif spec == "pca" and config.affinities.metric == "precomputed":
            # openTSNE's rule: the PCA of a distance matrix is no embedding of the points
            warnings.warn(
                "initialization='pca' with metric='precomputed': X holds distances, not "
                "features, so the initial embedding is the spectral one of P (openTSNE does "
                "the same); pass initialization='spectral' or 'random' to choose.",
                UserWarning,
                stacklevel=outside_stacklevel(),
            )
            Y0 = init_lib.spectral(affinities, config.n_components, key)
        elif spec == "pca":
            if X is None:
                raise ValueError(
                    "initialization='pca' needs X; pass X, initialization='spectral' (from P) or "
                    "'random', or an array."
                )
            Y0 = init_lib.pca(X, config.n_components)
        else:
            Y0 = init_lib.random(key, n, config.n_components)
    else:
        Y0 = init_lib.user(spec, n, config.n_components)
    if getattr(Y0, "is_fully_addressable", True):
        check_initial_spread(np.asarray(Y0), spec if isinstance(spec, str) else "array")
    return Y0


def fit(
    key: PRNGKey,
    X: Any = None,
    config: TSNEConfig = TSNEConfig(),
    *,
    affinities: Affinities | sp.spmatrix | None = None,
    neighbors: KNNGraph | tuple[Any, Any] | sp.spmatrix | None = None,
    initialization: Any = None,
    callbacks: Sequence[Any] = (),
    callbacks_every: int | None = None,
    record: Any = None,
    verbose: bool = False,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> TSNEResult:
    """Embed ``X`` (or given affinities) with t-SNE.

    Args:
      key: ``jax.random.key``; split into (kNN seed, init) subkeys. Same key, same embedding.
      X: ``(n, d)`` data; may be omitted when ``affinities`` (and an initialization) are given.
      config: a :class:`tsnejax.TSNEConfig` (``TSNEConfig.make(perplexity=50, ...)``), or a dict
        of the same flat names.
      affinities: precomputed P (:class:`Affinities` or symmetric scipy sparse matrix).
      neighbors: precomputed kNN as a :class:`KNNGraph`, ``(indices, distances)`` or a sparse
        ``(n, n)`` distance matrix (``kneighbors_graph(X, k, mode="distance")``, scanpy's
        ``obsp["distances"]``; k = the fewest distances a row stores).
      initialization: overrides ``config.initialization`` with an ``(n, d)`` array.
      callbacks: ``callback(iteration, kl, embedding) -> stop`` (one, or a sequence) every
        ``callbacks_every`` iterations (any interval, default ``config.chunk_size``; the
        embedding does not depend on it).
      record: ``(state, info) -> pytree`` stored per step (:func:`tsnejax.run.optimize`).
      verbose: progress bar with KL.
      checkpoint: path of an ``.npz`` state file. If it exists (from an interrupted run with the
        same data, config and key) the run resumes from it; the state is saved there every
        ``checkpoint_every`` iterations (default ``config.chunk_size``), at the end, when a
        callback stops the run, and on divergence. A resumed run ends with the same
        embedding as an uninterrupted one, with a stopping rule too (each save carries the
        phase and what the rule's check was asked and said, which a resume replays) and the
        same ``kl_history`` (each save carries it); ``resumed_from`` says where it went on.
      mesh: a ``jax.sharding.Mesh`` with an axis ``"points"``: the embedding, P and the
        optimizer state are split by points over it (also across processes joined by
        ``jax.distributed``); the result's ``embedding`` is whole, its ``state`` stays
        sharded with ``n`` padded to a multiple of the axis size (:mod:`tsnejax.shard`).
    """
    config = as_config(config)
    check_key(key)
    config.validate()
    check_optimizer(config)
    check_hooks(callbacks, record)
    if checkpoint is not None:
        ck.check_path(checkpoint)
    if mesh is not None:
        mesh = shard.auto_mesh(mesh)
    t_start = time.perf_counter()
    prep = prepare(
        key,
        X,
        config,
        affinities=affinities,
        neighbors=neighbors,
        initialization=initialization,
        mesh=mesh,
    )
    P, Y0 = prep.P, prep.Y0
    n = P.n_points
    stepper, optimizer = stepper_for(config, n, mesh)
    phases = phase_table(config, n)
    view = None
    if mesh is None:
        state, P_run = init_state(Y0, optimizer), P
    else:
        state = shard.init_sharded_state(shard.shard_embedding(Y0, mesh), optimizer)
        P_run = shard.shard_affinities(P, mesh)
        view = functools.partial(shard.gather_points, n=n)
    s = config.schedule
    run = functools.partial(
        optimize,
        stepper,
        P=P_run,
        chunk_size=config.chunk_size,
        record=record,
        verbose=verbose,
        host_embedding=view,
    )
    stopping = get_stopping(s)
    if stopping is not None:
        check_staged(config)
    saver = resumed = saved = None
    if checkpoint is not None:
        digests = ck.run_digests(config, key, Y0, P)
        first = next(digests)
        state = ck.resume(
            checkpoint, optimizer, state, itertools.chain([first], digests), config.total_iter
        )
        saved = ck.load_resumed(checkpoint) if int(state.iteration) > 0 else None
        if stopping is not None and saved is not None:
            resumed = saved.get("stopping")
            if resumed is None:
                raise ValueError(
                    f"checkpoint {str(checkpoint)!r} holds no record of the stopping rule's "
                    "checks, so the run cannot go on where it was; delete it."
                )
        meta = {"fingerprint": first, "total_iter": config.total_iter}
        saver = ck.Checkpoint(checkpoint, checkpoint_every, meta)
    if stopping is None:
        result = run(
            state=state,
            n_iter=config.total_iter - int(state.iteration),
            phases=phases,
            callbacks=callbacks,
            callbacks_every=callbacks_every,
            checkpoint=saver,
            resumed=saved,
        )
        early_iter = s.early_exaggeration_iter
    else:
        result, early_iter, phases = run_staged(
            run,
            state,
            phases,
            early_iter=s.early_exaggeration_iter,
            n_iter=s.n_iter,
            stopping=stopping,
            callbacks=callbacks,
            callbacks_every=callbacks_every,
            checkpoint=saver,
            resumed=resumed,
            head=saved,
        )
    timings = dict(prep.timings)
    timings["compile"] = result.compile_seconds
    timings["compile_ahead"] = result.ahead_seconds
    timings["optimize"] = result.run_seconds
    Y = result.state.embedding
    if result.kl_history and result.kl_history[-1][0] == int(result.state.iteration):
        kl = result.kl_history[-1][1]
    else:  # no iterations were run
        kl = standing_kl(stepper, Y, P_run, phases.at(int(result.state.iteration))["dof"])
    timings["total"] = time.perf_counter() - t_start
    return TSNEResult(
        np.asarray(Y) if view is None else view(Y),
        kl,
        stepper.backend.name,
        int(result.state.iteration),
        result.state,
        P,
        result.kl_history,
        timings,
        result.grids,
        result.n_compiles,
        stepper,
        early_iter,
        prep.knn,
        phases,
        result.records,
        0 if saved is None else int(saved["iteration"]),
        config,
    )
