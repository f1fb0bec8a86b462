"""Neighbourhood metrics: NN precision/recall curves, kNN preservation, trustworthiness, kNN
accuracy.

Every neighbour search is the exact blocked one of :func:`tsnejax.knn.exact_knn` (matmul +
``lax.top_k`` on the device, memory O(block * N)); neighbours never include the point itself.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from tsnejax._checks import check_finite_rows, check_int, check_key, check_labels, float_dtype
from tsnejax._types import Array, ArrayLike, PRNGKey
from tsnejax.knn import exact_knn
from tsnejax.knn_metric import (
    FAST_METRICS,
    check_metric,
    comparable,
    metric_params_dict,
    sparse_data,
)

__all__ = [
    "PrecisionRecall",
    "nn_precision_recall",
    "knn_preservation",
    "trustworthiness",
    "continuity",
    "knn_accuracy",
    "query_rows",
]


class PrecisionRecall(NamedTuple):
    """Curves of :func:`nn_precision_recall` (host numpy arrays)."""

    k: np.ndarray  # (k_max,) 1 .. k_max: embedding neighbours considered
    precision: np.ndarray  # (k_max,) mean hits / k
    recall: np.ndarray  # (k_max,) mean hits / k_max
    queries: np.ndarray  # (m,) row indices the means are over


def dense_input(X: ArrayLike) -> ArrayLike:
    """``X``, a sparse one read as fit reads it: dense up to
    :data:`tsnejax.knn_metric.SPARSE_DENSE_ELEMENTS` cells, else an error saying to reduce it."""
    if not sp.issparse(X):
        return X
    X = sparse_data(X, "X", min_rows=1)
    if sp.issparse(X):
        raise ValueError(
            f"X is a sparse matrix of {X.shape[0]} x {X.shape[1]}, too large to score "
            "densely; reduce it first (e.g. TruncatedSVD to 50) and score that."
        )
    return X


def pair(X: ArrayLike, Y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    X, Y = np.asarray(dense_input(X)), np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"X and Y must be 2-D, got shapes {X.shape} and {Y.shape}.")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} rows but the embedding Y has {Y.shape[0]}: they must describe "
            "the same points in the same order."
        )
    return check_finite_rows(X, "X", _NAN_FIX), finite_embedding(Y)


#: A NaN coordinate sorts as no distance does: neighbour sets and scores came out as numbers.
_NAN_FIX = "a score over them would be meaningless (drop them, or fix the run that made them)"


def finite_embedding(Y: ArrayLike, name: str = "Y") -> np.ndarray:
    """``Y`` as a 2-D array without NaN/inf rows (the metrics' check of an embedding)."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_points, n_components), got shape {Y.shape}.")
    return check_finite_rows(Y, name, _NAN_FIX)


def check_k(name: str, k: int, n: int) -> int:
    k = check_int(name, k, minimum=1)
    if k > n - 1:
        raise ValueError(f"{name}={k} is too large for {n} points; the largest allowed is {n - 1}.")
    return k


def query_rows(
    n: int, n_queries: int | None, key: PRNGKey | None, name: str = "n_queries"
) -> np.ndarray:
    """All rows, or ``n_queries`` distinct rows drawn with ``key`` (sorted)."""
    if n_queries is None:
        return np.arange(n)
    n_queries = check_int(name, n_queries, minimum=1)
    if n_queries >= n:
        return np.arange(n)
    if key is None:
        raise ValueError(
            f"{name}={n_queries} below the {n} points needs key=jax.random.key(...) to draw "
            "the subset."
        )
    key = check_key(key)
    return np.sort(np.asarray(jax.random.choice(key, n, (n_queries,), replace=False)))


@jax.jit
def hits(true_idx: Array, emb_idx: Array) -> Array:
    """(m, k) cumulative count of embedding neighbours 1..k found among the true neighbours."""
    found = jnp.any(emb_idx[:, :, None] == true_idx[:, None, :], axis=-1)
    return jnp.cumsum(found, axis=1)


def nn_precision_recall(
    X: ArrayLike,
    Y: ArrayLike,
    k_max: int = 30,
    *,
    n_queries: int | None = None,
    key: PRNGKey | None = None,
) -> PrecisionRecall:
    """Nearest-neighbour preservation curves (Pezzotti et al. 2019; HDILib protocol).

    Ground truth: the exact ``k_max`` nearest neighbours of each query in ``X``. For
    ``k = 1 .. k_max`` embedding neighbours, ``hits(k)`` counts those among the ground truth;
    ``precision(k) = hits / k`` and ``recall(k) = hits / k_max``, averaged over all points or
    ``n_queries`` of them drawn with ``key``.

    Args:
      X: ``(n, d)`` input data.
      Y: ``(n, c)`` embedding of the same points.
      k_max: ground-truth neighbourhood size and the largest k (30 in the paper).
      n_queries: average over a random subset of this many points (``None``: all).
      key: ``jax.random.key`` for the subset.
    """
    X, Y = pair(X, Y)
    k_max = check_k("k_max", k_max, X.shape[0])
    rows = query_rows(X.shape[0], n_queries, key)
    true_idx = exact_knn(X, k_max, rows=rows).indices
    emb_idx = exact_knn(Y, k_max, rows=rows).indices
    n_hits = np.asarray(jnp.mean(hits(true_idx, emb_idx).astype(jnp.float32), axis=0), np.float64)
    k = np.arange(1, k_max + 1)
    return PrecisionRecall(k, n_hits / k, n_hits / k_max, rows)


def knn_preservation(
    X: ArrayLike,
    Y: ArrayLike,
    k: int = 10,
    *,
    n_queries: int | None = None,
    key: PRNGKey | None = None,
) -> float:
    """Mean fraction of each point's ``k`` nearest neighbours in ``X`` that are also among its
    ``k`` nearest in ``Y`` (Kobak & Berens 2019's "KNN" score): the precision (= recall) at k
    of :func:`nn_precision_recall` with ``k_max = k``."""
    return float(nn_precision_recall(X, Y, k, n_queries=n_queries, key=key).precision[-1])


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _trust_penalty(X: Array, emb_idx: Array, k: int, block_size: int) -> Array:
    """Sum over points of ``max(0, rank_X(i, j) - k)`` for ``j`` in the embedding kNN of ``i``.

    ``rank_X(i, j)`` is ``j``'s 1-based position among ``i``'s neighbours in ``X`` ordered by
    distance, ties by index (a stable sort), as ``sklearn.manifold.trustworthiness``.
    """
    n = X.shape[0]
    n_blocks = -(-n // block_size)
    sq = jnp.sum(X * X, axis=1)
    cols = jnp.arange(n, dtype=jnp.int32)
    rows = jnp.minimum(jnp.arange(n_blocks * block_size, dtype=jnp.int32), n - 1)
    valid = jnp.arange(n_blocks * block_size) < n
    emb_idx = jnp.take(emb_idx, rows, axis=0)

    def one_block(args):
        r, e, ok = args
        d2 = sq[r][:, None] + sq[None, :] - 2.0 * (jnp.take(X, r, axis=0) @ X.T)
        d2 = jnp.maximum(d2, 0.0)
        d2 = jnp.where(cols[None, :] == r[:, None], jnp.inf, d2)
        dj = jnp.take_along_axis(d2, e, axis=1)  # (b, k)
        closer = d2[:, None, :] < dj[:, :, None]
        tied_before = (d2[:, None, :] == dj[:, :, None]) & (cols[None, None, :] < e[:, :, None])
        rank = jnp.sum(closer | tied_before, axis=-1) + 1
        return jnp.sum(jnp.where(ok[:, None], jnp.maximum(rank - k, 0), 0))

    blocks = (
        rows.reshape(n_blocks, block_size),
        emb_idx.reshape(n_blocks, block_size, -1),
        valid.reshape(n_blocks, block_size),
    )
    return jnp.sum(jax.lax.map(one_block, blocks))


def trustworthiness(
    X: ArrayLike, Y: ArrayLike, n_neighbors: int = 5, *, metric="euclidean", metric_params=None
) -> float:
    """Trustworthiness (Venna & Kaski 2001), the definition of ``sklearn.manifold.trustworthiness``:

    .. math:: T(k) = 1 - \\frac{2}{n k (2n - 3k - 1)} \\sum_i \\sum_{j \\in U_i^k}
              \\max(0, r(i, j) - k)

    with ``U_i^k`` the embedding's k nearest neighbours of ``i`` and ``r(i, j)`` the rank of
    ``j`` among ``i``'s neighbours in ``X`` (Euclidean; or ``metric``: cosine and correlation
    ranks are the Euclidean ones of unit rows; other metrics rank the full pairwise matrix,
    which ``"precomputed"`` takes as ``X``). Blocked: memory O(block * n * k).
    Requires ``n_neighbors < n / 2`` (as scikit-learn).
    """
    check_metric(metric, metric_params)
    if metric not in FAST_METRICS:  # ranks from the full matrix, as scikit-learn computes them
        from sklearn.manifold import trustworthiness as full_matrix_trustworthiness
        from sklearn.metrics import pairwise_distances

        D, Y = pair(X, Y)
        if metric != "precomputed":
            D = pairwise_distances(D, metric=metric, **metric_params_dict(metric_params))
        return float(
            full_matrix_trustworthiness(D, Y, n_neighbors=n_neighbors, metric="precomputed")
        )
    X, Y = pair(X, Y)
    X = comparable(X, metric)
    k = _rank_k(n_neighbors, X.shape[0], "trustworthiness")
    return trustworthiness_from(X, exact_knn(Y, k).indices)


def continuity(
    X: ArrayLike, Y: ArrayLike, n_neighbors: int = 5, *, metric="euclidean", metric_params=None
) -> float:
    """Continuity (Venna & Kaski 2006), trustworthiness' dual:

    .. math:: C(k) = 1 - \\frac{2}{n k (2n - 3k - 1)} \\sum_i \\sum_{j \\in V_i^k}
              \\max(0, \\hat r(i, j) - k)

    with ``V_i^k`` the k nearest neighbours of ``i`` in ``X`` (in ``metric``, as
    :func:`trustworthiness` ranks) and ``r̂(i, j)`` the rank of ``j`` among ``i``'s neighbours
    in the embedding (Euclidean, ties by index). Trustworthiness penalises embedding neighbours
    that were far apart in ``X`` (false neighbours); continuity penalises input neighbours the
    embedding tore apart (missed ones). It equals ``sklearn.manifold.trustworthiness(Y, X,
    n_neighbors=k)``, the roles swapped. Requires ``n_neighbors < n / 2``.
    """
    check_metric(metric, metric_params)
    if metric not in FAST_METRICS:  # neighbours from the full matrix, ties by index
        from sklearn.metrics import pairwise_distances

        D, Y = pair(X, Y)
        if metric != "precomputed":
            D = pairwise_distances(D, metric=metric, **metric_params_dict(metric_params))
        k = _rank_k(n_neighbors, D.shape[0], "continuity")
        D = np.array(D, np.float64)
        np.fill_diagonal(D, np.inf)
        return trustworthiness_from(Y, np.argsort(D, axis=1, kind="stable")[:, :k])
    X, Y = pair(X, Y)
    k = _rank_k(n_neighbors, X.shape[0], "continuity")
    return trustworthiness_from(Y, exact_knn(comparable(X, metric), k).indices)


def _rank_k(n_neighbors: int, n: int, name: str) -> int:
    k = check_int("n_neighbors", n_neighbors, minimum=1)
    if k >= n / 2:
        raise ValueError(f"n_neighbors={k} must be below n_samples / 2 = {n / 2:g} for {name}.")
    return k


def trustworthiness_from(X: np.ndarray, emb_idx: Array) -> float:
    """Trustworthiness given the embedding's ``(n, k)`` neighbour indices (ranked in ``X``);
    with the roles swapped (``Y`` and the input's neighbours), continuity."""
    n, k = emb_idx.shape
    Xj = jnp.asarray(X, float_dtype())
    Xj = Xj - jnp.mean(Xj, axis=0)  # less cancellation in the matmul form of distances
    block = int(max(1, min(n, (1 << 24) // max(n * k, 1))))
    penalty = float(_trust_penalty(Xj, jnp.asarray(emb_idx, jnp.int32), k, block))
    return 1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def knn_accuracy(Y: ArrayLike, labels: ArrayLike, k: int = 10) -> float:
    """Leave-one-out k-NN classification accuracy in the embedding.

    Each point is labelled by majority vote of its ``k`` nearest other points (ties go to
    the smallest label, as ``np.argmax`` over counts), and compared with its own label.
    """
    Y = finite_embedding(Y)
    n = Y.shape[0]
    labels = check_labels(labels, n)
    k = check_k("k", k, n)
    _, codes = np.unique(labels, return_inverse=True)
    idx = np.asarray(exact_knn(Y, k).indices)
    return vote_accuracy(idx, codes)


def vote_accuracy(idx: np.ndarray, codes: np.ndarray) -> float:
    n, k = idx.shape
    counts = np.zeros((n, codes.max() + 1), np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), codes[idx].ravel()), 1)
    return float(np.mean(np.argmax(counts, axis=1) == codes))
