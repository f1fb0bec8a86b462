"""Sensitivity of KL and neighbourhood preservation to the perplexity, along a perplexity sweep:
d(metric)/d(perplexity) by forward-mode differentiation through the whole run, beside the
finite differences of the sweep's own points.

At each perplexity :func:`tsnejax.diff.fit` runs the default schedule (250 + 500 iterations,
``"sgd"``, learning rate N/12 then N, interpolation); one ``jax.jvp`` along the perplexity
gives the derivatives of the final KL and of the soft 10-NN recall
(:func:`tsnejax.metrics.soft_knn_recall`, temperature 0.1) at once. The hard NN precision at
k = 10 is reported beside the soft one (how well the surrogate tracks it). Writes CSV, JSON
and a PNG to ``--out``.

    python experiments/perplexity_sensitivity.py            # MNIST-10k (../shared/data)
    python experiments/perplexity_sensitivity.py --smoke    # digits, tiny (the slow test tier)
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax import diff
from tsnejax.data import experiment_data
from tsnejax.metrics import nn_precision_recall, soft_knn_recall

K = 10  # neighbourhood size of the recall metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="folder with mnist.npz")
    ap.add_argument("--n", type=int, default=10000, help="MNIST rows")
    ap.add_argument("--perplexities", nargs="+", type=float, default=[5, 10, 20, 30, 40, 50])
    ap.add_argument("--n-neighbors", type=int, default=150)
    ap.add_argument("--method", default="interpolation")
    ap.add_argument("--local-step", type=float, default=1.0, help="local finite-difference step")
    ap.add_argument("--smoke", action="store_true", help="digits-500, 3 perplexities, 40 its")
    ap.add_argument("--out", default="experiments/out/perplexity_sensitivity")
    args = ap.parse_args(argv)
    iters = dict(early_exaggeration_iter=250, n_iter=500)
    if args.smoke:
        args.perplexities, args.n_neighbors = [10.0, 15.0, 20.0], 60
        iters = dict(early_exaggeration_iter=20, n_iter=20)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    X, name = experiment_data(args.n, smoke=args.smoke, data_dir=args.data_dir)
    key = jax.random.key(0)
    kw = dict(key=key, method=args.method, optimizer="sgd", n_neighbors=args.n_neighbors, **iters)
    true = diff.prepare(X, key=key, n_neighbors=args.n_neighbors).indices[:, :K]

    rows = []
    for label, main_rate in (("openTSNE (N)", float(len(X))), ("N/4", len(X) / 4)):
        rates = {"early_learning_rate": len(X) / 12, "learning_rate": main_rate}

        def metrics(p: jax.Array, rates=rates):
            Y, kl = diff.fit(X, {**rates, "perplexity": p}, **kw)
            return kl, soft_knn_recall(Y, true), Y

        block = []
        for p in args.perplexities:
            t0 = time.perf_counter()
            (kl, soft, Y), (dkl, dsoft, _) = jax.jvp(
                metrics, (jnp.float32(p),), (jnp.float32(1.0),)
            )
            jax.block_until_ready((kl, soft, dkl, dsoft))
            seconds = time.perf_counter() - t0
            # a local central difference (+-h) tells a wrong derivative from a curved function
            h = args.local_step
            up, down = metrics(jnp.float32(p + h))[0], metrics(jnp.float32(p - h))[0]
            block.append(
                {
                    "schedule": label,
                    "perplexity": p,
                    "kl": float(kl),
                    "dkl_dperplexity": float(dkl),
                    "fd_local_kl": (float(up) - float(down)) / (2 * h),
                    "soft_recall_10": float(soft),
                    "dsoft_dperplexity": float(dsoft),
                    "nn_precision_10": float(
                        nn_precision_recall(X, np.asarray(Y), K).precision[-1]
                    ),
                    "jvp_seconds": seconds,
                }
            )
            print(json.dumps(block[-1]), flush=True)
        for i, r in enumerate(block):  # central differences of the sweep's own points
            if 0 < i < len(block) - 1:
                a, b = block[i - 1], block[i + 1]
                dp = b["perplexity"] - a["perplexity"]
                r["fd_sweep_kl"] = (b["kl"] - a["kl"]) / dp
                r["fd_sweep_soft"] = (b["soft_recall_10"] - a["soft_recall_10"]) / dp
                r["fd_sweep_nn_precision"] = (b["nn_precision_10"] - a["nn_precision_10"]) / dp
        rows += block
    soft = np.array([r["soft_recall_10"] for r in rows])
    hard = np.array([r["nn_precision_10"] for r in rows])
    agreement = {}
    for label in dict.fromkeys(r["schedule"] for r in rows):
        rel = [
            abs(r["dkl_dperplexity"] - r["fd_local_kl"]) / max(abs(r["fd_local_kl"]), 1e-12)
            for r in rows
            if r["schedule"] == label
        ]
        agreement[label] = {"median_rel_diff_jvp_vs_local_fd": float(np.median(rel))}
    summary = {
        "data": name,
        "schedule": f"{iters['early_exaggeration_iter']} + {iters['n_iter']}",
        "method": args.method,
        "local_step": args.local_step,
        "soft_vs_hard_pearson": float(np.corrcoef(soft, hard)[0, 1]) if len(rows) > 2 else None,
        "soft_minus_hard_mean": float(np.mean(soft - hard)),
        "agreement": agreement,
        "rows": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "sensitivity.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    _plot(out / "perplexity_sensitivity.png", rows, name)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    return 0


def _plot(path: Path, rows: list[dict], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["schedule"] for r in rows))
    fig, axes = plt.subplots(len(labels), 2, figsize=(9, 3.2 * len(labels)), squeeze=False)
    for row_axes, label in zip(axes, labels, strict=True):
        block = [r for r in rows if r["schedule"] == label]
        p = np.array([r["perplexity"] for r in block])
        half = 0.35 * np.min(np.diff(p)) if len(p) > 1 else 1.0
        for ax, key, dkey, what in (
            (row_axes[0], "kl", "dkl_dperplexity", "KL"),
            (row_axes[1], "soft_recall_10", "dsoft_dperplexity", "soft 10-NN recall"),
        ):
            v = np.array([r[key] for r in block])
            ax.plot(p, v, "o", label=what)
            for pi, vi, di in zip(p, v, [r[dkey] for r in block], strict=True):
                ax.plot([pi - half, pi + half], [vi - di * half, vi + di * half], "r-", lw=1.5)
            ax.set_ylim(v.min() - 0.1 * np.ptp(v) - 1e-3, v.max() + 0.1 * np.ptp(v) + 1e-3)
            ax.set_xlabel("perplexity")
            ax.set_ylabel(what)
            ax.grid(alpha=0.3)
        row_axes[1].plot(p, [r["nn_precision_10"] for r in block], "s--", label="NN precision 10")
        row_axes[1].legend(fontsize=7)
        row_axes[0].set_title(
            f"{name}, main-phase learning rate {label}: values and d/dperplexity (red)",
            fontsize=8,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
