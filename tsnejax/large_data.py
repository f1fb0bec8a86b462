"""openTSNE's large-data recipe: embed a sample, place the rest, optimise everything."""

from __future__ import annotations

import time
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from tsnejax._checks import check_int, check_option, check_positive
from tsnejax._types import ArrayLike, PRNGKey
from tsnejax.build import config_perplexities
from tsnejax.config import TSNEConfig
from tsnejax.init import rescale
from tsnejax.knn_index import build_graph_index
from tsnejax.knn_metric import check_input
from tsnejax.pipeline import TSNEResult, fit
from tsnejax.transform import PLACEMENTS, TransformConfig, prepare_partial

__all__ = ["LargeResult", "sample_transform_optimize"]


class LargeResult(NamedTuple):
    """What :func:`sample_transform_optimize` returns."""

    result: TSNEResult  # the final optimisation of all points
    sample_rows: np.ndarray  # (n_sample,) rows embedded first
    sample_result: TSNEResult  # the sample's fit
    timings: dict[str, float]  # seconds: sample, place, optimize_all, total


def sample_transform_optimize(
    key: PRNGKey,
    X: ArrayLike,
    config: TSNEConfig | None = None,
    *,
    n_sample: int = 25_000,
    placement: Literal["median", "weighted", "nearest"] = "nearest",
    final_exaggeration: float | None = None,
    verbose: bool = False,
) -> LargeResult:
    """openTSNE's large-data recipe: embed a sample, place the rest, optimise everything.

    1. ``n_sample`` random rows are embedded with ``config`` (a :class:`tsnejax.TSNEConfig`).
    2. Every other row is placed at its nearest sample point (``placement="nearest"``, as
       openTSNE's ``prepare_partial(k=1)``; or the median / weighted mean of 25 neighbours).
    3. The assembled embedding is rescaled to std 1e-4 on its first axis and all points are
       optimised with ``config``'s schedule (early exaggeration 12, learning rate auto), the
       main phase at ``final_exaggeration`` (default: ``config``'s exaggeration).

    The kNN graph of all points comes from ``config``'s neighbour search (``"auto"``: the
    cluster-pruned ``"ivf"`` search from 40k points); nothing is O(N^2).
    """
    config = TSNEConfig() if config is None else config
    metric, params = config.affinities.metric, config.affinities.metric_params
    Xc = check_input(X, metric)
    n = Xc.shape[0]
    n_sample = check_int("n_sample", n_sample, minimum=4)
    check_option("placement", placement, PLACEMENTS)  # before the sample's fit, by its own name
    if final_exaggeration is not None:
        check_positive("final_exaggeration", final_exaggeration)
    if n_sample >= n:
        raise ValueError(f"n_sample={n_sample} must be smaller than the {n} points.")
    try:  # the sample is embedded first: its size bounds the perplexity, and the fix is here
        config_perplexities(config, n_sample)
    except ValueError as err:
        raise ValueError(f"n_sample={n_sample} is too small for this config: {err}") from None
    k_rows, k_fit, k_all = jax.random.split(key, 3)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    rows = np.sort(np.asarray(jax.random.choice(k_rows, n, (n_sample,), replace=False)))
    rest = np.setdiff1d(np.arange(n), rows)
    t0 = time.perf_counter()
    # precomputed distances: the sample's among themselves, the rest's to the sample
    pre = metric == "precomputed"
    X_sample, X_rest = (Xc[rows][:, rows], Xc[rest][:, rows]) if pre else (Xc[rows], Xc[rest])
    sample = fit(k_fit, X_sample, config, verbose=verbose)
    timings["sample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    k = 1 if placement == "nearest" else 25
    tconf = TransformConfig(initialization=placement, k=k, perplexity=k / 3)
    # The sample's kNN graph indexes it for the placement query (as openTSNE's Annoy index).
    index = None
    if sample.neighbors is not None and metric == "euclidean" and not sp.issparse(Xc):
        index = build_graph_index(X_sample, sample.neighbors, key=jax.random.fold_in(k_rows, 1))
    Y_rest, _, _ = prepare_partial(
        X_rest,
        X_sample,
        sample.embedding,
        config=tconf,
        index=index,
        metric=metric,  # the rest is placed by the run's own distance
        metric_params=params,
    )
    Y0 = np.empty((n, config.n_components), np.float32)
    Y0[rows], Y0[rest] = sample.embedding, np.asarray(Y_rest)
    Y0 = rescale(jnp.asarray(Y0))
    timings["place"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    final: Any = config
    if final_exaggeration is not None:
        final = config.replace(exaggeration=final_exaggeration)
    result = fit(k_all, Xc, final, initialization=Y0, verbose=verbose)
    timings["optimize_all"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    return LargeResult(result, rows, sample, timings)
