"""All metrics of one embedding in one JSON-ready dict, sharing the neighbour searches."""

from __future__ import annotations

import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_int, check_key, check_labels, numeric_array, outside_stacklevel
from tsnejax._types import Array, ArrayLike, PRNGKey
from tsnejax.knn import exact_knn
from tsnejax.knn_metric import FAST_METRICS, comparable
from tsnejax.metrics.global_structure import UndefinedScoreError, cpd_score, knc_score
from tsnejax.metrics.neighborhood import (
    check_k,
    dense_input,
    hits,
    pair,
    query_rows,
    trustworthiness_from,
    vote_accuracy,
)

__all__ = ["evaluate", "input_neighbors", "K_MAX", "TRUSTWORTHINESS_MAX_N"]

#: Largest k of the precision/recall curves by default (Pezzotti et al.'s k = 1..30).
K_MAX = 30

#: ``evaluate`` skips trustworthiness above this many points: it ranks every point's full row of
#: input-space distances, as costly as an all-pairs kNN in X (``metrics.trustworthiness`` has no
#: such limit).
TRUSTWORTHINESS_MAX_N = 20000


def input_neighbors(
    X: ArrayLike,
    *,
    k_max: int | None = None,
    n_queries: int | None = None,
    key: PRNGKey | None = None,
    metric: str = "euclidean",
) -> Array:
    """``(m, k_max)`` exact neighbours in ``X`` of the query rows :func:`evaluate` uses for the
    same ``k_max``, ``n_queries``, ``key`` and ``metric``; pass it back as ``x_neighbors`` to
    score many embeddings of one dataset (a sweep) with one search in X."""
    X = jnp.asarray(_in_metric(X, metric))
    n = X.shape[0]
    k_max = check_k("k_max", min(K_MAX, n - 1) if k_max is None else k_max, n)
    key = jax.random.key(0) if key is None else key
    rows = query_rows(n, n_queries, jax.random.split(key)[0])
    return exact_knn(X, k_max, rows=rows).indices


