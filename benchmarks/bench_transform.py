"""Embed MNIST's 60k training rows, transform its 10k test rows: tsnejax vs openTSNE (issue #7).

Both libraries fit the training rows (PCA-50 fitted on them, default settings, seed 0), then
place the test rows with their ``transform`` (openTSNE 1.0.4 defaults: perplexity 5, k = 25,
median init, 250 iterations at exaggeration 1.5, learning rate 0.1; tsnejax's
``TransformConfig`` has the same defaults). Reports the test rows' 10-NN label accuracy among the
training embedding and the transform time of each, in one run, plus the accuracy of the
placement alone (no optimisation). Each library transforms twice: the first call includes
tsnejax's XLA compilation (about 1.5 s), the second reuses the compiled programs. tsnejax
transforms twice with each neighbour search: the graph index from the fit's kNN graph (the
default of `TSNE.transform`) first, then the exact search (which reuses the programs compiled for
the first: its "first call" pays only the exact search's own compilation).

    python benchmarks/bench_transform.py            # ~6 min on 2 cores
    python benchmarks/bench_transform.py --n-train 6000 --n-test 1000

Writes benchmarks/out/bench_transform.{csv,json}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-peers", action="store_true", help="skip openTSNE")
    args = ap.parse_args(argv)

    import jax
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    import tsnejax
    from tsnejax.data import shared_data_dir
    from tsnejax.knn_index import build_graph_index
    from tsnejax.transform import TransformConfig, transform

    src = shared_data_dir(args.data_dir) / "mnist.npz"
    if not src.exists():
        print(f"skipped: {src} not found (set TSNEJAX_DATA or --data-dir)")
        return 0
    with np.load(src) as z:
        X, y, is_test = z["X"], z["y"], z["is_test"].astype(bool)
    Xtr, ytr = X[~is_test][: args.n_train], y[~is_test][: args.n_train]
    Xte, yte = X[is_test][: args.n_test], y[is_test][: args.n_test]
    pca = PCA(50, random_state=0).fit(Xtr.astype(np.float32))
    Xtr = pca.transform(Xtr.astype(np.float32)).astype(np.float32)
    Xte = pca.transform(Xte.astype(np.float32)).astype(np.float32)

    def acc(Y_train, Y_test):
        return KNeighborsClassifier(10).fit(Y_train, ytr).score(Y_test, yte)

    rows = []
    t0 = time.perf_counter()
    res = tsnejax.fit(jax.random.key(0), Xtr, tsnejax.TSNEConfig())
    fit_s = time.perf_counter() - t0
    exact_nn = None
    for query in ("graph", "exact"):

        def run_transform(query=query):
            # The index is built inside the timed call (it is cheap); openTSNE builds its
            # Annoy index during fit.
            index = build_graph_index(Xtr, res.neighbors) if query == "graph" else None
            conf = TransformConfig(neighbors=query)
            return transform(Xte, Xtr, res.embedding, conf, index=index)

        t0 = time.perf_counter()
        tr = run_transform()
        tr_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_transform()
        warm_s = time.perf_counter() - t0
        if query == "exact":
            exact_nn = np.asarray(tr.neighbors.indices)
        else:
            graph_nn = np.asarray(tr.neighbors.indices)
        rows.append(
            {
                "library": f"tsnejax ({query} query)",
                "fit_s": fit_s,
                "transform_s": tr_s,
                "transform_again_s": warm_s,
                "timings": {k: round(v, 3) for k, v in tr.timings.items()},
                "transform_method": tr.method,
                "accuracy_transform": acc(res.embedding, tr.embedding),
                "accuracy_placement": acc(res.embedding, tr.initial),
                "train_kl": res.kl_divergence,
            }
        )
        print(rows[-1], flush=True)
    # Share of the exact 25 nearest training rows the graph query found.
    hits = [len(np.intersect1d(a, b)) for a, b in zip(graph_nn, exact_nn, strict=True)]
    rows[0]["neighbor_recall"] = float(np.mean(hits)) / exact_nn.shape[1]
    rows[1]["neighbor_recall"] = 1.0
    print(f"graph query recall of the exact 25-NN: {rows[0]['neighbor_recall']:.4f}")

    if not args.no_peers:
        from openTSNE import TSNE

        t0 = time.perf_counter()
        emb = TSNE(n_jobs=2, random_state=0).fit(Xtr.astype(np.float64))
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        te = emb.transform(Xte.astype(np.float64))
        tr_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb.transform(Xte.astype(np.float64))
        warm_s = time.perf_counter() - t0
        placed = emb.prepare_partial(Xte.astype(np.float64))
        rows.append(
            {
                "library": "openTSNE",
                "fit_s": fit_s,
                "transform_s": tr_s,
                "transform_again_s": warm_s,
                "transform_method": "fft",
                "accuracy_transform": acc(np.asarray(emb), np.asarray(te)),
                "accuracy_placement": acc(np.asarray(emb), np.asarray(placed)),
                "train_kl": float(emb.kl_divergence),
            }
        )
        print(rows[-1], flush=True)
    for r in rows:
        if not args.no_peers:
            peer = rows[-1]
            r["transform_ratio_vs_openTSNE"] = r["transform_s"] / peer["transform_s"]
            r["again_ratio_vs_openTSNE"] = r["transform_again_s"] / peer["transform_again_s"]
        r["n_train"], r["n_test"] = len(Xtr), len(Xte)
    cols = [
        "library",
        "n_train",
        "n_test",
        "fit_s",
        "transform_s",
        "transform_ratio_vs_openTSNE",
        "transform_again_s",
        "again_ratio_vs_openTSNE",
        "accuracy_transform",
        "accuracy_placement",
        "neighbor_recall",
        "train_kl",
    ]
    print_table(rows, cols)
    csv_path, _ = write_results("bench_transform" + args.tag, rows, machine_info())
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
