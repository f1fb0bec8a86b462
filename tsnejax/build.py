"""A :class:`tsnejax.config.TSNEConfig` turned into the objects a run needs.

- :func:`build_optimizer`: the Optax transformation (independent of N: every value that
  changes by phase is injected and set by the phase table);
- :func:`build_backend`: the gradient method for ``n`` points;
- :func:`phase_table`: the :class:`tsnejax.schedules.Phases` of the run for ``n`` points
  (exaggeration, dof, learning rate, momentum);
- :func:`memory_plan`: the memory each stage of a run will need (:mod:`tsnejax.memory`);
- :func:`stepper_for`: the step, cached by :func:`tsnejax.config.static_signature`, so runs
  whose configs differ only in dynamic settings (any N, learning rate, exaggeration, momentum,
  dof, perplexity, iterations) reuse one compiled program in a process.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import optax

from tsnejax import memory
from tsnejax._checks import GRID_MAX_COMPONENTS, check_perplexity, outside_stacklevel
from tsnejax.config import TSNEConfig, resolve_learning_rate, static_signature
from tsnejax.gradients import Backend, get_backend
from tsnejax.gradients.exact import auto_block
from tsnejax.gradients.interpolation import DEFAULT_MAX_BOXES
from tsnejax.init import pca_solver
from tsnejax.knn import IVFSearch, auto_search, default_k
from tsnejax.optim import (
    ADAPTIVE,
    clip_row_norm,
    clip_step_norm,
    make_optimizer,
    scale_learning_rate,
    scales_with_gradient,
)
from tsnejax.run import Stepper, build_step
from tsnejax.schedules import Phases, auto_learning_rate, exaggeration_schedule
from tsnejax.shard import sharded_step

__all__ = [
    "build_optimizer",
    "check_optimizer",
    "build_backend",
    "phase_table",
    "stepper_for",
    "resolve_method",
    "n_neighbors",
    "uses_momentum",
    "affinity_key",
    "config_perplexities",
    "memory_plan",
    "grid_nodes",
    "ADAPTIVE_AUTO_LEARNING_RATE",
    "AUTO_EXACT_MAX_POINTS",
    "AUTO_ADAPTIVE_MAX_POINTS",
]

#: ``negative_gradient_method="auto"`` uses the exact gradient up to this many points and
#: interpolation above: the crossovers of the optimisation time (750 iterations, compiled
#: programs warm, as end to end with the compilation cache), MNIST PCA-50 subsets, 2-core CPU,
#: 2026-12-02 (``benchmarks/bench_end_to_end.py --methods``): 2-D 1000 exact 0.92 s vs
#: interpolation 3.9 s, 2000 4.0 vs 3.8, 2500 7.1 vs 4.6, 5000 40.5 vs 9.6 (end to end 41.7 vs
#: 12.0 s); 1-D 400 0.17 vs 0.11, 1000 0.59 vs 0.17, 5000 25.0 vs 0.56; 3-D 2500 12.3 vs 116,
#: 5000 53 vs 137 (a grid fine enough for the late phase is too large for a CPU in 3-D).
#: The interpolation KL is ~2 % above the exact one at 2.5k-5k (1.437 vs 1.409 at 5k). After
#: the exact kernel's cache-sized blocks and lane sums (2x faster; ``_lanes_rule`` run), warm
#: end to end, exact vs adaptive: 2500 points 6.5 vs 6.7-7.2 s, 4000 11.1 vs 10.3-11.8 s, 5000
#: 15.8 vs 13.9 s; cold, exact compiles one program (0.6 s warm) where adaptive compiles 2-5,
#: so exact up to 4000 (was 2000).
AUTO_EXACT_MAX_POINTS = {1: 300, 2: 4000, 3: 20000}
#: ... and ``"adaptive"`` (:mod:`tsnejax.gradients.adaptive`: exact in the chunks where the
#: grid would cost more) above that up to this many points: in 2-D the late-phase grid of a few
#: thousand points costs more than the N^2 pairs. Above 10k the exact pair cost grows (0.5 ns at
#: 5k, 0.8 ns at 12k: the rows leave the cache) and the grid stays cheaper.
#: In 3-D, 20k-30k points: the 32-box grid early, exact once the span outgrows it
#: (``WIDE_EXACT_COST``; MNIST-25k: exact KL 1.985 in 85 s against interpolation's 2.210 in
#: 76 s, ``benchmarks/bench_box_width.py``).
AUTO_ADAPTIVE_MAX_POINTS = {1: 300, 2: 10000, 3: 30000}

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


def resolve_method(method: str | Backend, n: int, n_components: int) -> str | Backend:
    """``"auto"`` -> ``"exact"`` up to :data:`AUTO_EXACT_MAX_POINTS` (and in more than 3-D),
    ``"adaptive"`` up to :data:`AUTO_ADAPTIVE_MAX_POINTS`, else ``"interpolation"``."""
    if not isinstance(method, str) or method != "auto":
        return method
    if n_components > GRID_MAX_COMPONENTS or n <= AUTO_EXACT_MAX_POINTS[n_components]:
        return "exact"
    return "adaptive" if n <= AUTO_ADAPTIVE_MAX_POINTS[n_components] else "interpolation"


def build_backend(config: TSNEConfig, n: int) -> Backend:
    """The gradient backend ``config`` asks for, for ``n`` points (a given object as is)."""
    g = config.gradient
    method = resolve_method(g.method, n, config.n_components)
    if isinstance(method, Backend):
        return method
    if method in ("interpolation", "adaptive"):
        return get_backend(
            method,
            n_interpolation_points=g.n_interpolation_points,
            min_num_intervals=g.min_num_intervals,
            ints_in_interval=g.ints_in_interval,
            max_boxes=g.max_boxes,
            deterministic_scatter=g.deterministic_scatter,
        )
    if method == "splat":
        return get_backend(
            method, pixels_per_unit=g.pixels_per_unit, deterministic_scatter=g.deterministic_scatter
        )
    return get_backend(method, deterministic_scatter=g.deterministic_scatter)


def uses_momentum(config: TSNEConfig) -> bool:
    """Whether the phase table sets ``momentum`` (classic; sgd unless its kwargs fix it)."""
    o = config.optimizer
    return o.transform == "classic" or (o.transform == "sgd" and "momentum" not in dict(o.kwargs))


def _phase_scaled(config: TSNEConfig) -> bool:
    o = config.optimizer
    if not o.is_object:
        return False
    # Probed whatever phase_scaling says: the probe is also the check that the loop can
    # drive the object (init and update on an (n, d) array), before any kNN search.
    sgd_like = _sgd_like(o.transform, config.n_components)
    return sgd_like if o.phase_scaling == "auto" else bool(o.phase_scaling)


def check_optimizer(config: TSNEConfig) -> None:
    """Raise ``ValueError`` now if ``config``'s Optax object cannot be driven by the loop
    (probed once per object, cached), so the error comes before the kNN search."""
    if config.optimizer.is_object:
        _sgd_like(config.optimizer.transform, config.n_components)


@functools.lru_cache(maxsize=64)
def _sgd_like(transform: optax.GradientTransformation, dim: int) -> bool:
    return scales_with_gradient(transform, dim)


def build_optimizer(config: TSNEConfig) -> optax.GradientTransformation:
    """The transformation ``config`` describes, with the safety rails for every optimizer.

    Registry optimizers are injected (:func:`tsnejax.optim.make_optimizer`) with placeholder
    values that the phase table overwrites before every update. An Optax object is chained as
    ``[clip_row_norm] -> object -> [scale_learning_rate] -> [clip_step_norm]``.
    """
    o = config.optimizer
    if o.transform == "classic":
        kwargs = {
            "momentum": o.initial_momentum,
            "min_gain": o.min_gain,
            "gains_rule": o.gains_rule,
            "max_step_norm": o.max_step_norm,
            "max_grad_norm": o.max_grad_norm,
            **dict(o.kwargs),
        }
        return make_optimizer("classic", learning_rate=1.0, **kwargs)
    if o.is_object:
        inner = [o.transform]
        if _phase_scaled(config):
            inner.append(scale_learning_rate(1.0))
    else:
        kwargs = dict(o.kwargs)
        if uses_momentum(config):
            kwargs["momentum"] = o.initial_momentum
        inner = [make_optimizer(o.transform, learning_rate=1.0, **kwargs)]
    if o.max_grad_norm is not None:
        inner.insert(0, clip_row_norm(o.max_grad_norm))
    if o.max_step_norm is not None:
        inner.append(clip_step_norm(o.max_step_norm))
    return inner[0] if len(inner) == 1 else optax.chain(*inner)


def _exaggeration(config: TSNEConfig) -> Any:
    s = config.schedule
    return exaggeration_schedule(
        s.early_exaggeration,
        s.early_exaggeration_iter,
        s.exaggeration,
        decay=s.exaggeration_decay,
        decay_iter=s.exaggeration_decay_iter,
    )


def _auto_rate(config: TSNEConfig, n: int) -> Any:
    """The ``"auto"`` learning rate as a schedule of the iteration."""
    return auto_learning_rate(
        n,
        _exaggeration(config),
        rule=config.optimizer.learning_rate_rule,
        early_exaggeration=config.schedule.early_exaggeration,
    )


def phase_table(config: TSNEConfig, n: int) -> Phases:
    """The run's phases for ``n`` points: exaggeration, dof and the optimizer's values.

    Boundaries: 0, the end of early exaggeration, the momentum switch, and the end of an
    exaggeration decay (whose phase carries schedules). Values equal those of the Optax
    schedules they replace at every iteration (float32 rounding of the same expressions).
    """
    s, o = config.schedule, config.optimizer
    ex = _exaggeration(config)
    early = s.early_exaggeration_iter
    decaying = s.exaggeration_decay != "step" and s.exaggeration_decay_iter > 0
    switch = early if o.momentum_switch_iter is None else o.momentum_switch_iter
    starts = {0, early, switch}
    if decaying:
        starts.add(early + s.exaggeration_decay_iter)
    total = max(config.total_iter, 1)
    starts = sorted(x for x in starts if x < total) or [0]
    lr: Any = None
    scale: Any = None
    if not o.is_object:
        if callable(o.learning_rate):  # the user's schedule holds in every phase
            lr = o.learning_rate
        elif o.learning_rate != "auto":
            lr = float(resolve_learning_rate(o.learning_rate, n))
        elif o.transform in ADAPTIVE:
            lr = ADAPTIVE_AUTO_LEARNING_RATE[o.transform]
        else:
            lr = _auto_rate(config, n)
    elif _phase_scaled(config):
        rate = _auto_rate(config, n)
        scale = _Ratio(rate, float(rate(total)))
    table = {}
    for start in starts:
        in_decay = decaying and early <= start < early + s.exaggeration_decay_iter
        values: dict[str, Any] = {
            "exaggeration": ex if in_decay else float(ex(start)),
            "dof": float(config.dof),
        }
        if lr is not None:
            # The "auto" rule is constant within a phase outside a decay: a number per phase.
            piecewise = callable(lr) and lr is not o.learning_rate and not in_decay
            values["learning_rate"] = float(lr(start)) if piecewise else lr
        if scale is not None:
            values["learning_rate_scale"] = scale if in_decay else float(scale(start))
        if uses_momentum(config):
            values["momentum"] = o.initial_momentum if start < switch else o.final_momentum
        table[start] = values
    return Phases.of(table)


class _Ratio:
    """``schedule(step) / denominator`` (hashable by value)."""

    def __init__(self, schedule: Any, denominator: float):
        self.schedule, self.denominator = schedule, denominator

    def __call__(self, step):
        return self.schedule(step) / self.denominator

    def __eq__(self, other):
        return isinstance(other, _Ratio) and (self.schedule, self.denominator) == (
            other.schedule,
            other.denominator,
        )

    def __hash__(self):
        return hash((self.schedule, self.denominator))


def n_neighbors(config: TSNEConfig, n: int, perplexity: float) -> int:
    """k of the kNN graph for ``n`` points (``config.affinities.n_neighbors``)."""
    k = config.affinities.n_neighbors
    if k == "3p":
        return default_k(n, perplexity)
    if k == "3p+1":  # scikit-learn's rule
        return int(min(n - 1, int(3 * perplexity + 1)))
    return int(min(n - 1, k))


def _perplexities(config: TSNEConfig) -> tuple[float, ...]:
    return tuple(float(p) for p in np.atleast_1d(config.affinities.perplexity))


def config_perplexities(config: TSNEConfig, n: int) -> tuple[float, ...]:
    """The config's perplexities, checked for ``n`` points before any search: with the
    perplexity kernel each is at most the graph's :func:`n_neighbors` (and ``n - 1``); the
    uniform kernel and a callable use the perplexity for ``"3p"`` alone."""
    perps = _perplexities(config)
    if config.affinities.method != "perplexity":
        return perps
    return check_perplexity(perps, n, n_neighbors(config, n, max(perps)))


def affinity_key(config: TSNEConfig, n: int) -> tuple:
    """``((neighbour search, metric, metric_params), affinity method, perplexities, k)``: what P
    depends on besides the data. Configs with one key share P; P of several keys comes from one
    graph of the largest k (its first k columns are the k-neighbour graph)."""
    a = config.affinities
    perps = _perplexities(config)
    search = (a.neighbors, a.metric, a.metric_params)
    return (search, a.method, perps, n_neighbors(config, n, max(perps)))


@functools.lru_cache(maxsize=32)
def _stepper(
    signature: TSNEConfig, method: Any, mesh: Any
) -> tuple[Stepper, optax.GradientTransformation]:
    config = signature
    optimizer = build_optimizer(config)
    backend = build_backend(config, 0)  # the method is resolved in the signature
    o = config.optimizer
    if mesh is not None:
        step = sharded_step(
            backend, optimizer, mesh, gradient_scale=o.gradient_scale, recenter=o.recenter
        )
        return step, optimizer
    step = build_step(backend, optimizer, gradient_scale=o.gradient_scale, recenter=o.recenter)
    return step, optimizer


def stepper_for(
    config: TSNEConfig, n: int, mesh: Any = None
) -> tuple[Stepper, optax.GradientTransformation]:
    """``(stepper, optimizer)`` for ``config`` at ``n`` points, shared by every config with the
    same static signature (so its compiled chunk programs are reused); with a ``mesh``, the
    point-sharded step over its axis ``"points"`` (:mod:`tsnejax.shard`)."""
    method = resolve_method(config.gradient.method, n, config.n_components)
    _warn_stale_grid(config, method)
    d = config.n_components
    if d > GRID_MAX_COMPONENTS and n > AUTO_EXACT_MAX_POINTS[GRID_MAX_COMPONENTS]:
        warnings.warn(
            f"n_components={d} runs the exact gradient (the grid methods stop at "
            f"{GRID_MAX_COMPONENTS}-D): O(N^2) per step, {float(n) ** 2:.2g} pairs per iteration "
            f"at {n} points, where a 2-D run's grid gradient is O(N). Expect a long run; "
            "n_components <= 3 is the fast path.",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )
    sig = static_signature(config).replace(negative_gradient_method=method)
    return _stepper(sig, method, mesh)


#: A chunk longer than this many times ``min_num_intervals`` can outgrow its grid while the
#: embedding expands. Digits, interpolation, KL at the end (chunk 50 / 25 / 10 / 5):
#: floor 5: 2.273 / 0.832 / 0.764 / 0.762; floor 10: 0.863 / 0.772 / 0.767 / 0.768;
#: floor 20: 0.762 / - / - / 0.760; the 3-D default 18 at chunk 50 is as good as at 5.
STALE_GRID_RATIO = 3


def _warn_stale_grid(config: TSNEConfig, method: Any) -> None:
    g, chunk = config.gradient, config.chunk_size
    floor = g.min_num_intervals
    if method not in ("interpolation", "adaptive") or floor is None:
        return
    if chunk > STALE_GRID_RATIO * floor:
        warnings.warn(
            f"min_num_intervals={floor} with chunk_size={chunk}: the grid is sized at each "
            "chunk's start, and while the embedding expands (after early exaggeration) a chunk "
            "outgrows a grid that coarse (digits: KL 2.27 at min_num_intervals=5, chunk_size=50; "
            f"0.76 at chunk_size=10). Use chunk_size <= {STALE_GRID_RATIO * floor} or "
            f"min_num_intervals >= {math.ceil(chunk / STALE_GRID_RATIO)}.",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )


def grid_nodes(config: TSNEConfig, n: int) -> int:
    """Interpolation nodes of the late-phase grid for ``n`` points (memory estimates): about
    ``50 + sqrt(n)`` boxes per axis (measured: 162 at the end of an MNIST-10k run, ~256 at
    70k), capped as the grid is, times ``n_interpolation_points``, to the power ``dim``."""
    g, dim = config.gradient, config.n_components
    boxes = min(g.max_boxes or DEFAULT_MAX_BOXES[dim], 50 + math.sqrt(n))
    return int(boxes * g.n_interpolation_points) ** dim


def memory_plan(
    config: TSNEConfig,
    n: int,
    d: int | None,
    *,
    search: bool = True,
    calibrate: bool = True,
    batch: int = 1,
    shards: int = 1,
) -> list[memory.Stage]:
    """The stages of a :func:`tsnejax.fit` of ``n`` points in ``d`` features whose size is
    known up front, with estimated peaks and the setting that fits when one does not
    (:func:`tsnejax.memory.check_plan` compares them with the free memory).

    ``search=False``: the kNN graph is given; ``calibrate=False``: P is given; ``d=None``: no
    data (no PCA, no search); ``batch``: trials vmapped together (:func:`tsnejax.fit_batch`);
    ``shards``: devices the points are split over (:mod:`tsnejax.shard`; per-device stages
    hold ``1 / shards`` of the points).
    """
    dim = config.n_components
    stages: list[memory.Stage] = []
    k = n_neighbors(config, n, max(_perplexities(config)))
    if d is not None and config.initialization == "pca":
        solver = pca_solver(n, d)
        stages.append(
            memory.Stage(
                f"PCA initialisation ({solver} solver) of a {n} x {d} matrix",
                memory.pca_bytes(n, d, solver),
                "host",
                "reduce the features first (e.g. PCA to 50) or pass initialization='random'",
            )
        )
    if search and d is not None:
        how = config.affinities.neighbors
        if how == "sharded":
            local = -(-n // shards)
            stages.append(
                memory.Stage(
                    f"the sharded kNN search of {n} points x {d} features over {shards} devices",
                    4 * (2 * local * d + 2 * 256 * local + 4 * local * k),
                    "device",
                    "split the points over more devices, or reduce the features first",
                )
            )
        elif how == "exact" or (how == "auto" and auto_search(n, d) == "exact"):
            stages.append(
                memory.Stage(
                    f"the exact kNN search of {n} points x {d} features (k={k})",
                    memory.exact_knn_bytes(n, d, k),
                    "device",
                    "use neighbors='ivf', or reduce the features first (PCA to 50)",
                )
            )
        elif how in ("ivf", "auto") or isinstance(how, IVFSearch):
            effort = how if isinstance(how, IVFSearch) else IVFSearch()
            stages.append(
                memory.Stage(
                    f"the cluster-pruned kNN search of {n} points x {d} features (k={k})",
                    memory.ivf_knn_bytes(n, d, k, effort.candidates, effort.query_tile),
                    "device",
                    "reduce the features first (PCA to 50), or use neighbors='pynndescent'",
                )
            )
    if calibrate:
        stages.append(
            memory.Stage(
                f"the affinities of {n} points with k={k} neighbours",
                memory.affinity_bytes(n, k),
                "host",
                "lower the perplexity or n_neighbors",
            )
        )
    method = resolve_method(config.gradient.method, n, dim)
    if isinstance(method, str) and method in ("exact", "adaptive"):
        stages.append(
            memory.Stage(
                f"the exact O(N^2) gradient of {n} points ({batch} trial(s) at once)",
                batch * memory.exact_gradient_bytes(n, dim, auto_block(n)),
                "device",
                "use negative_gradient_method='interpolation' (or 'splat')",
            )
        )
    nodes = 0 if isinstance(method, str) and method == "exact" else grid_nodes(config, n)
    stages.append(
        memory.Stage(
            f"the optimisation of {batch} trial(s) of {n} points",
            batch * memory.optimization_bytes(n, dim, int(1.5 * k) + 1, nodes) // shards,
            "device",
            "run fewer trials at once (batch_size) or embed fewer points",
        )
    )
    return stages
