"""A trial's ``metrics.json``: status, KL and the quality metrics the spec asks for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from tsnejax.metrics import kl_divergence, pbic
from tsnejax.metrics.report import evaluate, input_neighbors
from tsnejax.sweep.spec import Trial
from tsnejax.sweep.workspace import Workspace

__all__ = ["TrialRun", "score"]


class TrialRun(NamedTuple):
    """What running one trial gives (before scoring)."""

    embedding: np.ndarray  # (n, d); the last finite embedding when diverged
    kl: float  # the backend's KL of the final embedding (nan if diverged)
    kl_history: list[tuple[int, float]]
    n_iter: int  # iterations run (both phases)
    diverged_at: int | None  # iteration of divergence
    seconds: float  # optimisation time (a vmapped batch's time divided by its size)
    compile_seconds: float
    diverged_cause: str = ""  # "gradient", "update" or "step" (tsnejax.DivergenceError.cause)
    early_exaggeration_iter: int | None = None  # where a stopping rule ended it (else None)
    resumed_from: int = 0  # the iteration its checkpoint held when the sweep resumed it


def _summary_quality(m: dict) -> dict:
    out = {}
    for k in (1, 10, 30):
        if "nn_precision" in m and len(m["nn_precision"]) >= k:
            out[f"nn_precision_{k}"] = m["nn_precision"][k - 1]
    return out


def score(ws: Workspace, trial: Trial, run: TrialRun, metrics: Sequence[str]) -> dict:
    """The trial's metrics.json: status, KL, the requested quality metrics and timings."""
    out: dict[str, Any] = {
        "status": "ok" if run.diverged_at is None else "diverged",
        "diverged_at": run.diverged_at,
        "diverged_cause": run.diverged_cause or None,
        "n_iter": run.n_iter,
        **(
            {}
            if run.early_exaggeration_iter is None
            else {"early_exaggeration_iter": run.early_exaggeration_iter}
        ),
        **({"resumed_from": run.resumed_from} if run.resumed_from else {}),
        "kl": run.kl,
        "kl_history": run.kl_history,
        "seconds": run.seconds,
        "compile_seconds": run.compile_seconds,
    }
    if run.diverged_at is not None:
        return out
    perplexity = trial.config.affinities.perplexity
    if trial.config.affinities.method == "perplexity" and np.ndim(perplexity) == 0:
        out["pbic"] = pbic(run.kl, perplexity, ws.n)  # one scale: Cao & Wang's criterion
    Y = run.embedding
    if "kl_exact" in metrics and ws.n <= 20000:
        P = ws.affinities(trial.config)
        out["kl_exact"] = float(kl_divergence(P, Y, trial.config.dof))
    if {"quality", "trustworthiness", "global"} & set(metrics):
        n_queries = None if ws.n <= 100_000 else 10_000
        if ws.x_neighbors is None:
            ws.x_neighbors = input_neighbors(ws.X, n_queries=n_queries)
        q = evaluate(
            ws.X,
            Y,
            ws.labels,
            n_queries=n_queries,
            global_scores="global" in metrics,
            trustworthiness="trustworthiness" in metrics,
            x_neighbors=ws.x_neighbors,
        )
        q.pop("timings_seconds", None)
        out.update(q)
        out.update(_summary_quality(q))
    return out
