"""k-nearest-neighbour graphs with a fixed k: exact blocked search, pynndescent, or precomputed.

Every backend returns a :class:`KNNGraph` with self-matches removed, neighbours sorted by
distance, and Euclidean (not squared) distances. The exact search never builds an N x N
matrix: it processes ``block_size`` query rows at a time (memory ``O(block_size * N)``).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_finite_rows, check_int, check_option, float_dtype
from tsnejax._device import to_device
from tsnejax._knn_exact import (
    KNNGraph,
    block_size_for,
    drop_self,
    exact_knn_rows,
    exact_query,
    largest_magnitude,
    remeasured,
    rescaled,
    times_unit,
    unit_for,
)
from tsnejax._types import Array, ArrayLike, PRNGKey
from tsnejax.knn_index import GraphIndex, GraphSearch, graph_query
from tsnejax.knn_ivf import IVF_MIN_POINTS, IVFSearch, ivf_knn, ivf_query
from tsnejax.memory import check_memory, exact_knn_bytes

__all__ = [
    "KNNGraph",
    "exact_knn",
    "pynndescent_knn",
    "precomputed_knn",
    "nearest_neighbors",
    "search",
    "faiss_knn",
    "faiss_available",
    "NEIGHBOR_SEARCHES",
    "default_k",
    "EXACT_BUDGET",
    "exact_limit",
    "auto_search",
    "ivf_knn",
    "IVFSearch",
    "knn_query",
    "EXACT_QUERY_PAIRS",
    "GRAPH_QUERY_PAIRS",
]

#: Above this ``n**2 * (n_features + 100)`` the exact search would take ~40 s on two CPU cores
#: (``benchmarks/bench_knn.py`` measured ~2.4e-11 * n^2 * (d + 100) s: MNIST-70k PCA-50 17 s,
#: 40k x 784 34 s): :func:`exact_limit`. ``"auto"`` now switches to the cluster-pruned search
#: (:mod:`tsnejax.knn_ivf`) already at :data:`tsnejax.knn_ivf.IVF_MIN_POINTS`.
EXACT_BUDGET = 1.7e12

#: The searches ``nearest_neighbors(method=...)`` (and ``neighbors=`` in a config) accept.
NEIGHBOR_SEARCHES = ("auto", "exact", "ivf", "faiss", "faiss_hnsw", "pynndescent", "sharded")


#: openTSNE's searches tsnejax does not have, and what to take instead.
PEER_SEARCHES = {
    "annoy": "tsnejax's approximate searches are 'ivf' (the 'auto' choice from 40k points) and "
    "'faiss_hnsw'",
    "hnsw": "tsnejax runs HNSW through FAISS: neighbors='faiss_hnsw' (pip install "
    "'tsnejax[faiss]')",
}
PEER_SEARCHES["approx"] = PEER_SEARCHES["annoy"]


def check_search(name: str, value: object, allowed: tuple = NEIGHBOR_SEARCHES) -> None:
    """``check_option`` for a search name, with openTSNE's ``"annoy"``/``"approx"``/``"hnsw"``
    answered by what to use instead (they were listed as unknown)."""
    if isinstance(value, str) and value in PEER_SEARCHES:
        raise ValueError(f"{name}={value!r} is openTSNE's search; {PEER_SEARCHES[value]}.")
    check_option(name, value, allowed)


def default_k(n: int, perplexity: float) -> int:
    """openTSNE's rule: ``min(n - 1, int(3 * perplexity))``."""
    return int(min(n - 1, int(3 * perplexity)))


