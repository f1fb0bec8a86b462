"""Metrics on full MNIST-70k: cost against scikit-learn, and tsnejax's embedding beside openTSNE's.

1. Cost: NN precision/recall curves (exact K = 30 neighbours in the raw 784-D pixels, k = 1..30
   in the embedding, all 70k queries) plus leave-one-out 10-NN accuracy, by
   ``tsnejax.metrics.evaluate`` and by scikit-learn ``NearestNeighbors`` (brute force in 784-D,
   its automatic tree in 2-D) doing the same work; each in a fresh process, wall time and peak
   RSS.
2. Quality: default tsnejax and default openTSNE embeddings of MNIST-70k (PCA-50 input, the
   same for both), scored with the same metrics, plus the exact KL of both under tsnejax's P.

Embeddings are cached in ``benchmarks/out/`` (``--recompute`` to redo). Writes
``benchmarks/out/bench_metrics.{csv,json}``.

    python benchmarks/bench_metrics.py [--data-dir ../shared/data] [--n 70000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from _common import OUT_DIR, machine_info, print_table, run_isolated, write_results

_LOAD = """
import json, sys, time
import numpy as np

def peak_rss_gb():
    # VmHWM is this process's own high-water mark; ru_maxrss would include the parent's
    # (Linux keeps it across fork + exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20

d = np.load({path!r})
X = d["X"][:{n}].astype(np.float32); y = d["y"][:{n}]
Y = np.load({emb!r})
"""

TSNEJAX_CODE = (
    _LOAD
    + """
import jax
from tsnejax.metrics import evaluate
t0 = time.perf_counter()
out = evaluate(X, Y, y, k_max=30, global_scores=False)
wall = time.perf_counter() - t0
rss = peak_rss_gb()
print(json.dumps({{"wall_s": wall, "peak_rss_gb": rss, "precision": out["nn_precision"],
  "recall": out["nn_recall"], "acc": out["knn_accuracy_10"], "timings": out["timings_seconds"]}}))
"""
)

SKLEARN_CODE = (
    _LOAD
    + """
from sklearn.neighbors import NearestNeighbors
t0 = time.perf_counter()
true = NearestNeighbors(n_neighbors=30).fit(X).kneighbors(return_distance=False)
t1 = time.perf_counter()
emb = NearestNeighbors(n_neighbors=30).fit(Y).kneighbors(return_distance=False)
t2 = time.perf_counter()
found = (emb[:, :, None] == true[:, None, :]).any(-1)
hits = np.cumsum(found, axis=1).mean(0)
k = np.arange(1, 31)
_, codes = np.unique(y, return_inverse=True)
votes = np.zeros((len(y), codes.max() + 1), int)
np.add.at(votes, (np.repeat(np.arange(len(y)), 10), codes[emb[:, :10]].ravel()), 1)
acc = float(np.mean(votes.argmax(1) == codes))
wall = time.perf_counter() - t0
rss = peak_rss_gb()
print(json.dumps({{"wall_s": wall, "peak_rss_gb": rss, "precision": (hits / k).tolist(),
  "recall": (hits / 30).tolist(), "acc": acc,
  "timings": {{"knn_input": t1 - t0, "knn_embedding": t2 - t1}}}}))
