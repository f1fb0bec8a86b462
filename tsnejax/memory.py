"""Memory estimates, checked before work whose size is known up front.

Each stage whose peak grows with its inputs — PCA of the data, the exact kNN blocks, P's layout,
the exact gradient's row blocks, a vmapped batch — has an estimate here.
:func:`tsnejax.build.memory_plan` lists the stages a :func:`tsnejax.fit` of an ``(n, d)``
matrix will run; :func:`check_plan` compares each
with the free memory (the host's ``MemAvailable``, or the accelerator's ``bytes_limit -
bytes_in_use``) *before anything is allocated* and raises :class:`InsufficientMemoryError`
naming the setting that fits, instead of swapping or meeting the kernel's OOM killer.
``TSNEJAX_MEMORY_CHECK=0`` turns the checks off.

The estimates count the arrays each stage holds at its peak; ``docs/reliability.md`` compares
them with measured peaks (they are upper bounds within a small factor, not exact).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import jax

from tsnejax._knn_exact import block_size_for

__all__ = [
    "InsufficientMemoryError",
    "Stage",
    "available_bytes",
    "check_memory",
    "check_plan",
    "format_bytes",
    "pca_bytes",
    "exact_knn_bytes",
    "ivf_knn_bytes",
    "affinity_bytes",
    "exact_gradient_bytes",
    "optimization_bytes",
    "HEADROOM",
    "P_BYTES_PER_EDGE",
]

#: The share of free memory a stage may plan to use (the rest: Python, XLA, other processes).
HEADROOM = 0.8

#: Peak bytes per kNN edge while P is calibrated, symmetrised and laid out (the (n, k) graph,
#: its conditional P, the COO pairs of P + P^T, the sort keys and the ELL layout). Measured
#: peak RSS growth: MNIST-70k (PCA-50, k = 90) 461 MiB, 77 B/edge; a random 100k x 90 graph
#: (few mutual neighbours, so twice the pairs) 133 B/edge.
P_BYTES_PER_EDGE = 100


class InsufficientMemoryError(ValueError, MemoryError):
    """A stage would need more memory than is free; the message names what fits."""


class Stage(NamedTuple):
    """One stage of a run: its name, estimated peak bytes, where it allocates, and the fix."""

    name: str
    bytes: float
    device: str  # "host" or "device"
    fix: str


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units (``"3.2 GiB"``)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _host_available() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # no /proc (macOS): free physical pages as a bound
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def available_bytes(device: str = "device") -> float | None:
    """Free bytes on the ``"host"`` or on the default JAX ``"device"`` (the host's when that is
    a CPU); ``None`` when it cannot be known (then nothing is checked)."""
    if device == "device":
        dev = jax.devices()[0]
        if dev.platform != "cpu":
            try:
                stats = dev.memory_stats() or {}
            except Exception:  # some plugins do not implement it
                stats = {}
            if "bytes_limit" in stats:
                return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
            return None
    return _host_available()


def check_memory(stage: str, need: float, fix: str, *, device: str = "device") -> None:
    """Raise :class:`InsufficientMemoryError` if ``need`` bytes exceed :data:`HEADROOM` of the
    free memory of ``device`` (``"host"`` or ``"device"``).

    Args:
      stage: what would run out (``"the exact kNN search of 1000000 points"``).
      need: its estimated peak in bytes.
      fix: the setting that fits (``"neighbors='ivf'"``), quoted in the message.
    """
    if os.environ.get("TSNEJAX_MEMORY_CHECK", "1") == "0":
        return
    free = available_bytes(device)
    if free is None or need <= HEADROOM * free:
        return
    where = "host" if device == "host" or jax.devices()[0].platform == "cpu" else "device"
    raise InsufficientMemoryError(
        f"{stage} needs about {format_bytes(need)} but only {format_bytes(free)} of {where} "
        f"memory is free; {fix}. (TSNEJAX_MEMORY_CHECK=0 skips this check.)"
    )


def check_plan(stages: list[Stage]) -> None:
    """:func:`check_memory` for each stage of :func:`tsnejax.build.memory_plan`, in order."""
    for s in stages:
        check_memory(s.name, s.bytes, s.fix, device=s.device)


# -- estimates ---------------------------------------------------------------------------


def pca_bytes(n: int, d: int, solver: str) -> float:
    """PCA initialisation (:func:`tsnejax.init.principal_components`): a centred float64 copy
    of the data and one temporary of its size, plus the solver's square (``d^2``, ``n^2``) or
    its randomized sketches. Measured peaks: (300, 20000) Gram 73 MiB (estimate 93 MiB);
    (2000, 50000) randomized 853 MiB (estimate 1.5 GiB)."""
    base = 16.0 * n * d
    if solver == "covariance":
        return base + 2 * 8.0 * d * d
    if solver == "gram":
        return base + 2 * 8.0 * n * n
    return base + 3 * 8.0 * (n + d) * 12  # randomized_svd's products and sketches


def exact_knn_bytes(n: int, d: int, k: int, m: int | None = None) -> float:
    """The exact blocked search (:func:`tsnejax.knn.exact_knn`) of ``m`` queries (default all
    ``n``) among ``n`` points: the data twice (float32, rescaled), two block buffers (the
    ``(block, n)`` distances or the ``(block, k, d)`` re-ranking differences) and the
    ``(m, k)`` result. 20000 x 784, k = 90: 1.2 GiB estimated, 814 MiB measured."""
    m = n if m is None else m
    bs = min(block_size_for(n, k, d), m)
    return 2 * 4.0 * n * d + 2 * 4.0 * bs * max(n, k * d) + 16.0 * m * k


def ivf_knn_bytes(n: int, d: int, k: int, candidates: int = 12288, tile: int = 32) -> float:
    """The cluster-pruned search (:func:`tsnejax.knn_ivf.ivf_knn`): the data four times
    (input, centred, cell-sorted, one Lloyd difference; float32), one tile's candidate rows
    and distances, and the ``(n, k)`` result with its scatter copy."""
    return 4 * 4.0 * n * d + 4.0 * candidates * (d + 2 * tile) + 32.0 * n * k


def affinity_bytes(n: int, k: int) -> float:
    """Calibration, symmetrisation and layout of P on an ``(n, k)`` graph
    (:data:`P_BYTES_PER_EDGE`)."""
    return float(P_BYTES_PER_EDGE) * n * k


def exact_gradient_bytes(n: int, dim: int, block: int) -> float:
    """One exact gradient (:func:`tsnejax.gradients.exact.exact_repulsion` with ``block`` rows
    per block): ``(block, n)`` float32 buffers, ``dim + 1`` of them (differences, kernel).
    30 000 points in 2-D: 352 MiB estimated, 236 MiB measured."""
    bs = min(block, n)
    return 4.0 * bs * n * (dim + 1)


def optimization_bytes(n: int, dim: int, width: int, grid_nodes: int = 0) -> float:
    """One trial's optimisation: P's ELL layout (``width`` int32 indices and float32 weights
    per point), ~40 embedding-sized temporaries (state, gradient, optimizer moments, chunk
    buffers) and the FFT buffers of a grid of ``grid_nodes`` nodes (``2 dim + 6`` complex64
    arrays of ``2^dim`` times the nodes, for the padded circulant)."""
    return 8.0 * n * width + 4.0 * n * dim * 40 + 8.0 * (2**dim) * grid_nodes * (2 * dim + 6)
