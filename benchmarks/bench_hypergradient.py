"""Cost of one hypergradient relative to the forward run (issue #19).

For each size (MNIST PCA-50 rows), fresh processes time :func:`tsnejax.diff.fit` with the full
default schedule (250 + 500 iterations, ``"sgd"``, learning rates N/12 then N, momentum 0.8):

- ``forward``: ``(Y, KL)`` only;
- ``grad``: ``jax.grad`` of KL w.r.t. all seven hyperparameters at once (reverse mode through
  the rematerialised scan);
- ``jvp``: ``jax.jvp`` along perplexity alone (forward mode: one directional derivative);

each run twice in its process (the first call includes compilation), with the process's peak
resident memory. ``tsnejax.fit`` with the same settings is timed beside them (its own
optimisation, grid resized as usual). Prints a table and writes
``benchmarks/out/bench_hypergradient{tag}.csv/.json``.

    python benchmarks/bench_hypergradient.py --sizes 10000 70000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import machine_info, print_table, run_isolated, saved_benchmark_data, write_results

CODE = """
import json, resource, time
import numpy as np, jax, jax.numpy as jnp
import tsnejax
from tsnejax import diff
X = np.load({path!r})
n = len(X)
mode, method = {mode!r}, {method!r}
key = jax.random.key(0)
kw = dict(key=key, n_iter=500, early_exaggeration_iter=250, method=method, optimizer="sgd")
h = dict(perplexity=30.0, early_exaggeration=12.0, exaggeration=1.0, early_learning_rate=n / 12,
         learning_rate=float(n), momentum=0.8, dof=1.0)
h = {{k: jnp.float32(v) for k, v in h.items()}}
t0 = time.perf_counter()
diff.prepare(X, key=key)
grid = diff.size_grid(X, key=key, method=method, n_iter=500, early_exaggeration_iter=250)
prepare_s = time.perf_counter() - t0
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
if mode == "forward":
    run = lambda: diff.fit(X, h, **kw)[1]
elif mode == "grad":
    run = lambda: jax.grad(lambda hp: diff.fit(X, hp, **kw)[1])(h)
elif mode == "jvp":
    def f(p):
        return diff.fit(X, {{**h, "perplexity": p}}, **kw)[1]
    run = lambda: jax.jvp(f, (h["perplexity"],), (jnp.float32(1.0),))
else:
    config = tsnejax.TSNEConfig.make(negative_gradient_method=method, optimizer="sgd",
        initial_momentum=0.8, final_momentum=0.8)
    run = lambda: tsnejax.fit(key, X, config).kl_divergence
times = []
for _ in range(2):
    t0 = time.perf_counter()
    out = jax.block_until_ready(run())
    times.append(time.perf_counter() - t0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({{"first_s": times[0], "seconds": times[1], "prepare_s": prepare_s,
    "rss_before_gib": rss0, "peak_rss_gib": peak, "grid": str(grid)}}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", nargs="+", default=["10000", "70000"])
    ap.add_argument("--method", default="interpolation")
    ap.add_argument("--modes", nargs="+", default=["forward", "grad", "jvp", "tsnejax.fit"])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_hypergrad_"))
    rows = []
    for _, X, _, path in saved_benchmark_data(args.sizes, args.data_dir, tmp):
        forward = None
        for mode in args.modes:
            r = run_isolated(CODE.format(path=path, mode=mode, method=args.method))
            row = {"n": len(X), "method": args.method, "mode": mode, **r}
            if mode == "forward":
                forward = r["seconds"]
            row["vs_forward"] = r["seconds"] / forward if forward else None
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("n", "mode", "seconds", "peak_rss_gib")}))
    cols = ["n", "method", "mode", "seconds", "first_s", "vs_forward", "peak_rss_gib"]
    cols += ["rss_before_gib", "prepare_s", "grid"]
    print_table(rows, cols)
    csv_path, _ = write_results(f"bench_hypergradient{args.tag}", rows, machine_info())
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
