"""The one ahead-of-time compile cache: programs per owner (a stepper) and structural key."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["compiled", "signature"]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def signature(tree: Any) -> tuple:
    """Tree structure, shapes and dtypes of ``tree``: what a compiled program is specialised to."""
    leaves, treedef = jax.tree.flatten(tree)
    return (treedef, tuple((np.shape(x), jnp.result_type(x)) for x in leaves))


def compiled(
    owner: Any, key: tuple, build: Callable[[], Callable], args: tuple, keep: Any = None
) -> tuple[Callable, float]:
    """``(program, seconds spent compiling)``; compiles ``build()`` for ``args`` once per
    ``(owner, key, signature(args))``. Programs live as long as ``owner`` (and keep ``keep``,
    e.g. a mesh, alive with them)."""
    cache = _CACHE.setdefault(owner, {})
    full = (key, signature(args))
    if full in cache:
        return cache[full][0], 0.0
    t0 = time.perf_counter()
    program = jax.jit(build()).lower(*args).compile()
    cache[full] = (program, keep)
    return program, time.perf_counter() - t0
