"""Choosing the perplexity: one run per candidate, ranked by pBIC (Cao & Wang 2017).

:func:`select_perplexity` embeds the same data once per candidate perplexity (one kNN graph of
the largest candidate's width, one P per candidate, the same key and initial embedding for
every one, so the perplexity is the only thing that differs), as separate fits or as one
:func:`tsnejax.fit_batch`, and ranks the candidates by :func:`tsnejax.metrics.pbic`. For a
gradient-based search, ``jax.grad`` of ``pbic`` through :func:`tsnejax.diff.fit` gives
dpBIC/dperplexity (docs/metrics.md, "Choosing the perplexity").
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from tsnejax._checks import check_option, check_perplexity, outside_stacklevel
from tsnejax.batch import BatchResult, fit_batch, shared_graphs
from tsnejax.build import affinity_key, n_neighbors
from tsnejax.config import TSNEConfig
from tsnejax.knn_metric import check_input
from tsnejax.metrics import kl_divergence
from tsnejax.metrics.pbic import pbic
from tsnejax.pipeline import TSNEResult, as_config, fit
from tsnejax.run import DivergenceError

__all__ = [
    "DEFAULT_PERPLEXITIES",
    "KL_SOURCES",
    "MODES",
    "PerplexitySelection",
    "select_perplexity",
]

#: Candidates when none are given (those above ``(n - 1) / 3`` are left out for small data).
DEFAULT_PERPLEXITIES = (5.0, 10.0, 20.0, 30.0, 50.0, 100.0)
#: ``kl=``: the KL each run reported (its backend's; grid methods use the grid's Z) or the
#: exact O(n^2) KL of each final embedding with its own P.
KL_SOURCES = ("run", "exact")
#: ``mode=``: each candidate its own fit, or one batch (see :func:`select_perplexity`).
MODES = ("auto", "sequential", "vmap", "map")


class PerplexitySelection(NamedTuple):
    perplexity: float  # the candidate with the least pBIC
    perplexities: np.ndarray  # (m,) the candidates, in the order given
    pbic: np.ndarray  # (m,) pBIC of each (nan where its run diverged)
    kl: np.ndarray  # (m,) KL(P || Q) of each final embedding (nats), as ``kl=`` chose
    embeddings: np.ndarray  # (m, n, d) every candidate's (the last finite one if diverged)
    diverged_at: np.ndarray  # (m,) iteration of divergence, -1 where finite
    mode: str  # "sequential", "vmap" or "map"
    runs: BatchResult | tuple[TSNEResult | None, ...]  # the batch, or each fit (None: diverged)

    @property
    def best(self) -> int:
        """Index of the chosen candidate."""
        return int(np.nanargmin(self.pbic))

    @property
    def embedding(self) -> np.ndarray:
        """``(n, d)`` the chosen candidate's embedding."""
        return self.embeddings[self.best]

    @property
    def best_run(self) -> TSNEResult | None:
        """The chosen candidate's :func:`tsnejax.fit` result (candidates run singly), else
        ``None`` (a batch)."""
        return self.runs[self.best] if self.mode == "sequential" else None

    def table(self) -> str:
        """The candidates as a small text table (perplexity, KL, pBIC, the best marked)."""
        rows = ["perplexity        KL      pBIC"]
        for p, k, b in zip(self.perplexities, self.kl, self.pbic, strict=True):
            mark = "  <- least pBIC" if p == self.perplexity else ""
            rows.append(f"{p:10g} {k:9.4f} {b:9.4f}{mark}")
        return "\n".join(rows)


def _candidates(
    perplexities: Sequence[float] | None, n: int, config: TSNEConfig = TSNEConfig()
) -> tuple[float, ...]:
    """The candidates for ``n`` points, each within the kNN graph ``config`` gives it
    (:func:`tsnejax.build.n_neighbors`): with an explicit ``n_neighbors`` the defaults above it
    are left out (they made ``n_neighbors=25`` an error telling the user to lower a perplexity
    they had not given) and given candidates are refused before any search."""
    if perplexities is None:
        fits = tuple(
            p for p in DEFAULT_PERPLEXITIES if 3 * p <= n - 1 and p <= n_neighbors(config, n, p)
        )
        if len(fits) < 2:
            k = config.affinities.n_neighbors
            graph = "" if isinstance(k, str) else f" and perplexity <= n_neighbors = {k}"
            raise ValueError(
                f"{n} points are too few to compare perplexities (3 * perplexity <= n - 1"
                f"{graph} leaves {list(fits)} of the defaults {list(DEFAULT_PERPLEXITIES)}); "
                "pass perplexities= explicitly."
            )
        return fits
    values = check_perplexity(perplexities, n)
    check_perplexity(values, n, n_neighbors(config, n, max(values)))
    if len(set(values)) != len(values):
        raise ValueError(f"perplexities has repeated values: {list(values)}; give each once.")
    return values


