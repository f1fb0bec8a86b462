"""One embedding split by points across the devices (and processes) of a mesh axis ``"points"``.

A point-sharded run keeps on each device ``n / D`` rows of the embedding, of P (with their
continuation rows) and of the optimizer state. Per step each device

- all-gathers the positions (``N x d`` floats) so its rows can read their neighbours for the
  attraction (and, for the exact method, every point);
- charges the interpolation (or splat) grid with its own points; the grids are summed across
  the axis, transformed (every device the same FFT: the grid does not grow with N), and the
  potentials read back at its own points;
- takes the domain bounds, Z, the KL terms and the re-centring mean as collective reductions.

The backends do this with ``valid``/``axis_name`` (:class:`tsnejax.gradients.Backend`,
``shardable``) inside ``jax.shard_map``; the optimizer and the re-centring run under ``jit`` on
the sharded arrays (XLA partitions them, so any Optax object works, global-norm clipping
included). ``N`` is padded to a multiple of the device count: padding rows hold no charge,
get zero gradient and sit at the real points' mean, so grid sizes are those of the
single-device run.

With ``jax.distributed.initialize`` the mesh spans processes; each process then passes the
same data (every process computes the kNN graph and P, ``docs/scaling.md``) and gets the whole
embedding back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tsnejax._device import auto_axes
from tsnejax._types import Array
from tsnejax.affinity import Affinities
from tsnejax.gradients import Backend
from tsnejax.run import Stepper, TSNEState, build_step

__all__ = [
    "POINTS",
    "PointShards",
    "point_mesh",
    "points_axis_size",
    "padded_size",
    "auto_mesh",
    "place_rows",
    "shard_affinities",
    "regroup",
    "shard_embedding",
    "sharded_backend",
    "sharded_step",
    "init_sharded_state",
    "gather_points",
    "hold_padding",
]

#: The mesh axis that splits the points.
POINTS = "points"


class PointShards(NamedTuple):
    """P laid out for a point-sharded run (a pytree; every leaf split by rows over the axis).

    Attributes:
      P: rows padded to ``n_pad``; continuation rows regrouped so that shard ``s`` holds
        ``e`` rows for its own points, their owners as local row indices (neighbour indices
        stay global).
      valid: ``(n_pad,)`` bool, the real points.
    """

    P: Affinities
    valid: Array


def point_mesh(devices: Any = None) -> Mesh:
    """A one-axis mesh ``("points",)`` over ``devices`` (default: every device of every
    process, ``jax.devices()``)."""
    try:
        devices = jax.devices() if devices is None else list(devices)
    except TypeError:
        devices = None
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(
            "devices must be a non-empty list of JAX devices, e.g. jax.devices() or "
            "jax.local_devices()[:2]."
        )
    return Mesh(np.asarray(devices), (POINTS,))


def points_axis_size(mesh: Any) -> int:
    """Devices along the ``"points"`` axis of ``mesh`` (clear errors for anything else)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}; build one with "
            "tsnejax.shard.point_mesh() or jax.make_mesh((n_devices,), ('points',))."
        )
    if POINTS not in mesh.axis_names:
        raise ValueError(
            f"mesh has axes {tuple(mesh.axis_names)}; a point-sharded run splits the points "
            f"over an axis named {POINTS!r} (tsnejax.shard.point_mesh())."
        )
    return int(mesh.shape[POINTS])


