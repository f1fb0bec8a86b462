"""Non-Euclidean metrics and sparse input end to end: tsnejax vs openTSNE, same run.

Cases (defaults of both libraries otherwise, seed 0):

- ``mnist-cosine``, ``mnist-correlation``, ``mnist-manhattan``: MNIST's first ``--n`` rows
  (PCA-50) with that metric. tsnejax searches cosine and correlation exactly with its own
  search on unit rows and Manhattan with scikit-learn's exact search; openTSNE uses Annoy
  (approximate) for cosine and Manhattan at 1000+ points and pynndescent for correlation.
- ``brain-sparse-cosine``: the 10x mouse-brain subset's raw counts (10000 x 1000, 77 % zeros),
  log1p(1e4 * counts / total) as a scipy CSR matrix, cosine. tsnejax makes it dense (under
  2^28 cells) and searches exactly; openTSNE passes the sparse matrix to pynndescent, whose
  numba compilation is done beforehand on 500 rows so that it is not counted.

tsnejax runs twice in the process (the first compiles; the second is the warm time); openTSNE
once after its warm-up. Reported: seconds, the kNN part of them, KL (each library's own
report), 10-NN accuracy of the labels where there are labels, and the ratio of the warm
tsnejax time to openTSNE's.

    python benchmarks/bench_metric.py            # ~4 min on 2 cores
    python benchmarks/bench_metric.py --n 5000 --cases mnist-cosine

Writes benchmarks/out/bench_metric{tag}.{csv,json}.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, write_results  # noqa: E402

CASES = ("mnist-cosine", "mnist-correlation", "mnist-manhattan", "brain-sparse-cosine")


def _data(case: str, n: int, data_dir: str | None):
    import scipy.sparse as sp
    from sklearn.decomposition import PCA

    from tsnejax.data import shared_data_dir

    folder = shared_data_dir(data_dir)
    if case.startswith("mnist"):
        src = folder / "mnist.npz"
        if not src.exists():
            return None
        with np.load(src) as z:
            X, y = z["X"][:n].astype(np.float32), z["y"][:n]
        return PCA(50, random_state=0).fit_transform(X).astype(np.float32), y
    src = folder / "mouse_brain_10x_10k_subset.npz"
    if not src.exists():
        return None
    with np.load(src) as z:
        counts = z["X_counts"][:n].astype(np.float32)
    counts = counts[counts.sum(axis=1) > 0]
    norm = np.log1p(1e4 * counts / counts.sum(axis=1, keepdims=True))
    return sp.csr_matrix(norm.astype(np.float32)), None


def _accuracy(Y, y):
    if y is None:
        return None
    from tsnejax.metrics import knn_accuracy

    return float(knn_accuracy(np.asarray(Y, np.float32), y, k=10))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-peers", action="store_true", help="skip openTSNE")
    args = ap.parse_args(argv)

    import tsnejax

    rows = []
    for case in args.cases:
        data = _data(case, args.n, args.data_dir)
        if data is None:
            print(f"skipped {case}: its data file is not in the data folder (TSNEJAX_DATA)")
            continue
        X, y = data
        metric = case.rsplit("-", 1)[1]
        for attempt in ("cold", "warm"):
            t0 = time.perf_counter()
            est = tsnejax.TSNE(metric=metric, random_state=0).fit(X)
            seconds = time.perf_counter() - t0
            rows.append(
                {
                    "case": case,
                    "library": f"tsnejax ({attempt})",
                    "n": X.shape[0],
                    "seconds": seconds,
                    "knn_seconds": est.timings_.get("knn"),
                    "kl": est.kl_divergence_,
                    "knn_accuracy_10": _accuracy(est.embedding_, y),
                }
            )
            print_table(rows[-1:], list(rows[-1]))
        if args.no_peers:
            continue
        import openTSNE

        if case.startswith("brain") or metric == "correlation":  # pynndescent: numba first
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # neighbors= its numba search (its exact one lacks correlation)
                short = dict(n_iter=10, early_exaggeration_iter=10, neighbors="pynndescent")
                openTSNE.TSNE(metric=metric, **short).fit(X[:500])
        t0 = time.perf_counter()
        emb = openTSNE.TSNE(metric=metric, n_jobs=2, random_state=0).fit(X)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "case": case,
                "library": "openTSNE",
                "n": X.shape[0],
                "seconds": seconds,
                "kl": float(emb.kl_divergence),
                "knn_accuracy_10": _accuracy(emb, y),
            }
        )
        warm = rows[-2]["seconds"]
        rows[-1]["tsnejax_warm_ratio"] = warm / seconds
        print_table(rows[-1:], list(rows[-1]))
    cols = ["case", "library", "n", "seconds", "knn_seconds", "kl", "knn_accuracy_10"]
    print()
    print_table(rows, cols + ["tsnejax_warm_ratio"])
    csv_path, json_path = write_results(f"bench_metric{args.tag}", rows, machine_info())
    print(f"wrote {csv_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
