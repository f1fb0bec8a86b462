"""CPU XLA flags measured to speed up tsnejax's kernels (see ``docs/performance.md``).

Applied once at import, before JAX creates its CPU backend, only when no accelerator plugin
is installed, never overriding a flag the user set, and not at all when
``TSNEJAX_XLA_FLAGS=0``. Flags set after JAX has initialised its backend have no effect.

- ``--xla_cpu_experimental_ynn_fusion_type=`` (YNNPACK fusions off): 1.3x on a full grid
  step at 70k points, up to 2.3x on the attraction (``../shared/PERFORMANCE.md``).
- ``--xla_backend_optimization_level=2``: the exact gradient on digits ran 2.7 ms/iteration
  instead of 3.3 ms at the default level (``benchmarks/bench_core.py`` measures the result).
"""

from __future__ import annotations

import importlib.util
import os

CPU_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=",
    "--xla_backend_optimization_level=2",
)


def _has_accelerator_plugin() -> bool:
    names = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")
    return any(importlib.util.find_spec(n) is not None for n in names)


def configure_cpu_flags() -> list[str]:
    """Append :data:`CPU_FLAGS` to ``XLA_FLAGS`` where appropriate; returns what was added."""
    if os.environ.get("TSNEJAX_XLA_FLAGS", "1") == "0":
        return []
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms not in ("", "cpu") or (platforms == "" and _has_accelerator_plugin()):
        return []
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in CPU_FLAGS if f.split("=")[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added


_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def request_host_devices(count: int | None = None) -> int | None:
    """Split the CPU into ``count`` JAX devices (default: one per core) for sharded sweeps.

    Must run before JAX initialises its backend (the first ``jax.devices()``); does nothing if
    the flag is already set or an accelerator plugin is installed. Returns the count set.
    """
    try:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():  # too late to take effect
            return None
    except (ImportError, AttributeError):
        pass
    current = os.environ.get("XLA_FLAGS", "")
    if _DEVICE_COUNT_FLAG in current or _has_accelerator_plugin():
        return None
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms not in ("", "cpu"):
        return None
    count = int(count or os.cpu_count() or 1)
    if count <= 1:
        return None
    os.environ["XLA_FLAGS"] = f"{current} {_DEVICE_COUNT_FLAG}={count}".strip()
    return count
