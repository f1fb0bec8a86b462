"""t-SNE on AnnData objects, in scanpy's shape: ``tsnejax.tl.tsne(adata, use_rep="X_pca")``.

Needs the optional extra ``pip install "tsnejax[anndata]"`` only to read or write ``.h5ad``
files; :func:`tsne` itself works on any object with AnnData's ``obsm``/``obsp``/``uns``/``X``
(it never imports anndata). The result follows ``scanpy.tl.tsne``: the embedding in
``adata.obsm[key_added]`` (default ``"X_tsne"``) and the settings in
``adata.uns[key_added or "tsne"]["params"]``; tsnejax adds the KL divergence, its history, the
iterations, the gradient method and the stage timings there.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from tsnejax._checks import check_finite_rows, check_pathlike, outside_stacklevel, raise_bad_rows
from tsnejax.estimator import TSNE
from tsnejax.knn_metric import check_metric, check_peer_options, sparse_knn_graph

__all__ = ["tsne", "representation", "pca", "graph_from_obsp", "store", "read_h5ad"]

#: With more variables than this and no ``X_pca``, :func:`representation` computes a PCA first
#: (scanpy's ``settings.N_PCS``).
N_PCS = 50


def representation(adata: Any, use_rep: str | None = None, n_pcs: int | None = None):
    """The matrix t-SNE embeds, scanpy's rules: ``use_rep`` names an ``obsm`` key or ``"X"``;
    ``None`` takes ``obsm["X_pca"]`` when present, else ``adata.X`` when it has at most 50
    variables, else (as scanpy does, with a warning) a PCA of ``adata.X`` with ``n_pcs`` (or
    50) components, stored in ``obsm["X_pca"]`` (:func:`pca`). ``n_pcs`` keeps the first
    columns. ``use_rep="X"`` on a sparse ``adata.X`` with more variables keeps it sparse
    (:class:`tsnejax.TSNE` takes sparse input). Returns ``(X (n_obs, d), name)``."""
    keys = list(adata.obsm.keys())
    if use_rep is None:
        if "X_pca" in keys:
            use_rep = "X_pca"
        elif adata.X is None:
            raise ValueError(
                f"adata has no X and no obsm['X_pca']; pass use_rep= one of {keys or ['X']}."
            )
        elif adata.X.shape[1] <= N_PCS:
            use_rep = "X"
        else:
            n_comps = N_PCS if n_pcs is None else n_pcs
            warnings.warn(
                f"adata has {adata.X.shape[1]} variables and no obsm['X_pca']: computing a "
                f"{n_comps}-component PCA of adata.X into obsm['X_pca'] (scanpy's fallback; "
                "run sc.pp.pca(adata) first to choose its settings, or pass use_rep='X' to "
                "embed X itself).",
                UserWarning,
                stacklevel=outside_stacklevel(),
            )
            pca(adata, n_comps)
            use_rep = "X_pca"
    if use_rep == "X":
        X = adata.X
        if hasattr(X, "toarray") and X.shape[1] <= N_PCS:
            X = X.toarray()  # at most 50 columns: small
        # a wider sparse X stays sparse: TSNE takes it (dense when small, else on the host)
    elif use_rep in adata.obsm.keys():
        X = adata.obsm[use_rep]
    else:
        raise ValueError(f"use_rep={use_rep!r} is not in adata.obsm (keys: {keys}) nor 'X'.")
    X = X if hasattr(X, "toarray") else np.asarray(X)
    if n_pcs is not None:
        if not isinstance(n_pcs, int | np.integer) or not 1 <= n_pcs <= X.shape[1]:
            raise ValueError(
                f"n_pcs={n_pcs!r} must be an int in [1, {X.shape[1]}] (the columns of {use_rep!r})."
            )
        X = X[:, :n_pcs]
    _check_finite(X, "adata.X" if use_rep == "X" else f"adata.obsm[{use_rep!r}]")
    return X, use_rep


def _check_finite(X: Any, where: str) -> None:
    """Raise naming the cells (rows of ``X``, dense or sparse) with NaN or inf values: they
    reached scikit-learn's PCA or the kNN search, whose errors name neither ``adata`` nor the
    rows."""
    fix = "drop those cells (adata = adata[mask].copy()) or impute the values first, then rerun"
    if hasattr(X, "tocoo"):
        if np.isfinite(X.data).all():  # the usual case, without a COO copy of the matrix
            return
        coo = X.tocoo()
        rows = np.unique(coo.row[~np.isfinite(coo.data)])
        if len(rows):
            raise_bad_rows(rows, where, fix)
    elif np.asarray(X).dtype.kind in "fc":
        check_finite_rows(np.asarray(X), where, fix)


def pca(adata: Any, n_comps: int = N_PCS, *, random_state: int = 0) -> None:
    """``sc.pp.pca``'s outputs for ``adata.X`` (dense or sparse): ``obsm["X_pca"]``
    ``(n_obs, n_comps)`` float32, ``varm["PCs"]`` ``(n_vars, n_comps)`` where the object has
    ``varm``, and ``uns["pca"]`` with ``variance``, ``variance_ratio`` and ``params``.

    Zero-centred, ARPACK (scanpy's solver; a sparse matrix is centred implicitly, never
    densified), deterministic for a given ``random_state``.
    """
    from sklearn.decomposition import PCA

    X = adata.X
    n, d = X.shape
    if not isinstance(n_comps, int | np.integer) or not 1 <= n_comps < min(n, d):
        raise ValueError(
            f"n_comps={n_comps!r} must be an int in [1, {min(n, d) - 1}] (ARPACK needs fewer "
            f"components than min(n_obs, n_vars) = {min(n, d)})."
        )
    if not hasattr(X, "toarray"):
        X = np.asarray(X)
        if X.dtype.kind not in "iuf":
            raise ValueError(f"adata.X must be numeric, got dtype {X.dtype}.")
    _check_finite(X, "adata.X")
    model = PCA(n_components=int(n_comps), svd_solver="arpack", random_state=random_state)
    adata.obsm["X_pca"] = model.fit_transform(X).astype(np.float32)
    if hasattr(adata, "varm"):
        adata.varm["PCs"] = model.components_.T.astype(np.float32)
    adata.uns["pca"] = {
        "params": {"zero_center": True, "n_comps": int(n_comps), "svd_solver": "arpack"},
        "variance": model.explained_variance_,
        "variance_ratio": model.explained_variance_ratio_,
    }


def graph_from_obsp(adata: Any, neighbors_key: str = "neighbors"):
    """The kNN graph ``scanpy.pp.neighbors`` stored, as ``(indices, distances)`` of shape
    ``(n_obs, k)`` (self excluded, nearest first): ``adata.obsp[uns[neighbors_key]
    ["distances_key"]]``. Rows with fewer stored neighbours (duplicates have distance 0 and
    are not stored) limit ``k`` to the smallest row."""
    if neighbors_key not in adata.uns:
        raise ValueError(
            f"neighbors_key={neighbors_key!r} is not in adata.uns; run "
            "sc.pp.neighbors(adata, n_neighbors=91) first (3 x perplexity + 1 neighbours), or "
            "leave neighbors_key=None to let tsnejax search."
        )
    dist_key = adata.uns[neighbors_key].get("distances_key", "distances")
    if dist_key not in adata.obsp:
        raise ValueError(f"adata.obsp has no {dist_key!r} (named by uns[{neighbors_key!r}]).")
    graph = sparse_knn_graph(adata.obsp[dist_key], f"adata.obsp[{dist_key!r}]")
    return np.asarray(graph.indices, np.int64), np.asarray(graph.distances, np.float32)


def store(adata: Any, embedding: np.ndarray, info: dict[str, Any], key_added: str | None):
    """Write ``embedding`` to ``adata.obsm[key_added or "X_tsne"]`` and ``info`` to
    ``adata.uns[key_added or "tsne"]`` (``None`` values dropped: ``.h5ad`` cannot hold them)."""
    adata.obsm[key_added or "X_tsne"] = np.asarray(embedding)
    adata.uns[key_added or "tsne"] = _h5ad_safe(info)


def _h5ad_safe(value: Any) -> Any:
    """``value`` as what ``.h5ad`` stores: dicts, strings, numbers, bools, arrays."""
    if isinstance(value, dict):
        return {str(k): _h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | bool | int | float | np.ndarray):
        return value
    if isinstance(value, list | tuple):
        if not value:
            return np.zeros(0)
        try:  # numbers, or rows of numbers such as the KL history [(iteration, kl), ...]
            return np.asarray(value, np.float64)
        except (TypeError, ValueError):
            return np.asarray([str(v) for v in value])
    return str(value)  # an Optax object, a Backend: its description


def tsne(
    adata: Any,
    n_pcs: int | None = None,
    *,
    use_rep: str | None = None,
    perplexity: float = 30.0,
    metric: str = "euclidean",
    early_exaggeration: float = 12.0,
    learning_rate: float | str = "auto",
    random_state: int = 0,
    use_fast_tsne: bool = False,
    n_jobs: int | None = None,
    key_added: str | None = None,
    neighbors_key: str | None = None,
    copy: bool = False,
    checkpoint: Any = None,
    **kwargs: Any,
) -> Any:
    """t-SNE of ``adata`` (scanpy's ``sc.tl.tsne`` arguments; tsnejax's defaults).

    Args:
      adata: an AnnData (or anything with its ``obsm``, ``obsp``, ``uns``, ``X``).
      n_pcs: use the first ``n_pcs`` columns of the representation.
      use_rep: ``obsm`` key or ``"X"``; ``None``: ``X_pca`` if present, ``X`` with at most 50
        variables, else a 50-component PCA stored in ``obsm["X_pca"]`` with a warning, as
        scanpy does (see :func:`representation`).
      perplexity, early_exaggeration, learning_rate, random_state: as in :class:`tsnejax.TSNE`
        (``learning_rate="auto"``: N / early exaggeration, not scanpy's fixed 1000).
      metric: the distance in the representation (scanpy's default ``"euclidean"``;
        ``"cosine"``, ``"correlation"``, any of :mod:`tsnejax.knn_metric`); ``metric_params``
        goes in ``kwargs``.
      use_fast_tsne: accepted for scanpy's signature; tsnejax always runs its own gradient
        (``negative_gradient_method``; its interpolation is FIt-SNE's algorithm).
      n_jobs: accepted for scanpy's signature; XLA uses every core the process may run on, so
        any value but ``None`` gives a warning saying how to limit it.
      key_added: ``obsm[key_added]`` and ``uns[key_added]`` instead of ``X_tsne`` / ``tsne``.
      neighbors_key: reuse the kNN graph ``sc.pp.neighbors`` stored (``"neighbors"`` for its
        default key) instead of searching; it needs at least ``perplexity`` neighbours per cell
        (3 x perplexity is the usual choice: ``sc.pp.neighbors(adata, n_neighbors=91)``).
      copy: work on and return a copy; otherwise ``adata`` is updated and ``None`` returned.
      checkpoint: an ``.npz`` state file (``TSNE.fit``'s ``checkpoint``): a rerun after an
        interruption goes on from it (``uns[...]["resumed_from"]``); ``checkpoint_every`` goes
        in ``kwargs``.
      **kwargs: any other :class:`tsnejax.TSNE` parameter (``n_iter``, ``dof``,
        ``optimizer``, ``negative_gradient_method``, ...).

    Returns:
      The updated copy when ``copy=True``, else ``None``.
    """
    if not (hasattr(adata, "obsm") and hasattr(adata, "uns")):
        raise ValueError(
            f"adata must be an AnnData object, got {type(adata).__name__}; for arrays use "
            "tsnejax.TSNE().fit_transform(X)."
        )
    check_peer_options(metric, n_jobs, kwargs.get("metric_params"))  # before the PCA
    for name, value in (
        ("use_rep", use_rep),
        ("key_added", key_added),
        ("neighbors_key", neighbors_key),
    ):
        if value is not None and not isinstance(value, str):  # a list was "unhashable type"
            raise ValueError(
                f"{name} must be a string (an obsm/uns key) or None, got {value!r:.40}."
            )
    if copy:
        adata = adata.copy()
    X, rep = representation(adata, use_rep, n_pcs)
    neighbors = None
    if neighbors_key is not None:
        neighbors = graph_from_obsp(adata, neighbors_key)
        # the graph's own metric (sc.pp.neighbors records it): the run's P is in that one
        graph_metric = adata.uns[neighbors_key].get("params", {}).get("metric")
        if graph_metric is not None and metric != "euclidean" and metric != graph_metric:
            raise ValueError(
                f"metric={metric!r}, but the graph in uns[{neighbors_key!r}] was computed with "
                f"metric={graph_metric!r}; drop metric= or neighbors_key=, or recompute the "
                f"graph with sc.pp.neighbors(adata, metric={metric!r})."
            )
        if graph_metric is not None:
            try:  # transform then searches new cells in the graph's metric too
                check_metric(graph_metric)
                metric = graph_metric
            except ValueError:  # a metric only pynndescent knows: P is the graph's anyway
                pass
        k = neighbors[0].shape[1]
        perps = np.atleast_1d(np.asarray(0.0 if isinstance(perplexity, str) else perplexity, float))
        if perps.max() > k:  # a name ("pbic") is the estimator's to check
            raise ValueError(
                f"perplexity={perplexity} needs at least {perps.max():g} neighbours per cell, "
                f"but the graph in uns[{neighbors_key!r}] has {k}; lower the perplexity "
                f"(about k/3 = {max(k // 3, 1)} is the usual ratio) or recompute it with "
                f"sc.pp.neighbors(adata, n_neighbors={int(3 * perps.max()) + 1})."
            )
    every = kwargs.pop("checkpoint_every", None)
    est = TSNE(
        perplexity=perplexity,
        early_exaggeration=early_exaggeration,
        learning_rate=learning_rate,
        random_state=random_state,
        metric=metric,
        **kwargs,
    )
    est.fit(X, neighbors=neighbors, checkpoint=checkpoint, checkpoint_every=every)
    params = {
        "perplexity": perplexity,
        "early_exaggeration": early_exaggeration,
        "learning_rate": learning_rate,
        "random_state": random_state,
        "use_rep": rep,
        "n_pcs": n_pcs,
        "metric": metric,
        "use_fast_tsne": use_fast_tsne,
        "n_jobs": n_jobs,
        "neighbors_key": neighbors_key,
        **{k: v for k, v in kwargs.items() if isinstance(v, int | float | str | bool)},
    }
    if est.pbic_ is not None:  # perplexity="pbic": the one chosen, and each candidate's pBIC
        params["perplexity_chosen"] = float(est.perplexity_)
        params["pbic"] = {f"{p:g}": v for p, v in est.pbic_.items()}
    store(adata, est.embedding_, _info(est, params), key_added)
    return adata if copy else None


def _info(est: TSNE, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": params,
        "kl_divergence": float(est.kl_divergence_),
        "kl_history": est.kl_history_,
        "n_iter": int(est.n_iter_),
        "resumed_from": int(est.resumed_from_),
        "method": str(est.method_),
        "timings": {k: float(v) for k, v in est.timings_.items()},
        "tsnejax_version": _version(),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tsnejax")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown"


def read_h5ad(path: str | os.PathLike) -> Any:
    """``anndata.read_h5ad(path)`` with an error naming the extra when anndata is missing."""
    try:
        import anndata
    except ImportError as err:
        raise ValueError(
            f"reading {str(path)!r} needs anndata: pip install 'tsnejax[anndata]'."
        ) from err
    check_pathlike("path", path, "cells.h5ad", "an .h5ad file path")
    if not os.path.exists(path):
        raise ValueError(f"input file {str(path)!r} does not exist.")
    try:
        return anndata.read_h5ad(path)
    except OSError as err:  # h5py's "file signature not found": not an HDF5 file
        raise ValueError(f"input file {str(path)!r} is not a readable .h5ad file ({err}).") from err
