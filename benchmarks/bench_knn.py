"""Exact blocked kNN (tsnejax, on device) vs pynndescent: where does ``neighbors="auto"`` switch?

MNIST rows (raw 784-D pixels and PCA-50), k = 90 (perplexity 30). Exact times include JAX
compilation; pynndescent runs in a fresh process each time, so its numba JIT (30-140 s per
process) is counted, as a user's first call pays it. Recall is the fraction of the exact 90
neighbours pynndescent finds. Writes ``benchmarks/out/bench_knn.{csv,json}``.

    python benchmarks/bench_knn.py [--data-dir ../shared/data] [--sizes 5000 10000 70000]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import machine_info, print_table, run_isolated, write_results

PYNN = """
import json, time, numpy as np
X = np.load({path!r})
t = time.perf_counter()
from pynndescent import NNDescent
idx, dist = NNDescent(X, n_neighbors=91, random_state=0).neighbor_graph
dt = time.perf_counter() - t
np.save({out!r}, idx[:, 1:])
print(json.dumps({{"seconds": dt}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000, 20000, 40000, 70000])
    parser.add_argument("--pynndescent-sizes", type=int, nargs="+", default=[10000, 70000])
    args = parser.parse_args()

    import jax

    import tsnejax  # noqa: F401  (applies the CPU XLA flags before JAX starts)
    from tsnejax.data import shared_data_dir
    from tsnejax.knn import exact_knn, exact_limit

    path = shared_data_dir(args.data_dir) / "mnist.npz"
    if not path.exists():
        sys.exit(f"skipped: {path} not found (pass --data-dir or set TSNEJAX_DATA)")
    X784 = np.load(path)["X"].astype(np.float32)
    Xc = X784 - X784.mean(0)
    _, vecs = np.linalg.eigh(Xc.T @ Xc)
    X50 = np.ascontiguousarray(Xc @ vecs[:, ::-1][:, :50], np.float32)
    rows = []
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp())
    for name, X in (("pca50", X50), ("raw784", X784)):
        for n in args.sizes:
            Xs = X[:n]
            t = time.perf_counter()
            g = exact_knn(Xs, 90)
            jax.block_until_ready(g)
            dt = time.perf_counter() - t
            row = {
                "data": name,
                "n": n,
                "d": Xs.shape[1],
                "exact_s": dt,
                "auto_picks": "exact" if n <= exact_limit(Xs.shape[1]) else "pynndescent",
            }
            if n in args.pynndescent_sizes:
                np.save(tmp / "X.npy", Xs)
                res = run_isolated(PYNN.format(path=str(tmp / "X.npy"), out=str(tmp / "idx.npy")))
                approx = np.load(tmp / "idx.npy")
                exact_idx = np.asarray(g.indices)
                recall = np.mean(
                    [len(set(a) & set(b)) / 90 for a, b in zip(approx, exact_idx, strict=True)]
                )
                row.update(
                    pynndescent_s=res["seconds"],
                    pynndescent_recall=float(recall),
                    exact_over_pynndescent=dt / res["seconds"],
                )
            rows.append(row)
            print(row, flush=True)
    print_table(
        rows,
        [
            "data",
            "n",
            "d",
            "exact_s",
            "pynndescent_s",
            "exact_over_pynndescent",
            "pynndescent_recall",
            "auto_picks",
        ],
    )
    csv_path, _ = write_results("bench_knn", rows, machine_info())
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
