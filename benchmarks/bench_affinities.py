"""P from a kNN graph: the first call in a process, with and without small pages for the layout.

``tsnejax.perplexity_affinities`` builds P's layout on the host (``tsnejax._layout``: scipy's
CSR transpose and union, then the sliced-ELL fill) and calibrates on the device. NumPy asks the
kernel for transparent huge pages on large new arrays; where the kernel then compacts memory on
the first touch (THP ``defrag = madvise``) a fit's one layout build stalled. tsnejax builds the
layout with small pages (``tsnejax._layout.small_pages``). For each size the kNN graph (MNIST
PCA-50, k = 90; beyond 70k the jittered copies of ``bench_end_to_end.py``) is computed once and
saved; then each round runs two fresh processes, small pages and NumPy's default (huge pages),
alternating, and times the first and second P in each. Reported: medians over rounds and the
ratio of the first calls.

    python benchmarks/bench_affinities.py [--sizes 20000 70000 250000] [--rounds 3]
        [--data-dir DIR] [--tag T]

Writes ``benchmarks/out/bench_affinities{tag}.{csv,json}``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import (
    machine_info,
    print_table,
    run_isolated,
    saved_benchmark_data,
    write_results,
)

CHILD = """
import contextlib, json, time
import jax, numpy as np
import tsnejax, tsnejax._layout as layout
from tsnejax._knn_exact import KNNGraph
z = np.load({path!r})
g = KNNGraph(jax.numpy.asarray(z["i"]), jax.numpy.asarray(z["d"]))
jax.block_until_ready(g)
if {huge}:
    layout.small_pages = contextlib.nullcontext  # NumPy's default: huge pages where it may
out = {{}}
for name in ("first", "second"):
    t = time.perf_counter()
    jax.block_until_ready(tsnejax.perplexity_affinities(g, 30.0))
    out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


def _thp() -> dict:
    out = {}
    for name in ("enabled", "defrag"):
        path = Path("/sys/kernel/mm/transparent_hugepage") / name
        out[f"thp_{name}"] = path.read_text().strip() if path.exists() else "unknown"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["20000", "70000"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    import jax

    import tsnejax

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, X, _, _ in saved_benchmark_data(args.sizes, args.data_dir, Path(tmp)):
            g = tsnejax.nearest_neighbors(X, 90)
            path = str(Path(tmp) / f"knn_{size}.npz")
            np.savez(path, i=np.asarray(g.indices), d=np.asarray(jax.device_get(g.distances)))
            runs = {"small": [], "huge": []}
            for _ in range(args.rounds):
                for pages in ("small", "huge"):
                    code = CHILD.format(path=path, huge=pages == "huge")
                    runs[pages].append(run_isolated(code))
            row = {"size": size, "rounds": args.rounds}
            for pages, res in runs.items():
                for name in ("first", "second"):
                    row[f"{pages}_{name}_s"] = float(np.median([r[name] for r in res]))
                row[f"{pages}_first_all_s"] = " ".join(f"{r['first']:.2f}" for r in res)
            row["first_ratio"] = row["small_first_s"] / row["huge_first_s"]
            rows.append(row)
            print(f"{size}: {row}")
    cols = ["size", "small_first_s", "huge_first_s", "first_ratio", "small_second_s"]
    print_table(rows, [*cols, "huge_second_s"])
    csv_path, _ = write_results(
        f"bench_affinities{args.tag}", rows, {**machine_info(), **_thp(), "args": vars(args)}
    )
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
