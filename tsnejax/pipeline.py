"""The full t-SNE pipeline as one function: data -> kNN -> P -> init -> optimisation.

:func:`fit` is what :class:`tsnejax.TSNE` and ``tsnejax embed`` call; every stage is also a
public function of its own module (``knn``, ``affinity``, ``init``, ``gradients``, ``optim``,
``run``). Defaults follow openTSNE 1.0.4: perplexity 30, k = 3 * perplexity, PCA init
rescaled to std 1e-4, 250 iterations at exaggeration 12 then 500 at exaggeration 1,
learning rate N / exaggeration, momentum 0.8, gains ``0.8 g + 0.01``, steps clipped to 5.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
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
from tsnejax.optim import (
    ADAPTIVE,
    GAINS_RULES,
    OPTIMIZERS,
    clip_row_norm,
    clip_step_norm,
    exaggerate,
    get_hyperparams,
    make_optimizer,
    set_hyperparams,
)
from tsnejax.presets import preset_fields
from tsnejax.run import DivergenceError, Stepper, TSNEState, build_step, init_state, optimize
from tsnejax.schedules import (
    EXAGGERATION_DECAYS,
    LR_RULES,
    auto_learning_rate,
    exaggeration_schedule,
    momentum_schedule,
)

__all__ = [
    "TSNEConfig",
    "TSNEResult",
    "fit",
    "build_optimizer",
    "make_backend",
    "resolve_method",
    "hyperparameter_phases",
    "GRADIENT_METHODS",
    "ADAPTIVE_AUTO_LEARNING_RATE",
]

GRADIENT_METHODS = ("auto", "exact", "interpolation", "splat")
#: ``negative_gradient_method="auto"`` uses the exact gradient up to this many points and
#: interpolation above. Measured on MNIST subsets (optimisation + compilation, 750
#: iterations, 2-core CPU): 2-D 2.5k exact 4.3 s vs interpolation 11.7 s, 5k 14.9 vs 15.3,
#: 8k 43.5 vs 16.8; 1-D 2.5k 3.0 vs 4.9, 5k 19.1 vs 7.1. In 3-D a grid fine enough for the
#: late phase is too large for a CPU (docs/gradients.md), so exact is kept up to 20k.
AUTO_EXACT_MAX_POINTS = {1: 3500, 2: 5000, 3: 20000}
NEIGHBOR_METHODS = ("auto", "exact", "pynndescent")
STOPPING_RULES = ("fixed", "optsne")
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
    learning_rate_rule: Literal["opentsne", "fitsne", "sklearn", "cuml"] = "opentsne"
    initial_momentum: float = 0.8
    final_momentum: float = 0.8
    momentum_switch_iter: int | None = None  # None: at the end of early exaggeration
    gains_rule: Literal["opentsne", "fitsne", "sklearn"] = "opentsne"
    exaggeration_decay: Literal["step", "linear", "exponential"] = "step"
    exaggeration_decay_iter: int = 150
    dof: float = 1.0  # inf: Gaussian kernel
    initialization: Literal["pca", "random"] = "pca"
    negative_gradient_method: Literal["auto", "exact", "interpolation", "splat"] = "auto"
    n_interpolation_points: int = 3
    min_num_intervals: int | None = None  # None: 50 boxes in 1-D/2-D, 18 in 3-D
    ints_in_interval: float = 1.0
    max_boxes: int | None = None  # None: 1000 in 1-D/2-D, 64 in 3-D
    pixels_per_unit: float = 4.0  # splat resolution
    neighbors: Literal["auto", "exact", "pynndescent"] = "auto"
    n_neighbors: int | Literal["3p", "3p+1"] = "3p"  # k, or a rule in the perplexity
    max_step_norm: float | None = 5.0
    max_grad_norm: float | None = None
    min_gain: float = 0.01
    gradient_scale: float = 1.0  # 4: scikit-learn's (true) gradient
    recenter: bool = True
    optimizer: str = "classic"  # a name in tsnejax.optim.OPTIMIZERS
    optimizer_kwargs: tuple[tuple[str, Any], ...] = ()  # e.g. (("b1", 0.9),)
    stopping: Literal["fixed", "optsne"] = "fixed"
    optsne_tol: float = 1e-4  # opt-SNE: stop when KL falls < 0.01 % per iteration
    chunk_size: int = 50

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> TSNEConfig:
        """A config with a peer's conventions (:mod:`tsnejax.presets`), then ``overrides``."""
        fields = preset_fields(preset)
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{unknown} are not TSNEConfig fields.")
        fields.update(overrides)
        return cls(**fields).validate()

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
        check_option("learning_rate_rule", self.learning_rate_rule, LR_RULES)
        check_option("gains_rule", self.gains_rule, GAINS_RULES)
        check_option("exaggeration_decay", self.exaggeration_decay, EXAGGERATION_DECAYS)
        check_int("exaggeration_decay_iter", self.exaggeration_decay_iter, minimum=0)
        if self.momentum_switch_iter is not None:
            check_int("momentum_switch_iter", self.momentum_switch_iter, minimum=0)
        if isinstance(self.n_neighbors, str):
            check_option("n_neighbors", self.n_neighbors, ("3p", "3p+1"))
        else:
            check_int("n_neighbors", self.n_neighbors, minimum=1)
        if self.max_grad_norm is not None:
            check_positive("max_grad_norm", self.max_grad_norm)
        check_positive("gradient_scale", self.gradient_scale)
        check_option("optimizer", self.optimizer, OPTIMIZERS)
        check_option("stopping", self.stopping, STOPPING_RULES)
        check_positive("optsne_tol", self.optsne_tol)
        check_positive("initial_momentum", self.initial_momentum, allow_zero=True)
        check_positive("final_momentum", self.final_momentum, allow_zero=True)
        if not (isinstance(self.dof, int | float) and self.dof == float("inf")):
            check_positive("dof", self.dof)  # inf: the Gaussian kernel (SNE's limit)
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
    stepper: Stepper  # the compiled-once step; resume with optimize(stepper, state, P, n)
    early_exaggeration_iter: int  # where the main phase began (differs under opt-SNE)
    neighbors: KNNGraph | None = None  # the kNN graph P came from (None: P was given)


