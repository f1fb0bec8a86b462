"""Cao & Wang's perplexity criterion: pBIC = 2 KL(P || Q) + log(n) * perplexity / n.

Cao, Y. and Wang, L. (2017), "Automatic Selection of t-SNE Perplexity", arXiv:1708.03229.
The KL of a converged run falls as the perplexity grows (a wider P is easier to match); the
second term charges for that width as BIC charges for parameters, with ``perplexity / n`` in
the role of the model's size. Over a grid of perplexities, the one with the least pBIC is the
one its authors found human experts also preferred. The formula is a plain function of arrays,
so ``jax.grad`` of it through :func:`tsnejax.diff.fit` gives dpBIC/dperplexity (docs/metrics.md).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_int, numeric_array

__all__ = ["pbic"]


def pbic(kl: Any, perplexity: Any, n_points: int) -> Any:
    """``2 * kl + log(n_points) * perplexity / n_points`` (nats; lower is better).

    Args:
      kl: KL(P || Q) of the final embedding (nats), as computed with ``perplexity``'s P and
        without exaggeration; a scalar or an array (one per run), concrete or traced.
      perplexity: the perplexity P was calibrated to, broadcastable with ``kl``.
      n_points: number of embedded points (>= 2).

    Returns:
      pBIC with ``kl``'s shape: a float for numbers, an array for arrays, NaN where ``kl`` is.
    """
    n = check_int("n_points", n_points, minimum=2)
    traced = isinstance(kl, jax.core.Tracer) or isinstance(perplexity, jax.core.Tracer)
    if not traced:
        numeric_array("kl", kl)
        p = numeric_array("perplexity", perplexity).astype(np.float64)
        if not np.all(np.isfinite(p) & (p >= 1)):
            raise ValueError(
                f"perplexity must be finite and >= 1 (a calibrated perplexity), got {perplexity!r}."
            )
    xp = jnp if traced or isinstance(kl, jax.Array) or isinstance(perplexity, jax.Array) else np
    value = 2.0 * xp.asarray(kl) + np.log(n) * xp.asarray(perplexity) / n
    return float(value) if xp is np and np.ndim(value) == 0 else value
