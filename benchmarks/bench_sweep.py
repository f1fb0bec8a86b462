"""A learning-rate sweep three ways: tsnejax's sweep executor, tsnejax one fit at a time,
openTSNE one fit at a time (issue #8, must-show 1).

Every variant runs in a fresh process on the same prepared data (MNIST rows, PCA-50, written to
a temporary .npy first, so data preparation is nobody's cost) and embeds it once per learning
rate with the default 250 + 500 iterations; its wall time covers kNN, affinities, compilation
and optimisation. Per-embedding cost = wall / number of learning rates. Executor variants:
``sequential`` (the CPU default), ``vmap`` with batch 2 and 4, and ``vmap`` sharded over 2
forced host devices (``--xla_force_host_platform_device_count=2``, one trial per core).

    python benchmarks/bench_sweep.py                 # MNIST-10k, 8 learning rates (~15 min)
    python benchmarks/bench_sweep.py --n 2000 --smoke

Writes benchmarks/out/bench_sweep.{csv,json}; ``--tag`` appends to the name.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, print_table, run_isolated, write_results  # noqa: E402

LEARNING_RATES = [100, 200, 500, "N/12", 1000, 2000, 5000, "N"]

SWEEP = """
import json, time
t0 = time.perf_counter()
from tsnejax.sweep import spec_from_dict, run_sweep, read_table
spec = spec_from_dict({{"name": "bench", "data": {{"path": {path!r}}},
    "fixed": {fixed}, "grid": {{"learning_rate": {lrs!r}}}, "run": {{"metrics": ["kl"]}}}})
s = run_sweep(spec, {out!r}, mode={mode!r}, batch_size={batch})
rows = read_table({out!r} + "/results.csv")
print(json.dumps({{"wall": time.perf_counter() - t0, "mode": s.mode,
    "kl": [float(r["kl"]) for r in rows], "knn": s.timings["knn"]}}))
"""

ONE_BY_ONE = """
import json, time
t0 = time.perf_counter()
import numpy as np, jax
from tsnejax import fit, TSNEConfig
from tsnejax.sweep import resolve_learning_rate
X = np.load({path!r})
kls = []
for lr in {lrs!r}:
    cfg = TSNEConfig.make(learning_rate=float(resolve_learning_rate(lr, len(X))), **{fixed})
    kls.append(fit(jax.random.key(0), X, cfg).kl_divergence)
print(json.dumps({{"wall": time.perf_counter() - t0, "kl": kls}}))
"""

OPENTSNE = """
import json, time
t0 = time.perf_counter()
import numpy as np
from openTSNE import TSNE
from tsnejax.sweep import resolve_learning_rate
X = np.load({path!r}).astype(np.float64)
kls = []
for lr in {lrs!r}:
    e = TSNE(learning_rate=float(resolve_learning_rate(lr, len(X))), n_jobs={jobs},
             random_state=0, n_iter={n_iter}, early_exaggeration_iter={early}).fit(X)
    kls.append(float(e.kl_divergence))
print(json.dumps({{"wall": time.perf_counter() - t0, "kl": kls}}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="MNIST rows (first n)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--smoke", action="store_true", help="50 + 50 iterations, 2 rates")
    ap.add_argument("--skip", nargs="*", default=[], help="variants to leave out")
    ap.add_argument("--tag", default="")
    ap.add_argument("--batch", type=int, nargs="+", default=[2, 4], help="vmap batch sizes")
    ap.add_argument("--opentsne-jobs", type=int, default=2, help="openTSNE n_jobs")
    args = ap.parse_args(argv)

    from tsnejax.data import shared_data_dir

    src = shared_data_dir(args.data_dir) / "mnist.npz"
    if not src.exists():
        print(f"skipped: {src} not found (set TSNEJAX_DATA or --data-dir)")
        return 0
    from sklearn.decomposition import PCA

    with np.load(src) as z:
        X = z["X"][: args.n].astype(np.float32)
    X = PCA(50, random_state=0).fit_transform(X).astype(np.float32)
    early, n_iter = (50, 50) if args.smoke else (250, 500)
    lrs = LEARNING_RATES[3:5] if args.smoke else LEARNING_RATES
    fixed = {"early_exaggeration_iter": early, "n_iter": n_iter}
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    path = str(tmp / "X.npy")
    np.save(path, X)

    variants = {
        "sweep sequential": (SWEEP, {"mode": "sequential", "batch": None}, {}),
        **{f"sweep vmap B={b}": (SWEEP, {"mode": "vmap", "batch": b}, {}) for b in args.batch},
        "sweep vmap 2 host devices": (
            SWEEP,
            {"mode": "vmap", "batch": 2},
            {
                "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
                + " --xla_force_host_platform_device_count=2"
            },
        ),
        "tsnejax one-by-one": (ONE_BY_ONE, {}, {}),
        "openTSNE one-by-one": (
            OPENTSNE,
            {"n_iter": n_iter, "early": early, "jobs": args.opentsne_jobs},
            {},
        ),
    }
    rows = []
    for i, (name, (code, extra, env)) in enumerate(variants.items()):
        if name in args.skip:
            continue
        fields = dict(path=path, lrs=lrs, fixed=repr(fixed), out=str(tmp / f"s{i}"), **extra)
        r = run_isolated(code.format(**fields), env=env)
        row = {
            "variant": name,
            "n": len(X),
            "trials": len(lrs),
            "wall_s": r["wall"],
            "per_embedding_s": r["wall"] / len(lrs),
            "mean_kl": float(np.nanmean(r["kl"])),
            "kl": json.dumps([round(k, 4) for k in r["kl"]]),
        }
        rows.append(row)
        print(f"{name}: {r['wall']:.1f} s", flush=True)
    ref = next((r for r in rows if r["variant"] == "openTSNE one-by-one"), None)
    for r in rows:
        r["ratio_vs_openTSNE"] = r["per_embedding_s"] / ref["per_embedding_s"] if ref else None
    cols = ["variant", "n", "trials", "wall_s", "per_embedding_s", "ratio_vs_openTSNE", "mean_kl"]
    print_table(rows, cols)
    meta = {
        **machine_info(),
        "learning_rates": lrs,
        "iterations": [early, n_iter],
        "opentsne_jobs": args.opentsne_jobs,
    }
    csv_path, _ = write_results("bench_sweep" + args.tag, rows, meta)
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
