"""Embedding quality metrics (pure functions; host wrappers accept numpy arrays).

- :mod:`~tsnejax.metrics.divergence`: ``kl_divergence`` (exact or grid-approximated Z,
  exaggeration-corrected form).
- :mod:`~tsnejax.metrics.neighborhood`: ``nn_precision_recall`` (Pezzotti et al. 2019),
  ``knn_preservation``, ``trustworthiness`` (scikit-learn's definition), ``knn_accuracy``.
- :mod:`~tsnejax.metrics.global_structure`: Kobak & Berens 2019 KNN / KNC / CPD, and
  ``class_fragmentation`` (how many pieces each class falls into).
- :mod:`~tsnejax.metrics.pbic`: ``pbic``, Cao & Wang's criterion for choosing the perplexity
  (:func:`tsnejax.select_perplexity` ranks candidates by it).
- :mod:`~tsnejax.metrics.stability`: ``procrustes_disparity``.
- :mod:`~tsnejax.metrics.soft_recall`: ``soft_knn_recall``, a differentiable surrogate of NN
  precision (for hypergradients).
- :mod:`~tsnejax.metrics.report`: ``evaluate`` — all of them in one JSON-ready dict.

All kNN searches are exact, blocked and on the device (``tsnejax.knn.exact_knn``).
"""

from tsnejax.metrics.divergence import KL_METHODS, kl_divergence
from tsnejax.metrics.global_structure import (
    KobakBerensScores,
    UndefinedScoreError,
    class_fragmentation,
    cpd_score,
    knc_score,
    kobak_berens_scores,
)
from tsnejax.metrics.neighborhood import (
    PrecisionRecall,
    continuity,
    knn_accuracy,
    knn_preservation,
    nn_precision_recall,
    trustworthiness,
)
from tsnejax.metrics.pbic import pbic
from tsnejax.metrics.report import evaluate
from tsnejax.metrics.soft_recall import soft_knn_recall
from tsnejax.metrics.stability import procrustes_disparity

__all__ = [
    "KL_METHODS",
    "KobakBerensScores",
    "PrecisionRecall",
    "UndefinedScoreError",
    "class_fragmentation",
    "continuity",
    "cpd_score",
    "evaluate",
    "kl_divergence",
    "knc_score",
    "knn_accuracy",
    "knn_preservation",
    "kobak_berens_scores",
    "nn_precision_recall",
    "pbic",
    "procrustes_disparity",
    "soft_knn_recall",
    "trustworthiness",
]
