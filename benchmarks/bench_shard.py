"""One embedding split by points over 1, 2 and 4 devices (``tsnejax.fit(..., mesh=mesh)``).

Each row runs in a fresh process with ``--xla_force_host_platform_device_count=D`` on the same
kNN graph (computed once here and passed as ``neighbors=``, so every row times the same work:
affinities, initialisation, compilation, 750 iterations). On a CPU the D devices share the
same cores, so this measures the cost of the sharded formulation (collectives, padding,
per-shard scatters), not a speed-up; the "plain" row is the single-device path without a mesh.
Sharded rows also time the exact ring kNN search (:mod:`tsnejax.sharded_knn`) and its recall
against the single-device exact graph.
Bytes per iteration and device are computed from the run's largest grid: the positions
all-gather receives ``(N_pad - N_pad / D) d`` floats, the grid all-reduce moves about
``2 (D - 1) / D`` times the grid (``m^d (d + 1)`` floats for interpolation); the ``hlo_*``
columns are the result sizes of the all-gather and all-reduce operations in the compiled
sharded gradient at that grid (what XLA actually exchanges, per device, before the ring
factor).

    python benchmarks/bench_shard.py [--n 70000] [--devices 1 2 4] [--method interpolation]

Writes ``benchmarks/out/bench_shard{tag}.{csv,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from _common import machine_info, print_table, run_isolated, saved_benchmark_data, write_results

RUN = r"""
import json, os, time, numpy as np
X = np.load({path!r}); y = np.load({labels!r})
idx = np.load({idx!r}); dist = np.load({dist!r})
import jax, tsnejax
from tsnejax.metrics import knn_accuracy
from tsnejax.shard import point_mesh
mesh = point_mesh() if {sharded} else None
cfg = tsnejax.TSNEConfig.make(negative_gradient_method={method!r})
t = time.perf_counter()
r = tsnejax.fit(jax.random.key(0), X, cfg, neighbors=(idx, dist), mesh=mesh)
dt = time.perf_counter() - t
grid = max(r.grids) if r.grids and r.grids[0] is not None else None
knn = {{}}
if mesh is not None:
    # bytes the compiled gradient moves, read off its HLO (outputs of the collectives)
    import re
    from tsnejax import shard
    S = shard.shard_affinities(r.affinities, mesh)
    Ys = shard.shard_embedding(r.embedding, mesh)
    grad = jax.jit(r.stepper.backend.gradient, static_argnums=4)
    hlo = grad.lower(Ys, S, 1.0, 1.0, max(r.grids)).compile().as_text()
    size = {{"f32": 4, "s32": 4, "f64": 8, "pred": 1}}
    totals = {{"all-gather": 0, "all-reduce": 0}}
    for shapes, op in re.findall(r"= (.*?) (all-gather|all-reduce)\(", hlo):
        for kind, dims in re.findall(r"(f32|s32|f64|pred)\[([0-9,]*)\]", shapes):
            totals[op] += size[kind] * int(np.prod([int(x) for x in dims.split(",") if x] or [1]))
    for op, total in totals.items():
        knn["hlo_" + op.replace("-", "_") + "_MB"] = total / 1e6
    from tsnejax.sharded_knn import sharded_knn
    t = time.perf_counter()
    g = sharded_knn(X, idx.shape[1], mesh)
    knn["ring_knn"] = time.perf_counter() - t
    gi = np.asarray(g.indices)
    knn["ring_recall"] = float(np.mean([len(set(a) & set(b)) for a, b in zip(gi, idx)])
                               / idx.shape[1])
print(json.dumps({{"seconds": dt, "kl": float(r.kl_divergence), **knn,
    "acc10": knn_accuracy(r.embedding, y, 10), "devices": len(jax.devices()),
    "grid": list(grid) if grid else None, "n_compiles": r.n_compiles,
    **{{k: float(v) for k, v in r.timings.items()}}}}))
"""


def _bytes_per_step(n: int, d: int, devices: int, grid, method: str) -> dict:
    n_pad = -(-n // devices) * devices
    gather = (n_pad - n_pad // devices) * d * 4
    if grid is None or devices == 1:
        reduce = 0.0
    else:
        nodes = (grid[0] * grid[1]) if method == "interpolation" else grid[0]
        channels = d + 1 if method == "interpolation" else 1
        reduce = 2 * (devices - 1) / devices * nodes**d * channels * 4
    return {"allgather_MB": gather / 1e6, "grid_allreduce_MB": reduce / 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="70000")
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--method", default="interpolation")
    ap.add_argument("--data-dir", default=os.environ.get("TSNEJAX_DATA"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    import jax

    from tsnejax.knn import nearest_neighbors

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        found = list(saved_benchmark_data([args.n], args.data_dir, Path(tmp)))
        if not found:
            return 0
        size, X, y, path = found[0]
        labels = str(Path(tmp) / "y.npy")
        np.save(labels, y)
        knn = nearest_neighbors(X, 90, key=jax.random.key(0))
        idx, dist = str(Path(tmp) / "idx.npy"), str(Path(tmp) / "dist.npy")
        np.save(idx, np.asarray(knn.indices))
        np.save(dist, np.asarray(knn.distances))
        runs = [("plain", 1)] + [("sharded", d) for d in args.devices]
        for mode, devices in runs:
            code = RUN.format(
                path=path,
                labels=labels,
                idx=idx,
                dist=dist,
                sharded=mode == "sharded",
                method=args.method,
            )
            flags = os.environ.get("XLA_FLAGS", "")
            env = {"XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}"}
            r = run_isolated(code, env=env)
            r.update(mode=mode, n=len(X), method=args.method)
            r.update(_bytes_per_step(len(X), 2, devices, r["grid"], args.method))
            r["ms_per_iter"] = 1000 * r["optimize"] / 750
            rows.append(r)
            print(json.dumps(r), flush=True)
    base = rows[0]["optimize"]
    for r in rows:
        r["optimize_vs_plain"] = r["optimize"] / base
    cols = [
        "mode",
        "devices",
        "seconds",
        "affinities",
        "compile",
        "optimize",
        "ms_per_iter",
        "optimize_vs_plain",
        "kl",
        "acc10",
        "allgather_MB",
        "grid_allreduce_MB",
        "hlo_all_gather_MB",
        "hlo_all_reduce_MB",
        "ring_knn",
        "ring_recall",
    ]
    print_table(rows, cols)
    csv_path, _ = write_results(f"bench_shard{args.tag}", rows, machine_info())
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
