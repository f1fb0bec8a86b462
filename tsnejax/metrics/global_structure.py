"""Kobak & Berens (2019) embedding-quality scores: KNN, KNC and CPD."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import scipy.stats
from scipy.spatial.distance import pdist

from tsnejax._checks import check_int, check_labels
from tsnejax._types import ArrayLike, PRNGKey
from tsnejax.metrics.neighborhood import finite_embedding, knn_preservation, pair, query_rows

__all__ = [
    "UndefinedScoreError",
    "KobakBerensScores",
    "kobak_berens_scores",
    "knc_score",
    "cpd_score",
    "class_fragmentation",
]


class KobakBerensScores(NamedTuple):
    knn: float  # fraction of k nearest neighbours preserved (local structure)
    knc: float  # fraction of k_classes nearest class means preserved (meso scale)
    cpd: float  # Spearman correlation of pairwise distances on a subset (global structure)


def _nearest_others(centres: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def knc_score(X: ArrayLike, Y: ArrayLike, labels: ArrayLike, k_classes: int = 4) -> float:
    """Mean fraction of each class's ``k_classes`` nearest class means (in ``X``) that are also
    its nearest class means in ``Y``. Needs ``k_classes < number of classes``."""
    X, Y = pair(X, Y)
    labels = check_labels(labels, X.shape[0])
    classes, codes = np.unique(labels, return_inverse=True)
    k_classes = check_int("k_classes", k_classes, minimum=1)
    if k_classes >= len(classes):
        raise ValueError(
            f"k_classes={k_classes} must be below the number of classes ({len(classes)})."
        )
    counts = np.bincount(codes).astype(np.float64)[:, None]
    mx = np.zeros((len(classes), X.shape[1]))
    my = np.zeros((len(classes), Y.shape[1]))
    np.add.at(mx, codes, X.astype(np.float64))
    np.add.at(my, codes, Y.astype(np.float64))
    nx, ny = _nearest_others(mx / counts, k_classes), _nearest_others(my / counts, k_classes)
    shared = [len(np.intersect1d(a, b)) for a, b in zip(nx, ny, strict=True)]
    return float(np.mean(shared) / k_classes)


class UndefinedScoreError(ValueError):
    """A score that is undefined for this input (e.g. CPD of an embedding whose points all
    coincide); :func:`tsnejax.metrics.evaluate` records it as NaN with a warning."""


def cpd_score(
    X: ArrayLike, Y: ArrayLike, n_points: int = 1000, *, key: PRNGKey | None = None
) -> float:
    """Spearman rank correlation between all pairwise Euclidean distances of ``n_points``
    random points (drawn with ``key``) in ``X`` and in ``Y``."""
    X, Y = pair(X, Y)
    rows = query_rows(X.shape[0], n_points, key, "n_points")
    if len(rows) < 3:
        raise ValueError(f"cpd_score needs n_points >= 3, got {len(rows)}.")
    dx = pdist(X[rows].astype(np.float64))
    dy = pdist(Y[rows].astype(np.float64))
    for name, d in (("X", dx), ("Y", dy)):
        if np.ptp(d) == 0:  # was NaN with scipy's ConstantInputWarning
            raise UndefinedScoreError(
                f"cpd_score: every pairwise distance in {name} is the same (all points equal?), "
                "so their rank correlation is undefined."
            )
    return float(scipy.stats.spearmanr(dx, dy).statistic)


def kobak_berens_scores(
    X: ArrayLike,
    Y: ArrayLike,
    labels: ArrayLike,
    *,
    k: int = 10,
    k_classes: int = 4,
    n_cpd: int = 1000,
    key: PRNGKey | None = None,
) -> KobakBerensScores:
    """KNN (k = 10), KNC (``k_classes`` = 4 here; Kobak & Berens used 10 for their 133-class
    data, which MNIST's 10 classes cannot support) and CPD (1000 points) of Kobak & Berens,
    "The art of using t-SNE for single-cell transcriptomics", Nat. Commun. 2019."""
    key = jax.random.key(0) if key is None else key
    return KobakBerensScores(
        knn_preservation(X, Y, k),
        knc_score(X, Y, labels, k_classes),
        cpd_score(X, Y, n_cpd, key=key),
    )


def class_fragmentation(
    Y: ArrayLike, labels: ArrayLike, *, k: int = 10, min_fraction: float = 0.01
) -> dict[str, float]:
    """How many pieces each class falls into in the embedding (Kobak & Berens 2019, Fig. 2).

    For each class, the symmetrised ``k``-NN graph of its own points in ``Y`` is split into
    connected components; components holding at least ``min_fraction`` of the class count as
    fragments. Returns the mean number of fragments per class (1 = every class in one piece)
    and the mean fraction of a class's points outside its largest component.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from tsnejax.knn import exact_knn

    Y = finite_embedding(Y).astype(np.float32)
    labels = check_labels(labels, Y.shape[0])
    k = check_int("k", k, minimum=1)
    fragments, outside = [], []
    for c in np.unique(labels):
        pts = Y[labels == c]
        m = len(pts)
        if m < 2:
            fragments.append(1.0)
            outside.append(0.0)
            continue
        idx = np.asarray(exact_knn(pts, min(k, m - 1)).indices)
        rows = np.repeat(np.arange(m), idx.shape[1])
        A = sp.coo_matrix((np.ones(rows.size), (rows, idx.ravel())), shape=(m, m))
        _, comp = connected_components(A, directed=False)
        sizes = np.bincount(comp)
        fragments.append(float(np.sum(sizes >= min_fraction * m)))
        outside.append(float(1 - sizes.max() / m))
    return {
        "fragments_per_class": float(np.mean(fragments)),
        "outside_largest": float(np.mean(outside)),
    }
