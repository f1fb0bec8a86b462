"""JAX's persistent compilation cache, on by default in a per-user folder.

A t-SNE run compiles a handful of programs (kNN blocks, calibration, one optimisation chunk
per grid size) that cost more than the run itself on small data; a second process compiling
the same programs reads them from disk instead. ``import tsnejax`` points JAX's cache at
``$TSNEJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/tsnejax/jax``, else ``~/.cache/tsnejax/jax``,
caches every program (JAX's default skips those compiling in under a second: most of ours),
and bounds the folder at :data:`MAX_BYTES` with least-recently-used eviction (which also
serialises writers with a file lock, so parallel processes share it safely).

Left alone when ``TSNEJAX_COMPILATION_CACHE=0``, when the user configured JAX's cache
themselves (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``), or when the folder cannot be
created. The cache changes compile time only: a cached program is the same executable, and
``tests/test_compile_cache.py`` checks that embeddings are bit-identical with and without it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["configure_compilation_cache", "cache_dir", "MAX_BYTES"]

#: Bound on the cache folder (least recently used programs evicted beyond it).
MAX_BYTES = 2 << 30


def cache_dir() -> Path:
    """The folder tsnejax uses for JAX's compilation cache (whether or not it is enabled)."""
    if os.environ.get("TSNEJAX_CACHE_DIR"):
        return Path(os.environ["TSNEJAX_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tsnejax" / "jax"


def configure_compilation_cache() -> str | None:
    """Enable JAX's persistent cache in :func:`cache_dir`; returns the folder, or ``None`` when
    left alone (see the module docstring)."""
    if os.environ.get("TSNEJAX_COMPILATION_CACHE", "1") == "0":
        return None
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return None
    try:
        import filelock  # noqa: F401  (JAX needs it to bound the cache)
    except ImportError:
        return None
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return str(path)
