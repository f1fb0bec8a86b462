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
from tsnejax.gradients import GRADIENTS, exact_kl_divergence
from tsnejax.knn import KNNGraph, default_k, nearest_neighbors, precomputed_knn
from tsnejax.optim import classic
from tsnejax.run import DivergenceError, TSNEState, build_step, init_state, optimize
from tsnejax.schedules import auto_learning_rate, exaggeration_schedule, momentum_schedule

__all__ = ["TSNEConfig", "TSNEResult", "fit", "GRADIENT_METHODS"]

GRADIENT_METHODS = ("auto", "exact")
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
    negative_gradient_method: Literal["auto", "exact"] = "auto"
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
    kl_divergence: float  # exact KL of the final embedding (nats)
    n_iter: int  # iterations run
    state: TSNEState  # final optimizer state (resume with tsnejax.run.optimize)
    affinities: Affinities
    kl_history: list[tuple[int, float]]
    timings: dict[str, float]  # seconds per stage, compile time apart


def _resolve_neighbors(X: np.ndarray | None, neighbors: Any, k: int, key: PRNGKey) -> KNNGraph:
    if isinstance(neighbors, KNNGraph):
        return precomputed_knn(neighbors.indices, neighbors.distances)
    if isinstance(neighbors, tuple | list) and len(neighbors) == 2:
        return precomputed_knn(*neighbors)
    if X is None:
        raise ValueError("X is required unless affinities or precomputed neighbors are given.")
    return nearest_neighbors(X, k, method=neighbors, key=key)


def _gradient(method: str):
    # "auto" becomes a size rule once grid backends exist; exact is the only backend here.
    return GRADIENTS["exact" if method == "auto" else method]


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
    grad_fn = _gradient(config.negative_gradient_method)
    step = build_step(grad_fn, optimizer, ex)
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
        kl_fn=exact_kl_divergence,
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
        kl = float(jax.jit(exact_kl_divergence)(Y, P, config.dof))
    timings["total"] = time.perf_counter() - t_start
    return TSNEResult(
        np.asarray(Y),
        kl,
        int(result.state.iteration),
        result.state,
        P,
        result.kl_history,
        timings,
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
