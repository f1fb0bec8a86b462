"""A million points through the full default schedule on this machine (issue #7, must-show 3),
and the sample -> transform -> optimise workflow against plain optimisation (must-show 4).

``--n 1000000`` (default): a synthetic 50-D Gaussian mixture (20 clusters, unit spread, centres
drawn with std 3), embedded with the default config (pynndescent kNN, k = 90, interpolation
gradient, 250 + 500 iterations). Each phase is timed and the process's peak RSS (VmHWM) is read
after it. Quality: 10-NN label accuracy of 10k random points among all.

``--workflow``: MNIST-70k (PCA-50): plain ``fit`` vs ``sample_transform_optimize`` (25k sample,
nearest-point placement, then all points with the default schedule): KL, 10-NN accuracy, time.

    python benchmarks/bench_large.py                 # ~40 min on 2 cores
    python benchmarks/bench_large.py --n 50000       # quick look
    python benchmarks/bench_large.py --workflow      # ~5 min

Writes benchmarks/out/bench_large{,_workflow}.{csv,json}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, write_results  # noqa: E402


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def peak_device_gb() -> float | None:
    """Peak accelerator memory in use (GiB) on a GPU/TPU; None on CPU (RSS covers it)."""
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return None
    stats = dev.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**30


def accuracy(Y, labels, n_queries: int, seed: int = 0) -> float:
    from tsnejax.knn import exact_knn

    rows = np.sort(np.random.default_rng(seed).choice(len(Y), min(n_queries, len(Y)), False))
    idx = np.asarray(exact_knn(Y, 10, rows=rows).indices)
    votes = labels[idx]
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float(np.mean(pred == labels[rows]))


def mixture(n: int, d: int = 50, k: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(k, d)).astype(np.float32)
    labels = rng.integers(0, k, n)
    X = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):  # in slices: no float64 temporaries of the full array
        e = min(n, s + 100_000)
        X[s:e] = centres[labels[s:e]] + rng.standard_normal((e - s, d), dtype=np.float32)
    return X, labels


def large(n: int, neighbors: str = "auto") -> list[dict]:
    import jax

    from tsnejax import init as init_lib
    from tsnejax.affinity import perplexity_affinities
    from tsnejax.build import phase_table, stepper_for
    from tsnejax.config import TSNEConfig
    from tsnejax.knn import default_k, nearest_neighbors
    from tsnejax.run import init_state, optimize

    rows = []

    def phase(name: str, t0: float, **extra) -> None:
        rows.append(
            {
                "phase": name,
                "seconds": time.perf_counter() - t0,
                "peak_rss_gb": peak_rss_gb(),
                "peak_device_gb": peak_device_gb(),
                **extra,
            }
        )
        print(rows[-1], flush=True)

    t0 = time.perf_counter()
    X, labels = mixture(n)
    phase("data", t0, n=n)
    config = TSNEConfig.make(neighbors=neighbors)
    t0 = time.perf_counter()
    knn = jax.block_until_ready(
        nearest_neighbors(
            X, default_k(n, 30.0), method=config.affinities.neighbors, key=jax.random.key(0)
        )
    )
    phase("knn", t0, k=int(knn.indices.shape[1]))
    t0 = time.perf_counter()
    P = jax.block_until_ready(perplexity_affinities(knn, 30.0))
    del knn
    phase("affinities", t0, width=int(P.neighbors.shape[1]), extra_rows=int(P.extra_rows.shape[0]))
    t0 = time.perf_counter()
    Y0 = jax.block_until_ready(init_lib.pca(X, 2))
    phase("init", t0)
    step, opt = stepper_for(config, n)
    t0 = time.perf_counter()
    res = optimize(step, init_state(Y0, opt), P, config.total_iter, phases=phase_table(config, n))
    phase(
        "optimize",
        t0,
        compile_s=res.compile_seconds,
        run_s=res.run_seconds,
        ms_per_iter=1e3 * res.run_seconds / config.total_iter,
        kl=res.kl_history[-1][1],
        grids=str(res.grids[-1]),
    )
    t0 = time.perf_counter()
    acc = accuracy(np.asarray(res.state.embedding), labels, 10_000)
    phase("quality", t0, knn_accuracy_10=acc)
    return rows


def workflow(data_dir: str | None) -> list[dict]:
    import jax
    from sklearn.decomposition import PCA

    from tsnejax import TSNEConfig, fit
    from tsnejax.data import shared_data_dir
    from tsnejax.large_data import sample_transform_optimize
    from tsnejax.metrics import knn_accuracy

    src = shared_data_dir(data_dir) / "mnist.npz"
    if not src.exists():
        print(f"skipped: {src} not found (set TSNEJAX_DATA or --data-dir)")
        return []
    with np.load(src) as z:
        X, y = z["X"].astype(np.float32), z["y"]
    X = PCA(50, random_state=0).fit_transform(X).astype(np.float32)
    rows = []
    t0 = time.perf_counter()
    plain = fit(jax.random.key(0), X, TSNEConfig())
    rows.append(
        {
            "run": "plain fit",
            "seconds": time.perf_counter() - t0,
            "kl": plain.kl_divergence,
            "knn_accuracy_10": knn_accuracy(plain.embedding, y),
        }
    )
    print(rows[-1], flush=True)
    t0 = time.perf_counter()
    big = sample_transform_optimize(jax.random.key(0), X, TSNEConfig(), n_sample=25_000)
    rows.append(
        {
            "run": "sample 25k -> place -> optimise all",
            "seconds": time.perf_counter() - t0,
            "kl": big.result.kl_divergence,
            "knn_accuracy_10": knn_accuracy(big.result.embedding, y),
            **{f"{k}_s": v for k, v in big.timings.items()},
        }
    )
    print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--workflow", action="store_true")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument(
        "--neighbors",
        choices=("auto", "exact", "pynndescent"),
        default="auto",
        help="kNN method of the --n run (exact is the fast choice on a GPU)",
    )
    args = ap.parse_args(argv)
    if args.workflow:
        rows = workflow(args.data_dir)
        if not rows:
            return 0
        print_table(rows, ["run", "seconds", "kl", "knn_accuracy_10"])
        name = "bench_large_workflow"
    else:
        rows = large(args.n, args.neighbors)
        print_table(rows, ["phase", "seconds", "peak_rss_gb", "peak_device_gb"])
        name = "bench_large"
    csv_path, _ = write_results(name + args.tag, rows, machine_info())
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
