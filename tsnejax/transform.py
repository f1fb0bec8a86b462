"""New points into a fixed embedding: openTSNE's ``transform`` and ``prepare_partial``.

Each new point gets affinities to its ``k`` nearest *reference* points (perplexity 5,
normalised per point), starts at the median (or P-weighted mean, or nearest) of those
neighbours' positions, and is optimised against the fixed reference alone: attraction to its
reference neighbours, repulsion from all reference points. New points never interact, and the
repulsion is normalised per point (openTSNE's ``pairwise_normalization=False``):

.. math::
    \\nabla_i = \\rho \\sum_j p_{j|i} \\frac{y_i - y_j}{1 + d_{ij}^2/\\alpha}
              - \\frac{1}{Z_i} \\sum_j w_{ij} \\frac{y_i - y_j}{1 + d_{ij}^2/\\alpha},
    \\qquad Z_i = \\sum_j w_{ij}

(``j`` over reference points; openTSNE's expression, which is half the derivative of the
per-point objective :math:`KL(P_i \\| Q_i)` since only :math:`y_i` moves). So a point
transformed alone lands where it lands in a batch (tested to 1e-5), and the reference never
moves.

Repulsion: ``"exact"`` sums over all reference points in blocks (O(m N)); ``"interpolation"``
computes the reference's potentials once on a frozen FIt-SNE grid (the reference's square
domain padded by 25 % per side, openTSNE's ``prepare_interpolation_grid(padding=0.25)``) and
each step only interpolates them at the new points (O(m p^d) per step, no FFT). New points are
kept inside the grid (clipped to it after each step; openTSNE clips to a disc).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from tsnejax._checks import (
    GRID_MAX_COMPONENTS,
    check_dof,
    check_finite_rows,
    check_grid_components,
    check_int,
    check_momentum,
    check_option,
    check_perplexity_value,
    check_positive,
    float_dtype,
    outside_stacklevel,
)
from tsnejax._transform_field import (
    ReferenceField,
    exact_reference_repulsion,
    field_repulsion,
    frozen_grid_boxes,
    reference_field,
)
from tsnejax._types import Array, ArrayLike, PRNGKey, Scalar
from tsnejax.affinity import conditional_perplexity
from tsnejax.gradients._backend import Backend
from tsnejax.gradients._kernel import inv_base, log_kernel
from tsnejax.gradients.interpolation import WIDE_BOXES, InterpolationGrid
from tsnejax.knn import KNNGraph, knn_query, precomputed_knn
from tsnejax.knn_index import GraphIndex, complete_query
from tsnejax.knn_metric import check_input, check_new_points, metric_query
from tsnejax.optim import make_optimizer
from tsnejax.run import build_step, init_state, optimize
from tsnejax.schedules import Phases

__all__ = [
    "TransformConfig",
    "TransformResult",
    "Reference",
    "ReferenceField",
    "transform",
    "prepare_partial",
    "place",
    "reference_field",
    "field_repulsion",
    "exact_reference_repulsion",
    "transform_gradient",
    "PLACEMENTS",
    "transform_phases",
]

PLACEMENTS = ("median", "weighted", "nearest")
#: ``method="auto"`` sums the repulsion exactly up to this many (new, reference) pairs. The
#: 250 exact steps cost ~3 ns per pair on two cores (6000 x 1000: 4.8 s) against ~0.2 s for the
#: frozen grid at any size up to 60k x 10k; they cross near 1e5 pairs.
EXACT_MAX_PAIRS = 1e5
#: ... and up to this many where the frozen grid would be capped wide (3-D): 6 ns per pair
#: and step there (1500 x 1188 in 3-D: 2.6 s), so ~30 s of exact sums before the wide grid's
#: >10 % error is taken instead, with a warning.
EXACT_MAX_PAIRS_WIDE = 2e7
#: Reference neighbours per new point at the default perplexity 5 (openTSNE's ``k``).
DEFAULT_K = 25


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    """Settings of :func:`transform` (defaults: openTSNE 1.0.4 ``TSNEEmbedding.transform``)."""

    perplexity: float = 5.0
    #: reference neighbours per new point; None: 25, or 3 * perplexity when that is more (as
    #: openTSNE sizes its query), so ``transform(X, perplexity=10)`` needs no ``k`` too
    k: int | None = None
    initialization: Literal["median", "weighted", "nearest"] = "median"
    learning_rate: float = 0.1
    early_exaggeration: float = 4.0
    early_exaggeration_iter: int = 0
    exaggeration: float = 1.5
    n_iter: int = 250
    initial_momentum: float = 0.8
    final_momentum: float = 0.8
    max_grad_norm: float | None = 0.25
    max_step_norm: float | None = None
    method: Literal["auto", "exact", "interpolation"] = "auto"
    n_interpolation_points: int = 3
    ints_in_interval: float = 1.0
    min_num_intervals: int | None = None  # None: DEFAULT_MIN_BOXES (50; 18 in 3-D)
    padding: float = 0.25
    neighbors: Literal["auto", "exact", "graph", "ivf", "pynndescent"] = "auto"
    chunk_size: int = 50

    @property
    def n_neighbors(self) -> int:
        """``k``, or its default for this perplexity (see the field)."""
        if self.k is not None:
            return self.k
        return max(DEFAULT_K, math.ceil(3 * self.perplexity))

    def validate(self) -> TransformConfig:
        if self.k is not None:
            check_int("k", self.k, minimum=1)
        if self.k is None or self.k >= 3:  # k = 1, 2 need a perplexity below 1 (openTSNE)
            check_perplexity_value("perplexity", self.perplexity)
        else:
            check_positive("perplexity", self.perplexity)
        check_option("initialization", self.initialization, PLACEMENTS)
        check_positive("learning_rate", self.learning_rate)
        check_positive("early_exaggeration", self.early_exaggeration)
        check_int("early_exaggeration_iter", self.early_exaggeration_iter, minimum=0)
        check_positive("exaggeration", self.exaggeration)
        check_int("n_iter", self.n_iter, minimum=0)
        check_momentum("initial_momentum", self.initial_momentum)
        check_momentum("final_momentum", self.final_momentum)
        if self.max_grad_norm is not None:
            check_positive("max_grad_norm", self.max_grad_norm)
        if self.max_step_norm is not None:
            check_positive("max_step_norm", self.max_step_norm)
        check_option("method", self.method, ("auto", "exact", "interpolation"))
        check_int("n_interpolation_points", self.n_interpolation_points, minimum=1)
        check_positive("ints_in_interval", self.ints_in_interval)
        if self.min_num_intervals is not None:
            check_int("min_num_intervals", self.min_num_intervals, minimum=1)
        check_positive("padding", self.padding, allow_zero=True)
        check_option("neighbors", self.neighbors, ("auto", "exact", "graph", "ivf", "pynndescent"))
        check_int("chunk_size", self.chunk_size, minimum=1)
        if self.k is not None and self.perplexity > self.k:  # openTSNE's bound
            raise ValueError(
                f"perplexity={self.perplexity:g} needs k >= perplexity reference neighbours "
                f"(3 * perplexity = {3 * self.perplexity:g} is the usual choice); got k={self.k}."
            )
        return self


class Reference(NamedTuple):
    """What the transform gradient needs: the new points' P rows and the fixed reference."""

    neighbors: Array  # (m, k) int32 indices into Y_ref
    weights: Array  # (m, k) p_{j|i}, rows sum to 1
    Y_ref: Array  # (N, d)
    field: ReferenceField | None  # None for the exact repulsion
    bounds: Array | None = None  # (2,) new points are clipped to [lo, hi] (grid method)