def exact_knn(
    X: ArrayLike, k: int, *, rows: ArrayLike | None = None, block_size: int | None = None
) -> KNNGraph:
    """Exact Euclidean kNN by blocked matmul + ``lax.top_k`` on the default device.

    Memory is O(block_size * n); no n x n matrix is formed.

    Args:
      X: ``(n, d)`` data.
      k: neighbours per point, ``1 <= k <= n - 1``.
      rows: optional ``(m,)`` indices of the query points (default: all ``n``); each query's
        neighbours are searched among all of ``X`` except itself.
      block_size: query rows per block (default: 2^27 elements, 512 MiB in float32, per block;
        larger blocks re-read X fewer times: 70k x 784 MNIST took 94 s at 479 rows per block,
        52 s at 2048).

    Returns:
      :class:`KNNGraph` with ``(m, k)`` indices into ``X`` and distances, nearest first.
    """
    X, unit = rescaled(X)
    n, d = X.shape
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    if rows is None:
        rows = to_device(np.arange(n, dtype=np.int32))
    else:
        rows = np.asarray(rows)
        if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
            raise ValueError("rows must be a non-empty 1-D array of integer row indices.")
        if rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"rows must index the {n} rows of X (0 .. {n - 1}).")
        rows = to_device(rows, np.int32)
    bs = (
        block_size_for(n, k, d)
        if block_size is None
        else check_int("block_size", block_size, minimum=1)
    )
    check_memory(
        f"the exact kNN search of {rows.shape[0]} queries among {n} points x {d} features",
        exact_knn_bytes(n, d, k, rows.shape[0]),
        "use neighbors='ivf', or reduce the features first (PCA to 50)",
    )
    # The band search finds every point's neighbours; for a small query subset (metrics on
    # 10k of 1M points) the blocked search over just those rows is cheaper.
    few = rows.shape[0] * BAND_QUERY_FRACTION < n
    if d <= BAND_MAX_DIM and n >= BAND_MIN_POINTS and k < BAND_WINDOW // 4 and not few:
        idx, dist = _band_knn(X, k, bs)
        if rows.shape[0] < n:
            idx, dist = jnp.take(idx, rows, axis=0), jnp.take(dist, rows, axis=0)
        return KNNGraph(idx, times_unit(dist, unit))
    idx, dist = exact_knn_rows(X, rows, k, min(bs, rows.shape[0]))
    return KNNGraph(idx, times_unit(dist, unit))


#: Low-dimensional data (embeddings) of at least this many points use the sorted-band search.
BAND_MAX_DIM = 3
BAND_MIN_POINTS = 16384
BAND_WINDOW = 2048
#: Query subsets smaller than n / BAND_QUERY_FRACTION use the blocked brute-force search.
BAND_QUERY_FRACTION = 8
_BAND_BLOCK = 512


