"""Neighbours in a metric other than Euclidean, and from precomputed distances.

The perplexity calibration only needs each point's ``k`` nearest distances, so any metric
works as in openTSNE and scikit-learn (the calibration squares them, as both do):

- ``"euclidean"`` (the default), ``"sqeuclidean"``: the searches of :mod:`tsnejax.knn`
  (``neighbors=`` chooses which); squared distances for the latter.
- ``"cosine"`` and ``"correlation"``: the same searches on the L2-normalised (correlation:
  row-centred, then normalised) rows, exactly: ``1 - cos(a, b) = |a' - b'|^2 / 2`` for the
  unit vectors ``a', b'``, so the Euclidean order is the cosine order. All-zero rows
  (correlation: constant rows) have no cosine distance and are refused.
- ``"precomputed"``: ``X`` is a ``(n, n)`` distance matrix (dense; or sparse holding at least
  ``k`` distances per row besides the diagonal, scikit-learn's kNN-graph convention, e.g.
  ``kneighbors_graph(X, k, mode="distance")``). For ``transform`` the new points are
  ``(m, n)`` distances to the reference points (dense, or such a sparse graph).
- any other name scikit-learn's ``NearestNeighbors`` takes (``"manhattan"``, ``"chebyshev"``,
  ``"minkowski"`` with ``metric_params={"p": 3}``, ...) or a callable ``f(a, b) -> float``:
  scikit-learn's exact search (trees or brute force, on the host), or pynndescent's with
  ``neighbors="pynndescent"``. ``neighbors="auto"`` takes the exact search below
  :data:`tsnejax.knn_ivf.IVF_MIN_POINTS` points and pynndescent from there (openTSNE's rule
  for metrics Annoy lacks); a plain Python callable stays on scikit-learn's.

A sparse data matrix is made dense up to :data:`SPARSE_DENSE_ELEMENTS` cells (the dense
array's result, bit for bit); a larger one is searched on the host as the last item says.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from tsnejax._checks import check_data, check_int, float_dtype, outside_stacklevel, raise_bad_rows
from tsnejax._knn_exact import KNNGraph, drop_self
from tsnejax._types import PRNGKey
from tsnejax.knn import knn_query, search
from tsnejax.knn_ivf import IVF_MIN_POINTS, IVFSearch

__all__ = [
    "FAST_METRICS",
    "check_metric",
    "metric_params_dict",
    "frozen_metric_params",
    "graph_search",
    "metric_query",
    "comparable",
    "from_euclidean",
    "distance_matrix_knn",
    "check_input",
    "check_query",
    "check_new_points",
    "sparse_knn_graph",
    "check_peer_options",
    "sparse_data",
    "SPARSE_DENSE_ELEMENTS",
]

#: Metrics searched by tsnejax's own searches (any ``neighbors=``), after a row transform.
FAST_METRICS = ("euclidean", "sqeuclidean", "cosine", "correlation")
#: Searches a host (scikit-learn or pynndescent) metric may use.
_HOST_SEARCHES = ("auto", "exact", "pynndescent")


def check_metric(metric: Any, metric_params: Any = None) -> None:
    """Raise naming ``metric`` unless it is one of the forms the module docstring lists."""
    if callable(metric):
        return
    if not isinstance(metric, str):
        raise ValueError(
            f"metric must be a name or a callable f(a, b) -> float, got {type(metric).__name__}."
        )
    if metric in (*FAST_METRICS, "precomputed"):
        if metric_params_dict(metric_params):
            raise ValueError(
                f"metric_params={metric_params!r} do not apply to metric={metric!r}; "
                "leave them None."
            )
        return
    from sklearn.neighbors import VALID_METRICS

    known = set(VALID_METRICS["brute"]) | set(VALID_METRICS["ball_tree"])
    if metric not in known:
        names = ", ".join(repr(m) for m in (*FAST_METRICS, "precomputed"))
        raise ValueError(
            f"metric={metric!r} is not a metric scikit-learn's NearestNeighbors knows; use "
            f"{names}, another of scikit-learn's (e.g. 'manhattan', 'chebyshev', 'minkowski' "
            "with metric_params={'p': 3}) or a callable f(a, b) -> float."
        )


def metric_params_dict(metric_params: Any) -> dict[str, Any]:
    """``metric_params`` (``None``, a mapping, or the config's ``((name, value), ...)``)."""
    if metric_params is None:
        return {}
    try:
        return dict(metric_params)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"metric_params must be a dict (e.g. {{'p': 3}}), got {metric_params!r}."
        ) from err