def _attraction(Y: Array, ref: Reference, dof: Scalar) -> tuple[Array, Array]:
    Yn = jnp.take(ref.Y_ref, ref.neighbors, axis=0)  # (m, k, d)
    diff = Y[:, None, :] - Yn
    d2 = jnp.sum(diff * diff, axis=-1)
    return jnp.sum((ref.weights * inv_base(d2, dof))[..., None] * diff, axis=1), d2


def _repulsion(Y: Array, ref: Reference, dof: Scalar, grid: Any) -> tuple[Array, Array]:
    if ref.field is None:
        return exact_reference_repulsion(Y, ref.Y_ref, dof)
    return field_repulsion(Y, ref.field, grid)


def transform_gradient(
    Y: Array, ref: Reference, dof: Scalar, exaggeration: Scalar, grid: Any
) -> tuple[Array, Array]:
    """Per-point gradient of the new points (module docstring) and the mean ``Z_i``."""
    attr, _ = _attraction(Y, ref, dof)
    R, Z = _repulsion(Y, ref, dof, grid)
    return exaggeration * attr - R / Z[:, None], jnp.mean(Z)


def _kl(Y: Array, ref: Reference, dof: Scalar, grid: Any) -> Array:
    """Mean over new points of KL(P_i || Q_i), q_{j|i} = w_ij / Z_i over reference points."""
    _, d2 = _attraction(Y, ref, dof)
    _, Z = _repulsion(Y, ref, dof, grid)
    p = ref.weights
    plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    kl = jnp.sum(plogp - p * log_kernel(d2, dof), axis=1) + jnp.sum(p, axis=1) * jnp.log(Z)
    return jnp.mean(kl)


