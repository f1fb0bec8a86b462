"""What the run loop needs from a gradient method (jax-md style allocate/update split)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Hashable
from typing import Any

import jax.numpy as jnp

from tsnejax._checks import check_hashable
from tsnejax._loop_checks import check_callable


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

    def __post_init__(self) -> None:
        # Checked here, when the object is made: a four-argument gradient failed with Python's
        # TypeError inside the compiled loop, after the kNN search and P.
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"Backend name must be a non-empty string (results, checkpoints and sweeps name "
                f"the method by it), got {self.name!r}."
            )
        for part, form in (
            ("gradient", "(Y, P, dof, exaggeration, grid)"),
            ("kl_divergence", "(Y, P, dof, grid)"),
            ("allocate", "(Y)"),
        ):
            check_callable(f"Backend {self.name!r}: {part}", getattr(self, part), form)


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


def checked_backend(backend: Backend) -> Backend:
    """``backend`` whose results are checked against the contract when traced (no cost per
    step): ``gradient`` returns ``(gradient, Z)`` with the gradient in the embedding's shape,
    ``kl_divergence`` a scalar, ``allocate`` something hashable. A user's gradient of shape
    ``(n, 1)`` used to be broadcast into the update without a word. ``run.build_step`` applies it.
    """
    name = backend.name

    def gradient(Y: Any, P: Any, dof: Any, exaggeration: Any, grid: Any, **kw: Any) -> Any:
        out = backend.gradient(Y, P, dof, exaggeration, grid, **kw)
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise ValueError(
                f"Backend {name!r}: gradient must return (gradient, Z), got "
                f"{type(out).__name__} {getattr(out, 'shape', '')}."
            )
        g, z = out
        if jnp.shape(g) != jnp.shape(Y):
            raise ValueError(
                f"Backend {name!r}: gradient has shape {jnp.shape(g)} for an embedding of shape "
                f"{jnp.shape(Y)}; it must have the embedding's shape."
            )
        g = jnp.asarray(g)
        return (g if jnp.issubdtype(g.dtype, jnp.floating) else g.astype(jnp.result_type(Y))), z

    def kl_divergence(Y: Any, P: Any, dof: Any, grid: Any, **kw: Any) -> Any:
        kl = jnp.asarray(backend.kl_divergence(Y, P, dof, grid, **kw))
        if kl.ndim != 0:
            raise ValueError(
                f"Backend {name!r}: kl_divergence must return a scalar, got {kl.shape}."
            )
        return kl.astype(jnp.result_type(Y))

    def allocate(Y: Any) -> Hashable:
        form = "None, a tuple, a NamedTuple of numbers"
        return check_hashable(f"Backend {name!r}: allocate's grid", backend.allocate(Y), form)

    return dataclasses.replace(
        backend, gradient=gradient, kl_divergence=kl_divergence, allocate=allocate
    )
