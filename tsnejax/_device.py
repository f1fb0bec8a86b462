"""Host arrays to the device without compiling a program per shape.

``jnp.asarray`` of a NumPy array, and eager ``jnp`` arithmetic on one, run small jitted
programs that XLA compiles once per shape: 20-100 ms each on two CPU cores, a dozen per run at
a new number of points (~0.6 s of a 500-point run's 4.6 s with an empty compilation cache).
``jax.device_put`` of a NumPy array compiles nothing, so data prepared on the host goes
through :func:`to_device`.
"""

from __future__ import annotations

import jax
import numpy as np

from tsnejax._types import Array, ArrayLike

__all__ = ["to_device", "auto_axes"]


def to_device(x: ArrayLike, dtype: object = None) -> Array:
    """``x`` on the default device (as ``jnp.asarray(x, dtype)`` would give it).

    Device arrays pass through (cast where ``dtype`` differs); anything else is converted on
    the host with NumPy and copied with ``jax.device_put`` (which canonicalises the dtype:
    float64 becomes float32 unless x64 is enabled, as with ``jnp.asarray``).
    """
    if isinstance(x, jax.Array):
        return x if dtype is None or x.dtype == dtype else x.astype(dtype)
    return jax.device_put(np.asarray(x, dtype=dtype))


def auto_axes(mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
    """``mesh`` with every axis in ``Auto`` mode. ``jax.make_mesh`` makes ``Explicit`` axes by
    default, under which ``shard_map`` refuses inputs not already laid out as its ``in_specs``
    (a batch of trials made on one device was a ``ValueError`` from inside the loop); tsnejax's
    programs place their inputs themselves. Meshes are interned, so the result is the same
    object for the same devices and names (compiled programs keyed by it are reused)."""
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    if tuple(getattr(mesh, "axis_types", auto)) == auto:
        return mesh
    return jax.sharding.Mesh(mesh.devices, mesh.axis_names, axis_types=auto)