def frozen_metric_params(metric_params: Any) -> tuple[tuple[str, Any], ...]:
    """``metric_params`` as sorted ``(name, value)`` pairs with arrays as nested tuples, so a
    config holding them stays hashable (``{"V": np.array(...)}`` for ``"seuclidean"``)."""

    def frozen(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            v = v.tolist()
        return tuple(frozen(x) for x in v) if isinstance(v, list | tuple) else v

    return tuple(sorted((str(k), frozen(v)) for k, v in metric_params_dict(metric_params).items()))


def comparable(X: np.ndarray, metric: Any, name: str = "X") -> np.ndarray:
    """``X`` transformed so that Euclidean distances order pairs as ``metric`` does (cosine,
    correlation: unit rows); other metrics: ``X`` unchanged."""
    if metric not in ("cosine", "correlation"):
        return X
    X = np.asarray(X)
    out = np.empty(X.shape, float_dtype())
    norms = np.empty((X.shape[0], 1))
    # In row blocks with float64 sums: a whole float64 copy of a 2^28-cell matrix was 2 GiB.
    step = max(1, (1 << 22) // max(X.shape[1], 1))
    for s in range(0, X.shape[0], step):
        Xf = np.asarray(X[s : s + step], np.float64)
        if metric == "correlation":
            Xf = Xf - Xf.mean(axis=1, keepdims=True)
        norms[s : s + step] = np.linalg.norm(Xf, axis=1, keepdims=True)
        out[s : s + step] = Xf / np.where(norms[s : s + step] > 0, norms[s : s + step], 1.0)
    # A row with no direction (all zeros; a constant row for correlation) has no cosine
    # distance; 1e-12 of the largest norm catches rounding of a constant row's centring.
    flat = norms[:, 0] <= 1e-12 * max(float(norms.max()), np.finfo(np.float64).tiny)
    if flat.any():
        rows = np.flatnonzero(flat)
        what = "all zeros" if metric == "cosine" else "constant"
        raise ValueError(
            f"metric={metric!r}: {name} has {len(rows)} row(s) that are {what} (first: "
            f"{rows[:5].tolist()}), which have no {metric} distance to anything; drop them or "
            "use metric='euclidean'."
        )
    return out


def from_euclidean(graph: KNNGraph, metric: str) -> KNNGraph:
    """A graph searched on :func:`comparable` rows with the distances of ``metric``."""
    d = graph.distances
    if metric == "sqeuclidean":
        d = d * d
    elif metric in ("cosine", "correlation"):
        d = jnp.clip(0.5 * d * d, 0.0, 2.0)  # 1 - cos of unit vectors
    return KNNGraph(graph.indices, d)


def _host_graph(idx: np.ndarray, dist: np.ndarray, metric: Any = None) -> KNNGraph:
    if metric is not None and (not np.isfinite(dist).all() or (dist < 0).any()):
        bad = np.flatnonzero(~(np.isfinite(dist) & (dist >= 0)).all(axis=1))
        raise ValueError(
            f"metric={metric!r} gave NaN, inf or negative distances for {len(bad)} point(s) "
            f"(first: {bad[:5].tolist()}); a metric must return finite values >= 0."
        )
    order = np.argsort(dist, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    return KNNGraph(jnp.asarray(idx, jnp.int32), jnp.asarray(dist, float_dtype()))


def _host_method(method: Any, metric: Any, n: int, sparse: bool = False) -> str:
    if isinstance(method, IVFSearch) or method not in _HOST_SEARCHES:
        what = (
            f"a sparse X over {SPARSE_DENSE_ELEMENTS} cells (kept sparse) is searched on the host"
            if sparse
            else f"neighbors={method!r} searches in Euclidean space (and so cosine and "
            f"correlation); metric={metric!r} is searched on the host"
        )
        raise ValueError(
            f"{what}: use neighbors='auto', 'exact' (scikit-learn's exact search) or "
            "'pynndescent' (or reduce the features first, e.g. TruncatedSVD to 50)."
        )
    if method == "auto":
        # pynndescent calls only numba-compiled callables (they have .py_func)
        plain = callable(metric) and not hasattr(metric, "py_func")
        return "exact" if n < IVF_MIN_POINTS or plain else "pynndescent"
    return method


def _sklearn_search(k: int, metric: Any, params: dict[str, Any]):
    from sklearn.neighbors import NearestNeighbors

    params = dict(params)
    p = params.pop("p", 2)  # Minkowski's p is a constructor argument there
    return NearestNeighbors(
        n_neighbors=k, metric=metric, p=p, metric_params=params or None, n_jobs=-1
    )


def graph_search(
    X: Any,
    k: int,
    *,
    method: Any = "auto",
    metric: str | Callable[..., float] = "euclidean",
    metric_params: Any = None,
    key: PRNGKey | None = None,
) -> KNNGraph:
    """The ``k``-neighbour graph of ``X`` (checked data; for ``"precomputed"`` the distance
    matrix) in ``metric``, self excluded, nearest first; ``method``: ``neighbors=``."""
    check_metric(metric, metric_params)
    if metric == "precomputed":
        return distance_matrix_knn(X, k)
    if metric in FAST_METRICS and not sp.issparse(X):
        return from_euclidean(search(comparable(X, metric), k, method=method, key=key), metric)
    n = X.shape[0]
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    params = metric_params_dict(metric_params)
    if metric == "cosine" and sp.issparse(X):  # as comparable() names them for a dense X
        comparable(np.asarray(abs(X).sum(axis=1)), metric)
    if _host_method(method, metric, n, sp.issparse(X)) == "pynndescent":
        from pynndescent import NNDescent

        seed = 0 if key is None else int(jax.random.randint(key, (), 0, 2**31 - 1))
        with _named_search_errors(metric, params, sp.issparse(X), "pynndescent"):
            index = NNDescent(
                X, n_neighbors=k + 1, metric=metric, metric_kwds=params, random_state=seed
            )
            idx, dist = index.neighbor_graph
        return _host_graph(*drop_self(np.asarray(idx), np.asarray(dist), k), metric)
    with _named_search_errors(metric, params, sp.issparse(X)):
        # without a query: no point is its own neighbour
        dist, idx = _sklearn_search(k, metric, params).fit(X).kneighbors()
    return _host_graph(idx, dist, metric)


@contextlib.contextmanager
def _named_search_errors(
    metric: Any, params: dict[str, Any], sparse: bool, who: str = "scikit-learn"
):
    """The search's errors about the metric or its arguments, with the parameters named (an
    unknown argument was ``__init__() got an unexpected keyword argument``)."""
    try:
        yield
    except (ValueError, TypeError) as err:
        if sparse:
            fix = (
                f"on a sparse X (kept sparse above {SPARSE_DENSE_ELEMENTS} cells) use "
                "'euclidean' or 'cosine', or reduce the features first (e.g. TruncatedSVD to 50)"
            )
        else:
            fix = f"check metric_params against {who}'s documentation of this metric"
        raise ValueError(
            f"metric={metric!r} with metric_params={params or None}: {who}'s search says: "
            f"{err}; {fix}."
        ) from err


def metric_query(
    X_ref: Any,
    Q: Any,
    k: int,
    *,
    metric: Any,
    metric_params: Any = None,
    key: PRNGKey | None = None,
) -> KNNGraph:
    """The ``k`` nearest reference rows of each new row in ``metric`` (``"precomputed"``:
    ``Q`` holds the ``(m, n)`` distances from the new points to the reference points)."""
    check_metric(metric, metric_params)
    n = X_ref.shape[0]
    if metric == "precomputed":
        D = check_query(Q, metric, n)
        if sp.issparse(D):
            return _sparse_smallest(D, k, exclude_self=False, name="X_new")
        return _smallest(D, k, exclude_self=False, name="the new points' distances")
    if sp.issparse(Q) and not sp.issparse(X_ref):
        Q = check_data(Q.toarray(), "X_new", min_rows=1)
    if metric in FAST_METRICS and not sp.issparse(X_ref):
        R, Qc = comparable(X_ref, metric, "X_ref"), comparable(Q, metric, "X_new")
        return from_euclidean(knn_query(R, Qc, k, key=key), metric)
    params = metric_params_dict(metric_params)
    with _named_search_errors(metric, params, sp.issparse(X_ref)):
        dist, idx = _sklearn_search(k, metric, params).fit(X_ref).kneighbors(Q)
    return _host_graph(idx, dist, metric)


def distance_matrix_knn(D: Any, k: int) -> KNNGraph:
    """The ``k`` smallest off-diagonal distances of each row of a ``(n, n)`` matrix (dense, or
    sparse with the distances it stores: absent entries are not neighbours)."""
    shape = np.shape(D) if not sp.issparse(D) else D.shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(
            f"metric='precomputed' needs X as a square (n, n) distance matrix, got shape {shape}."
        )
    k = check_int("k", k, minimum=1)
    if sp.issparse(D):
        return _sparse_smallest(sp.csr_matrix(D), k)
    return _smallest(np.asarray(D), k, exclude_self=True, name="X")


def _check_distances(values: np.ndarray, name: str) -> None:
    if not np.isfinite(values).all():
        raise ValueError(f"metric='precomputed': {name} holds NaN or inf distances.")
    if (values < 0).any():
        raise ValueError(
            f"metric='precomputed': {name} holds negative distances (smallest "
            f"{float(values.min()):g}); distances must be >= 0 (was a similarity passed?)."
        )


def _smallest(D: np.ndarray, k: int, *, exclude_self: bool, name: str) -> KNNGraph:
    m, n = D.shape
    top = n - 1 if exclude_self else n
    if k > top:
        raise ValueError(f"k={k} is too large for {n} reference points; the largest is {top}.")
    _check_distances(D, name)
    rows = np.arange(m)
    idx = np.empty((m, k), np.int64)
    dist = np.empty((m, k), np.float64)
    block = max(1, (1 << 24) // max(n, 1))
    for s in range(0, m, block):
        Db = np.array(D[s : s + block], np.float64)
        if exclude_self:
            Db[np.arange(len(Db)), rows[s : s + block]] = np.inf
        part = np.argpartition(Db, k - 1, axis=1)[:, :k]
        idx[s : s + block] = part
        dist[s : s + block] = np.take_along_axis(Db, part, axis=1)
    return _host_graph(idx, dist)


def sparse_knn_graph(D: Any, name: str = "the sparse graph") -> KNNGraph:
    """The kNN graph a sparse ``(n, n)`` distance matrix stores (scikit-learn's
    ``kneighbors_graph(mode="distance")``, scanpy's ``obsp["distances"]``): each row's stored
    off-diagonal distances, nearest first, ``k`` = the fewest any row stores."""
    D = sp.csr_matrix(D)
    if D.shape[0] != D.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {D.shape}.")
    return _sparse_smallest(D, None, name=name)


def _sparse_smallest(
    D: sp.csr_matrix, k: int | None, *, exclude_self: bool = True, name: str = "X"
) -> KNNGraph:
    """Each row's ``k`` smallest stored distances (``None``: as many as the fewest row has)."""
    n = D.shape[0]
    rows = np.repeat(np.arange(n), np.diff(D.indptr))
    # a stored diagonal is no neighbour (of a square X); stored zeros elsewhere are
    keep = D.indices != rows if exclude_self else np.ones(len(rows), bool)
    _check_distances(D.data[keep], name)
    counts = np.bincount(rows[keep], minlength=n)
    if k is None:
        k = int(counts.min())
        if k < 1:
            raise ValueError(
                f"{name} has a row with no neighbours (row {int(np.argmin(counts))}); "
                "recompute it with every point's neighbours stored."
            )
    if counts.min() < k:
        r = int(np.argmin(counts))
        besides = " besides its diagonal" if exclude_self else ""
        raise ValueError(
            f"metric='precomputed': row {r} of the sparse {name} stores {counts[r]} "
            f"distance(s){besides}, but k={k} neighbours are needed; store at least {k} per "
            f"row (kneighbors_graph(X, {k}, mode='distance')) or lower the perplexity."
        )
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float64)
    cols, vals, r_of = D.indices[keep], D.data[keep], rows[keep]
    # one lexsort (row, distance) ranks every row's stored entries at once
    order = np.lexsort((vals, r_of))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    take = (starts[:, None] + np.arange(k)[None, :]).ravel()
    idx[:] = cols[order][take].reshape(n, k)
    dist[:] = vals[order][take].reshape(n, k)
    return _host_graph(idx, dist)


def check_input(X: Any, metric: Any, name: str = "X", *, min_rows: int | None = None) -> Any:
    """``X`` checked for ``metric``: a data matrix (:func:`tsnejax._checks.check_data`; a
    sparse one is made dense up to :data:`SPARSE_DENSE_ELEMENTS`, else kept as CSR), or for
    ``"precomputed"`` a square distance matrix (a sparse one is kept sparse, as CSR)."""
    if metric != "precomputed":
        return (
            sparse_data(X, name, min_rows)
            if sp.issparse(X)
            else check_data(X, name, min_rows=min_rows)
        )
    D = sp.csr_matrix(X) if sp.issparse(X) else check_data(X, name)
    if D.shape[0] != D.shape[1]:
        raise ValueError(
            f"metric='precomputed' needs {name} as a square (n, n) distance matrix, got shape "
            f"{D.shape}; for data rows use a metric such as 'euclidean'."
        )
    if sp.issparse(D):
        check_data(np.zeros((D.shape[0], 1)), name)  # the row count's own rules
    return D


def check_query(Q: Any, metric: Any, n_ref: int) -> Any:
    """``Q``; for ``"precomputed"`` checked to be the ``(m, n_ref)`` distances to the reference
    (a sparse graph of them kept sparse: its absent entries are not distances)."""
    if metric != "precomputed":
        return Q
    if np.ndim(Q) != 2 or np.shape(Q)[1] != n_ref:
        raise ValueError(
            f"metric='precomputed': the new points must be given as their (n_new, {n_ref}) "
            f"distances to the {n_ref} reference points, got shape {np.shape(Q)}."
        )
    return sp.csr_matrix(Q) if sp.issparse(Q) else np.asarray(Q)


def check_new_points(X_new: Any, metric: Any, name: str = "X_new") -> Any:
    """New points for a transform into a reference of ``metric``: checked data rows (sparse
    ones dense when small), or a sparse ``"precomputed"`` distance graph kept as it is."""
    if metric == "precomputed" and sp.issparse(X_new):
        return sp.csr_matrix(X_new)
    return check_input(X_new, "euclidean", name, min_rows=1)


def check_peer_options(metric: Any, n_jobs: Any, metric_params: Any = None) -> None:
    """openTSNE's and scikit-learn's ``metric`` (:func:`tsnejax.knn_metric.check_metric`) and
    ``n_jobs``, accepted for their signatures: a thread count is a warning that it changes
    nothing (XLA's thread pool is fixed when the backend starts)."""
    check_metric(metric, metric_params)
    if n_jobs is not None:
        warnings.warn(
            f"n_jobs={n_jobs!r} has no effect: XLA runs on every core this process may use "
            "(limit those with taskset or a cgroup, e.g. taskset -c 0-3 python ...).",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )


#: A sparse data matrix up to this many cells (1 GiB in float32) is made dense: the searches,
#: the PCA and the metrics then run as on the dense array (and give its result). A larger one
#: is searched on the host (scikit-learn, or pynndescent from 40k points) and its PCA
#: initialisation is scikit-learn's sparse ARPACK PCA.
SPARSE_DENSE_ELEMENTS = 1 << 28


def sparse_data(X: Any, name: str = "X", min_rows: int | None = None) -> Any:
    """A checked sparse data matrix: dense (:func:`check_data`) when it has at most
    :data:`SPARSE_DENSE_ELEMENTS` cells, else CSR in the compute dtype with finite values."""
    n, d = X.shape
    if n * d <= SPARSE_DENSE_ELEMENTS:
        return check_data(X.toarray(), name, min_rows=min_rows)
    check_data(np.zeros((n, 1)), name, min_rows=min_rows)  # the row count's rules
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} has dtype {X.dtype}; pass a real-valued sparse matrix.")
    X = sp.csr_matrix(X, dtype=float_dtype())
    bad = ~np.isfinite(X.data)
    if bad.any():
        rows = np.unique(np.repeat(np.arange(n), np.diff(X.indptr))[bad])
        raise_bad_rows(rows, name, "drop or impute them before embedding")
    return X