def auto_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis in ``Auto`` mode (``jax.make_mesh`` makes ``Explicit`` axes by
    default, whose sharding-in-types rules the point-sharded program does not use)."""
    points_axis_size(mesh)
    return auto_axes(mesh)


def padded_size(n: int, shards: int) -> int:
    """``n`` rounded up to a multiple of ``shards``."""
    return -(-n // shards) * shards


def place_rows(host: np.ndarray, mesh: Mesh) -> jax.Array:
    """A global array split by rows over ``"points"`` (each process supplies its own rows)."""
    sharding = NamedSharding(mesh, PartitionSpec(POINTS))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _replicate(x: Any, mesh: Mesh) -> jax.Array:
    host = np.asarray(x)
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_affinities(P: Affinities, mesh: Mesh) -> PointShards:
    """Pad ``P`` to a multiple of the axis size, regroup its continuation rows by shard, and
    split it over ``"points"``."""
    shards = points_axis_size(mesh)
    n_pad = padded_size(P.n_points, shards)
    host = regroup(P, n_pad, shards)
    valid = np.arange(n_pad) < P.n_points
    return PointShards(jax.tree.map(lambda a: place_rows(a, mesh), host), place_rows(valid, mesh))


def regroup(P: Affinities, n_pad: int, shards: int) -> Affinities:
    """Host arrays of ``P`` for ``shards`` equal row blocks of ``n_pad`` rows: padding rows
    point at themselves with weight 0; shard ``s``'s continuation rows are rows
    ``[s e, (s + 1) e)`` of the extra arrays, owners given as row indices within the block."""
    n = P.n_points
    local = n_pad // shards
    nbr, w = np.asarray(P.neighbors), np.asarray(P.weights)
    pad_rows = np.arange(n, n_pad, dtype=nbr.dtype)[:, None]  # padding rows point at themselves
    nbr = np.concatenate([nbr, np.broadcast_to(pad_rows, (n_pad - n, nbr.shape[1]))])
    w = np.concatenate([w, np.zeros((n_pad - n, w.shape[1]), w.dtype)])
    e_nbr, e_w = np.asarray(P.extra_neighbors), np.asarray(P.extra_weights)
    owner = np.asarray(P.extra_rows)
    keep = np.flatnonzero(np.any(e_w != 0, axis=1))  # all-zero rows add nothing
    keep = keep[np.argsort(owner[keep] // local, kind="stable")]
    shard_of = owner[keep] // local
    counts = np.bincount(shard_of, minlength=shards)
    e = max(int(counts.max(initial=0)), 1)
    rank = np.arange(len(keep)) - np.concatenate([[0], np.cumsum(counts)])[shard_of]
    dest = shard_of * e + rank
    new_nbr = np.zeros((shards * e, e_nbr.shape[1]), e_nbr.dtype)
    new_w = np.zeros((shards * e, e_w.shape[1]), e_w.dtype)
    new_owner = np.zeros(shards * e, owner.dtype)
    new_nbr[dest], new_w[dest] = e_nbr[keep], e_w[keep]
    new_owner[dest] = owner[keep] - shard_of * local
    return Affinities(nbr, w, new_nbr, new_w, new_owner)


def shard_embedding(Y: Any, mesh: Mesh) -> jax.Array:
    """``(n, d)`` positions padded (rows at the mean) and split by rows over ``"points"``."""
    Y = np.asarray(Y)
    n_pad = padded_size(Y.shape[0], points_axis_size(mesh))
    pad = np.broadcast_to(Y.mean(axis=0, keepdims=True), (n_pad - Y.shape[0], Y.shape[1]))
    return place_rows(np.concatenate([Y, pad.astype(Y.dtype)]), mesh)


def gather_points(Y: jax.Array, n: int) -> np.ndarray:
    """The first ``n`` rows of a point-sharded array on the host, in every process."""
    if getattr(Y, "is_fully_addressable", True):
        return np.asarray(Y)[:n]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(Y, tiled=True))[:n]


def _call(fn: Callable, mesh: Mesh, out_specs: Any, Y: Array, S: PointShards, *scalars: Any):
    """``fn(Y, S, *scalars)`` per shard; Python numbers stay compiled in (dof = 1 takes the
    fast kernel), arrays travel replicated."""
    traced = [i for i, s in enumerate(scalars) if not isinstance(s, int | float)]

    def local(Y, S, *arrays):
        values = list(scalars)
        for i, a in zip(traced, arrays, strict=True):
            values[i] = a
        return fn(Y, S, *values)

    rows, rep = PartitionSpec(POINTS), PartitionSpec()
    in_specs = (rows, rows) + (rep,) * len(traced)
    mapped = jax.shard_map(
        local, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
    )
    return mapped(Y, S, *(scalars[i] for i in traced))


def sharded_backend(backend: Backend, mesh: Mesh) -> Backend:
    """``backend`` over point shards: ``gradient(Y, S, dof, ex, grid)`` and
    ``kl_divergence(Y, S, dof, grid)`` with ``Y`` split by rows and ``S`` a
    :class:`PointShards`; ``allocate`` as the backend's (padding sits inside the domain)."""
    points_axis_size(mesh)
    if not backend.shardable:
        raise ValueError(
            f"gradient method {backend.name!r} has no point-sharded form (Backend.shardable is "
            "False): its gradient and kl_divergence must accept valid= and axis_name= "
            "(tsnejax.gradients.Backend). Use 'interpolation', 'splat' or 'exact', or drop mesh=."
        )
    rows, rep = PartitionSpec(POINTS), PartitionSpec()

    def gradient(Y, S, dof, exaggeration, grid):
        def fn(Y, S, dof, ex):
            return backend.gradient(Y, S.P, dof, ex, grid, valid=S.valid, axis_name=POINTS)

        return _call(fn, mesh, (rows, rep), Y, S, dof, exaggeration)

    def kl_divergence(Y, S, dof, grid):
        def fn(Y, S, dof):
            return backend.kl_divergence(Y, S.P, dof, grid, valid=S.valid, axis_name=POINTS)

        return _call(fn, mesh, rep, Y, S, dof)

    return Backend(backend.name, gradient, kl_divergence, backend.allocate, shardable=False)


