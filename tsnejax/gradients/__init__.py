"""Gradient backends: the sparse attraction plus a repulsion method.

Every backend is a function ``(Y, P, dof, exaggeration) -> (gradient, Z)`` returning the
openTSNE-scale gradient (one quarter of dKL/dY) and the kernel normaliser Z.
"""

from tsnejax.gradients._attraction import attraction as attraction
from tsnejax.gradients._attraction import sum_p_log_kernel as sum_p_log_kernel
from tsnejax.gradients._attraction import sum_p_log_p as sum_p_log_p
from tsnejax.gradients._kernel import kernel as kernel
from tsnejax.gradients.exact import exact_gradient as exact_gradient
from tsnejax.gradients.exact import exact_kl_divergence as exact_kl_divergence
from tsnejax.gradients.exact import exact_normalization as exact_normalization
from tsnejax.gradients.exact import exact_repulsion as exact_repulsion

#: Registry: method name -> gradient function.
GRADIENTS = {"exact": exact_gradient}

__all__ = [
    "GRADIENTS",
    "attraction",
    "exact_gradient",
    "exact_kl_divergence",
    "exact_normalization",
    "exact_repulsion",
    "kernel",
    "sum_p_log_kernel",
    "sum_p_log_p",
]
