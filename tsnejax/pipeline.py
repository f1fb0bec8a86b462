"""The full t-SNE pipeline as one function: data -> kNN -> P -> init -> optimisation.

:func:`fit` is what :class:`tsnejax.TSNE` and ``tsnejax embed`` call; every stage is also a
public function of its own module (``knn``, ``affinity``, ``init``, ``gradients``, ``optim``,
``run``). Defaults follow openTSNE 1.0.4: perplexity 30, k = 3 * perplexity, PCA init
rescaled to std 1e-4, 250 iterations at exaggeration 12 then 500 at exaggeration 1,
learning rate N / exaggeration, momentum 0.8, gains ``0.8 g + 0.01``, steps clipped to 5.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
import optax
import scipy.sparse as sp

from tsnejax import init as init_lib
from tsnejax._checks import (
    check_data,
    check_int,
    check_n_components,
    check_option,
    check_perplexity,
    check_positive,
)
from tsnejax._types import Array, PRNGKey
from tsnejax.affinity import Affinities, perplexity_affinities, precomputed_affinities
from tsnejax.gradients import Backend, get_backend
from tsnejax.knn import KNNGraph, default_k, nearest_neighbors, precomputed_knn
from tsnejax.optim import classic
from tsnejax.run import DivergenceError, TSNEState, build_step, init_state, optimize
from tsnejax.schedules import auto_learning_rate, exaggeration_schedule, momentum_schedule

__all__ = ["TSNEConfig", "TSNEResult", "fit", "make_backend", "resolve_method", "GRADIENT_METHODS"]

GRADIENT_METHODS = ("auto", "exact", "interpolation", "splat")
#: ``negative_gradient_method="auto"`` uses the exact gradient up to this many points and
#: interpolation above. Measured on MNIST subsets (optimisation + compilation, 750
#: iterations, 2-core CPU): 2-D 2.5k exact 4.3 s vs interpolation 11.7 s, 5k 14.9 vs 15.3,
#: 8k 43.5 vs 16.8; 1-D 2.5k 3.0 vs 4.9, 5k 19.1 vs 7.1. In 3-D a grid fine enough for the
#: late phase is too large for a CPU (docs/gradients.md), so exact is kept up to 20k.
AUTO_EXACT_MAX_POINTS = {1: 3500, 2: 5000, 3: 20000}
NEIGHBOR_METHODS = ("auto", "exact", "pynndescent")
INIT_METHODS = ("pca", "random")


@dataclasses.dataclass(frozen=True)
class TSNEConfig:
    """Every setting of a t-SNE run (hashable; defaults = openTSNE 1.0.4)."""

    n_components: int = 2
    perplexity: float | tuple[float, ...] = 30.0
    early_exaggeration: float = 12.0
    early_exaggeration_iter: int = 250
    n_iter: int = 500
    exaggeration: float = 1.0
    learning_rate: float | Literal["auto"] = "auto"
    initial_momentum: float = 0.8
    final_momentum: float = 0.8
    dof: float = 1.0
    initialization: Literal["pca", "random"] = "pca"
    negative_gradient_method: Literal["auto", "exact", "interpolation", "splat"] = "auto"
    n_interpolation_points: int = 3
    min_num_intervals: int | None = None  # None: 50 boxes in 1-D/2-D, 18 in 3-D
    ints_in_interval: float = 1.0
    max_boxes: int | None = None  # None: 1000 in 1-D/2-D, 64 in 3-D
    pixels_per_unit: float = 4.0  # splat resolution
    neighbors: Literal["auto", "exact", "pynndescent"] = "auto"
    max_step_norm: float | None = 5.0
    min_gain: float = 0.01
    chunk_size: int = 50

    def validate(self) -> TSNEConfig:
        """Raise ``ValueError`` naming the first bad field; returns self."""
        check_n_components(self.n_components)
        perps = (self.perplexity,) if np.ndim(self.perplexity) == 0 else self.perplexity
        if len(perps) == 0:
            raise ValueError("perplexity is an empty list; give at least one value (e.g. 30).")
        for p in perps:
            check_positive("perplexity", p)
        check_positive("early_exaggeration", self.early_exaggeration)
        check_int("early_exaggeration_iter", self.early_exaggeration_iter, minimum=0)
        check_int("n_iter", self.n_iter, minimum=0)
        check_positive("exaggeration", self.exaggeration)
        if self.learning_rate != "auto":
            if isinstance(self.learning_rate, str):
                check_option("learning_rate", self.learning_rate, ("auto",))
            check_positive("learning_rate", self.learning_rate)
        check_positive("initial_momentum", self.initial_momentum, allow_zero=True)
        check_positive("final_momentum", self.final_momentum, allow_zero=True)
        check_positive("dof", self.dof)
        if not isinstance(self.initialization, np.ndarray):
            check_option("initialization", self.initialization, INIT_METHODS)
        check_option("negative_gradient_method", self.negative_gradient_method, GRADIENT_METHODS)
        check_option("neighbors", self.neighbors, NEIGHBOR_METHODS)
        check_int("n_interpolation_points", self.n_interpolation_points, minimum=1)
        if self.min_num_intervals is not None:
            check_int("min_num_intervals", self.min_num_intervals, minimum=1)
        check_positive("ints_in_interval", self.ints_in_interval)
        if self.max_boxes is not None:
            check_int("max_boxes", self.max_boxes, minimum=1)
        check_positive("pixels_per_unit", self.pixels_per_unit)
        if self.max_step_norm is not None:
            check_positive("max_step_norm", self.max_step_norm)
        check_positive("min_gain", self.min_gain, allow_zero=True)
        check_int("chunk_size", self.chunk_size, minimum=1)
        return self

    @property
    def total_iter(self) -> int:
        return self.early_exaggeration_iter + self.n_iter


class TSNEResult(NamedTuple):
    embedding: np.ndarray  # (n, n_components)
    kl_divergence: float  # KL of the final embedding (nats; Z from the backend)
    method: str  # the gradient method used (``"auto"`` resolved)
    n_iter: int  # iterations run
    state: TSNEState  # final optimizer state (resume with tsnejax.run.optimize)
    affinities: Affinities
    kl_history: list[tuple[int, float]]
    timings: dict[str, float]  # seconds per stage, compile time apart
    grids: list  # grid structures used (``None`` for the exact method)
    n_compiles: int  # chunk programs compiled during the optimisation


def _resolve_neighbors(X: np.ndarray | None, neighbors: Any, k: int, key: PRNGKey) -> KNNGraph:
    if isinstance(neighbors, KNNGraph):
        return precomputed_knn(neighbors.indices, neighbors.distances)
    if isinstance(neighbors, tuple | list) and len(neighbors) == 2:
        return precomputed_knn(*neighbors)
    if X is None:
        raise ValueError("X is required unless affinities or precomputed neighbors are given.")
    return nearest_neighbors(X, k, method=neighbors, key=key)


def resolve_method(method: str, n: int, n_components: int) -> str:
    """``"auto"`` -> ``"exact"`` up to :data:`AUTO_EXACT_MAX_POINTS`, else ``"interpolation"``."""
    if method != "auto":
        return method
    return "exact" if n <= AUTO_EXACT_MAX_POINTS[n_components] else "interpolation"


def make_backend(config: TSNEConfig, n: int) -> Backend:
    """The gradient backend ``config`` asks for, for ``n`` points."""
    method = resolve_method(config.negative_gradient_method, n, config.n_components)
    if method == "interpolation":
        return get_backend(
            method,
            n_interpolation_points=config.n_interpolation_points,
            min_num_intervals=config.min_num_intervals,
            ints_in_interval=config.ints_in_interval,
            max_boxes=config.max_boxes,
        )
    if method == "splat":
        return get_backend(method, pixels_per_unit=config.pixels_per_unit)
    return get_backend(method)


def fit(
    key: PRNGKey,
    X: Any = None,
    config: TSNEConfig = TSNEConfig(),
    *,
    affinities: Affinities | sp.spmatrix | None = None,
    neighbors: KNNGraph | tuple[Any, Any] | None = None,
    initialization: Any = None,
    optimizer: optax.GradientTransformation | None = None,
    callbacks: Sequence[Any] = (),
    callbacks_every: int | None = None,
    verbose: bool = False,
) -> TSNEResult:
    """Embed ``X`` (or given affinities) with t-SNE.

    Args:
      key: ``jax.random.key``; split into (kNN seed, init) subkeys. Same key, same embedding.
      X: ``(n, d)`` data; may be omitted when ``affinities`` (and an initialization) are given.
      config: a :class:`TSNEConfig`.
      affinities: precomputed P (:class:`Affinities` or symmetric scipy sparse matrix).
      neighbors: precomputed kNN as a :class:`KNNGraph` or ``(indices, distances)``.
      initialization: overrides ``config.initialization`` with an ``(n, d)`` array.
      optimizer: any Optax transformation replacing the classic rule (its learning rate is
        its own; ``config.learning_rate`` and momentum then do not apply).
      callbacks: ``callback(iteration, kl, embedding) -> stop`` every ``callbacks_every``
        iterations (default ``config.chunk_size``).
      verbose: progress bar with KL.
    """
    config.validate()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    k_knn, k_init = jax.random.split(key)
    Xv = check_data(X) if X is not None else None

    t0 = time.perf_counter()
    if affinities is None:
        n = Xv.shape[0] if Xv is not None else np.shape(neighbors[0])[0]
        perps = check_perplexity(config.perplexity, n)
        knn_spec = neighbors if neighbors is not None else config.neighbors
        knn = _resolve_neighbors(Xv, knn_spec, default_k(n, max(perps)), k_knn)
        jax.block_until_ready(knn)
        timings["knn"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        P = perplexity_affinities(knn, perps)
    elif isinstance(affinities, Affinities):
        P = affinities
    else:
        P = precomputed_affinities(affinities)
    jax.block_until_ready(P)
    n = P.n_points
    if Xv is not None and Xv.shape[0] != n:
        raise ValueError(f"X has {Xv.shape[0]} rows but the affinities describe {n} points.")
    timings["affinities"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    Y0 = _initial_embedding(k_init, Xv, n, config, initialization)
    jax.block_until_ready(Y0)
    timings["init"] = time.perf_counter() - t0

    ex = exaggeration_schedule(
        config.early_exaggeration, config.early_exaggeration_iter, config.exaggeration
    )
    if optimizer is None:
        lr = (
            auto_learning_rate(n, ex)
            if config.learning_rate == "auto"
            else float(config.learning_rate)
        )
        momentum = momentum_schedule(
            config.initial_momentum, config.final_momentum, config.early_exaggeration_iter
        )
        optimizer = classic(
            lr, momentum, min_gain=config.min_gain, max_step_norm=config.max_step_norm
        )
    else:
        lr = None
    backend = make_backend(config, n)
    step = build_step(backend, optimizer, ex)
    state = init_state(Y0, optimizer)

    def describe(it: int) -> str:
        phase = "early exaggeration" if it <= config.early_exaggeration_iter else "main phase"
        rate = "optimizer's own" if lr is None else f"{float(lr(it - 1) if callable(lr) else lr):g}"
        return f"{phase}, exaggeration={float(ex(it - 1)):g}, learning_rate={rate}"

    result = optimize(
        step,
        state,
        P,
        config.total_iter,
        dof=config.dof,
        chunk_size=config.chunk_size,
        callbacks=callbacks,
        callbacks_every=callbacks_every,
        verbose=verbose,
        describe=describe,
    )
    timings["compile"] = result.compile_seconds
    timings["optimize"] = result.run_seconds
    Y = result.state.embedding
    if result.kl_history and result.kl_history[-1][0] == int(result.state.iteration):
        kl = result.kl_history[-1][1]
    else:  # no iterations were run
        grid = step.allocate(Y)
        kl = float(jax.jit(backend.kl_divergence, static_argnums=3)(Y, P, config.dof, grid))
    timings["total"] = time.perf_counter() - t_start
    return TSNEResult(
        np.asarray(Y),
        kl,
        backend.name,
        int(result.state.iteration),
        result.state,
        P,
        result.kl_history,
        timings,
        result.grids,
        result.n_compiles,
    )


def _initial_embedding(
    key: PRNGKey, X: np.ndarray | None, n: int, config: TSNEConfig, initialization: Any
) -> Array:
    spec = config.initialization if initialization is None else initialization
    if isinstance(spec, str):
        check_option("initialization", spec, INIT_METHODS)
        if spec == "pca":
            if X is None:
                raise ValueError(
                    "initialization='pca' needs X; pass X, initialization='random', or an array."
                )
            return init_lib.pca(X, config.n_components)
        return init_lib.random(key, n, config.n_components)
    return init_lib.user(spec, n, config.n_components)


__all__ += ["DivergenceError"]
