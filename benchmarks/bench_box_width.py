"""Interpolation accuracy against box width, and what the 3-D box cap costs a whole run.

Part 1: the exact gradient's final embedding of the data (digits by default; 2-D and 3-D), then
the interpolated repulsion ``R/Z`` (p = 3) on grids whose boxes are ``width`` embedding units
wide, against the exact one: relative L2 force error, relative Z error and milliseconds per
evaluation (median of 5 after a warm-up). Widths whose 3-D grid exceeds ``--max-boxes-3d``
boxes per axis are skipped (a 3-D grid of b boxes runs FFTs of (6b)^3 points).

Part 2 (``--runs``): whole default runs in 3-D with each of ``--methods`` (default
``"exact"`` and ``"interpolation"``, the latter capped at 32 boxes per axis): exact KL of each
final embedding, seconds of optimisation, whether it warned (``WIDE_BOXES``) and the grids it
ran; ``exact-last:K`` runs interpolation and its last K iterations exact. ``--no-repulsion``
skips part 1 (it needs an exact 2-D and 3-D run of the data).

    python benchmarks/bench_box_width.py [--n digits] [--runs] [--methods exact adaptive]

Writes ``benchmarks/out/bench_box_width{tag}.{csv,json}``.
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np
from _common import benchmark_data, machine_info, median_ms, print_table, write_results


def _method(name: str):
    """``"adaptive:R"``: the adaptive method with ``exact_ratio=R``; other names as they are."""
    if name.startswith("adaptive:"):
        from tsnejax.gradients import adaptive_backend

        return adaptive_backend(exact_ratio=float(name.split(":")[1]))
    return name


def _exact_last(X, last: int):
    """The default 3-D run with interpolation, its last ``last`` iterations with the exact
    gradient (same optimizer state and phase table): ``(Y, P, optimise seconds, grids)``."""
    import time

    import jax

    import tsnejax
    from tsnejax.build import stepper_for
    from tsnejax.run import optimize

    cfg = tsnejax.TSNEConfig.make(n_components=3, negative_gradient_method="interpolation")
    first = tsnejax.fit(jax.random.key(0), X, cfg.replace(n_iter=cfg.schedule.n_iter - last))
    exact, _ = stepper_for(cfg.replace(negative_gradient_method="exact"), len(X))
    t0 = time.perf_counter()
    res = optimize(exact, first.state, first.affinities, last, phases=first.phases)
    seconds = first.timings["optimize"] + time.perf_counter() - t0
    return np.asarray(res.state.embedding), first.affinities, seconds, [*first.grids, None]


def _grid_name(grid) -> str:
    if getattr(grid, "exact", False):
        return "exact"
    return str(getattr(getattr(grid, "grid", grid), "n_boxes", grid))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="digits")
    ap.add_argument("--widths", type=float, nargs="+", default=[0.75, 1, 1.5, 2, 3, 4])
    ap.add_argument("--max-boxes-3d", type=int, default=48)
    ap.add_argument("--runs", action="store_true", help="also whole 3-D runs (minutes)")
    ap.add_argument("--methods", nargs="+", default=["exact", "interpolation"])
    ap.add_argument("--no-repulsion", action="store_true", help="skip part 1")
    ap.add_argument("--data-dir", default=os.environ.get("TSNEJAX_DATA"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    import jax
    import jax.numpy as jnp

    import tsnejax
    from tsnejax.gradients.exact import exact_repulsion
    from tsnejax.gradients.interpolation import InterpolationGrid, interpolation_repulsion
    from tsnejax.metrics import kl_divergence

    data = benchmark_data(args.n, args.data_dir)
    if data is None:
        print(f"MNIST not found for --n {args.n}: using digits")
        data = benchmark_data("digits")
    X = data[0]
    rows = []
    for d in () if args.no_repulsion else (2, 3):
        fit = tsnejax.TSNE(n_components=d, random_state=0, negative_gradient_method="exact")
        Y = jnp.asarray(fit.fit(X).embedding_)
        span = float(Y.max() - Y.min())
        R0, Z0 = jax.jit(lambda Y: exact_repulsion(Y, 1.0))(Y)
        F0 = R0 / Z0
        for width in args.widths:
            boxes = int(np.ceil(span / width))
            if d == 3 and boxes > args.max_boxes_3d:
                continue
            grid = InterpolationGrid(boxes, 3)
            f = jax.jit(lambda Y, grid=grid: interpolation_repulsion(Y, 1.0, grid))
            R, Z = f(Y)
            rows.append(
                dict(
                    part="repulsion",
                    n=len(X),
                    dim=d,
                    span=span,
                    width=width,
                    boxes=boxes,
                    force_error=float(jnp.linalg.norm(R / Z - F0) / jnp.linalg.norm(F0)),
                    z_error=abs(float(Z) - float(Z0)) / float(Z0),
                    ms=median_ms(f, Y, repeats=5),
                )
            )
            print_table(rows[-1:], list(rows[-1]))
    if args.runs:
        for method in args.methods:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if method.startswith("exact-last:"):
                    Y, P, seconds, grids = _exact_last(X, int(method.split(":")[1]))
                else:
                    est = tsnejax.TSNE(
                        n_components=3, random_state=0, negative_gradient_method=_method(method)
                    )
                    est.fit(X)
                    Y, P, seconds = est.embedding_, est.affinities_, est.timings_["optimize"]
                    grids = est.grids_
            rows.append(
                dict(
                    part="run",
                    n=len(X),
                    dim=3,
                    method=method,
                    span=float(Y.max() - Y.min()),
                    exact_kl=kl_divergence(P, Y),
                    optimize_s=seconds,
                    warned=any("max_boxes" in str(w.message) for w in caught),
                    grids=" ".join(_grid_name(g) for g in grids),
                )
            )
            print_table(rows[-1:], list(rows[-1]))
    cols = ["part", "dim", "span", "width", "boxes", "force_error", "z_error", "ms"]
    print_table([r for r in rows if r["part"] == "repulsion"], cols)
    runs = [r for r in rows if r["part"] == "run"]
    if runs:
        print_table(runs, ["n", "method", "span", "exact_kl", "optimize_s", "warned"])
    paths = write_results(f"bench_box_width{args.tag}", rows, machine_info())
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
