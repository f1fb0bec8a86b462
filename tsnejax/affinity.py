"""Input-space affinities P: perplexity calibration, symmetrisation, static-shape sparse layout.

Pipeline (openTSNE conventions):

1. Conditional affinities on a fixed-k neighbour graph,
   :math:`p_{j|i} = \\exp(-\\beta_i d_{ij}^2) / \\sum_{l} \\exp(-\\beta_i d_{il}^2)`, with
   :math:`\\beta_i` found by bisection so that the entropy :math:`H_i = \\log \\text{perplexity}`
   (tolerance 1e-8, 200 steps at most). Uniform and fixed-sigma kernels are alternatives;
   a list of perplexities averages the single-scale conditionals (Kobak & Berens 2019).
2. Symmetrisation :math:`P = (P_{cond} + P_{cond}^\\top) / 2`, normalised to sum 1.
3. Storage as :class:`Affinities`: padded per-point neighbour lists (ELL, width ``w``); rows
   with more than ``w`` entries continue in narrow extra rows ("sliced ELL"), each owned by
   its point. The layout depends only on the graph's sparsity pattern,
   so affinities for different perplexities on one kNN graph share shapes (and vmap).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from tsnejax._checks import (
    check_int,
    check_option,
    check_perplexity,
    check_positive,
    float_dtype,
)
from tsnejax._device import to_device
from tsnejax._layout import (
    AffinityLayout,
    build_layout,
    layout_from_pattern,
)
from tsnejax._types import Array, ArrayLike
from tsnejax.knn import KNNGraph, precomputed_knn

__all__ = [
    "Affinities",
    "AffinityLayout",
    "build_layout",
    "layout_from_pattern",
    "calibrate_perplexity",
    "conditional_perplexity",
    "conditional_uniform",
    "conditional_fixed_sigma",
    "symmetrize",
    "perplexity_affinities",
    "uniform_affinities",
    "fixed_sigma_affinities",
    "precomputed_affinities",
    "check_affinities",
    "as_affinities",
    "as_graph",
    "to_scipy",
    "pad_affinities",
]


class Affinities(NamedTuple):
    """Symmetric, normalised P in a static-shape sparse layout (a pytree of arrays).

    Attributes:
      neighbors: ``(n, w) int32`` column indices (padding: the row itself, weight 0).
      weights: ``(n, w)`` values :math:`p_{ij}`.
      extra_neighbors, extra_weights: ``(e, we)`` continuation rows of high-degree points.
      extra_rows: ``(e,) int32`` owner point of each continuation row.
    """

    neighbors: Array
    weights: Array
    extra_neighbors: Array
    extra_weights: Array
    extra_rows: Array

    @property
    def n_points(self) -> int:
        return int(self.neighbors.shape[0])


def pad_affinities(P: Affinities, width: int, n_extra: int) -> Affinities:
    """``P`` with ``width`` main slots per row and ``n_extra`` continuation rows (zero weights).

    Same matrix, bigger static shape: affinities of different perplexities padded to one shape
    stack into a batch (a vmapped sweep). Padding slots point at the row itself (main) or at
    point 0 (continuation) with weight 0, so they add exact zeros.
    """
    n, w = P.neighbors.shape
    e, we = P.extra_neighbors.shape
    if width < w or n_extra < e:
        raise ValueError(f"pad_affinities: ({width}, {n_extra}) is smaller than ({w}, {e}).")
    self_idx = jnp.broadcast_to(jnp.arange(n, dtype=P.neighbors.dtype)[:, None], (n, width - w))
    return Affinities(
        jnp.concatenate([P.neighbors, self_idx], axis=1),
        jnp.pad(P.weights, ((0, 0), (0, width - w))),
        jnp.pad(P.extra_neighbors, ((0, n_extra - e), (0, 0))),
        jnp.pad(P.extra_weights, ((0, n_extra - e), (0, 0))),
        jnp.pad(P.extra_rows, (0, n_extra - e)),
    )


def calibrate_perplexity(
    sq_distances: ArrayLike,
    perplexity: float | Array,
    *,
    tol: float = 1e-8,
    max_iter: int = 200,
) -> tuple[Array, Array]:
    """Per-row bisection on the precision so each row's entropy equals ``log(perplexity)``.

    Follows openTSNE's ``compute_gaussian_perplexity``: start at beta = 1, double/halve until
    the target is bracketed, then bisect; stop a row when ``|H - log perp| <= tol`` (or when
    beta stops changing at the working precision). Distances are shifted by each row's minimum
    before ``exp`` (the shift cancels in the normalisation) so far-away rows do not underflow.

    Args:
      sq_distances: ``(n, k)`` squared distances to the k neighbours.
      perplexity: target perplexity (scalar; may be traced, so it can be vmapped).

    Returns:
      ``(P_cond, beta)``: ``(n, k)`` row-stochastic conditional affinities and ``(n,)``
      precisions in units of 1/distance^2.
    """
    d2 = jnp.asarray(sq_distances)
    d2 = d2 - jnp.min(d2, axis=1, keepdims=True)
    return _bisect(d2, jnp.asarray(perplexity, d2.dtype), tol, max_iter)


#: Largest precision the bisection tries: ``fit`` squares distances in units near the largest
#: one, so ``d2 * beta`` stays finite (no ``0 * inf``) and ``exp(-d2 * beta)`` is already 0 off
#: the nearest ties (``binary_search_perplexity`` on raw distances below ~1e-15 would need more).
BETA_CAP = 1e30


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _bisect(d2: Array, perplexity: Array, tol: float, max_iter: int) -> tuple[Array, Array]:
    n = d2.shape[0]
    target = jnp.log(perplexity)
    dtype = d2.dtype

    def entropy(beta: Array) -> tuple[Array, Array]:
        # where() keeps 0 * inf (constant rows drive beta to inf) from becoming NaN.
        arg = jnp.where(d2 > 0, d2 * beta[:, None], 0.0)
        arg = arg - jnp.min(arg, axis=1, keepdims=True)  # the entropy is shift-invariant;
        e = jnp.exp(-arg)  # the nearest entry keeps e = 1, so no row underflows to all zeros
        s = jnp.maximum(jnp.sum(e, axis=1), jnp.finfo(dtype).tiny)
        p = e / s[:, None]
        # Entries with p = 0 add nothing, also where beta overflowed to inf (inf * 0 would be
        # NaN): perplexity 1 drives beta to inf, and so did 1e30-scale data.
        return jnp.log(s) + jnp.sum(jnp.where(p > 0, arg * p, 0.0), axis=1), p

    def cond(carry):
        it, _, _, _, done = carry
        return (it < max_iter) & ~jnp.all(done)

    def body(carry):
        it, beta, lo, hi, done = carry
        h, _ = entropy(beta)
        diff = h - target
        converged = jnp.abs(diff) <= tol
        too_flat = diff > 0  # entropy too high -> increase beta
        lo = jnp.where(too_flat, beta, lo)
        hi = jnp.where(too_flat, hi, beta)
        # Capped: beta -> inf (perplexity 1, equidistant or constant rows) would turn
        # d2 * beta into 0 * inf = NaN; at the cap the kernel is already a step function.
        up = jnp.where(jnp.isinf(hi), jnp.minimum(beta * 2.0, BETA_CAP), (beta + hi) / 2.0)
        down = jnp.where(jnp.isinf(lo), beta / 2.0, (beta + lo) / 2.0)
        new_beta = jnp.where(too_flat, up, down)
        stalled = new_beta == beta
        stop = done | converged | stalled
        beta = jnp.where(done | converged, beta, new_beta)
        return it + 1, beta, lo, hi, stop

    init = (
        jnp.int32(0),
        jnp.ones(n, dtype),
        jnp.full(n, -jnp.inf, dtype),
        jnp.full(n, jnp.inf, dtype),
        jnp.zeros(n, bool),
    )
    _, beta, _, _, _ = jax.lax.while_loop(cond, body, init)
    _, p = entropy(beta)
    return p, beta


def conditional_perplexity(
    knn: KNNGraph, perplexity: float | Sequence[float], *, tol: float = 1e-8, max_iter: int = 200
) -> Array:
    """Row-stochastic ``(n, k)`` conditionals; a list of perplexities averages the rows."""
    perps = jnp.atleast_1d(jnp.asarray(perplexity, knn.distances.dtype))
    return _conditional(knn.distances, perps, tol, max_iter)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _conditional(distances: Array, perps: Array, tol: float, max_iter: int) -> Array:
    # P does not depend on the units of the distances (the precision adapts), so square them
    # in units of a power of two near the largest: no overflow for 1e30-scale data, no
    # underflow for 1e-30-scale data, and no rounding from the rescaling itself.
    finite = jnp.where(jnp.isfinite(distances), distances, 0.0)
    top = jnp.max(finite)
    unit = jnp.where(top > 0, jnp.exp2(jnp.round(jnp.log2(jnp.where(top > 0, top, 1.0)))), 1.0)
    r = distances / unit
    r_min = jnp.min(r, axis=1, keepdims=True)
    # (r - r_min)(r + r_min), not r^2 - r_min^2: XLA may square the two terms differently
    # inside one fusion, which left equidistant rows 2.6e-8 apart instead of 0 (and P zero).
    d2 = (r - r_min) * (r + r_min)
    # One perplexity at a time (lax.map, not vmap): batching the bisection's while loop cost
    # tracing time in every process (digits: one perplexity 0.13 -> 0.07 s, two 0.32 -> 0.06 s).
    if perps.shape[0] == 1:
        return _bisect(d2, perps[0], tol, max_iter)[0]
    rows = jax.lax.map(lambda p: _bisect(d2, p, tol, max_iter)[0], perps)
    return jnp.mean(rows, axis=0)


def conditional_uniform(knn: KNNGraph) -> Array:
    """``1/k`` on each of the k neighbours (openTSNE ``Uniform``)."""
    return jnp.full(knn.indices.shape, 1.0 / knn.indices.shape[1], knn.distances.dtype)


def conditional_fixed_sigma(knn: KNNGraph, sigma: float) -> Array:
    """Gaussian kernel of fixed bandwidth, ``exp(-d^2 / (2 sigma^2))``, row-normalised."""
    d2 = jnp.square(knn.distances)
    d2 = d2 - jnp.min(d2, axis=1, keepdims=True)
    e = jnp.exp(-d2 / (2.0 * sigma**2))
    return e / jnp.sum(e, axis=1, keepdims=True)


def symmetrize(
    P_cond: Array, layout: AffinityLayout, mode: Literal["mean", "max"] = "mean"
) -> Affinities:
    """Symmetric P in ``layout``, normalised to sum 1.

    ``"mean"``: :math:`(P_{cond} + P_{cond}^\\top)/2` (t-SNE). ``"max"``:
    :math:`\\max(P_{cond}, P_{cond}^\\top)` (openTSNE ``Uniform``'s default, the union graph).
    Pure and jittable; ``P_cond`` is ``(n, k)`` aligned with the kNN graph the layout was
    built from.
    """
    n, w = layout.neighbors.shape
    e, we = layout.extra_neighbors.shape
    flat = jnp.zeros(n * w + e * we, P_cond.dtype)
    if mode == "max":
        flat = flat.at[layout.fwd_pos.ravel()].max(P_cond.ravel())
        flat = flat.at[layout.bwd_pos.ravel()].max(P_cond.ravel())
    else:
        flat = flat.at[layout.fwd_pos.ravel()].add(P_cond.ravel())
        flat = flat.at[layout.bwd_pos.ravel()].add(P_cond.ravel())
    flat = flat / jnp.sum(flat)
    return Affinities(
        layout.neighbors,
        flat[: n * w].reshape(n, w),
        layout.extra_neighbors,
        flat[n * w :].reshape(e, we),
        layout.extra_rows,
    )


def perplexity_affinities(
    knn: KNNGraph,
    perplexity: float | Sequence[float] = 30.0,
    *,
    layout: AffinityLayout | None = None,
    tol: float = 1e-8,
    max_iter: int = 200,
) -> Affinities:
    """Symmetric perplexity-based P on a kNN graph (a list of perplexities: multiscale average).

    Raises ``ValueError`` when a perplexity exceeds the graph's ``k`` neighbours (openTSNE's
    bound; ``k = 3 * perplexity`` is the usual graph).
    """
    knn = as_graph(knn)
    n, k = knn.indices.shape
    perps = check_perplexity(perplexity, n, k)
    check_positive("tol", tol)
    check_int("max_iter", max_iter, minimum=1)
    layout = build_layout(knn) if layout is None else layout
    perps_arr = jnp.asarray(perps, knn.distances.dtype)
    return _perplexity_program(knn.distances, perps_arr, layout, tol, max_iter)


def as_graph(knn: Any) -> KNNGraph:
    """``knn`` as a :class:`KNNGraph`: one already, or an ``(indices, distances)`` pair (checked
    as :func:`tsnejax.knn.precomputed_knn` checks it); anything else is a ``ValueError``."""
    if isinstance(knn, KNNGraph):
        return knn
    if isinstance(knn, tuple | list) and len(knn) == 2:
        return precomputed_knn(*knn)
    raise ValueError(
        "knn must be a tsnejax.knn.KNNGraph (tsnejax.nearest_neighbors(X, k) builds one) or an "
        f"(indices, distances) pair of (n, k) arrays; got {type(knn).__name__}."
    )


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _perplexity_program(
    distances: Array, perps: Array, layout: AffinityLayout, tol: float, max_iter: int
) -> Affinities:
    # One compiled program for calibration + symmetrisation (op-by-op dispatch compiled
    # each scatter separately and cost ~0.4 s on digits).
    return symmetrize(_conditional(distances, perps, tol, max_iter), layout)


def uniform_affinities(
    knn: KNNGraph,
    *,
    symmetrize_mode: Literal["max", "mean"] = "max",
    layout: AffinityLayout | None = None,
) -> Affinities:
    """Uniform kNN affinities (openTSNE ``Uniform``): ``"max"`` gives every edge of the union
    graph the same weight (openTSNE's ``symmetrize=True``), ``"mean"`` halves one-way edges."""
    check_option("symmetrize_mode", symmetrize_mode, ("max", "mean"))
    knn = as_graph(knn)
    layout = build_layout(knn) if layout is None else layout
    return symmetrize(conditional_uniform(knn), layout, symmetrize_mode)


def fixed_sigma_affinities(
    knn: KNNGraph, sigma: float, *, layout: AffinityLayout | None = None
) -> Affinities:
    """Symmetrised Gaussian affinities with one bandwidth ``sigma`` (input units)."""
    sigma = check_positive("sigma", sigma)
    knn = as_graph(knn)
    layout = build_layout(knn) if layout is None else layout
    return symmetrize(conditional_fixed_sigma(knn, sigma), layout)


def precomputed_affinities(
    P: sp.spmatrix | np.ndarray, *, normalize: bool = True, width: int | None = None
) -> Affinities:
    """Wrap a user's symmetric P (scipy sparse or dense) in the static layout.

    ``P`` must be square, finite, non-negative and symmetric; with ``normalize`` it is scaled
    to sum 1, otherwise it must already sum to 1 (within 1e-6).
    """
    dtype = getattr(P, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"affinities: P has complex dtype {dtype}; pass a real matrix.")
    try:
        M = sp.csr_matrix(P, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"affinities: P must be a numeric (n, n) matrix ({err}).") from None
    M.sum_duplicates()
    M.eliminate_zeros()
    n = M.shape[0]
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(
            f"affinities: P must be square (n, n), got shape {M.shape}; from data X (n, d), "
            "build it: tsnejax.perplexity_affinities(tsnejax.nearest_neighbors(X, k=90), 30.0)."
        )
    if not np.isfinite(M.data).all() or (M.data < 0).any():
        raise ValueError("affinities: P must be finite and non-negative.")
    if M.diagonal().any():
        raise ValueError("affinities: P has non-zero diagonal entries; set P.setdiag(0).")
    asym = abs(M - M.T).max() if M.nnz else 0.0
    scale = M.data.max() if M.nnz else 1.0
    if asym > 1e-8 * scale:
        raise ValueError(
            f"affinities: P is not symmetric (max |P - P.T| = {asym:.3g}); symmetrise it first, "
            "e.g. P = (P + P.T) / 2."
        )
    total = M.sum()
    if total <= 0:
        raise ValueError("affinities: P is all zeros.")
    if normalize:
        M = M / total
    elif abs(total - 1.0) > 1e-6:
        raise ValueError(
            f"affinities: P sums to {total:.6g}, not 1; pass normalize=True or divide by P.sum()."
        )
    M = sp.csr_matrix(M)
    M.sort_indices()
    layout, flat = layout_from_pattern(M.indptr, M.indices, n, width)
    w = layout.neighbors.shape[1]
    e, we = layout.extra_neighbors.shape
    values = np.zeros(n * w + e * we)
    values[flat] = M.data
    dtype = float_dtype()
    return Affinities(
        layout.neighbors,
        to_device(values[: n * w].reshape(n, w), dtype),
        layout.extra_neighbors,
        to_device(values[n * w :].reshape(e, we), dtype),
        layout.extra_rows,
    )


def check_affinities(P: Affinities, name: str = "affinities") -> Affinities:
    """Raise unless ``P`` is a well-formed :class:`Affinities`; returns it.

    Checks what the kernels assume of a P built outside this module (a custom
    ``affinity_method``, an ``Affinities`` given to ``fit``): consistent shapes, integer
    indices in ``[0, n)``, finite non-negative weights summing to 1 (within 1e-3). An index out
    of range used to be clamped by the gathers without a word, and a NaN weight surfaced as a
    divergence at iteration 1 that blamed the learning rate. Symmetry is not required.
    """
    if not isinstance(P, Affinities):
        raise ValueError(
            f"{name} must be tsnejax.Affinities or an (n, n) scipy sparse / dense matrix, got "
            f"{type(P).__name__}."
        )
    nb, w, en, ew, er = (np.asarray(a) for a in P)
    main_ok = nb.ndim == 2 and w.shape == nb.shape
    if not (main_ok and en.ndim == 2 and ew.shape == en.shape and er.shape == en.shape[:1]):
        raise ValueError(
            f"{name}: the shapes must be neighbors and weights (n, w), extra_neighbors and "
            f"extra_weights (e, we), extra_rows (e,); got {nb.shape}, {w.shape}, {en.shape}, "
            f"{ew.shape}, {er.shape}."
        )
    n = nb.shape[0]
    for field, idx in (("neighbors", nb), ("extra_neighbors", en), ("extra_rows", er)):
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{name}.{field} must be integers, got dtype {idx.dtype}.")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(
                f"{name}.{field} must lie in [0, {n - 1}] (n = {n} points), got values in "
                f"[{idx.min()}, {idx.max()}]."
            )
    for field, v in (("weights", w), ("extra_weights", ew)):
        bad = int(np.count_nonzero(~(np.isfinite(v) & (v >= 0))))
        if bad:
            raise ValueError(f"{name}.{field} has {bad} NaN, inf or negative entries.")
    total = float(w.sum(dtype=np.float64) + ew.sum(dtype=np.float64))
    if not abs(total - 1.0) <= 1e-3:
        raise ValueError(
            f"{name}: the weights sum to {total:.6g}, not 1; divide them by their sum "
            "(precomputed_affinities normalises a scipy matrix)."
        )
    return P


