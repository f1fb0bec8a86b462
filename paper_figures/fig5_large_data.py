"""openTSNE's large-data recipe (its "embedding large data sets" notebook, Policar et al. 2019):
embed a random sample, place every other point at its nearest sample point, then optimise all
points from there — against plain t-SNE and t-SNE with exaggeration 4, with openTSNE's own
default run beside them.

Data: MNIST-70k (PCA-50; sample 25k) and the 10k-cell mouse-brain subset (10x E18 brain cells,
the notebook's data-set family; its ``X_pca50``; sample 2.5k; no labels, so its panels are
coloured by k-means (10) clusters of ``X_pca50``, only to follow the same cells across panels).
Every tsnejax variant uses openTSNE's defaults (perplexity 30, 250 iterations at exaggeration 12
then 500, learning rate auto); the recipe's final phase runs at exaggeration 1. Per run: KL
(each tool against its own P), 10-NN accuracy (MNIST), wall time and time per phase.

    python paper_figures/fig5_large_data.py            # ~8 min on 2 cores
    python paper_figures/fig5_large_data.py --smoke    # digits, seconds

Writes fig5_large_data.csv and one PNG per data set (fig5_large_data_<data>.png).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mnist, parser, write_csv  # noqa: E402


def mouse_brain(data_dir: str | None):
    from sklearn.cluster import KMeans

    from tsnejax.data import shared_data_dir

    src = shared_data_dir(data_dir) / "mouse_brain_10x_10k_subset.npz"
    if not src.exists():
        print(f"skipped mouse brain: {src} not found (set TSNEJAX_DATA or --data-dir)")
        return None
    with np.load(src) as z:
        X = z["X_pca50"].astype(np.float32)
    clusters = KMeans(10, n_init=4, random_state=0).fit_predict(X)
    return X, clusters, "mouse brain 10k (PCA-50)", False


def runs(X, labels, has_labels: bool, n_sample: int, iters: dict):
    """Yield ``(variant, row, Y)`` for the four runs on one data set."""
    import jax

    from tsnejax import TSNEConfig, fit
    from tsnejax.large_data import sample_transform_optimize
    from tsnejax.metrics import knn_accuracy

    def quality(Y):
        return {"knn_accuracy_10": knn_accuracy(Y, labels)} if has_labels else {}

    key = jax.random.key(0)
    for variant, config in (
        ("t-SNE", TSNEConfig.make(**iters)),
        ("exaggeration 4", TSNEConfig.make(exaggeration=4.0, **iters)),
    ):
        t0 = time.perf_counter()
        res = fit(key, X, config)
        wall = time.perf_counter() - t0
        phases = {f"{k}_s": v for k, v in res.timings.items() if k != "total"}
        row = {"kl": res.kl_divergence, "seconds": wall, **quality(res.embedding), **phases}
        yield variant, row, np.asarray(res.embedding)

    t0 = time.perf_counter()
    big = sample_transform_optimize(key, X, TSNEConfig.make(**iters), n_sample=n_sample)
    wall = time.perf_counter() - t0
    Y = np.asarray(big.result.embedding)
    phases = {f"{k}_s": v for k, v in big.timings.items() if k != "total"}
    row = {
        "kl": big.result.kl_divergence,
        "seconds": wall,
        "sample_kl": big.sample_result.kl_divergence,
        **quality(Y),
        **phases,
    }
    yield f"sample {n_sample} -> place -> optimise", row, Y

    try:
        from openTSNE import TSNE
    except ImportError:
        print("openTSNE not installed: its column is left out (pip install openTSNE)")
        return
    t0 = time.perf_counter()
    E = TSNE(
        n_jobs=2,
        random_state=0,
        n_iter=iters.get("n_iter", 500),
        early_exaggeration_iter=iters.get("early_exaggeration_iter", 250),
    ).fit(X.astype(np.float64))
    wall = time.perf_counter() - t0
    Y = np.asarray(E, np.float32)
    yield "openTSNE 1.0 default", {"kl": float(E.kl_divergence), "seconds": wall, **quality(Y)}, Y


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.split("\n")[0]).parse_args(argv)
    from tsnejax.plot import plot_small_multiples

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = []
    m = mnist(args.data_dir, args.smoke)
    if m is not None:
        X, y, name = m
        datasets.append(("digits" if args.smoke else "mnist", X, y, name, True))
    if not args.smoke:
        mb = mouse_brain(args.data_dir)
        if mb is not None:
            datasets.append(("mouse_brain", *mb))
    if not datasets:
        return 0
    iters = {"early_exaggeration_iter": 50, "n_iter": 50} if args.smoke else {}
    rows = []
    for stem, X, labels, name, has_labels in datasets:
        n_sample = max(len(X) // 4, 100) if len(X) < 40_000 else 25_000
        panels = []
        for variant, row, Y in runs(X, labels, has_labels, n_sample, iters):
            row = {"data": name, "variant": variant, "n": len(X), **row}
            rows.append(row)
            print(row, flush=True)
            acc = f", 10-NN acc {row['knn_accuracy_10']:.3f}" if has_labels else ""
            panels.append((f"{variant}\nKL {row['kl']:.3f}{acc}, {row['seconds']:.0f} s", Y))
        colour = "digit" if has_labels else "k-means cluster of X_pca50 (for reference only)"
        path = out / f"fig5_large_data_{stem}.png"
        plot_small_multiples(
            panels,
            labels,
            path,
            ncols=len(panels),
            title=f"Large-data recipe vs plain t-SNE vs exaggeration 4: {name}\ncolour: {colour}",
        )
        print(f"wrote {path}")
    write_csv(out / "fig5_large_data.csv", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