@functools.partial(jax.jit, static_argnames=("k",))
def _band_search(Xs: Array, k: int) -> tuple[Array, Array, Array]:
    """kNN of every point among a window of its neighbours in x-sorted order, and whether the
    window provably holds all points within the k-th distance (a certificate of exactness)."""
    n, d = Xs.shape
    b, slab = _BAND_BLOCK, _BAND_BLOCK + BAND_WINDOW
    n_blocks = -(-n // b)
    x = Xs[:, 0]

    def one_block(j: Array) -> tuple[Array, Array, Array]:
        q = jnp.minimum(j * b + jnp.arange(b, dtype=jnp.int32), n - 1)
        start = jnp.clip(j * b - BAND_WINDOW // 2, 0, n - slab)
        cand = jax.lax.dynamic_slice_in_dim(Xs, start, slab)
        Q = jnp.take(Xs, q, axis=0)
        diff = Q[:, None, :] - cand[None, :, :]
        d2 = jnp.sum(diff * diff, axis=-1)
        d2 = jnp.where((start + jnp.arange(slab))[None, :] == q[:, None], jnp.inf, d2)
        neg, idx = jax.lax.top_k(-d2, k)
        dist = jnp.sqrt(-neg)
        r = dist[:, -1]
        xq = jnp.take(x, q)
        left = (start == 0) | (jnp.take(x, jnp.maximum(start - 1, 0)) < xq - r)
        right = (start + slab >= n) | (jnp.take(x, jnp.minimum(start + slab, n - 1)) > xq + r)
        return (start + idx).astype(jnp.int32), dist, left & right

    idx, dist, ok = jax.lax.map(one_block, jnp.arange(n_blocks, dtype=jnp.int32))
    return idx.reshape(-1, k)[:n], dist.reshape(-1, k)[:n], ok.reshape(-1)[:n]


def _band_knn(X: Array, k: int, block_size: int) -> tuple[Array, Array]:
    """Exact kNN for low-dimensional ``X``: sort by the first coordinate, search a window of
    ``BAND_WINDOW`` sorted neighbours per point, and redo by the blocked brute-force search
    the points whose window is not certified to contain their whole k-neighbourhood.

    A t-SNE embedding of 70k points: 17 s by brute force, about 1 s this way."""
    n = X.shape[0]
    order = jnp.argsort(X[:, 0], stable=True)
    idx_s, dist_s, ok_s = _band_search(jnp.take(X, order, axis=0), k)
    inverse = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    idx = jnp.take(order, jnp.take(idx_s, inverse, axis=0)).astype(jnp.int32)
    dist = jnp.take(dist_s, inverse, axis=0)
    bad = np.flatnonzero(~np.asarray(jnp.take(ok_s, inverse)))
    if bad.size:
        # Pad to a power of two so that repeated calls reuse a handful of compiled shapes.
        m = 1 << int(np.ceil(np.log2(bad.size)))
        rows = np.concatenate([bad, np.full(m - bad.size, bad[0])])
        fix_idx, fix_dist = exact_knn_rows(X, jnp.asarray(rows, jnp.int32), k, min(block_size, m))
        idx = idx.at[bad].set(fix_idx[: bad.size])
        dist = dist.at[bad].set(fix_dist[: bad.size])
    # Same order as the brute-force path: by distance, ties by position in its top_k.
    o = jnp.argsort(dist, axis=1, stable=True)
    return jnp.take_along_axis(idx, o, axis=1), jnp.take_along_axis(dist, o, axis=1)


def pynndescent_knn(X: ArrayLike, k: int, *, key: PRNGKey | None = None, **kwargs) -> KNNGraph:
    """Approximate Euclidean kNN with pynndescent (numba; its first call compiles, 30-140 s).

    ``key`` seeds pynndescent's random projection trees; extra keyword arguments go to
    ``pynndescent.NNDescent``.
    """
    from pynndescent import NNDescent

    Xs, unit = rescaled(X)
    Xn = np.asarray(Xs, dtype=np.float32)
    n = Xn.shape[0]
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    seed = 0 if key is None else int(jax.random.randint(key, (), 0, 2**31 - 1))
    index = NNDescent(Xn, n_neighbors=k + 1, random_state=seed, **kwargs)
    idx, dist = index.neighbor_graph
    idx, dist = drop_self(np.asarray(idx), np.asarray(dist), k)
    return KNNGraph(jnp.asarray(idx, jnp.int32), jnp.asarray(dist * unit, float_dtype()))


def faiss_available() -> bool:
    """Whether the optional FAISS package (``pip install "tsnejax[faiss]"``) is importable."""
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def faiss_knn(X: ArrayLike, k: int, *, index: Literal["flat", "hnsw"] = "flat") -> KNNGraph:
    """Euclidean kNN with FAISS. Optional extra: ``pip install "tsnejax[faiss]"``.

    ``index="flat"``: the exact brute-force ``IndexFlatL2`` (on every GPU FAISS sees when its
    GPU build is installed). MNIST-70k PCA-50, k = 90, 2-core CPU: 17.5 s vs 20.8 s for
    :func:`exact_knn`; 20k x 784: 5.2 vs 8.5 s (``benchmarks/bench_knn.py``).

    ``index="hnsw"``: the approximate ``IndexHNSWFlat`` graph (M = 32, efConstruction 100,
    efSearch max(128, 2k)), built and searched on one thread so the same data always gives
    the same graph. MNIST-70k PCA-50, k = 90: 6.4 s build + 9.3 s search, recall 0.998 of the
    exact neighbours (2 threads: 3.7 + 5.0 s, but then insertion order is not fixed); inside
    ``TSNE().fit`` 23.5 s against 18.1 s for the exact search, same KL (2.8147 / 2.8145): no
    gain at this size on 2 cores, so ``"auto"`` does not pick it.

    FAISS ranks by ``|x|^2 + |y|^2 - 2 x.y`` in float32; the chosen neighbours' distances are
    then measured again by direct differences and each row re-sorted (stable), as in
    :func:`exact_knn`.
    """
    if not faiss_available():
        raise ValueError(
            f"neighbors={'faiss' if index == 'flat' else 'faiss_hnsw'!r} needs the faiss "
            "package: pip install 'tsnejax[faiss]' (faiss-cpu), or a faiss GPU build; or use "
            "neighbors='exact'."
        )
    check_option("index", index, ("flat", "hnsw"))
    import faiss

    Xs, unit = rescaled(X)
    Xn = np.ascontiguousarray(np.asarray(Xs, np.float32))
    n, d = Xn.shape
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    threads = faiss.omp_get_max_threads()
    if index == "hnsw":
        searcher = faiss.IndexHNSWFlat(d, 32)
        searcher.hnsw.efConstruction = 100
        searcher.hnsw.efSearch = max(128, 2 * (k + 1))
        faiss.omp_set_num_threads(1)  # a fixed insertion order: the same graph every time
    else:
        searcher = faiss.IndexFlatL2(d)
        if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
            searcher = faiss.index_cpu_to_all_gpus(searcher)
    try:
        searcher.add(Xn)
        _, found = searcher.search(Xn, k + 1)
    finally:
        faiss.omp_set_num_threads(threads)
    found = np.where(found < 0, np.arange(n)[:, None], found)  # HNSW may return -1 (too few)
    idx, _ = drop_self(found.astype(np.int32), np.zeros(found.shape, np.float32), k)
    idx, dist = remeasured(Xs, jnp.asarray(idx), block_size_for(n, k, d))
    return KNNGraph(idx, times_unit(dist, unit))


def precomputed_knn(
    indices: ArrayLike, distances: ArrayLike, *, n_ref: int | None = None
) -> KNNGraph:
    """Validate a user kNN graph: ``(n, k)`` indices in range, no self-loops, finite distances >= 0.

    ``n_ref``: the graph is of queries into ``n_ref`` reference points (``transform``'s new
    points): indices lie in ``[0, n_ref)``, and there are no self-loops to look for (a query is
    not a reference point).
    Rows are re-sorted by distance.
    """
    idx = np.asarray(indices)
    dist = np.asarray(distances)
    if idx.ndim != 2 or dist.shape != idx.shape:
        raise ValueError(
            "neighbors: precomputed (indices, distances) must both have shape (n, k); "
            f"got {idx.shape} and {dist.shape}."
        )
    if idx.dtype.kind not in "iu":
        raise ValueError(f"neighbors: indices must be integers, got dtype {idx.dtype}.")
    n, k = idx.shape
    if k < 1 or n < (1 if n_ref else 2):
        raise ValueError(
            f"neighbors: need at least {1 if n_ref else 2} point(s) and 1 neighbour, got "
            f"shape {idx.shape}."
        )
    top = n if n_ref is None else n_ref
    if (idx < 0).any() or (idx >= top).any():
        raise ValueError(f"neighbors: indices must lie in [0, {top - 1}].")
    if n_ref is None and (idx == np.arange(n)[:, None]).any():
        rows = np.flatnonzero((idx == np.arange(n)[:, None]).any(axis=1))
        raise ValueError(
            f"neighbors: {len(rows)} row(s) list the point itself as a neighbour (first: "
            f"{int(rows[0])}); drop the self column (usually the first) before passing them."
        )
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise ValueError("neighbors: distances must be finite and non-negative.")
    order = np.argsort(dist, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    return KNNGraph(jnp.asarray(idx, jnp.int32), jnp.asarray(dist, float_dtype()))


def nearest_neighbors(
    X: ArrayLike,
    k: int,
    *,
    method: Literal["auto", "exact", "ivf", "faiss", "faiss_hnsw", "pynndescent", "sharded"]
    | IVFSearch = "auto",
    key: PRNGKey | None = None,
) -> KNNGraph:
    """kNN graph of ``X`` with the chosen backend.

    ``"auto"`` (:func:`auto_search`) uses the exact search below
    :data:`tsnejax.knn_ivf.IVF_MIN_POINTS` points and the cluster-pruned ``"ivf"`` search
    (:func:`tsnejax.knn_ivf.ivf_knn`: jitted, deterministic; recall of the 90 nearest 0.9925
    on MNIST-70k, 0.9886 at 250k) from there on; no default path compiles numba
    (pynndescent) and whether an optional package is installed never changes what ``"auto"``
    returns. The ``"ivf"`` graph does not depend on ``key`` (a fixed seed: the graph is a
    property of the data); an :class:`tsnejax.knn_ivf.IVFSearch` object runs it with that
    effort (e.g. ``IVFSearch(candidates=16384)`` for more recall). ``"pynndescent"``: the
    numba search (``key`` seeds it). ``"faiss"``: FAISS's exact
    index (:func:`faiss_knn`; the fast exact search on a GPU with a FAISS GPU build);
    ``"faiss_hnsw"``: FAISS's HNSW graph, approximate and deterministic (recall 0.998 on
    MNIST-70k).
    """
    shape = np.shape(X)
    if len(shape) != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {shape}.")
    if isinstance(X, np.ndarray):  # a device array is checked where it is (no copy here)
        check_finite_rows(X, "X", "drop or impute them before the search")
    elif not bool(jnp.all(jnp.isfinite(X))):  # NaN rows got arbitrary "neighbours"
        raise ValueError("X has NaN or inf values; drop or impute them before the search.")
    return search(X, k, method=method, key=key)


def search(
    X: ArrayLike,
    k: int,
    *,
    method: str | IVFSearch = "auto",
    key: PRNGKey | None = None,
) -> KNNGraph:
    """:func:`nearest_neighbors` for ``X`` already checked (``tsnejax._checks.check_data``)."""
    if isinstance(method, IVFSearch):  # the ivf search with this effort
        Xs, unit = rescaled(X)
        graph = ivf_knn(Xs, k, search=method)
        return KNNGraph(graph.indices, times_unit(graph.distances, unit))
    check_search("neighbors", method)
    if method == "sharded":
        raise ValueError(
            "neighbors='sharded' searches over a device mesh: pass mesh= to tsnejax.fit (or "
            "TSNE), or call tsnejax.sharded_knn.sharded_knn(X, k, mesh) and pass its graph as "
            "neighbors=."
        )
    n, d = np.shape(X)
    if method == "auto":
        method = auto_search(n, d)
    if method == "exact":
        return exact_knn(X, k)
    if method == "ivf":
        return search(X, k, method=IVFSearch())
    if method in ("faiss", "faiss_hnsw"):
        return faiss_knn(X, k, index="flat" if method == "faiss" else "hnsw")
    return pynndescent_knn(X, k, key=key)


#: ``knn_query(method="auto")`` searches exactly up to this many (query, reference) pairs.
EXACT_QUERY_PAIRS = 2e10
#: ... and uses a given graph index from this many pairs on: below, the exact search costs
#: ~0.3 s or less on two cores and gives what the index only approximates.
GRAPH_QUERY_PAIRS = 1e8


def knn_query(
    X_ref: ArrayLike,
    Q: ArrayLike,
    k: int,
    *,
    method: Literal["auto", "exact", "graph", "ivf", "pynndescent"] = "auto",
    key: PRNGKey | None = None,
    index: GraphIndex | None = None,
    search: GraphSearch | None = None,
    complete: bool = True,
) -> KNNGraph:
    """The ``k`` nearest reference rows of each query row (a query is never its own neighbour:
    queries are not part of the reference).

    ``"graph"``: the approximate search of ``index`` (a :class:`tsnejax.knn_index.GraphIndex`
    built from the reference's kNN graph, e.g. the one ``fit`` computed), with ``search``
    effort. ``"auto"``: that search when an ``index`` is given and the query has at least
    :data:`GRAPH_QUERY_PAIRS` query-reference pairs; otherwise the exact blocked search up to
    :data:`EXACT_QUERY_PAIRS` pairs (MNIST 10k into 60k: 6e8), else the cluster-pruned search
    (``"ivf"``, :func:`tsnejax.knn_ivf.ivf_query`; no numba compilation). ``"pynndescent"``:
    a pynndescent index on the reference. ``complete=False`` (graph search only) leaves rows
    the search could not fill with infinite distances instead of waiting for the device to
    check them (:func:`tsnejax.knn_index.complete_query`).

    Returns:
      :class:`KNNGraph` with ``(m, k)`` indices into ``X_ref`` and distances, nearest first.
    """
    check_option("neighbors", method, ("auto", "exact", "graph", "ivf", "pynndescent"))
    R, Qa = np.asarray(X_ref), np.asarray(Q)
    if R.ndim != 2 or Qa.ndim != 2 or R.shape[1] != Qa.shape[1]:
        raise ValueError(
            f"X_ref {R.shape} and the new points {Qa.shape} must be 2-D with the same number "
            "of columns (features)."
        )
    n, m = R.shape[0], Qa.shape[0]
    k = check_int("k", k, minimum=1)
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} reference points; use k <= {n}.")
    if index is not None and tuple(index.data.shape) != R.shape:
        raise ValueError(
            f"index was built on data of shape {tuple(index.data.shape)}, not on X_ref "
            f"{R.shape}; build it with build_graph_index(X_ref, graph)."
        )
    if method == "auto":
        if index is not None and n * m >= GRAPH_QUERY_PAIRS:
            method = "graph"
        else:
            method = "exact" if n * m <= EXACT_QUERY_PAIRS else "ivf"
    if method == "graph":
        if index is None:
            raise ValueError(
                "neighbors='graph' needs index=build_graph_index(X_ref, graph), e.g. from the "
                "kNN graph fit computed (TSNEResult.neighbors)."
            )
        return graph_query(index, Qa, k, search or GraphSearch(), complete=complete)
    if method == "pynndescent":
        from pynndescent import NNDescent

        seed = 0 if key is None else int(jax.random.randint(key, (), 0, 2**31 - 1))
        index = NNDescent(R, n_neighbors=max(k, 15), random_state=seed)
        idx, dist = index.query(Qa, k=k)
        return KNNGraph(jnp.asarray(idx, jnp.int32), jnp.asarray(dist, float_dtype()))
    # One unit for both sets, each rescaled on the host and copied: slicing a device copy of
    # both, or scaling by a unit of 1, compiled a program per shape.
    R, Qa = R.astype(float_dtype(), copy=False), Qa.astype(float_dtype(), copy=False)
    unit = unit_for(max(largest_magnitude(R), largest_magnitude(Qa)))
    Rs, Qs = (to_device(a if unit == 1.0 else a / np.asarray(unit, a.dtype)) for a in (R, Qa))
    if method == "ivf" and m:
        graph = ivf_query(Rs, Qs, k)
        return KNNGraph(graph.indices, times_unit(graph.distances, unit))
    bs = block_size_for(n, k, R.shape[1])
    idx, dist = exact_query(Rs, Qs, k, max(1, min(bs, m)))
    return KNNGraph(idx, times_unit(dist, unit))


def auto_search(n: int, n_features: int) -> Literal["exact", "ivf"]:
    """What ``neighbors="auto"`` runs for ``n`` points: ``"exact"`` below
    :data:`tsnejax.knn_ivf.IVF_MIN_POINTS` (and within :func:`exact_limit`), else ``"ivf"``."""
    return "exact" if n < IVF_MIN_POINTS and n <= exact_limit(n_features) else "ivf"


def exact_limit(n_features: int) -> int:
    """Largest N for which ``neighbors="auto"`` picks the exact search (see EXACT_BUDGET)."""
    return int(np.sqrt(EXACT_BUDGET / (max(n_features, 1) + 100)))