def as_affinities(P: Affinities | sp.spmatrix | np.ndarray, name: str = "affinities") -> Affinities:
    """A user's P as checked :class:`Affinities`: an ``Affinities`` as is
    (:func:`check_affinities`), a scipy sparse or dense ``(n, n)`` matrix through
    :func:`precomputed_affinities` (normalised to sum 1)."""
    if isinstance(P, Affinities):
        return check_affinities(P, name)
    if sp.issparse(P) or (isinstance(P, np.ndarray | jax.Array) and np.ndim(P) == 2):
        return precomputed_affinities(P)
    return check_affinities(P, name)  # names the type


def to_scipy(P: Affinities) -> sp.csr_matrix:
    """The symmetric P as a scipy CSR matrix (host copy, float64)."""
    n, w = P.neighbors.shape
    we = P.extra_neighbors.shape[1]
    rows = np.concatenate([np.repeat(np.arange(n), w), np.repeat(np.asarray(P.extra_rows), we)])
    cols = np.concatenate([np.asarray(P.neighbors).ravel(), np.asarray(P.extra_neighbors).ravel()])
    vals = np.concatenate([np.asarray(P.weights).ravel(), np.asarray(P.extra_weights).ravel()])
    keep = vals != 0
    M = sp.csr_matrix((vals[keep].astype(np.float64), (rows[keep], cols[keep])), shape=(n, n))
    M.sum_duplicates()
    return M
