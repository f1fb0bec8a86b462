"""Tune the schedule by hypergradients: learning rate and exaggeration per phase, for the lowest
KL after a fixed short budget, against the best point of the equivalent grid sweep.

Both searches run :func:`tsnejax.diff.fit` on the same data, P (perplexity 30), PCA
initialisation, ``"sgd"`` (momentum 0.8), interpolation gradient and budget (100 early +
200 main iterations by default). The four hyperparameters are ``early_learning_rate``,
``learning_rate``, ``early_exaggeration`` and ``exaggeration``.

- **Hypergradient descent**: Adam on their logarithms (step 0.15), from openTSNE's defaults
  (N/12, N, 12, 1); each step is one ``jax.value_and_grad`` of the final KL.
- **Grid**: every combination of 4 early learning rates x 4 learning rates x 2 early
  exaggerations (main-phase exaggeration 1), one forward run each.

Compute is reported as wall seconds and as forward-run equivalents (each search's time over
the time of one forward run). Writes CSV, JSON and a PNG to ``--out``.

    python experiments/hypergradient_schedule.py                 # MNIST-10k (../shared/data)
    python experiments/hypergradient_schedule.py --smoke         # digits, tiny (the slow test tier)
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsnejax import diff
from tsnejax.data import experiment_data

NAMES = ("early_learning_rate", "learning_rate", "early_exaggeration", "exaggeration")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="folder with mnist.npz")
    ap.add_argument("--n", type=int, default=10000, help="MNIST rows")
    ap.add_argument("--early-iter", type=int, default=100)
    ap.add_argument("--main-iter", type=int, default=200)
    ap.add_argument("--steps", type=int, default=12, help="hypergradient steps")
    ap.add_argument("--method", default="interpolation")
    ap.add_argument("--smoke", action="store_true", help="digits-500, 20 + 30 iterations")
    ap.add_argument("--out", default="experiments/out/hypergradient_schedule")
    args = ap.parse_args(argv)
    if args.smoke:
        args.early_iter, args.main_iter, args.steps = 20, 30, 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    X, name = experiment_data(args.n, smoke=args.smoke, data_dir=args.data_dir)
    n = len(X)
    key = jax.random.key(0)
    kw = dict(
        key=key,
        n_iter=args.main_iter,
        early_exaggeration_iter=args.early_iter,
        method=args.method,
        optimizer="sgd",
    )

    def kl_of(values: dict) -> jax.Array:
        return diff.fit(X, values, **kw)[1]

    start = {
        "early_learning_rate": n / 12,
        "learning_rate": float(n),
        "early_exaggeration": 12.0,
        "exaggeration": 1.0,
    }
    as_arrays = lambda v: {k: jnp.float32(x) for k, x in v.items()}  # noqa: E731
    kl_of(as_arrays(start)).block_until_ready()  # compile, size the grid schedule
    t0 = time.perf_counter()
    kl_default = float(kl_of(as_arrays(start)))
    forward_s = time.perf_counter() - t0

    # Hypergradient descent on log-values.
    value_and_grad = jax.value_and_grad(lambda th: kl_of({k: jnp.exp(v) for k, v in th.items()}))
    theta = {k: jnp.log(jnp.float32(v)) for k, v in start.items()}
    opt = optax.adam(0.15)
    state = opt.init(theta)
    value_and_grad(theta)[0].block_until_ready()  # compile the backward pass
    trace = []
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        kl, g = value_and_grad(theta)
        trace.append(
            {
                "step": step,
                "kl": float(kl),
                "seconds": time.perf_counter() - t0,
                **{k: float(jnp.exp(v)) for k, v in theta.items()},
            }
        )
        print(json.dumps(trace[-1]), flush=True)
        if step < args.steps:
            updates, state = opt.update(g, state)
            theta = optax.apply_updates(theta, updates)
    tuned_s = time.perf_counter() - t0
    best_tuned = min(trace, key=lambda r: r["kl"])

    # The grid sweep with the same budget.
    if args.smoke:
        axes = ([n / 24, n / 12], [n / 2, float(n)], [12.0])
    else:
        axes = ([n / 48, n / 24, n / 12, n / 6], [n / 4, n / 2, float(n), 2.0 * n], [4.0, 12.0])
    grid = []
    t0 = time.perf_counter()
    for elr, lr, ee in itertools.product(*axes):
        values = {"early_learning_rate": elr, "learning_rate": lr, "early_exaggeration": ee}
        values["exaggeration"] = 1.0
        grid.append({"kl": float(kl_of(as_arrays(values))), **values})
    grid_s = time.perf_counter() - t0
    best_grid = min(grid, key=lambda r: r["kl"] if np.isfinite(r["kl"]) else np.inf)

    summary = {
        "data": name,
        "n": n,
        "budget": f"{args.early_iter} + {args.main_iter}",
        "method": args.method,
        "kl_default_schedule": kl_default,
        "forward_seconds": forward_s,
        "tuned": best_tuned,
        "tuned_seconds": tuned_s,
        "tuned_forward_equivalents": tuned_s / forward_s,
        "hypergradient_steps": args.steps,
        "grid_best": best_grid,
        "grid_points": len(grid),
        "grid_seconds": grid_s,
        "grid_forward_equivalents": grid_s / forward_s,
        "device": str(jax.devices()[0].device_kind),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _write_csv(out / "tuning.csv", trace)
    _write_csv(out / "grid.csv", grid)
    _plot(out / "hypergradient_schedule.png", trace, grid, summary, forward_s)
    print(json.dumps(summary, indent=2))
    return 0


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plot(path: Path, trace, grid, summary, forward_s) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    steps_cost = [r["seconds"] / forward_s for r in trace]
    best = np.minimum.accumulate([r["kl"] for r in trace])
    ax.plot(steps_cost, best, "o-", label="hypergradient descent")
    grid_cost = np.arange(1, len(grid) + 1)
    ax.plot(grid_cost, np.minimum.accumulate([r["kl"] for r in grid]), "s-", label="grid sweep")
    ax.axhline(summary["kl_default_schedule"], color="gray", ls=":", label="openTSNE schedule")
    ax.set_xlabel("compute (forward-run equivalents)")
    ax.set_ylabel(f"best KL after {summary['budget']} iterations")
    ax.set_title(f"{summary['data']}: schedule tuning", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
