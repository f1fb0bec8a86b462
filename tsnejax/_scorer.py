"""The scikit-learn scorer of :class:`tsnejax.TSNE`: trustworthiness of held-out points."""

from __future__ import annotations

from typing import Any

from tsnejax._checks import check_int
from tsnejax.knn_metric import check_input
from tsnejax.metrics.neighborhood import trustworthiness

__all__ = ["trustworthiness_scorer"]


def trustworthiness_scorer(n_neighbors: Any = 5, X: Any = None, y: Any = None):
    """A scikit-learn scorer ``scorer(estimator, X, y=None) -> float``: the trustworthiness of
    ``estimator.transform(X)`` for ``X`` (held-out points placed into the fitted embedding),
    for ``GridSearchCV(TSNE(), {...}, scoring=trustworthiness_scorer())``. Higher is better.

    Given without the call (``scoring=trustworthiness_scorer``), scikit-learn calls it as the
    scorer itself, ``(estimator, X, y)``, and it scores with 5 neighbours (every fold used to
    fail with a TypeError that GridSearchCV turned into NaN scores)."""
    if hasattr(n_neighbors, "transform") and X is not None:
        return trustworthiness_scorer()(n_neighbors, X, y)
    n_neighbors = check_int("n_neighbors", n_neighbors, minimum=1)

    def scorer(estimator: Any, X: Any, y: Any = None) -> float:
        del y
        if estimator.metric == "precomputed":
            raise ValueError(
                "trustworthiness_scorer needs the held-out points' distances among themselves; "
                "with metric='precomputed' transform gets only their distances to the reference."
            )
        Y = estimator.transform(X)
        params = dict(metric=estimator.metric, metric_params=estimator.metric_params)
        return trustworthiness(check_input(X, "euclidean", min_rows=1), Y, n_neighbors, **params)

    scorer.__name__ = f"trustworthiness_{n_neighbors}"
    return scorer
