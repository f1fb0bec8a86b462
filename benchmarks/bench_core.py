"""digits end-to-end: tsnejax vs openTSNE (its default on digits: Barnes-Hut) vs scikit-learn.

Each run happens in a fresh Python process and times everything after the imports: kNN,
affinities, initialisation, compilation (tsnejax) and 750 iterations (250 early exaggeration
+ 500). Runs alternate between tools to spread the machine's noise; the table shows medians
and the ratio to scikit-learn. Writes ``benchmarks/out/bench_core.{csv,json}``.

    python benchmarks/bench_core.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics

from _common import machine_info, print_table, run_isolated, write_results

PRELUDE = """
import json, time
import numpy as np
from sklearn.datasets import load_digits
X, y = load_digits(return_X_y=True)
X = X.astype(np.float64)
"""

CODE = {
    "tsnejax (exact)": PRELUDE
    + """
import tsnejax
from tsnejax.metrics import knn_accuracy
t = time.perf_counter()
est = tsnejax.TSNE(random_state=0).fit(X)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "kl": est.kl_divergence_,
                  "acc10": knn_accuracy(est.embedding_, y, 10),
                  "compile": est.timings_["compile"], "optimize": est.timings_["optimize"]}))
""",
    "openTSNE (BH)": PRELUDE
    + """
import openTSNE
from tsnejax.metrics import knn_accuracy
t = time.perf_counter()
E = openTSNE.TSNE(random_state=0, n_jobs=2).fit(X)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "kl": float(E.kl_divergence),
                  "acc10": knn_accuracy(np.asarray(E), y, 10)}))
""",
    "scikit-learn (BH)": PRELUDE
    + """
from sklearn.manifold import TSNE
from tsnejax.metrics import knn_accuracy
t = time.perf_counter()
est = TSNE(random_state=0, n_jobs=2)
Y = est.fit_transform(X)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "kl": float(est.kl_divergence_),
                  "acc10": knn_accuracy(Y, y, 10)}))
""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in CODE}
    for _ in range(args.repeats):
        for name, code in CODE.items():
            results[name].append(run_isolated(code))
    ref = statistics.median(r["seconds"] for r in results["scikit-learn (BH)"])
    rows = []
    for name, runs in results.items():
        sec = statistics.median(r["seconds"] for r in runs)
        row = {
            "method": name,
            "seconds_median": sec,
            "seconds_min": min(r["seconds"] for r in runs),
            "ratio_vs_sklearn": sec / ref,
            "kl": statistics.median(r["kl"] for r in runs),
            "knn_acc10": statistics.median(r["acc10"] for r in runs),
        }
        if "compile" in runs[0]:
            row["compile_s"] = statistics.median(r["compile"] for r in runs)
            row["optimize_s"] = statistics.median(r["optimize"] for r in runs)
        rows.append(row)
    print(f"digits (N=1797, 64-D), 750 iterations, median of {args.repeats} fresh processes")
    print_table(
        rows,
        [
            "method",
            "seconds_median",
            "seconds_min",
            "ratio_vs_sklearn",
            "kl",
            "knn_acc10",
            "compile_s",
            "optimize_s",
        ],
    )
    csv_path, _ = write_results("bench_core", rows, {**machine_info(), "repeats": args.repeats})
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
