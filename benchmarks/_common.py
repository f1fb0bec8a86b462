"""Shared helpers for benchmarks: subprocess timing, tables, CSV/JSON output, machine info."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "out"


def _cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info() -> dict:
    import jax

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def run_isolated(code: str, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run ``code`` in a fresh interpreter; it must print one JSON object on its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_ms(fn, *args, repeats: int = 20) -> float:
    """Median milliseconds of ``fn(*args)`` over ``repeats`` calls after one warm-up call
    (JAX results waited for)."""
    import jax
    import numpy as np

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(_fmt(r.get(c))) for r in rows)]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_results(name: str, rows: list[dict], meta: dict) -> tuple[Path, Path]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    csv_path = OUT_DIR / f"{name}.csv"
    json_path = OUT_DIR / f"{name}.json"
    keys = sorted({k for r in rows for k in r})
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return csv_path, json_path


def benchmark_data(size: str, data_dir: Path | None = None):
    """``(X, y)``: digits, or the first ``size`` MNIST rows as PCA-50 (jittered copies beyond
    70k, as the large-data benchmark); ``None`` when MNIST is not in the data folder."""
    import numpy as np

    if size == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X.astype(np.float32), y
    from sklearn.decomposition import PCA

    from tsnejax.data import shared_data_dir

    src = shared_data_dir(data_dir) / "mnist.npz"
    if not src.exists():
        return None
    with np.load(src) as z:
        X, y = z["X"].astype(np.float32), z["y"]
    n = int(size)
    if n > len(X):
        rng = np.random.default_rng(0)
        rows = rng.integers(0, len(X), n)
        X, y = X[rows] + rng.normal(0, 8.0, (n, X.shape[1])).astype(np.float32), y[rows]
    else:
        X, y = X[:n], y[:n]
    return PCA(50, random_state=0).fit_transform(X).astype(np.float32), y


def size_parser(doc: str):
    """An ``argparse`` parser with the options every one-data-set benchmark takes:
    ``--size`` (digits, or MNIST rows PCA-reduced to 50), ``--data-dir`` and ``--tag``."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--size", default="digits", help="digits, or MNIST rows (PCA-50)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tag", default="")
    return ap


def found_benchmark_data(size: str, data_dir: str | None):
    """:func:`benchmark_data` of ``size`` from a ``--data-dir`` string, or ``None`` after
    saying that MNIST was not found."""
    data = benchmark_data(size, Path(data_dir) if data_dir else None)
    if data is None:
        print(f"skipped {size}: MNIST not found (set TSNEJAX_DATA or --data-dir)")
    return data


def saved_benchmark_data(sizes, data_dir: str | None, tmp: Path):
    """For each size with data: ``(size, X, y, path of X saved as .npy in tmp)``; sizes
    without MNIST are reported and skipped."""
    import numpy as np

    for size in sizes:
        data = found_benchmark_data(size, data_dir)
        if data is None:
            continue
        path = tmp / f"X_{size}.npy"
        np.save(path, data[0])
        yield size, data[0], data[1], str(path)
