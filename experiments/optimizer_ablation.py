"""Optimizer ablation: the classic rule vs Optax optimizers on MNIST-10k (PNG + CSV).

Every optimizer starts from the same P (perplexity 30, exact kNN on PCA-50) and the same PCA
initialisation, runs the default schedule (250 iterations at exaggeration 12, then 500) with
the interpolation gradient, and reports KL every 10 iterations, the final exact KL, the
leave-one-out 10-NN accuracy and the wall time.

    python experiments/optimizer_ablation.py                 # MNIST-10k from ../shared/data
    python experiments/optimizer_ablation.py --smoke         # digits, 100 iterations (CI)
    python experiments/optimizer_ablation.py --optimizer adam:learning_rate=2.0 ...
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import jax
import numpy as np

import tsnejax
from tsnejax.data import shared_data_dir
from tsnejax.knn import nearest_neighbors
from tsnejax.metrics import knn_accuracy
from tsnejax.pipeline import TSNEConfig, fit

DEFAULT_OPTIMIZERS = ["classic", "sgd", "adam", "rmsprop", "adabelief", "lion"]


def load(args) -> tuple[np.ndarray, np.ndarray, str]:
    if args.smoke:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X.astype(np.float32), y, "digits"
    path = shared_data_dir(args.data_dir) / "mnist.npz"
    if not path.exists():
        sys.exit(f"{path} not found: pass --data-dir or set TSNEJAX_DATA (or use --smoke).")
    from sklearn.decomposition import PCA

    with np.load(path) as z:
        X, y = z["X"][: args.n].astype(np.float32), z["y"][: args.n]
    return PCA(50, random_state=0).fit_transform(X).astype(np.float32), y, f"MNIST-{args.n}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", default=None, help="folder with mnist.npz (default ../shared/data)"
    )
    ap.add_argument("--n", type=int, default=10000, help="MNIST rows to use")
    ap.add_argument("--optimizer", nargs="*", default=DEFAULT_OPTIMIZERS, help="name[:k=v,...]")
    ap.add_argument("--method", default="interpolation", help="negative_gradient_method")
    ap.add_argument("--smoke", action="store_true", help="digits, 50 + 50 iterations")
    ap.add_argument("--out", default="experiments/out/optimizer_ablation")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    X, y, name = load(args)
    key = jax.random.key(0)
    base = dict(chunk_size=10, negative_gradient_method=args.method)
    if args.smoke:
        base.update(early_exaggeration_iter=50, n_iter=50)
    knn = nearest_neighbors(X, 90, method="exact")
    P = tsnejax.perplexity_affinities(knn, 30.0)
    Y0 = tsnejax.init.pca(X, 2)
    kl_exact = jax.jit(tsnejax.exact_kl_divergence)

    curves, summary = [], []
    for spec in args.optimizer:
        config = TSNEConfig.make(optimizer=spec, **base)  # "adam:learning_rate=3" parsed there
        lr = config.optimizer.learning_rate
        # Warm-up run compiles; the timed run reuses nothing from it but the XLA cache.
        t0 = time.perf_counter()
        res = fit(key, None, config, affinities=P, initialization=Y0)
        wall = time.perf_counter() - t0
        row = {
            "optimizer": spec,
            "data": name,
            "n": len(X),
            "learning_rate": lr,
            "iterations": res.total_iter,
            "kl_final": res.kl_divergence,
            "kl_exact": float(kl_exact(res.state.embedding, P)),
            "knn_accuracy": knn_accuracy(res.embedding, y, k=10),
            "optimize_s": res.timings["optimize"],
            "compile_s": res.timings["compile"],
            "wall_s": wall,
        }
        summary.append(row)
        curves += [{"optimizer": spec, "iteration": i, "kl": v} for i, v in res.kl_history]
        np.save(out / f"embedding_{_slug(spec)}.npy", res.embedding)
        print(
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )

    _write_csv(out / "summary.csv", summary)
    _write_csv(out / "kl_curves.csv", curves)
    _plot(
        out / "optimizer_ablation.png",
        summary,
        curves,
        y,
        out,
        name,
        config.schedule.early_exaggeration_iter,
    )
    print(f"wrote {out}/summary.csv, kl_curves.csv, optimizer_ablation.png")
    return 0


def _slug(spec: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in spec)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plot(path, summary, curves, y, out, name, early_iter) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summary)
    fig = plt.figure(figsize=(4 * max(n, 3), 8), layout="constrained")
    grid = fig.add_gridspec(2, n)
    ax = fig.add_subplot(grid[0, :])
    for row in summary:
        pts = [(c["iteration"], c["kl"]) for c in curves if c["optimizer"] == row["optimizer"]]
        it, kl = zip(*pts, strict=True)
        ax.plot(it, kl, label=f"{row['optimizer']} (final KL {row['kl_exact']:.3f})")
    ax.axvline(early_iter, color="grey", ls=":", lw=1, label="end of early exaggeration")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("KL(P || Q) [nats]")
    ax.set_title(f"Optimizer ablation on {name}: KL divergence vs iteration")
    ax.legend()
    for i, row in enumerate(summary):
        a = fig.add_subplot(grid[1, i])
        Y = np.load(out / f"embedding_{_slug(row['optimizer'])}.npy")
        a.scatter(Y[:, 0], Y[:, 1], c=y, cmap="tab10", s=0.5, rasterized=True)
        a.set_title(
            f"{row['optimizer']}\nKL {row['kl_exact']:.3f}, 10-NN acc {row['knn_accuracy']:.3f}"
        )
        a.set_xticks([])
        a.set_yticks([])
        a.set_aspect("equal", "datalim")
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