# A transform with ``n_iter=0`` reports the KL outside the loop: one program, where op by op it
# cost a compile per operation (about 15) for every new shape.
_kl_once = jax.jit(_kl, static_argnames=("dof", "grid"))


def _clip_to_bounds(Y: Array, ref: Reference) -> Array:
    return jnp.clip(Y, ref.bounds[0], ref.bounds[1])


@functools.lru_cache(maxsize=16)
def _stepper(config: TransformConfig, method: str, grid: Any):
    """One step function (hence one set of compiled chunk programs) per settings and grid."""
    backend = Backend(f"transform-{method}", transform_gradient, _kl, lambda Y: grid)
    optimizer = make_optimizer(
        "classic",
        learning_rate=config.learning_rate,
        momentum=config.initial_momentum,
        max_step_norm=config.max_step_norm,
        max_grad_norm=config.max_grad_norm,
    )
    project = None if method == "exact" else _clip_to_bounds
    return build_step(backend, optimizer, recenter=False, project=project), optimizer


def transform_phases(config: TransformConfig, dof: float) -> Phases:
    """Early exaggeration (if any), then the main phase: exaggeration and momentum.

    Without an early phase (the default) the main phase starts at 0 with the learning rate and
    dof: the two phases written as ``{0: ..., 0: ...}`` lost both, so every transform ran the
    Cauchy kernel (dof 1) whatever the reference's dof, and the frozen grid's field (built with
    the right dof) disagreed with the attraction until new points flew to the grid's edge."""
    first = {
        "exaggeration": config.early_exaggeration,
        "momentum": config.initial_momentum,
        "learning_rate": config.learning_rate,
        "dof": float(dof),
    }
    main = {"exaggeration": config.exaggeration, "momentum": config.final_momentum}
    if config.early_exaggeration_iter == 0:
        return Phases.of({0: {**first, **main}})
    return Phases.of({0: first, config.early_exaggeration_iter: main})


def place(
    Y_ref: ArrayLike,
    neighbors: ArrayLike,
    weights: ArrayLike | None = None,
    method: Literal["median", "weighted", "nearest"] = "median",
) -> Array:
    """Initial positions of new points from their reference neighbours ``(m, k)``.

    ``"median"``: coordinate-wise median of the neighbours' positions (openTSNE's default);
    ``"weighted"``: mean weighted by ``weights`` (P rows); ``"nearest"``: the nearest
    neighbour's position (``prepare_partial`` with k = 1).
    """
    check_option("initialization", method, PLACEMENTS)
    Y_ref = jnp.asarray(Y_ref)
    Yn = jnp.take(Y_ref, jnp.asarray(neighbors), axis=0)
    if method == "median":
        return jnp.median(Yn, axis=1)
    if method == "nearest":
        return Yn[:, 0]
    if weights is None:
        raise ValueError("initialization='weighted' needs the affinity weights.")
    w = jnp.asarray(weights, Y_ref.dtype)
    return jnp.sum(w[..., None] * Yn, axis=1) / jnp.sum(w, axis=1, keepdims=True)


def _check_reference(Y_ref: ArrayLike, n_ref: int) -> np.ndarray:
    Y = np.asarray(Y_ref, float_dtype())  # float64 under jax_enable_x64, as fit computes
    if Y.ndim != 2 or Y.shape[0] != n_ref or Y.shape[1] < 1:
        raise ValueError(
            f"Y_ref has shape {Y.shape}; it must be (n_ref, n_components) with n_ref = {n_ref} "
            "rows of X_ref and at least 1 component."
        )
    # NaN rows made the first step "diverge", which blamed the learning rate.
    return check_finite_rows(Y, "Y_ref", "the reference embedding must be finite")


