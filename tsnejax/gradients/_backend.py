"""What the run loop needs from a gradient method (jax-md style allocate/update split)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Hashable
from typing import Any


@dataclasses.dataclass(frozen=True, eq=False)
class Backend:
    """A gradient method.

    Attributes:
      name: registry name.
      gradient: ``(Y, P, dof, exaggeration, grid) -> (gradient, Z)``, pure and jittable; the
        gradient is one quarter of dKL/dY (openTSNE scale) with the attraction multiplied by
        ``exaggeration``.
      kl_divergence: ``(Y, P, dof, grid) -> KL`` (exact, or with the backend's Z).
      allocate: host function ``Y -> grid``: the static, hashable structure (e.g. boxes per
        axis) for the next chunk of iterations; ``None`` when there is none. Changing it
        recompiles, so it comes from a fixed ladder. The loop also calls it on a NumPy copy
        of a scaled embedding to guess the next chunk's grid while a chunk runs
        (:mod:`tsnejax._ahead`): it should then not dispatch device work.
      shardable: ``gradient`` and ``kl_divergence`` also take keywords ``valid`` (``(n,)``
        bool, real rows) and ``axis_name`` (a mesh axis): called inside ``shard_map`` with one
        shard of the points, they return that shard's gradient rows (zero on padding rows) and
        the global Z / KL (:mod:`tsnejax.shard`). The built-in backends are.
    """

    name: str
    gradient: Callable[..., Any]
    kl_divergence: Callable[..., Any]
    allocate: Callable[[Any], Hashable]
    shardable: bool = False


def grid_backend(
    name: str,
    gradient: Callable[..., Any],
    kl_divergence: Callable[..., Any],
    allocate: Callable[[Any], Hashable],
    deterministic_scatter: bool,
) -> Backend:
    """A shardable grid backend whose functions take ``deterministic=``, fixed here."""
    det = bool(deterministic_scatter)
    return Backend(
        name,
        functools.partial(gradient, deterministic=det),
        functools.partial(kl_divergence, deterministic=det),
        allocate,
        shardable=True,
    )
