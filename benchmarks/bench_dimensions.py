"""Embeddings in 2 to 10 dimensions: tsnejax (exact gradient above 3-D) vs scikit-learn's
``method="exact"``, same run.

Per dimension: tsnejax ``TSNE(n_components=d)`` defaults (run twice: the second is the warm
time) and scikit-learn ``TSNE(n_components=d, method="exact", init="pca")`` (Barnes-Hut stops at
3-D; its exact method is scikit-learn's only one above). Reported: seconds end to end, the
optimisation's, KL (each library's own objective: scikit-learn's Student-t has
``n_components - 1`` degrees of freedom, tsnejax's ``dof = 1`` in every dimension, so their KLs
differ from 3-D up), trustworthiness at 10 neighbours and 10-NN accuracy of the labels, and the
ratio of tsnejax's warm time to scikit-learn's.

    python benchmarks/bench_dimensions.py                 # digits, d = 2 3 5 10, ~3 min
    python benchmarks/bench_dimensions.py --dims 5 --size 5000 --no-peers

Writes benchmarks/out/bench_dimensions{tag}.{csv,json}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    found_benchmark_data,
    machine_info,
    print_table,
    size_parser,
    write_results,
)


def _quality(X, Y, y) -> dict:
    from tsnejax.metrics import knn_accuracy, trustworthiness

    return {
        "trustworthiness_10": float(trustworthiness(X, Y, 10)),
        "knn_accuracy_10": float(knn_accuracy(Y, y, 10)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = size_parser(__doc__)
    ap.add_argument("--dims", nargs="+", type=int, default=[2, 3, 5, 10])
    ap.add_argument("--no-peers", action="store_true", help="skip scikit-learn")
    args = ap.parse_args(argv)

    import numpy as np

    import tsnejax

    data = found_benchmark_data(args.size, args.data_dir)
    if data is None:
        return 0
    X, y = data
    rows = []
    for d in args.dims:
        for _attempt in ("cold", "warm"):
            t0 = time.perf_counter()
            est = tsnejax.TSNE(n_components=d, random_state=0).fit(X)
            seconds = time.perf_counter() - t0
        row = {
            "n_components": d,
            "library": "tsnejax (warm)",
            "method": est.method_,
            "n": X.shape[0],
            "seconds": seconds,
            "optimize_seconds": est.timings_["optimize"],
            "kl": est.kl_divergence_,
            **_quality(X, est.embedding_, y),
        }
        rows.append(row)
        print_table([row], list(row))
        if args.no_peers:
            continue
        from sklearn.manifold import TSNE as SKTSNE

        t0 = time.perf_counter()
        ref = SKTSNE(n_components=d, method="exact", init="pca", random_state=0).fit(
            X.astype(np.float64)
        )
        seconds = time.perf_counter() - t0
        peer = {
            "n_components": d,
            "library": "scikit-learn",
            "method": "exact",
            "n": X.shape[0],
            "seconds": seconds,
            "kl": float(ref.kl_divergence_),
            **_quality(X, ref.embedding_.astype(np.float32), y),
        }
        row["ratio_vs_sklearn"] = row["seconds"] / seconds
        rows.append(peer)
        print_table([peer], list(peer))
    cols = ["n_components", "library", "method", "n", "seconds", "optimize_seconds", "kl"]
    cols += ["trustworthiness_10", "knn_accuracy_10", "ratio_vs_sklearn"]
    print()
    print_table(rows, cols)
    csv_path, json_path = write_results(f"bench_dimensions{args.tag}", rows, machine_info())
    print(f"wrote {csv_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