def prepare_partial(
    X_new: ArrayLike,
    X_ref: ArrayLike,
    Y_ref: ArrayLike,
    *,
    config: TransformConfig = TransformConfig(),
    key: PRNGKey | None = None,
    neighbors: KNNGraph | None = None,
    index: GraphIndex | None = None,
    metric: Any = "euclidean",
    metric_params: Any = None,
    _complete: bool = True,
) -> tuple[Array, KNNGraph, Array]:
    """Place new points without optimising: ``(Y_init (m, d), kNN into X_ref, P rows)``.

    ``index``: a :func:`tsnejax.knn_index.build_graph_index` of ``X_ref`` (from the kNN graph
    of its fit) for the approximate neighbour search; see :func:`tsnejax.knn.knn_query`.
    ``metric``: the reference's (:mod:`tsnejax.knn_metric`; ``"precomputed"``: ``X_new`` holds
    the ``(m, N)`` distances to the reference points).
    """
    config.validate()
    Xn = check_new_points(X_new, metric)
    Xr = check_input(X_ref, metric, name="X_ref")
    Y_ref = jnp.asarray(_check_reference(Y_ref, Xr.shape[0]))
    if index is not None and metric != "euclidean":
        raise ValueError(f"index= is a Euclidean graph index; metric={metric!r} cannot use it.")
    if Xn.shape[1] != Xr.shape[1] and metric != "precomputed":
        raise ValueError(
            f"X_new has {Xn.shape[1]} features but X_ref has {Xr.shape[1]}; transform needs "
            "the same features (and preprocessing) as the reference data."
        )
    k = min(config.n_neighbors, Xr.shape[0])
    if config.perplexity > k:  # openTSNE's bound; k = 3 * perplexity is the usual graph
        raise ValueError(
            f"perplexity={config.perplexity:g} needs more neighbours than the {k} it has (k = "
            "min(n_neighbors, reference points)); lower the perplexity or raise k."
        )
    if neighbors is not None:
        knn = _given_graph(neighbors, Xn.shape[0], Xr.shape[0], config.perplexity)
    elif metric == "euclidean" and not (sp.issparse(Xr) or sp.issparse(Xn)):
        knn = knn_query(
            Xr, Xn, k, method=config.neighbors, key=key, index=index, complete=_complete
        )
    else:
        knn = metric_query(Xr, Xn, k, metric=metric, metric_params=metric_params, key=key)
    Y0, P = _calibrate_and_place(
        Y_ref, knn.indices, knn.distances, float(config.perplexity), config.initialization
    )
    return Y0, knn, P


def _given_graph(neighbors: Any, m: int, n_ref: int, perplexity: float) -> KNNGraph:
    """``neighbors`` (a :class:`KNNGraph` or ``(indices, distances)``) checked as the kNN of
    ``m`` new points into ``n_ref`` reference points."""
    if not (isinstance(neighbors, tuple | list) and len(neighbors) == 2):
        raise ValueError(
            "neighbors must be a KNNGraph or an (indices, distances) pair of (n_new, k) arrays "
            f"into the reference points; got {type(neighbors).__name__}."
        )
    knn = precomputed_knn(*neighbors, n_ref=n_ref)
    if knn.indices.shape[0] != m:
        raise ValueError(
            f"neighbors has {knn.indices.shape[0]} rows for {m} new points; it must hold one "
            "row of reference neighbours per row of X_new."
        )
    if perplexity > knn.indices.shape[1]:
        raise ValueError(
            f"perplexity={perplexity:g} needs at least that many neighbours per new point; "
            f"neighbors has {knn.indices.shape[1]}."
        )
    return knn


@functools.partial(jax.jit, static_argnames=("initialization",))
def _calibrate_and_place(
    Y_ref: Array, neighbors: Array, distances: Array, perplexity: Scalar, initialization: str
) -> tuple[Array, Array]:
    # One program for both: on a first call, compiling is most of what they cost.
    P = conditional_perplexity(KNNGraph(neighbors, distances), perplexity)
    return place(Y_ref, neighbors, P, initialization), P


class TransformResult(NamedTuple):
    embedding: np.ndarray  # (m, d) positions of the new points
    initial: np.ndarray  # (m, d) positions before optimisation
    kl_divergence: float  # mean per-point KL(P_i || Q_i) at the end
    kl_history: list[tuple[int, float]]
    method: str  # "exact" or "interpolation"
    neighbors: KNNGraph  # the new points' reference neighbours
    timings: dict[str, float]


