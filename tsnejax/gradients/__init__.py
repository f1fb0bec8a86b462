"""Gradient backends: the sparse attraction plus a repulsion method.

A :class:`Backend` bundles ``gradient(Y, P, dof, exaggeration, grid) -> (gradient, Z)`` (the
openTSNE-scale gradient, one quarter of dKL/dY), ``kl_divergence(Y, P, dof, grid)`` and a host
``allocate(Y) -> grid`` choosing the static grid structure between scan chunks.

- ``"exact"``: O(N^2) blocked sums, the oracle (:mod:`tsnejax.gradients.exact`).
- ``"interpolation"``: FIt-SNE polynomial interpolation + FFT, 1-D/2-D/3-D
  (:mod:`tsnejax.gradients.interpolation`).
- ``"splat"``: GPGPU-SNE fields on a pixel grid (:mod:`tsnejax.gradients.field_splat`).
- ``"adaptive"``: interpolation, or the exact sums in chunks where they cost less than the
  grid (:mod:`tsnejax.gradients.adaptive`).
"""

import inspect
from typing import Any

from tsnejax._checks import check_option
from tsnejax.gradients._attraction import attraction as attraction
from tsnejax.gradients._attraction import sum_p_log_kernel as sum_p_log_kernel
from tsnejax.gradients._attraction import sum_p_log_p as sum_p_log_p
from tsnejax.gradients._backend import Backend as Backend
from tsnejax.gradients._backend import checked_backend as checked_backend
from tsnejax.gradients._kernel import kernel as kernel
from tsnejax.gradients.adaptive import AdaptiveGrid as AdaptiveGrid
from tsnejax.gradients.adaptive import adaptive_backend as adaptive_backend
from tsnejax.gradients.exact import exact_backend as exact_backend
from tsnejax.gradients.exact import exact_gradient as exact_gradient
from tsnejax.gradients.exact import exact_kl_divergence as exact_kl_divergence
from tsnejax.gradients.exact import exact_normalization as exact_normalization
from tsnejax.gradients.exact import exact_repulsion as exact_repulsion
from tsnejax.gradients.field_splat import SplatGrid as SplatGrid
from tsnejax.gradients.field_splat import splat_backend as splat_backend
from tsnejax.gradients.field_splat import splat_gradient as splat_gradient
from tsnejax.gradients.field_splat import splat_repulsion as splat_repulsion
from tsnejax.gradients.interpolation import InterpolationGrid as InterpolationGrid
from tsnejax.gradients.interpolation import interpolation_backend as interpolation_backend
from tsnejax.gradients.interpolation import interpolation_gradient as interpolation_gradient
from tsnejax.gradients.interpolation import interpolation_repulsion as interpolation_repulsion
from tsnejax.gradients.interpolation import interpolation_z as interpolation_z

#: Registry: method name -> backend factory (keyword arguments are the method's parameters).
BACKENDS = {
    "exact": exact_backend,
    "interpolation": interpolation_backend,
    "splat": splat_backend,
    "adaptive": adaptive_backend,
}
#: openTSNE's name for the same method.
ALIASES = {"fft": "interpolation", "FFT": "interpolation"}
_BARNES_HUT = ("bh", "BH", "barnes-hut", "barnes_hut")


def canonical_method(name: Any) -> Any:
    """``name`` with openTSNE's aliases resolved (``"fft"`` is ``"interpolation"``); Barnes-Hut
    is named as absent, with what to use instead. Anything else is returned unchanged."""
    if isinstance(name, str) and name in _BARNES_HUT:
        raise ValueError(
            f"negative_gradient_method={name!r}: tsnejax has no Barnes-Hut gradient. Use "
            "'interpolation' (openTSNE's 'fft', the same FFT-accelerated interpolation), "
            "'exact' for small N, or 'auto', which chooses between them."
        )
    return ALIASES.get(name, name) if isinstance(name, str) else name


def get_backend(name: str | Backend, **params: Any) -> Backend:
    """Build the backend ``name`` with its parameters; a :class:`Backend` is returned as is
    (a name is a shortcut for the object). ``ValueError`` for unknown names or parameters."""
    name = canonical_method(name)
    if isinstance(name, Backend):
        if params:
            raise ValueError(f"parameters {sorted(params)} apply to a method name, not a Backend.")
        return name
    if not isinstance(name, str):
        raise ValueError(
            f"negative_gradient_method must be one of {', '.join(map(repr, BACKENDS))} or a "
            f"tsnejax.gradients.Backend, got {type(name).__name__}."
        )
    check_option("negative_gradient_method", name, tuple(BACKENDS))
    valid = inspect.signature(BACKENDS[name]).parameters
    bad = sorted(set(params) - set(valid))
    if bad:  # was the factory's TypeError ("unexpected keyword argument")
        raise ValueError(
            f"gradient method {name!r} has no parameter {bad}; valid: {sorted(valid)}."
        )
    return BACKENDS[name](**params)


__all__ = [
    "AdaptiveGrid",
    "ALIASES",
    "BACKENDS",
    "Backend",
    "canonical_method",
    "InterpolationGrid",
    "SplatGrid",
    "adaptive_backend",
    "attraction",
    "checked_backend",
    "exact_backend",
    "exact_gradient",
    "exact_kl_divergence",
    "exact_normalization",
    "exact_repulsion",
    "get_backend",
    "interpolation_backend",
    "interpolation_gradient",
    "interpolation_repulsion",
    "interpolation_z",
    "kernel",
    "splat_backend",
    "splat_gradient",
    "splat_repulsion",
    "sum_p_log_kernel",
    "sum_p_log_p",
]
