"""Embedding quality metrics (exact, blocked kNN on device; no N x N matrix)."""

from __future__ import annotations

import numpy as np

from tsnejax._checks import check_int, check_labels
from tsnejax._types import ArrayLike
from tsnejax.gradients import exact_kl_divergence
from tsnejax.knn import exact_knn

__all__ = ["knn_accuracy", "kl_divergence"]

kl_divergence = exact_kl_divergence


def knn_accuracy(Y: ArrayLike, labels: ArrayLike, k: int = 10) -> float:
    """Leave-one-out k-NN classification accuracy in the embedding.

    Each point is labelled by majority vote of its ``k`` nearest other points (ties go to
    the smallest label, as ``np.argmax`` over counts), and compared with its own label.
    """
    Y = np.asarray(Y)
    n = Y.shape[0]
    labels = check_labels(labels, n)
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(f"k={k} is too large for {n} points; the largest allowed is {n - 1}.")
    _, codes = np.unique(labels, return_inverse=True)
    idx = np.asarray(exact_knn(Y, k).indices)
    votes = codes[idx]
    n_classes = codes.max() + 1
    counts = np.zeros((n, n_classes), np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), votes.ravel()), 1)
    return float(np.mean(np.argmax(counts, axis=1) == codes))
