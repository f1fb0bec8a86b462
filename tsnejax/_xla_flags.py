"""XLA flags: CPU flags measured to speed up tsnejax's kernels (see ``docs/performance.md``),
and deterministic GPU reductions so that the same key gives the same embedding on a GPU too.

Applied once at import, before JAX creates its CPU backend, only when no accelerator plugin
is installed, never overriding a flag the user set, and not at all when
``TSNEJAX_XLA_FLAGS=0``. Flags set after JAX has initialised its backend have no effect.

- ``--xla_cpu_experimental_ynn_fusion_type=`` (YNNPACK fusions off): 1.3x on a full grid
  step at 70k points, up to 2.3x on the attraction (``../shared/PERFORMANCE.md``).
- ``--xla_backend_optimization_level=2``: the exact gradient on digits ran 2.7 ms/iteration
  instead of 3.3 ms at the default level (``benchmarks/bench_core.py`` measures the result).
- ``--xla_cpu_multi_thread_eigen=false``: XLA's multi-threaded CPU FFT (ducc) hands lines to
  threads dynamically, and a line computed in a SIMD batch rounds differently from one
  computed alone: the same 1200 x 1200 transform gave 2 distinct results in 30 calls (7e-4
  apart), which t-SNE's dynamics amplify, so the same key gave different grid-method embeddings
  (0.5 apart after 500 iterations on digits). Single-threaded transforms are deterministic and
  measured no slower here (6.7 vs 7.1 ms per 1200^2 transform; exact kNN of 20k points 3.6 vs
  3.4 s); ``tests/test_determinism.py`` checks it.
"""

from __future__ import annotations

import importlib.util
import os

CPU_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=",
    "--xla_backend_optimization_level=2",
    "--xla_cpu_multi_thread_eigen=false",
)


def _has_accelerator_plugin() -> bool:
    return _has_gpu_plugin() or importlib.util.find_spec("libtpu") is not None


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


GPU_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"
_GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin")


def _has_gpu_plugin() -> bool:
    return any(importlib.util.find_spec(n) is not None for n in _GPU_PLUGINS)


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


def configure_gpu_flags() -> list[str]:
    """Make GPU scatter-adds deterministic: append :data:`GPU_DETERMINISM_FLAG` to ``XLA_FLAGS``.

    XLA's GPU scatter-add uses atomics whose order varies between runs; t-SNE's dynamics
    amplify the last-bit differences, so two identical runs on an H100 ended up to 28 units
    apart (``docs/performance.md``, GPU section). The flag makes them bit-identical at a cost
    (MNIST-70k: 0.55 -> 1.9 ms per interpolation step, full optimisation 0.33 -> 1.4 s).
    Skipped when ``TSNEJAX_GPU_DETERMINISTIC=0``, when the user set either determinism flag,
    when no CUDA/ROCm plugin is installed or ``JAX_PLATFORMS`` names another platform, and
    (with a warning) when JAX's backends already started. Returns what was added.
    """
    if os.environ.get("TSNEJAX_GPU_DETERMINISTIC", "1") == "0":
        return []
    platforms = os.environ.get("JAX_PLATFORMS", "")
    wanted = {p.strip() for p in platforms.split(",") if p.strip()}
    if wanted and not wanted & {"cuda", "gpu", "rocm"}:
        return []
    if not wanted and not _has_gpu_plugin():
        return []
    current = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_deterministic_ops" in current or "--xla_gpu_exclude_nondeterministic_ops" in (
        current
    ):
        return []
    if _backends_initialized():
        import warnings

        warnings.warn(
            "tsnejax was imported after JAX started its GPU backend, so GPU scatter-adds stay "
            "non-deterministic (the same key can give different embeddings). Import tsnejax "
            f"first, or set XLA_FLAGS={GPU_DETERMINISM_FLAG} before starting Python.",
            stacklevel=3,
        )
        return []
    os.environ["XLA_FLAGS"] = f"{current} {GPU_DETERMINISM_FLAG}".strip()
    return [GPU_DETERMINISM_FLAG]


_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def request_host_devices(count: int | None = None) -> int | None:
    """Split the CPU into ``count`` JAX devices (default: one per core) for sharded sweeps.

    Must run before JAX initialises its backend (the first ``jax.devices()``); does nothing if
    the flag is already set or an accelerator plugin is installed. Returns the count set.
    """
    if _backends_initialized():  # too late to take effect
        return None
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