def _resolve_neighbors(X: np.ndarray | None, neighbors: Any, k: int, key: PRNGKey) -> KNNGraph:
    if isinstance(neighbors, KNNGraph):
        return precomputed_knn(neighbors.indices, neighbors.distances)
    if isinstance(neighbors, tuple | list) and len(neighbors) == 2:
        return precomputed_knn(*neighbors)
    if X is None:
        raise ValueError("X is required unless affinities or precomputed neighbors are given.")
    return nearest_neighbors(X, k, method=neighbors, key=key)


def _n_neighbors(config: TSNEConfig, n: int, perplexity: float) -> int:
    if config.n_neighbors == "3p":
        return default_k(n, perplexity)
    if config.n_neighbors == "3p+1":  # scikit-learn's rule
        return int(min(n - 1, int(3 * perplexity + 1)))
    return int(min(n - 1, config.n_neighbors))


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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
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
      checkpoint: path of an ``.npz`` state file. If it exists (from an interrupted run with the
        same data, config and key) the run resumes from it; the state is saved there every
        ``checkpoint_every`` iterations (default ``config.chunk_size``), at the end and on
        divergence. A resumed run ends with the same embedding as an uninterrupted one.
    """
    config.validate()
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    k_knn, k_init = jax.random.split(key)
    Xv = check_data(X) if X is not None else None

    t0 = time.perf_counter()
    knn = None
    if affinities is None:
        n = Xv.shape[0] if Xv is not None else np.shape(neighbors[0])[0]
        perps = check_perplexity(config.perplexity, n)
        knn_spec = neighbors if neighbors is not None else config.neighbors
        knn = _resolve_neighbors(Xv, knn_spec, _n_neighbors(config, n, max(perps)), k_knn)
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

    optimizer, lr_of, ex_of = build_optimizer(config, n, optimizer)
    backend = make_backend(config, n)
    step = build_step(
        backend, optimizer, gradient_scale=config.gradient_scale, recenter=config.recenter
    )
    state = init_state(Y0, optimizer)

    def describe(it: int) -> str:
        phase = "early exaggeration" if it <= config.early_exaggeration_iter else "main phase"
        rate = lr_of(it - 1)
        rate = "optimizer's own" if rate is None else f"{rate:g}"
        return f"{phase}, exaggeration={ex_of(it - 1):g}, learning_rate={rate}"

    run = functools.partial(
        optimize,
        step,
        P=P,
        dof=config.dof,
        callbacks_every=callbacks_every,
        verbose=verbose,
        describe=describe,
    )
    if config.stopping == "fixed":
        ck = {}
        if checkpoint is not None:
            fingerprint = _fingerprint(config, key, Y0, P)
            state = _resume(checkpoint, optimizer, state, fingerprint)
            ck = dict(
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                checkpoint_meta={"fingerprint": fingerprint, "total_iter": config.total_iter},
            )
        result = run(
            state=state,
            n_iter=config.total_iter - int(state.iteration),
            chunk_size=config.chunk_size,
            callbacks=callbacks,
            **ck,
        )
        early_iter = config.early_exaggeration_iter
    else:
        if checkpoint is not None:
            raise ValueError(
                "checkpoint is not supported with stopping='optsne' (its phase switch is "
                "decided on the fly); use stopping='fixed'."
            )
        result, early_iter = _optsne(run, state, config, n, lr_of, callbacks)
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
        step,
        early_iter,
        knn,
    )


#: ``learning_rate="auto"`` for the adaptive optimizers (:data:`tsnejax.optim.ADAPTIVE`), in
#: embedding units per step: the best of {0.03, 0.1, 0.3, 1, 3, 10} by final KL on MNIST-10k
#: with the default schedule (experiments/optimizer_ablation.py; docs/optimizers.md).
ADAPTIVE_AUTO_LEARNING_RATE = {
    "adam": 3.0,
    "nadam": 3.0,
    "adabelief": 3.0,
    "rmsprop": 3.0,
    "lion": 0.1,
}


def build_optimizer(
    config: TSNEConfig,
    n: int,
    optimizer: optax.GradientTransformation | None = None,
    *,
    piecewise: bool = False,
) -> tuple[optax.GradientTransformation, Any, Any]:
    """The Optax transformation ``config`` describes for ``n`` points.

    Returns ``(transformation, lr_of, ex_of)``: the transformation is
    ``optax.chain(exaggerate(schedule), inner)`` with ``inner`` the given ``optimizer`` or the
    registry optimizer ``config.optimizer`` wrapped in ``optax.inject_hyperparams``;
    ``lr_of(step)`` / ``ex_of(step)`` give the learning rate (``None`` for a given optimizer)
    and exaggeration at a step, for messages. Under ``stopping="optsne"`` every value is a
    constant of the early phase, which :func:`fit` overwrites at the phase switch.
    ``piecewise=True`` does the same for a fixed schedule: the caller sets the values of
    :func:`hyperparameter_phases` at each boundary (the sweep executor, so that trials with
    different values share one compiled program and can be vmapped).
    """
    optsne = config.stopping == "optsne" or piecewise
    if optsne and config.exaggeration_decay != "step":
        raise ValueError(
            "exaggeration_decay must be 'step' with stopping='optsne' (opt-SNE decides when "
            "early exaggeration ends) and in sweeps that vary hyperparameters per trial."
        )
    ex_schedule = exaggeration_schedule(
        config.early_exaggeration,
        config.early_exaggeration_iter,
        config.exaggeration,
        decay=config.exaggeration_decay,
        decay_iter=config.exaggeration_decay_iter,
    )

    def ex_of(step: int) -> float:
        return float(ex_schedule(max(step, 0)))

    ex = config.early_exaggeration if optsne else ex_schedule
    if optimizer is not None:
        return optax.chain(exaggerate(ex), optimizer), lambda step: None, ex_of

    name, kwargs = config.optimizer, dict(config.optimizer_kwargs)
    if config.learning_rate != "auto":
        lr_schedule = optax.constant_schedule(float(config.learning_rate))
    elif name in ADAPTIVE:
        lr_schedule = optax.constant_schedule(ADAPTIVE_AUTO_LEARNING_RATE[name])
    else:
        lr_schedule = auto_learning_rate(
            n,
            ex_schedule,
            rule=config.learning_rate_rule,
            early_exaggeration=config.early_exaggeration,
        )

    def lr_of(step: int) -> float:
        return float(lr_schedule(max(step, 0)))

    switch = config.momentum_switch_iter
    switch = config.early_exaggeration_iter if switch is None else switch
    # Numbers, not constant schedules, where the value does not change, so that
    # set_hyperparams can overwrite them (a schedule is re-evaluated at every update).
    phase_dependent = lr_of(0) != lr_of(config.total_iter)
    lr = lr_schedule if phase_dependent and not optsne else lr_of(0)
    if optsne or config.initial_momentum == config.final_momentum:
        momentum = config.initial_momentum
    else:
        momentum = momentum_schedule(config.initial_momentum, config.final_momentum, switch)
    if name == "classic":
        kwargs = {
            "momentum": momentum,
            "min_gain": config.min_gain,
            "gains_rule": config.gains_rule,
            "max_step_norm": config.max_step_norm,
            "max_grad_norm": config.max_grad_norm,
            **kwargs,
        }
        return (
            optax.chain(exaggerate(ex), make_optimizer(name, learning_rate=lr, **kwargs)),
            lr_of,
            ex_of,
        )
    if name == "sgd":
        kwargs.setdefault("momentum", momentum)
    inner = [make_optimizer(name, learning_rate=lr, **kwargs)]
    if config.max_grad_norm is not None:
        inner.insert(0, clip_row_norm(config.max_grad_norm))
    if config.max_step_norm is not None:
        inner.append(clip_step_norm(config.max_step_norm))
    return optax.chain(exaggerate(ex), *inner), lr_of, ex_of


def hyperparameter_phases(config: TSNEConfig, n: int) -> list[tuple[int, dict[str, float]]]:
    """The schedule of ``config`` as piecewise-constant values: ``[(start_step, values)]``.

    ``values`` holds ``exaggeration``, ``learning_rate`` (registry optimizers) and ``momentum``
    (classic, and sgd unless its kwargs fix it), each as the schedule :func:`build_optimizer`
    would evaluate at ``start_step`` (same float32 rounding). Setting them with
    :func:`tsnejax.optim.set_hyperparams` at each start on a ``piecewise=True`` optimizer
    reproduces the scheduled run. Needs ``exaggeration_decay="step"``.
    """
    if config.exaggeration_decay != "step":
        raise ValueError("hyperparameter_phases needs exaggeration_decay='step'.")
    _, lr_of, ex_of = build_optimizer(dataclasses.replace(config, stopping="fixed"), n)
    switch = config.momentum_switch_iter
    switch = config.early_exaggeration_iter if switch is None else switch
    momentum = momentum_schedule(config.initial_momentum, config.final_momentum, switch)
    has_momentum = config.optimizer == "classic" or (
        config.optimizer == "sgd" and "momentum" not in dict(config.optimizer_kwargs)
    )
    total = config.total_iter
    starts = sorted({0, config.early_exaggeration_iter, switch} & set(range(total)))
    phases = []
    for start in starts:
        values = {"exaggeration": ex_of(start), "learning_rate": lr_of(start)}
        if has_momentum:
            values["momentum"] = float(momentum(start))
        phases.append((start, values))
    return phases or [(0, {"exaggeration": ex_of(0), "learning_rate": lr_of(0)})]


class _OptSNEStop:
    """opt-SNE rules (Belkina et al. 2019) on the KL reported every few iterations.

    The relative KL decrease per iteration, ``(KL_prev - KL) / KL_prev / iterations``, is
    measured between reports. ``"early"``: end early exaggeration once it has fallen below its
    previous value ``patience`` times (its peak has passed; the opt-SNE code also waits for the
    third decrease, since the rate is noisy). ``"main"``: stop once it is below ``tol``.
    """

    def __init__(self, phase: str, tol: float, patience: int = 3):
        self.phase, self.tol, self.patience = phase, tol, patience
        self.last: tuple[int, float] | None = None
        self.rate = -np.inf
        self.decreases = 0
        self.stopped_at: int | None = None

    def __call__(self, iteration: int, kl: float, Y: Any) -> bool:
        del Y
        last, self.last = self.last, (iteration, kl)
        if last is None:
            return False
        rate = (last[1] - kl) / abs(last[1]) / max(iteration - last[0], 1)
        previous, self.rate = self.rate, rate
        if self.phase == "early":
            self.decreases += rate < previous
            stop = self.decreases >= self.patience
        else:
            stop = rate < self.tol
        if stop:
            self.stopped_at = iteration
        return stop


def _optsne(run, state, config: TSNEConfig, n: int, lr_of, callbacks) -> Any:
    """Early exaggeration until opt-SNE ends it, then the main phase until KL stalls.

    ``early_exaggeration_iter`` and ``n_iter`` are the most iterations of each phase.
    """
    every = min(config.chunk_size, 10)
    early = _OptSNEStop("early", config.optsne_tol)
    first = run(
        state=state,
        n_iter=config.early_exaggeration_iter,
        chunk_size=every,
        callbacks=[early, *callbacks],
    )
    if first.stopped_early and early.stopped_at is None:  # a user callback asked to stop
        return first, int(first.state.iteration)
    early_iter = int(first.state.iteration)
    values = {"exaggeration": config.exaggeration}
    if config.learning_rate == "auto" and config.optimizer not in ADAPTIVE:
        # The phase-dependent rule evaluated after early exaggeration.
        values["learning_rate"] = lr_of(config.early_exaggeration_iter)
    hyper = get_hyperparams(first.state.opt_state)
    if "momentum" in hyper:
        values["momentum"] = config.final_momentum
    values = {k: v for k, v in values.items() if k in hyper}
    state = first.state._replace(opt_state=set_hyperparams(first.state.opt_state, **values))
    main = _OptSNEStop("main", config.optsne_tol)
    second = run(state=state, n_iter=config.n_iter, chunk_size=every, callbacks=[main, *callbacks])
    return second._replace(
        kl_history=first.kl_history + second.kl_history,
        grad_norms=np.concatenate([first.grad_norms, second.grad_norms]),
        compile_seconds=first.compile_seconds + second.compile_seconds,
        run_seconds=first.run_seconds + second.run_seconds,
        n_compiles=first.n_compiles + second.n_compiles,
        grids=first.grids + [g for g in second.grids if g not in first.grids],
    ), early_iter


def _fingerprint(config: TSNEConfig, key: PRNGKey, Y0: Array, P: Affinities) -> str:
    """A digest of what determines the run: config, key, P and the initial embedding."""
    h = hashlib.sha256()
    h.update(repr(config).encode())
    h.update(np.asarray(jax.random.key_data(key)).tobytes())
    for a in [Y0, *jax.tree.leaves(P)]:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.shape, a.dtype)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


def _resume(path: Any, optimizer: Any, state: TSNEState, fingerprint: str) -> TSNEState:
    from pathlib import Path

    from tsnejax.checkpoint import load_meta, load_state

    if not Path(path).exists():
        return state
    meta = load_meta(path)
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(
            f"checkpoint {str(path)!r} was written by a run with different data, settings or "
            "key; delete it or choose another checkpoint path."
        )
    if "diverged_at" in meta:
        raise ValueError(
            f"checkpoint {str(path)!r} holds the last finite state of a run that diverged at "
            f"iteration {meta['diverged_at']}; resuming would diverge again. Change the "
            "settings (and the checkpoint path)."
        )
    return load_state(path, optimizer)


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
