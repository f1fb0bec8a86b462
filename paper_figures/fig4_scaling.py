"""Pezzotti et al. (2019), Fig. 6: optimisation time and final KL against N on MNIST subsets, and
nearest-neighbour precision / recall (k = 1..30) at the largest N — tsnejax's exact,
interpolation (FIt-SNE) and splat (GPGPU-SNE field) gradients beside openTSNE's Barnes-Hut and
FFT and scikit-learn's Barnes-Hut.

Protocol: MNIST (PCA-50), random subsets of 1k ... 70k points; 1000 iterations (250 at
exaggeration 12, then 750), as in the paper; perplexity 30. tsnejax and openTSNE get the same P
(tsnejax's, exact kNN with k = 90) and the same PCA initialisation and time only the
optimisation (tsnejax's compilation shown apart); scikit-learn gets the same kNN graph
(``metric="precomputed"``: each point itself plus k = 91 neighbours, squared distances as its
Euclidean path uses) and the same initialisation and is timed for its whole fit
(its P from those distances takes well under a second). Every final embedding's KL is the exact
KL against the same P. Exact O(N^2) gradients run up to ``--exact-max`` points, scikit-learn up
to ``--sklearn-max`` (its Barnes-Hut on 2 cores). Runs one after another in one process on a
shared machine: compare ratios, not absolute seconds.

    python paper_figures/fig4_scaling.py                 # ~20 min on 2 cores
    python paper_figures/fig4_scaling.py --smoke         # a digits subset, ~30 s

Writes fig4_scaling.png, fig4_scaling.csv (one row per method and N) and
fig4_scaling_precision_recall.csv (curves at the largest N).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mnist, parser, subset, write_csv  # noqa: E402

SIZES = [1000, 2500, 5000, 10000, 20000, 40000, 70000]
METHODS = ("tsnejax exact", "tsnejax interpolation", "tsnejax splat")
PEERS = ("openTSNE BH", "openTSNE FFT", "scikit-learn BH")


def tsnejax_run(method, P, Y0, iters):
    import jax

    from tsnejax import TSNEConfig, fit

    config = TSNEConfig.make(negative_gradient_method=method, **iters)
    res = fit(jax.random.key(0), None, config, affinities=P, initialization=Y0)
    t = res.timings
    return np.asarray(res.embedding), t["optimize"], t["compile"]


def opentsne_run(method, P, Y0, iters):
    import openTSNE

    from tsnejax.affinity import to_scipy

    aff = openTSNE.affinity.PrecomputedAffinities(to_scipy(P))
    t0 = time.perf_counter()
    E = openTSNE.TSNE(
        negative_gradient_method=method,
        n_jobs=2,
        random_state=0,
        early_exaggeration_iter=iters["early_exaggeration_iter"],
        n_iter=iters["n_iter"],
    ).fit(affinities=aff, initialization=np.asarray(Y0, np.float64))
    return np.asarray(E, np.float32), time.perf_counter() - t0, 0.0


def sklearn_run(X, Y0, iters):
    import scipy.sparse as sp
    from sklearn.manifold import TSNE

    from tsnejax.knn import exact_knn

    n = len(X)
    k = min(n - 1, 91)  # 3 * perplexity + 1, what scikit-learn uses
    g = exact_knn(X, k)
    # Each row starts with the point itself at distance 0: scikit-learn's kneighbors(X=None)
    # drops a row's self entry, or, when there is none, its nearest neighbour.
    idx = np.concatenate([np.arange(n)[:, None], np.asarray(g.indices)], axis=1)
    dist = np.concatenate([np.zeros((n, 1)), np.asarray(g.distances, np.float64)], axis=1)
    # Squared: with metric="euclidean" scikit-learn squares its kNN distances before the
    # perplexity search; a precomputed graph is taken as is.
    sq = dist.ravel() ** 2
    D = sp.csr_matrix((sq, idx.ravel(), np.arange(0, n * (k + 1) + 1, k + 1)), shape=(n, n))
    t0 = time.perf_counter()
    Y = TSNE(
        metric="precomputed",
        init=np.asarray(Y0, np.float32),
        learning_rate="auto",
        max_iter=iters["early_exaggeration_iter"] + iters["n_iter"],
        method="barnes_hut",
        n_jobs=2,
        random_state=0,
    ).fit_transform(D)
    return np.asarray(Y, np.float32), time.perf_counter() - t0, 0.0


def run_method(method, X, P, Y0, iters):
    """``(Y, optimisation seconds, compile seconds)`` of one method on one subset."""
    if method.startswith("tsnejax"):
        return tsnejax_run(method.split()[1], P, Y0, iters)
    if method.startswith("openTSNE"):
        return opentsne_run(method.split()[1].lower(), P, Y0, iters)
    return sklearn_run(X, Y0, iters)


def plot(rows, curves, path, title):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6))
    colour = {m: f"C{i}" for i, m in enumerate((*METHODS, *PEERS))}  # same in every panel
    for method in (*METHODS, *PEERS):
        pts = sorted((r["n"], r["optimize_s"], r["kl"]) for r in rows if r["method"] == method)
        if not pts:
            continue
        n, s, kl = zip(*pts, strict=True)
        style = "-" if method.startswith("tsnejax") else "--"
        axes[0].loglog(n, s, style, marker="o", color=colour[method], label=method)
        axes[1].semilogx(n, kl, style, marker="o", color=colour[method], label=method)
    axes[0].set_xlabel("N (points)")
    axes[0].set_ylabel("optimisation time, s")
    axes[0].set_title("time vs N")
    axes[1].set_xlabel("N (points)")
    axes[1].set_ylabel("KL(P || Q), exact, same P")
    axes[1].set_title("final KL vs N")
    for name, c in curves.items():
        style = "-" if name.startswith("tsnejax") else "--"
        k = np.arange(1, len(c["precision"]) + 1)
        axes[2].plot(k, c["precision"], style, marker=".", color=colour[name], label=name)
        axes[3].plot(k, c["recall"], style, marker=".", color=colour[name], label=name)
    n_pr = max(r["n"] for r in rows)
    for ax, what in zip(axes[2:], ("precision", "recall"), strict=True):
        ax.set_xlabel("k (embedding neighbours)")
        ax.set_ylabel(f"NN {what}")
        ax.set_title(f"NN {what} at N = {n_pr} (K = 30 input neighbours)")
        ax.set_ylim(0, 1)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _merge(out: Path, rows: list[dict], pr_rows: list[dict]):
    """Earlier rows of methods not re-run now, plus the new ones; curves rebuilt from both."""
    import csv

    def read(name):
        path = out / name
        if not path.exists():
            return []
        with open(path) as fh:
            return list(csv.DictReader(fh))

    new = {r["method"] for r in rows}
    old = [r for r in read("fig4_scaling.csv") if r["method"] not in new]
    for r in old:
        for key in ("n", "iterations"):
            r[key] = int(r[key])
        for key in ("optimize_s", "compile_s", "kl"):
            r[key] = float(r[key])
    new_pr = {r["method"] for r in pr_rows}
    old_pr = [r for r in read("fig4_scaling_precision_recall.csv") if r["method"] not in new_pr]
    pr_rows = old_pr + pr_rows
    curves: dict = {}
    for r in pr_rows:
        c = curves.setdefault(r["method"], {"precision": [], "recall": []})
        c["precision"].append(float(r["precision"]))
        c["recall"].append(float(r["recall"]))
    return old + rows, pr_rows, curves


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    ap.add_argument("--exact-max", type=int, default=5000, help="largest N for tsnejax exact")
    ap.add_argument("--sklearn-max", type=int, default=10000, help="largest N for scikit-learn")
    ap.add_argument(
        "--methods",
        nargs="*",
        default=None,
        help="run only these (names as in the CSV); none with --update: just re-plot",
    )
    ap.add_argument(
        "--update",
        action="store_true",
        help="keep the other methods' rows of an existing fig4_scaling.csv and re-plot",
    )
    args = ap.parse_args(argv)
    import jax

    import tsnejax
    from tsnejax.gradients import exact_kl_divergence
    from tsnejax.metrics import nn_precision_recall

    data = mnist(args.data_dir, args.smoke)
    if data is None:
        return 0
    X_all, y_all, name = data
    sizes = [400] if args.smoke else sorted(args.sizes)  # smoke: every code path, once
    # scikit-learn refuses fewer than 250 iterations in all.
    iters = {"early_exaggeration_iter": 50 if args.smoke else 250}
    iters["n_iter"] = 200 if args.smoke else 750
    try:
        import openTSNE  # noqa: F401

        peers = True
    except ImportError:
        print("openTSNE not installed: the peer columns are left out (pip install openTSNE)")
        peers = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kl = jax.jit(exact_kl_divergence)
    rows, curves = [], {}
    limits = {"tsnejax exact": args.exact_max, "scikit-learn BH": args.sklearn_max}
    for n in sizes:
        todo = [
            m
            for m in list(METHODS) + (list(PEERS) if peers else [])
            if (args.methods is None or m in args.methods) and n <= limits.get(m, n)
        ]
        if not todo:
            continue
        X, _ = subset(X_all, y_all, n)
        P = tsnejax.perplexity_affinities(tsnejax.nearest_neighbors(X, 90, method="exact"), 30.0)
        Y0 = tsnejax.init.pca(X)
        for method in todo:
            Y, seconds, compile_s = run_method(method, X, P, Y0, iters)
            row = {
                "data": name,
                "n": n,
                "method": method,
                "iterations": iters["early_exaggeration_iter"] + iters["n_iter"],
                "optimize_s": seconds,
                "compile_s": compile_s,
                "kl": float(kl(jax.numpy.asarray(Y), P, 1.0)),
            }
            rows.append(row)
            print(row, flush=True)
            if n == sizes[-1]:
                pr = nn_precision_recall(X, Y, 30)
                curves[method] = {"precision": pr.precision, "recall": pr.recall}
    pr_rows = [
        {"method": m, "k": k + 1, "precision": c["precision"][k], "recall": c["recall"][k]}
        for m, c in curves.items()
        for k in range(len(c["precision"]))
    ]
    if args.update:
        rows, pr_rows, curves = _merge(out, rows, pr_rows)
    write_csv(out / "fig4_scaling.csv", rows)
    write_csv(out / "fig4_scaling_precision_recall.csv", pr_rows)
    title = (
        f"Pezzotti et al. 2019, Fig. 6: {name}, "
        f"{iters['early_exaggeration_iter'] + iters['n_iter']} iterations, same P and PCA init "
        "(tsnejax solid, peers dashed; 2-core CPU)"
    )
    plot(rows, curves, out / "fig4_scaling.png", title)
    print(f"wrote {out / 'fig4_scaling.png'} and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
