"""The one ahead-of-time compile cache: programs per owner (a stepper) and structural key.

A program can also be *compiled ahead* (:func:`compile_ahead`) while the device runs the
previous one: the caller traces and lowers it (on its own thread, so JAX's thread-local
configuration applies) and XLA compiles it (or reads it from the persistent cache) on a
background thread. :func:`compiled` then only waits for what is left.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Compiled", "compiled", "compile_ahead", "ahead_enabled", "signature"]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


class Compiled(NamedTuple):
    """What :func:`compiled` returns."""

    program: Callable
    seconds: float  # the caller's wait: compiling now, or for a program compiled ahead
    fresh: bool  # compiled for this call (now or ahead), not found ready from an earlier one
    ahead_seconds: float  # compile work started ahead (lowering + compiling), while chunks ran


class _Pending(NamedTuple):
    future: Future
    lower_seconds: float


def ahead_enabled() -> bool:
    """Compiling ahead is on unless ``TSNEJAX_COMPILE_AHEAD=0``."""
    return os.environ.get("TSNEJAX_COMPILE_AHEAD", "1") != "0"


def signature(tree: Any) -> tuple:
    """Tree structure, shapes and dtypes of ``tree``: what a compiled program is specialised to."""
    leaves, treedef = jax.tree.flatten(tree)
    return (treedef, tuple((np.shape(x), jnp.result_type(x)) for x in leaves))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsnejax-compile")
        return _POOL


def _timed_compile(lowered: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return lowered.compile(), time.perf_counter() - t0


def compiled(
    owner: Any, key: tuple, build: Callable[[], Callable], args: tuple, keep: Any = None
) -> Compiled:
    """The program of ``build()`` for ``args``, compiled once per
    ``(owner, key, signature(args))``. Programs live as long as ``owner`` (and keep ``keep``,
    e.g. a mesh, alive with them)."""
    cache = _CACHE.setdefault(owner, {})
    full = (key, signature(args))
    entry = cache.get(full)
    if entry is not None and not isinstance(entry[0], _Pending):
        return Compiled(entry[0], 0.0, False, 0.0)
    t0 = time.perf_counter()
    if entry is not None:
        pending = entry[0]
        try:
            program, compile_s = pending.future.result()
        except Exception:  # compiled ahead and failed: compile here, where errors surface
            program, compile_s = None, 0.0
        if program is not None:
            cache[full] = (program, keep)
            waited = time.perf_counter() - t0
            return Compiled(program, waited, True, pending.lower_seconds + compile_s)
    program = jax.jit(build()).lower(*args).compile()
    cache[full] = (program, keep)
    return Compiled(program, time.perf_counter() - t0, True, 0.0)


def compile_ahead(
    owner: Any, key: tuple, build: Callable[[], Callable], args: tuple, keep: Any = None
) -> bool:
    """Start compiling what :func:`compiled` would for the same arguments: trace and lower now,
    compile on the background thread. ``args`` may be the arrays of a running computation
    (only their shapes, dtypes and shardings are read). Returns whether anything started."""
    cache = _CACHE.setdefault(owner, {})
    full = (key, signature(args))
    if full in cache:
        return False
    t0 = time.perf_counter()
    lowered = jax.jit(build()).lower(*args)
    pending = _Pending(_pool().submit(_timed_compile, lowered), time.perf_counter() - t0)
    cache[full] = (pending, keep)
    return True
