"""Cost of the scatter forms deterministic by construction (``deterministic_scatter=True``).

One gradient evaluation (attraction + repulsion) of the interpolation and splat backends with
XLA's scatter-add and with the sorted segmented sum (``tsnejax/gradients/_scatter.py``), on
MNIST P (PCA-50, perplexity 30) and an embedding spread to a given span (grids of the early and
late phase), median of repeated calls after a warm-up. On a GPU run it twice: as is (tsnejax
sets ``--xla_gpu_deterministic_ops``) and with ``TSNEJAX_GPU_DETERMINISTIC=0`` (atomics),
where the deterministic form is what keeps runs repeatable.

    python benchmarks/bench_scatter.py [--n 70000] [--spans 20 100 250]

Writes ``benchmarks/out/bench_scatter{tag}.{csv,json}``.
"""

from __future__ import annotations

import argparse
import os

from _common import benchmark_data, machine_info, median_ms, print_table, write_results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="70000")
    ap.add_argument("--spans", type=float, nargs="+", default=[20.0, 100.0, 250.0])
    ap.add_argument("--data-dir", default=os.environ.get("TSNEJAX_DATA"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    import jax

    import tsnejax
    from tsnejax.gradients import get_backend

    data = benchmark_data(args.n, args.data_dir)
    if data is None:
        print("MNIST not found: using digits")
        data = benchmark_data("digits")
    X = data[0]
    P = tsnejax.pipeline.prepare(jax.random.key(0), X, tsnejax.TSNEConfig()).P
    rows = []
    for span in args.spans:
        Y = jax.random.uniform(jax.random.key(1), (len(X), 2), minval=-span / 2, maxval=span / 2)
        for method in ("interpolation", "splat"):
            times = {}
            for det in (False, True):
                backend = get_backend(method, deterministic_scatter=det)
                grid = backend.allocate(Y)
                fn = jax.jit(backend.gradient, static_argnums=4)
                times[det] = median_ms(fn, Y, P, 1.0, 1.0, grid)
            rows.append(
                {
                    "n": len(X),
                    "span": span,
                    "method": method,
                    "grid": str(tuple(grid)),
                    "scatter_ms": times[False],
                    "deterministic_ms": times[True],
                    "ratio": times[True] / times[False],
                    "device": str(jax.devices()[0].device_kind),
                    "gpu_flag": os.environ.get("TSNEJAX_GPU_DETERMINISTIC", "1"),
                }
            )
            print(rows[-1], flush=True)
    print_table(rows, ["n", "span", "method", "grid", "scatter_ms", "deterministic_ms", "ratio"])
    csv_path, _ = write_results(f"bench_scatter{args.tag}", rows, machine_info())
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
