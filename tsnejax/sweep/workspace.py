"""What the trials of a sweep share: the data, kNN graphs, P per affinity setting, initial
embeddings."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA

from tsnejax._checks import check_data
from tsnejax.affinity import Affinities
from tsnejax.build import affinity_key
from tsnejax.config import TSNEConfig
from tsnejax.data import load_array, load_dataset, load_labels, shared_data_dir
from tsnejax.knn import KNNGraph, precomputed_knn
from tsnejax.knn_metric import graph_search, sparse_data
from tsnejax.pipeline import affinities_from_graph, initial_embedding
from tsnejax.sweep.spec import DataSpec, Trial

__all__ = ["Dataset", "Workspace", "load_data"]


class Dataset(NamedTuple):
    X: np.ndarray  # (n, d) float32, after subsampling and PCA
    labels: np.ndarray | None  # (n,)
    digest: str  # sha256 prefix of X and labels: part of every trial id


def _find(name: str, key: str, data_dir: str | os.PathLike | None) -> Path:
    """A spec's file: as given, else (relative) in the shared data folder."""
    path = Path(name)
    if not path.exists() and not path.is_absolute():
        path = shared_data_dir(data_dir) / name
    if not path.exists():
        raise ValueError(
            f"data.{key}={name!r} was not found (also looked in {str(path.parent)!r}); "
            "give an existing file or set TSNEJAX_DATA to the folder that holds it."
        )
    return path


def load_data(spec: DataSpec, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load, subsample and project the data a spec names (local files only)."""
    if spec.name is not None:
        X, y = load_dataset(spec.name)
    else:
        X, y = load_array(_find(spec.path, "path", data_dir))
        if sp.issparse(X):  # scipy.sparse.save_npz files: dense when small, as fit does
            X = sparse_data(X, "data.path")
            if sp.issparse(X):
                raise ValueError(
                    f"data.path holds a sparse matrix of {X.shape[0]} x {X.shape[1]}, too large "
                    "to make dense for a sweep; reduce it first (e.g. TruncatedSVD to 50)."
                )
        if spec.labels is not None:
            y = load_labels(_find(spec.labels, "labels", data_dir))
            if len(y) != len(X):
                raise ValueError(
                    f"data.labels has {len(y)} entries but the data has {len(X)} rows; give "
                    "one label per row."
                )
    X = check_data(np.asarray(X, np.float32))
    if y is not None and len(y) != len(X):
        y = None
    if spec.n_points is not None and spec.n_points < len(X):
        rows = np.sort(np.random.default_rng(spec.seed).choice(len(X), spec.n_points, False))
        X, y = X[rows], (None if y is None else y[rows])
    if spec.pca is not None and spec.pca < X.shape[1]:
        X = PCA(spec.pca, random_state=spec.seed).fit_transform(X).astype(np.float32)
    h = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    if y is not None:
        h.update(np.asarray(y).astype(str).tobytes())
    return Dataset(np.ascontiguousarray(X), y, h.hexdigest()[:16])


class Workspace:
    """Per-dataset state shared by the trials: kNN graphs, P per affinity setting, inits."""

    def __init__(self, data: Dataset, trials: Sequence[Trial], seed: int = 0):
        self.X, self.labels = data.X, data.labels
        self.n = int(data.X.shape[0])
        self.key = jax.random.key(seed)
        self._k_max: dict[tuple, int] = {}
        for t in trials:
            method, _, _, k = affinity_key(t.config, self.n)
            self._k_max[method] = max(self._k_max.get(method, 0), k)
        self._graphs: dict[tuple, KNNGraph] = {}
        self._P: dict[Any, Affinities] = {}
        self._init: dict[Any, jax.Array] = {}
        self.x_neighbors = None
        self.timings = {"knn": 0.0, "affinities": 0.0}

    def graph(self, method: tuple) -> KNNGraph:
        """The kNN graph for the largest k any trial needs (computed once per search:
        ``(neighbors, metric, metric_params)``)."""
        if method not in self._graphs:
            t0 = time.perf_counter()
            search, metric, params = method
            g = graph_search(
                self.X,
                self._k_max[method],
                method=search,
                metric=metric,
                metric_params=params,
                key=self.key,
            )
            self._graphs[method] = jax.block_until_ready(g)
            self.timings["knn"] += time.perf_counter() - t0
        return self._graphs[method]

    def affinities(self, config: TSNEConfig) -> Affinities:
        """P of the trial, calibrated on the first k columns of the shared graph."""
        key = affinity_key(config, self.n)
        if key not in self._P:
            t0 = time.perf_counter()
            g = self.graph(key[0])
            k = key[3]
            knn = precomputed_knn(g.indices[:, :k], g.distances[:, :k])
            self._P[key] = jax.block_until_ready(affinities_from_graph(knn, config, key[2]))
            self.timings["affinities"] += time.perf_counter() - t0
        return self._P[key]

    def initial(self, config: TSNEConfig, seed: int) -> jax.Array:
        """Initial embedding, drawn as :func:`tsnejax.fit` draws it from ``key(seed)``."""
        spec = config.initialization
        key = (spec, config.n_components) if spec == "pca" else (spec, config.n_components, seed)
        P = None
        if spec == "spectral":  # a function of the trial's P
            key += (affinity_key(config, self.n),)
            P = self.affinities(config)
        if key not in self._init:
            _, k_init = jax.random.split(jax.random.key(seed))
            self._init[key] = initial_embedding(k_init, self.X, self.n, config, None, P)
        return self._init[key]
