"""A differentiable surrogate of nearest-neighbour preservation, for hypergradients.

NN precision at k (:func:`tsnejax.metrics.nn_precision_recall`) counts the true k nearest
neighbours of each query among its k nearest embedding neighbours: a step function of the
embedding. :func:`soft_knn_recall` replaces the count by a sigmoid membership of each true
neighbour ``j`` in the query's embedding k-NN ball,

.. math:: s_{ij} = \\sigma\\left(\\frac{r_i - \\lVert y_i - y_j \\rVert}{\\tau\\, r_i}\\right),

with ``r_i`` halfway between the k-th and (k+1)-th nearest embedding distances of ``i`` and
``tau`` a temperature relative to that radius (scale-free). As ``tau -> 0`` the mean of
``s_ij`` over the true neighbours is exactly the NN precision (= recall) at k; for
``tau > 0`` it is smooth in the embedding, so ``jax.grad`` reaches through it to the
hyperparameters (:mod:`tsnejax.diff`). How closely it tracks NN precision is measured in
docs/hypergradients.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._types import Array, ArrayLike

__all__ = ["soft_knn_recall", "SOFT_RECALL_TEMPERATURE"]

#: Default temperature (relative to the k-NN radius).
SOFT_RECALL_TEMPERATURE = 0.1


def soft_knn_recall(
    Y: Array,
    true_neighbors: ArrayLike,
    *,
    temperature: float = SOFT_RECALL_TEMPERATURE,
    queries: ArrayLike | None = None,
) -> Array:
    """Mean soft membership of the true neighbours in the embedding's k-NN balls.

    Args:
      Y: ``(n, d)`` embedding (may be traced).
      true_neighbors: ``(n, k)`` (or ``(m, k)`` with ``queries``) input-space neighbour
        indices, self excluded: ``diff.prepare(X, ...).indices[:, :k]``.
      temperature: sigmoid width relative to each query's k-NN radius (> 0).
      queries: ``(m,)`` rows to average over (default all; memory is ``m x n``).

    Returns:
      A scalar in ``[0, 1]``; NN precision at k in the limit of zero temperature.
    """
    true_idx = jnp.asarray(true_neighbors)
    n = Y.shape[0]
    rows = jnp.arange(n) if queries is None else jnp.asarray(queries)
    if true_idx.shape[0] == n and queries is not None:
        true_idx = true_idx[rows]
    if true_idx.ndim != 2 or true_idx.shape[0] != rows.shape[0]:
        raise ValueError(
            f"true_neighbors must be (n, k) or (m, k) for m queries; got {true_idx.shape}."
        )
    k = true_idx.shape[1]
    if not 1 <= k < n - 1:
        raise ValueError(f"true_neighbors has k={k} columns; need 1 <= k < n - 1 = {n - 1}.")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be positive.")
    return _soft_recall(Y, true_idx, rows, float(temperature))


@jax.jit
def _soft_recall(Y: Array, true_idx: Array, rows: Array, temperature: float) -> Array:
    k = true_idx.shape[1]
    Yq = Y[rows]
    d2 = jnp.sum((Yq[:, None, :] - Y[None, :, :]) ** 2, axis=-1)
    d2 = d2.at[jnp.arange(rows.shape[0]), rows].set(jnp.inf)  # a point is not its own neighbour
    # sqrt(d2 + tiny): finite derivative for coincident points
    d = jnp.sqrt(d2 + jnp.finfo(Y.dtype).tiny)
    nearest = -jax.lax.top_k(-d, k + 1)[0]  # (m, k + 1) smallest distances, ascending
    radius = 0.5 * (nearest[:, k - 1] + nearest[:, k])
    dj = jnp.take_along_axis(d, true_idx, axis=1)
    s = jax.nn.sigmoid((radius[:, None] - dj) / (temperature * radius[:, None]))
    return jnp.mean(s)