def evaluate(
    X: ArrayLike,
    Y: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    k_max: int | None = None,
    n_queries: int | None = None,
    key: PRNGKey | None = None,
    trustworthiness_k: int = 5,
    k_classes: int = 4,
    n_cpd: int = 1000,
    global_scores: bool = True,
    trustworthiness: bool = True,
    x_neighbors: ArrayLike | None = None,
    metric: str = "euclidean",
) -> dict[str, Any]:
    """NN precision/recall curves (k = 1..k_max), 10-NN preservation, trustworthiness and
    continuity and, with labels, leave-one-out 10-NN accuracy, KNC and CPD; plus the seconds
    each took.

    ``k_max``: default :data:`K_MAX` (30), or ``n - 1`` for fewer points (a value given is
    checked against ``n``). A score undefined for this input (CPD of an embedding whose points
    all coincide) is NaN with a ``RuntimeWarning``; the others stand.

    One exact kNN search in X (``k_max`` neighbours of the queries) and one in Y (all points)
    serve the curves, the preservation, the accuracy, trustworthiness and continuity (which
    needs the search in X to cover every point, else searches X again).
    ``global_scores=False`` skips KNC and CPD; ``trustworthiness=False`` skips trustworthiness
    and continuity. ``x_neighbors`` is the search in X from :func:`input_neighbors` (same
    ``k_max``, ``n_queries``, ``key``), reused.
    ``metric``: the input distance the neighbours in X are ranked by (``"cosine"`` and
    ``"correlation"``: Euclidean ranks of the unit rows, exactly; KNC's class means and CPD's
    distances are then those of the unit rows, CPD's ranks exactly the metric's).
    """
    X, Y = pair(_in_metric(X, metric), Y)
    n = X.shape[0]
    k_max = check_k("k_max", min(K_MAX, n - 1) if k_max is None else k_max, n)
    trustworthiness_k = check_int("trustworthiness_k", trustworthiness_k, minimum=1)
    k_classes = check_int("k_classes", k_classes, minimum=1)
    key = jax.random.key(0) if key is None else check_key(key)
    k_queries, k_cpd = jax.random.split(key)
    rows = query_rows(n, n_queries, k_queries)
    timings: dict[str, float] = {}
    out: dict[str, Any] = {"n_samples": n, "n_queries": int(len(rows)), "k_max": k_max}

    t0 = time.perf_counter()
    if x_neighbors is None:
        x_idx = jax.block_until_ready(exact_knn(X, k_max, rows=rows).indices)
    else:
        x_idx = jnp.asarray(numeric_array("x_neighbors", x_neighbors))
        if x_idx.shape != (len(rows), k_max):
            raise ValueError(
                f"x_neighbors has shape {x_idx.shape}; expected {(len(rows), k_max)} "
                "(input_neighbors with the same k_max, n_queries and key)."
            )
    timings["knn_input"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    k_emb = min(max(k_max, 10, trustworthiness_k), n - 1)
    y_all = jax.block_until_ready(exact_knn(Y, k_emb).indices)
    timings["knn_embedding"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    y_idx = jnp.take(y_all, jnp.asarray(rows), axis=0)
    n_hits = np.asarray(jnp.mean(hits(x_idx, y_idx[:, :k_max]).astype(jnp.float32), axis=0))
    k = np.arange(1, k_max + 1)
    out["nn_precision"] = (n_hits / k).tolist()
    out["nn_recall"] = (n_hits / k_max).tolist()
    if k_max >= 10:
        out["knn_preservation_10"] = float(jnp.mean(hits(x_idx[:, :10], y_idx[:, :10])[:, -1]) / 10)
    timings["curves"] = time.perf_counter() - t0

    tk = trustworthiness_k
    if trustworthiness and n <= TRUSTWORTHINESS_MAX_N and tk < n / 2:
        t0 = time.perf_counter()
        out[f"trustworthiness_{tk}"] = trustworthiness_from(X, y_all[:, :tk])
        timings["trustworthiness"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # Its dual ranks the input's neighbours in Y: those of every point (the query rows'
        # search when it covered them all).
        x_all = x_idx[:, :tk] if len(rows) == n and k_max >= tk else exact_knn(X, tk).indices
        out[f"continuity_{tk}"] = trustworthiness_from(Y, x_all)
        timings["continuity"] = time.perf_counter() - t0
    if labels is not None:
        labels = check_labels(labels, n)
        t0 = time.perf_counter()
        _, codes = np.unique(labels, return_inverse=True)
        out["knn_accuracy_10"] = vote_accuracy(np.asarray(y_all[:, :10]), codes)
        timings["knn_accuracy"] = time.perf_counter() - t0
    if labels is not None and global_scores:
        t0 = time.perf_counter()
        if len(np.unique(codes)) > k_classes:
            out[f"knc_{k_classes}"] = knc_score(X, Y, labels, k_classes)
        try:
            out["cpd"] = cpd_score(X, Y, n_cpd, key=k_cpd)
        except UndefinedScoreError as err:  # the rest of the report stands
            out["cpd"] = float("nan")
            warnings.warn(
                f"{err} evaluate records cpd = NaN.",
                RuntimeWarning,
                stacklevel=outside_stacklevel(),
            )
        timings["knc_cpd"] = time.perf_counter() - t0
    out["timings_seconds"] = timings
    return out


def _in_metric(X: ArrayLike, metric: str) -> ArrayLike:
    """``X`` with Euclidean ranks equal to ``metric``'s (tsnejax.knn_metric.comparable)."""
    if not isinstance(metric, str) or metric not in FAST_METRICS:
        raise ValueError(
            f"metric={metric!r}: the quality metrics rank input neighbours in one of "
            f"{FAST_METRICS}; for another, tsnejax.metrics.trustworthiness(X, Y, k, "
            "metric=...) ranks in any metric scikit-learn knows."
        )
    return comparable(np.asarray(dense_input(X)), metric)