def _sequential(key: Any, Xv: Any, configs: list[TSNEConfig], verbose: bool) -> tuple:
    """Each candidate its own :func:`tsnejax.fit` on one kNN graph of the widest k (sliced):
    ``(embeddings, diverged_at, runs)``, a run ``None`` where it diverged."""
    n = Xv.shape[0]
    _, subs = shared_graphs(Xv, configs, jax.random.split(key)[0])  # fit's kNN seed
    embeddings, diverged, runs = [], [], []
    for c in configs:
        try:
            r = fit(key, Xv, c, neighbors=subs[affinity_key(c, n)], verbose=verbose)
        except DivergenceError as err:
            embeddings.append(np.asarray(err.state.embedding))
            diverged.append(err.iteration)
            runs.append(None)
            continue
        embeddings.append(np.asarray(r.embedding))
        diverged.append(-1)
        runs.append(r)
    return np.stack(embeddings), np.array(diverged), tuple(runs)


def select_perplexity(
    key: Any,
    X: Any,
    perplexities: Sequence[float] | None = None,
    config: TSNEConfig | Mapping[str, Any] = TSNEConfig(),
    *,
    kl: str = "run",
    mode: str = "auto",
    mesh: jax.sharding.Mesh | None = None,
    verbose: bool = False,
) -> PerplexitySelection:
    """Embed ``X`` once per candidate perplexity and pick the one with the least pBIC.

    Args:
      key: ``jax.random.key``; every candidate uses it (same kNN seed, same initialisation).
      X: ``(n, d)`` data, as :func:`tsnejax.fit` takes it.
      perplexities: the candidates (default :data:`DEFAULT_PERPLEXITIES` that fit ``n``
        and an explicit ``n_neighbors`` of ``config``).
      config: every other setting (its ``perplexity`` is replaced); its affinity method must be
        ``"perplexity"``.
      kl: ``"run"`` or ``"exact"`` (:data:`KL_SOURCES`).
      mode: ``"sequential"``: each candidate is its own :func:`tsnejax.fit` (sharing one kNN
        graph), so each embedding is the one ``fit`` gives at that perplexity; ``"vmap"`` or
        ``"map"``: one :func:`tsnejax.fit_batch` (one program; the candidates share a grid, so
        grid-method runs differ from single fits; under a stopping rule each candidate ends
        where its rule says); ``"auto"`` (:data:`MODES`): sequential on one CPU device (as
        fast there), else ``"vmap"``.
      mesh: shard a batch's candidates over its axis ``"trials"``.
      verbose: progress lines.

    Returns:
      a :class:`PerplexitySelection`; ``.table()`` prints the comparison.
    """
    check_option("kl", kl, KL_SOURCES)
    check_option("mode", mode, MODES)
    config = as_config(config)
    if config.affinities.method != "perplexity":
        raise ValueError(
            f"select_perplexity compares perplexity-calibrated P, but config has affinity method "
            f"{config.affinities.method!r}; use affinity_method='perplexity'."
        )
    Xv = check_input(X, config.affinities.metric)  # dense or sparse rows, or distances
    n = int(Xv.shape[0])
    candidates = _candidates(perplexities, n, config)
    configs = [config.replace(perplexity=p) for p in candidates]
    if mode == "auto":
        on_cpu = jax.default_backend() == "cpu" and mesh is None
        mode = "sequential" if on_cpu else "vmap"
    if mode == "sequential":
        if mesh is not None:
            raise ValueError("mesh shards a batch: use mode='vmap' or 'map' with it.")
        embeddings, diverged_at, runs = _sequential(key, Xv, configs, verbose)
        values = np.array([np.nan if r is None else float(r.kl_divergence) for r in runs])
        Ps = [None if r is None else r.affinities for r in runs]
    else:
        runs = fit_batch([key] * len(configs), Xv, configs, mesh=mesh, batch=mode, verbose=verbose)
        embeddings, diverged_at = runs.embeddings, runs.diverged_at
        values = np.asarray(runs.kl_divergence, np.float64)
        P = runs.affinities
        stacked = P.neighbors.ndim == 3  # one P per candidate
        Ps = [jax.tree.map(lambda a, i=i: a[i], P) if stacked else P for i in range(len(configs))]
    if kl == "exact":
        values = np.array(
            [
                np.nan if diverged_at[i] >= 0 else kl_divergence(Ps[i], embeddings[i], config.dof)
                for i in range(len(configs))
            ]
        )
    p = np.asarray(candidates, np.float64)
    scores = pbic(values, p, n)
    finite = np.isfinite(scores)
    if not finite.any():
        raise ValueError(
            f"every candidate's run diverged (at iterations {np.asarray(diverged_at).tolist()}); "
            "lower the learning rate or the exaggeration and try again."
        )
    if not finite.all():
        warnings.warn(
            f"perplexities {p[~finite].tolist()} diverged and are left out of the choice.",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )
    best = int(np.nanargmin(scores))
    ranked = p[finite]
    if len(ranked) > 1 and p[best] in (ranked.min(), ranked.max()):
        side, beyond = ("largest", "larger") if p[best] == ranked.max() else ("smallest", "smaller")
        warnings.warn(
            f"the least pBIC is at the {side} candidate, perplexity={p[best]:g}; the minimum may "
            f"lie beyond it: add {beyond} perplexities to the candidates.",
            UserWarning,
            stacklevel=outside_stacklevel(),
        )
    return PerplexitySelection(
        float(p[best]),
        p,
        scores,
        values,
        np.asarray(embeddings),
        np.asarray(diverged_at),
        mode,
        runs,
    )
