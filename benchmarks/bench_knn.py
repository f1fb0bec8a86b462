"""Exact blocked kNN vs the cluster-pruned ``"ivf"`` search (tsnejax, on device) vs
pynndescent: where does ``neighbors="auto"`` switch, and what recall does ``"ivf"`` keep?

MNIST rows (raw 784-D pixels and PCA-50; beyond 70k, jittered copies as in
``bench_end_to_end.py``), k = 90 (perplexity 30). tsnejax's searches are timed twice in this
process: the first call includes JAX compilation (or the persistent cache's load), the second
is warm. pynndescent runs in a fresh process each time, so its numba JIT (30-140 s per
process) is counted, as a user's first call pays it. Recall is the fraction of the exact 90
(and 30) neighbours a search finds. Writes ``benchmarks/out/bench_knn{tag}.{csv,json}``.

    python benchmarks/bench_knn.py [--data-dir ../shared/data] [--sizes 10000 70000]
        [--data pca50] [--pynndescent-sizes] [--exact-max 70000] [--tag _ivf]
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
    parser.add_argument("--pynndescent-sizes", type=int, nargs="*", default=[10000, 70000])
    parser.add_argument("--data", nargs="+", default=["pca50", "raw784"])
    parser.add_argument("--exact-max", type=int, default=70000, help="largest n searched exactly")
    parser.add_argument("--tag", default="")
    parser.add_argument(
        "--recall-sample",
        type=int,
        default=2000,
        help="above --exact-max: recall on this many random rows searched exactly",
    )
    args = parser.parse_args()

    import jax

    import tsnejax  # noqa: F401  (applies the CPU XLA flags before JAX starts)
    from tsnejax.data import shared_data_dir
    from tsnejax.knn import auto_search, exact_knn, nearest_neighbors

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

    def timed(search, Xs):
        t = time.perf_counter()
        g = search(Xs)
        jax.block_until_ready(g)
        return g, time.perf_counter() - t

    def recall(found, truth, k):
        return float(
            np.mean(
                [len(np.intersect1d(a[:k], b[:k])) / k for a, b in zip(found, truth, strict=True)]
            )
        )

    for name in args.data:
        X = {"pca50": X50, "raw784": X784}[name]
        for n in args.sizes:
            if n > len(X):
                rng = np.random.default_rng(0)
                pick = rng.integers(0, len(X), n)
                Xs = X[pick] + rng.normal(0, 8.0, (n, X.shape[1])).astype(np.float32)
            else:
                Xs = X[:n]
            row = {
                "data": name,
                "n": n,
                "d": Xs.shape[1],
                "auto_picks": auto_search(n, Xs.shape[1]),
            }
            ivf = lambda A: nearest_neighbors(A, 90, method="ivf")  # noqa: E731
            g_ivf, row["ivf_first_s"] = timed(ivf, Xs)
            g_ivf, row["ivf_s"] = timed(ivf, Xs)
            found = np.asarray(g_ivf.indices)
            if n <= args.exact_max:
                g, row["exact_first_s"] = timed(lambda A: exact_knn(A, 90), Xs)
                g, row["exact_s"] = timed(lambda A: exact_knn(A, 90), Xs)
                truth = np.asarray(g.indices)
                row.update(
                    ivf_recall=recall(found, truth, 90),
                    ivf_recall30=recall(found, truth, 30),
                    ivf_over_exact=row["ivf_s"] / row["exact_s"],
                )
            else:  # too big to search all exactly: recall on a random sample of rows
                rows_s = np.sort(np.random.default_rng(1).choice(n, args.recall_sample, False))
                truth = np.asarray(exact_knn(Xs, 90, rows=rows_s).indices)
                row.update(
                    ivf_recall=recall(found[rows_s], truth, 90),
                    ivf_recall30=recall(found[rows_s], truth, 30),
                    recall_rows=int(args.recall_sample),
                )
            if n in (args.pynndescent_sizes or []):
                np.save(tmp / "X.npy", Xs)
                res = run_isolated(PYNN.format(path=str(tmp / "X.npy"), out=str(tmp / "idx.npy")))
                row["pynndescent_s"] = res["seconds"]
                if n <= args.exact_max:
                    row["pynndescent_recall"] = recall(np.load(tmp / "idx.npy"), truth, 90)
            rows.append(row)
            print(row, flush=True)
    print_table(
        rows,
        [
            "data",
            "n",
            "d",
            "exact_first_s",
            "exact_s",
            "ivf_first_s",
            "ivf_s",
            "ivf_over_exact",
            "ivf_recall",
            "ivf_recall30",
            "pynndescent_s",
            "pynndescent_recall",
            "auto_picks",
        ],
    )
    csv_path, _ = write_results("bench_knn" + args.tag, rows, machine_info())
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
