"""Grid gradients: tsnejax interpolation and splat vs openTSNE FFT, per iteration and end to end.

For each N (MNIST PCA-50 rows; N above 70k repeats rows with 1e-3 jitter), both tools get the
same P (tsnejax's, exact kNN, perplexity 30) and the same PCA initialisation. Reported:

- per-iteration time (attraction + repulsion + update, 50 iterations inside one call) from the
  late-phase embedding that tsnejax's full run ends with: tsnejax interpolation, tsnejax splat,
  openTSNE FFT (``n_jobs=2``);
- the full default schedule (250 + 500 iterations): optimisation time with tsnejax's
  compilation shown apart, number of compiles, exact KL of both final embeddings (same P) and
  10-NN label accuracy.

Writes ``benchmarks/out/bench_gradient.{csv,json}``.

    python benchmarks/bench_gradient.py [--sizes 10000 70000] [--full-at 70000] [--tag T]
    python benchmarks/bench_gradient.py --sizes 250000 --full-at --tag 250k
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import machine_info, print_table, write_results


def _mnist50(data_dir, n):
    from tsnejax.data import shared_data_dir

    path = shared_data_dir(data_dir) / "mnist.npz"
    if not path.exists():
        sys.exit(f"skipped: {path} not found (pass --data-dir or set TSNEJAX_DATA)")
    d = np.load(path)
    X, y = d["X"].astype(np.float32), d["y"]
    Xc = X - X.mean(0)
    _, V = np.linalg.eigh(Xc.T @ Xc)
    X50 = (Xc @ V[:, ::-1][:, :50]).astype(np.float32)
    if n <= len(X50):
        return X50[:n], y[:n]
    reps = -(-n // len(X50))
    rng = np.random.default_rng(0)
    Xr = np.concatenate([X50] * reps)[:n]
    Xr = Xr + rng.normal(scale=1e-3 * X50.std(), size=Xr.shape).astype(np.float32)
    return Xr, np.concatenate([y] * reps)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 70000])
    parser.add_argument("--full-at", type=int, nargs="*", default=[10000, 70000])
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument(
        "--neighbors",
        choices=("auto", "exact", "pynndescent"),
        default="auto",
        help="kNN method; auto = exact up to 100k rows (use exact on a GPU)",
    )
    parser.add_argument("--opentsne-jobs", type=int, default=2, help="openTSNE n_jobs")
    parser.add_argument("--no-peers", action="store_true", help="leave openTSNE out")
    args = parser.parse_args()

    import jax

    if not args.no_peers:
        import openTSNE

    import tsnejax
    from tsnejax.affinity import to_scipy
    from tsnejax.gradients import exact_kl_divergence, get_backend
    from tsnejax.metrics import knn_accuracy
    from tsnejax.optim import classic
    from tsnejax.run import build_step, optimize

    rows = []
    for n in args.sizes:
        X, y = _mnist50(args.data_dir, n)
        method = args.neighbors
        if method == "auto":
            method = "exact" if n <= 100_000 else "pynndescent"
        knn = tsnejax.nearest_neighbors(X, 90, method=method)
        P = tsnejax.perplexity_affinities(knn, 30.0)
        Ps = to_scipy(P)
        Y0 = np.asarray(tsnejax.init.pca(X), np.float64)
        row: dict = {"n": n, "opentsne_jobs": args.opentsne_jobs}

        # Full default schedule, tsnejax interpolation.
        t = time.perf_counter()
        res = tsnejax.fit(
            jax.random.key(0),
            None,
            tsnejax.TSNEConfig.make(negative_gradient_method="interpolation"),
            affinities=P,
            initialization=Y0,
        )
        wall = time.perf_counter() - t
        Yt = res.embedding
        if n in args.full_at:
            row.update(
                tsnejax_full_wall_s=wall,
                tsnejax_full_optimize_s=res.timings["optimize"],
                tsnejax_full_compile_s=res.timings["compile"],
                tsnejax_n_compiles=res.n_compiles,
                tsnejax_final_boxes=res.grids[-1][0],
                tsnejax_kl_exact=float(jax.jit(exact_kl_divergence)(Yt, P, 1.0)),
                tsnejax_acc10=knn_accuracy(Yt, y, 10),
            )

        # Per-iteration, late phase, from tsnejax's final state.
        for name, backend in (
            ("interpolation", get_backend("interpolation")),
            ("splat", get_backend("splat")),
        ):
            if name == "interpolation":
                # Continue the full run itself: its stepper, gains and velocity (learning rate
                # N / 1 and momentum 0.8 after early exaggeration, as below).
                step, state = res.stepper, res.state
            else:
                opt = classic(float(n), 0.8)
                step = build_step(backend, opt)
                state = tsnejax.init_state(jax.numpy.asarray(Yt), opt)
            warm = optimize(step, state, P, 50, kl=False)  # compiles this grid
            timed = optimize(step, warm.state, P, 50, kl=False)
            row[f"{name}_ms_per_iter"] = 1e3 * timed.run_seconds / 50
            row[f"{name}_grid"] = str(tuple(timed.grids[-1]))

        rows.append(row)
        if args.no_peers:
            print(row, flush=True)
            continue
        aff = openTSNE.affinity.PrecomputedAffinities(Ps)
        emb = openTSNE.TSNEEmbedding(
            np.asarray(Yt, np.float64),
            aff,
            negative_gradient_method="fft",
            n_jobs=args.opentsne_jobs,
            random_state=0,
        )
        t = time.perf_counter()
        emb.optimize(n_iter=50, learning_rate=float(n), momentum=0.8, inplace=True)
        row["opentsne_fft_ms_per_iter"] = 1e3 * (time.perf_counter() - t) / 50
        row["interp_over_opentsne_per_iter"] = (
            row["interpolation_ms_per_iter"] / row["opentsne_fft_ms_per_iter"]
        )

        if n in args.full_at:
            t = time.perf_counter()
            E = openTSNE.TSNE(
                negative_gradient_method="fft", n_jobs=args.opentsne_jobs, random_state=0
            ).fit(affinities=aff, initialization=Y0)
            ot = time.perf_counter() - t
            Eo = np.asarray(E, np.float32)
            row.update(
                opentsne_full_s=ot,
                opentsne_kl_reported=float(E.kl_divergence),
                opentsne_kl_exact=float(jax.jit(exact_kl_divergence)(Eo, P, 1.0)),
                opentsne_acc10=knn_accuracy(Eo, y, 10),
                optimize_ratio_vs_opentsne=row["tsnejax_full_optimize_s"] / ot,
            )
        print(row, flush=True)

    print_table(
        rows,
        [
            "n",
            "interpolation_ms_per_iter",
            "splat_ms_per_iter",
            "opentsne_fft_ms_per_iter",
            "interp_over_opentsne_per_iter",
        ],
    )
    full = [r for r in rows if "tsnejax_full_optimize_s" in r]
    if full:
        print()
        print_table(
            full,
            [
                "n",
                "tsnejax_full_optimize_s",
                "tsnejax_full_compile_s",
                "tsnejax_n_compiles",
                "opentsne_full_s",
                "optimize_ratio_vs_opentsne",
                "tsnejax_kl_exact",
                "opentsne_kl_exact",
                "tsnejax_acc10",
                "opentsne_acc10",
            ],
        )
    name = "bench_gradient" + (f"_{args.tag}" if args.tag else "")
    csv_path, _ = write_results(name, rows, machine_info())
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