def transform(
    X_new: ArrayLike,
    X_ref: ArrayLike,
    Y_ref: ArrayLike,
    config: TransformConfig = TransformConfig(),
    *,
    dof: float = 1.0,
    key: PRNGKey | None = None,
    neighbors: KNNGraph | None = None,
    index: GraphIndex | None = None,
    metric: Any = "euclidean",
    metric_params: Any = None,
    verbose: bool = False,
) -> TransformResult:
    """Embed ``X_new (m, D)`` into the fixed embedding ``Y_ref (N, d)`` of ``X_ref (N, D)``.

    Args:
      config: :class:`TransformConfig` (openTSNE's transform defaults).
      dof: degrees of freedom of the reference embedding's kernel.
      key: seeds the pynndescent index when that is used.
      neighbors: precomputed kNN of the new points into ``X_ref``.
      index: a graph index of ``X_ref`` (:func:`tsnejax.knn_index.build_graph_index` of the
        fit's kNN graph): the approximate neighbour search openTSNE's Annoy index plays.
      metric, metric_params: the reference's input distance (:func:`prepare_partial`).
    """
    config.validate()
    dof = check_dof("dof", dof)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    X_new = check_new_points(X_new, metric)
    X_ref = check_input(X_ref, metric, name="X_ref")
    Y_host = _check_reference(Y_ref, X_ref.shape[0])
    Y_ref = jnp.asarray(Y_host)
    m, (n, d) = X_new.shape[0], Y_ref.shape
    check_grid_components(config.method, d, "method")  # the frozen field runs in 1-3 D
    lo0, hi0 = float(Y_host.min()), float(Y_host.max())
    span0 = max(hi0 - lo0, 1e-6)
    method = config.method
    nb, wide = 0, False
    if d <= GRID_MAX_COMPONENTS:
        nb, wide = frozen_grid_boxes(
            span0 * (1 + 2 * config.padding), d, config.ints_in_interval, config.min_num_intervals
        )
    else:
        method = "exact"
    if method == "auto":
        exact = m * n <= EXACT_MAX_PAIRS or (wide and m * n <= EXACT_MAX_PAIRS_WIDE)
        method = "exact" if exact else "interpolation"
    if method == "interpolation" and wide:
        warnings.warn(
            f"transform: the frozen grid is capped at {nb} boxes per axis in {d}-D over a "
            f"{span0 * (1 + 2 * config.padding):.3g}-unit domain, so its boxes are over "
            f"{WIDE_BOXES:g}x ints_in_interval and the new points' repulsion is off by more "
            "than 10 %; method='exact' sums it exactly (O(n_new * n_ref) per step).",
            stacklevel=outside_stacklevel(),
        )
    # Nothing below waits for the device until the optimisation: each program is compiled
    # while the one queued before it runs (the field first: it needs only the reference).
    if method == "interpolation":
        grid = InterpolationGrid(nb, config.n_interpolation_points)
        field = reference_field(Y_ref, float(dof), grid, config.padding)
        # Keep new points a little inside the padded domain (the last box edge).
        margin = config.padding * span0 * 0.99
        lo_clip, hi_clip = lo0 - margin, hi0 + margin
    else:
        grid, field = None, None
        lo_clip, hi_clip = -np.inf, np.inf
    Y0, knn, P = prepare_partial(
        X_new,
        X_ref,
        Y_host,
        config=config,
        key=key,
        neighbors=neighbors,
        index=index,
        metric=metric,
        metric_params=metric_params,
        _complete=False,
    )
    timings["queue"] = time.perf_counter() - t_start
    bounds = None if field is None else jnp.asarray([lo_clip, hi_clip], Y_ref.dtype)
    ref = Reference(knn.indices, jnp.asarray(P, Y_ref.dtype), Y_ref, field, bounds)
    stepper, optimizer = _stepper(config, method, grid)
    state = init_state(Y0, optimizer)
    res = optimize(
        stepper,
        state,
        ref,
        config.early_exaggeration_iter + config.n_iter,
        phases=transform_phases(config, dof),
        chunk_size=config.chunk_size,
        verbose=verbose,
        check_scale=False,  # new points take the reference's scale, not their own count's
    )
    timings["compile"] = res.compile_seconds
    timings["optimize"] = res.run_seconds
    if neighbors is None and index is not None:
        done = complete_query(index, X_new, knn)
        if done is not knn:  # rare: some search pools were too small; redo with exact rows
            return transform(
                X_new, X_ref, Y_host, config, dof=dof, key=key, neighbors=done, verbose=verbose
            )
    Y = res.state.embedding
    kl = res.kl_history[-1][1] if res.kl_history else float(_kl_once(Y, ref, float(dof), grid))
    timings["total"] = time.perf_counter() - t_start
    return TransformResult(np.asarray(Y), np.asarray(Y0), kl, res.kl_history, method, knn, timings)
