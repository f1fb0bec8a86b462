"""P's shapes across data sets of one size, and what a shared shape saves in compilation.

P's sliced-ELL layout (``tsnejax._layout``) has ``n x w`` main slots and ``e`` continuation
rows; ``e`` depends on the data, so two data sets of one size used to give two shapes and each
fit compiled its programs anew (in the process and in the persistent cache). tsnejax allocates
continuation rows in steps of n / 16 (``tsnejax._layout.extra_capacity``). For random MNIST
subsets (PCA-50 of the 70k images, k = 90) this reports the rows needed and allocated and the
distinct shapes with and without the steps; then, in fresh processes with an empty compilation
cache, it fits two different subsets one after the other (tsnejax defaults) and times the second
fit's compilation, with the steps and with exact-size allocation.

    python benchmarks/bench_layout_shapes.py [--sizes 5000 10000] [--subsets 5]
        [--data-dir DIR] [--tag T]

Writes ``benchmarks/out/bench_layout_shapes{tag}.{csv,json}``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import benchmark_data, machine_info, print_table, run_isolated, write_results

CHILD = """
import collections, json, os, time
import jax, numpy as np
from jax import monitoring
acc = collections.defaultdict(float)
def add(name, d, **kw):
    acc[name.rsplit("/", 1)[-1]] += d
monitoring.register_event_duration_secs_listener(add)
import tsnejax, tsnejax._layout as layout
if {exact}:
    layout.extra_capacity = lambda e, n: max(e, 1)  # the allocation before the steps
out = {{}}
for name, path in (("first", {a!r}), ("second", {b!r})):
    X = np.load(path)
    before = acc["backend_compile_duration"]
    t = time.perf_counter()
    r = tsnejax.fit(jax.random.key(0), X)
    out[name + "_s"] = time.perf_counter() - t
    out[name + "_compile_s"] = acc["backend_compile_duration"] - before
    out[name + "_shape"] = [int(r.affinities.neighbors.shape[1]),
                            int(r.affinities.extra_rows.shape[0])]
print(json.dumps(out))
"""


def _needed(X: np.ndarray) -> tuple[int, int, int]:
    """(main width w, continuation rows needed, rows allocated) of X's P layout."""
    import scipy.sparse as sp

    import tsnejax
    from tsnejax import _layout

    g = tsnejax.nearest_neighbors(X, 90)
    idx = np.asarray(g.indices)
    n, k = idx.shape
    A = sp.csr_matrix((np.ones(n * k), idx.ravel(), np.arange(0, n * k + 1, k)), (n, n))
    degrees = np.diff((A + A.T).tocsr().indptr)
    layout = _layout.build_layout(g)
    w = layout.neighbors.shape[1]
    return w, _layout._extra_rows(degrees, w, _layout.EXTRA_WIDTH), layout.extra_rows.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", type=int, default=[5000, 10000])
    parser.add_argument("--subsets", type=int, default=5)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    data = benchmark_data("70000", Path(args.data_dir) if args.data_dir else None)
    if data is None:
        print("skipped: MNIST not found (set TSNEJAX_DATA or --data-dir)")
        return
    X_all = data[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            rng = np.random.default_rng(n)
            subsets = [X_all[rng.choice(len(X_all), n, replace=False)] for _ in range(args.subsets)]
            shapes = [_needed(X) for X in subsets]
            paths = []
            for i, X in enumerate(subsets[:2]):
                paths.append(str(Path(tmp) / f"X_{n}_{i}.npy"))
                np.save(paths[-1], X)
            row = {
                "size": n,
                "subsets": args.subsets,
                "needed_rows": " ".join(str(s[1]) for s in shapes),
                "allocated_rows": " ".join(str(s[2]) for s in shapes),
                "shapes_exact": len({(s[0], s[1]) for s in shapes}),
                "shapes_stepped": len({(s[0], s[2]) for s in shapes}),
                "padding_slots_pct": 100 * max((s[2] - s[1]) * 16 / (n * s[0]) for s in shapes),
            }
            for mode in ("stepped", "exact"):
                env = {"TSNEJAX_CACHE_DIR": str(Path(tmp) / f"cache_{n}_{mode}")}
                code = CHILD.format(exact=mode == "exact", a=paths[0], b=paths[1])
                res = run_isolated(code, env=env)
                row[f"{mode}_second_compile_s"] = res["second_compile_s"]
                row[f"{mode}_second_s"] = res["second_s"]
                row[f"{mode}_first_s"] = res["first_s"]
                row[f"{mode}_same_shape"] = res["first_shape"] == res["second_shape"]
            rows.append(row)
            print(row)
    cols = ["size", "shapes_exact", "shapes_stepped", "padding_slots_pct"]
    cols += ["stepped_same_shape", "stepped_second_compile_s", "exact_second_compile_s"]
    print_table(rows, [*cols, "stepped_second_s", "exact_second_s"])
    csv_path, _ = write_results(
        f"bench_layout_shapes{args.tag}", rows, {**machine_info(), "args": vars(args)}
    )
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