def hold_padding(Y: Array, S: PointShards, *, recenter: bool = True) -> Array:
    """Re-centre on the real points' mean and put the padding rows there (the step's
    ``project``: the single-device run subtracts the mean of all rows)."""
    valid = S.valid[:, None]
    mean = jnp.sum(jnp.where(valid, Y, 0), axis=0, keepdims=True) / jnp.sum(S.valid)
    if recenter:
        Y, mean = Y - mean, jnp.zeros_like(mean)
    return jnp.where(valid, Y, mean)


def sharded_step(
    backend: Backend,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    gradient_scale: float = 1.0,
    recenter: bool = True,
) -> Stepper:
    """:func:`tsnejax.run.build_step` for point-sharded states and :class:`PointShards`."""
    project = functools.partial(hold_padding, recenter=recenter)
    return build_step(
        sharded_backend(backend, mesh), optimizer, gradient_scale=gradient_scale, project=project
    )


def point_layout(shape: tuple[int, ...], Y: jax.Array) -> NamedSharding:
    """Where a leaf of a point-sharded state lives: split like ``Y`` when it has a row per
    point (the embedding, gains, velocity, Adam's moments), replicated otherwise."""
    if len(shape) >= 1 and shape[0] == Y.shape[0]:
        return Y.sharding
    return NamedSharding(Y.sharding.mesh, PartitionSpec())


def init_sharded_state(Y: jax.Array, optimizer: optax.GradientTransformation) -> TSNEState:
    """Fresh state for a point-sharded ``Y``: the optimizer's per-point leaves split like
    ``Y``, its scalars replicated. (Left to XLA, ``zeros_like`` leaves landed whole on the
    first device: every per-point leaf of every device on one device before the first step.)"""
    shapes = jax.eval_shape(optimizer.init, Y)
    layout = jax.tree.map(lambda s: point_layout(s.shape, Y), shapes)
    opt_state = jax.jit(optimizer.init, out_shardings=layout)(Y)
    zero = _replicate(np.zeros((), np.int32), Y.sharding.mesh)
    return TSNEState(Y, opt_state, zero)