"""
)


def _embeddings(path, n, recompute):
    """Default tsnejax and openTSNE embeddings of PCA-50 MNIST (cached), tsnejax's P, times."""
    import jax
    import openTSNE

    import tsnejax

    cache = OUT_DIR / f"bench_metrics_embeddings_{n}.npz"
    d = np.load(path)
    X = d["X"][:n].astype(np.float32)
    Xc = X - X.mean(0)
    _, V = np.linalg.eigh(Xc.T.astype(np.float64) @ Xc)
    X50 = (Xc @ V[:, ::-1][:, :50]).astype(np.float32)
    t0 = time.perf_counter()
    res = tsnejax.fit(jax.random.key(0), X50, tsnejax.TSNEConfig(), verbose=False)
    t_ours = time.perf_counter() - t0
    if cache.exists() and not recompute:
        with np.load(cache) as z:
            return res, z["ours"], z["theirs"], float(z["t_ours"]), float(z["t_theirs"])
    t0 = time.perf_counter()
    theirs = np.asarray(openTSNE.TSNE(random_state=0, n_jobs=2).fit(X50), np.float32)
    t_theirs = time.perf_counter() - t0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ours=res.embedding, theirs=theirs, t_ours=t_ours, t_theirs=t_theirs)
    return res, res.embedding, theirs, t_ours, t_theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n", type=int, default=70000)
    parser.add_argument("--recompute", action="store_true", help="redo the cached embeddings")
    args = parser.parse_args()

    from tsnejax.data import shared_data_dir
    from tsnejax.metrics import evaluate, kl_divergence

    path = shared_data_dir(args.data_dir) / "mnist.npz"
    if not path.exists():
        sys.exit(f"skipped: {path} not found (pass --data-dir or set TSNEJAX_DATA)")
    res, ours, theirs, t_ours, t_theirs = _embeddings(path, args.n, args.recompute)
    emb_path = OUT_DIR / "bench_metrics_Y.npy"
    np.save(emb_path, ours)

    rows = []
    fmt = dict(path=str(path), n=args.n, emb=str(emb_path))
    cost = {}
    for tool, code in (("tsnejax", TSNEJAX_CODE), ("scikit-learn", SKLEARN_CODE)):
        r = run_isolated(code.format(**fmt))
        cost[tool] = r
        rows.append(
            {
                "part": "cost",
                "tool": tool,
                "wall_s": r["wall_s"],
                "peak_rss_gb": r["peak_rss_gb"],
                "knn_input_s": r["timings"]["knn_input"],
                "knn_embedding_s": r["timings"]["knn_embedding"],
                "precision_30": r["precision"][-1],
                "knn_accuracy_10": r["acc"],
            }
        )
    ratio = cost["tsnejax"]["wall_s"] / cost["scikit-learn"]["wall_s"]
    agree = float(
        np.max(np.abs(np.subtract(cost["tsnejax"]["recall"], cost["scikit-learn"]["recall"])))
    )
    rows[0]["ratio_vs_sklearn"] = ratio
    rows[0]["max_curve_difference"] = agree

    d = np.load(path)
    X, y = d["X"][: args.n].astype(np.float32), d["y"][: args.n]
    for tool, Y, t in (("tsnejax", ours, t_ours), ("openTSNE", theirs, t_theirs)):
        q = evaluate(X, Y, y, k_max=30)
        rows.append(
            {
                "part": "quality",
                "tool": tool,
                "embed_s": t,
                "kl_exact": kl_divergence(res.affinities, Y),
                "knn_accuracy_10": q["knn_accuracy_10"],
                "precision_1": q["nn_precision"][0],
                "precision_10": q["nn_precision"][9],
                "recall_30": q["nn_recall"][-1],
                "knn_preservation_10": q["knn_preservation_10"],
                "knc_4": q["knc_4"],
                "cpd": q["cpd"],
            }
        )
        rows[-1]["curves"] = json.dumps({"precision": q["nn_precision"], "recall": q["nn_recall"]})

    print_table(
        [r for r in rows if r["part"] == "cost"],
        [
            "tool",
            "wall_s",
            "peak_rss_gb",
            "knn_input_s",
            "knn_embedding_s",
            "precision_30",
            "knn_accuracy_10",
            "ratio_vs_sklearn",
            "max_curve_difference",
        ],
    )
    print()
    print_table(
        [r for r in rows if r["part"] == "quality"],
        [
            "tool",
            "embed_s",
            "kl_exact",
            "knn_accuracy_10",
            "precision_1",
            "precision_10",
            "recall_30",
            "knn_preservation_10",
            "knc_4",
            "cpd",
        ],
    )
    csv_path, _ = write_results("bench_metrics", rows, {"machine": machine_info(), "n": args.n})
    print(f"\nwrote {csv_path}")


if __name__ == "__main__":
    main()
