"""Ablation of the interpolation repulsion's FFT stage, per grid size.

Times ``interpolation_repulsion`` (jitted, one call = one repulsion) and variants that each undo
one of its FFT-stage choices:

- ``batched``: all channels transformed as one batch (no one-at-a-time ordering);
- ``complex_spectra``: kernel spectra from the full ``(2m)^d`` circulant sampling
  (``kernel_spectrum``) instead of the even quadrant;
- ``z_channel``: Z from a fourth inverse transform and gather instead of Parseval;
- ``before``: all three undone (the code before 2026-11-23).

Timing: the 25th percentile of ``--reps`` calls, repeated for ``--rounds`` rounds over all
variants in turn (the machine is shared and noisy); the table shows the median round. The
embedding is ``--embedding`` (an ``.npy`` of shape (n, 2), e.g. a finished MNIST-70k run) or a
synthetic 2-D mixture of ``--n`` points with ``--span`` units. Writes
``benchmarks/out/bench_grid_fft.{csv,json}``.

    python benchmarks/bench_grid_fft.py [--boxes 54 108 162 200 240] [--embedding Y.npy]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine_info, print_table, write_results


def _mixture(n: int, span: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    centers = rng.uniform(-0.4 * span, 0.4 * span, size=(10, 2))
    Y = centers[rng.integers(0, 10, n)] + rng.normal(scale=0.05 * span, size=(n, 2))
    return Y.astype(np.float32)


def _variant(Y, nb: int, *, ordered: bool, even: bool, parseval: bool):
    import jax.numpy as jnp

    from tsnejax.gradients import _grid as G
    from tsnejax.gradients._kernel import kernel_and_force
    from tsnejax.gradients.interpolation import (
        InterpolationGrid,
        even_kernel_spectra,
        node_stencil,
    )

    n, d = Y.shape
    p = 3
    m = nb * p
    lo, span = G.domain(Y)
    h = span / nb
    idx, w = node_stencil(Y, lo, h, InterpolationGrid(nb, p))
    q = G.spread(idx, w, jnp.concatenate([jnp.ones((n, 1), Y.dtype), Y], axis=1), m**d)
    if even:
        fk = even_kernel_spectra(m, h / p, d, 1.0)
    else:
        r2 = sum(o * o for o in G.circulant_offsets(m, h / p, d))
        k_z, k_f = kernel_and_force(r2, 1.0)
        fk = G.kernel_spectrum(jnp.stack([k_f, k_z]), m)
    pairs = [(c, 0) for c in range(d + 1)] + ([] if parseval else [(0, 1)])
    if ordered:
        phi, fq = G.fft_potentials(q, fk, m, pairs)
        f0 = fq[0]
    else:
        fqb = G._forward(q.T.reshape((d + 1,) + (m,) * d), m, d)
        prods = jnp.stack([fqb[c] * fk[k] for c, k in pairs])
        phi = G._inverse(prods, m, d).reshape(len(pairs), -1).T
        f0 = fqb[0]
    pot = G.gather(idx, w, phi)
    R = Y * pot[:, :1] - pot[:, 1 : d + 1]
    if parseval:
        Z = G.spectral_energy(f0, jnp.real(fk[1]), m) - n
    else:
        Z = jnp.sum(pot[:, d + 1]) - n
    return R, Z


VARIANTS = {
    "current": None,
    "batched": dict(ordered=False, even=True, parseval=True),
    "complex_spectra": dict(ordered=True, even=False, parseval=True),
    "z_channel": dict(ordered=True, even=True, parseval=False),
    "before": dict(ordered=False, even=False, parseval=False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--boxes", type=int, nargs="+", default=[54, 108, 162, 200, 240])
    parser.add_argument("--embedding", default=None, help=".npy of shape (n, 2)")
    parser.add_argument("--n", type=int, default=70000)
    parser.add_argument("--span", type=float, default=180.0)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from tsnejax.gradients.interpolation import InterpolationGrid, interpolation_repulsion

    Y_np = np.load(args.embedding) if args.embedding else _mixture(args.n, args.span)
    Y = jnp.asarray(Y_np, jnp.float32)

    def timed(f) -> float:
        jax.block_until_ready(f(Y))
        ts = []
        for _ in range(args.reps):
            t = time.perf_counter()
            jax.block_until_ready(f(Y))
            ts.append(time.perf_counter() - t)
        return 1e3 * float(np.percentile(ts, 25))

    rows = []
    for nb in args.boxes:
        fns = {}
        for name, kw in VARIANTS.items():
            if kw is None:
                fns[name] = jax.jit(
                    lambda Y, nb=nb: interpolation_repulsion(Y, 1.0, InterpolationGrid(nb, 3))
                )
            else:
                fns[name] = jax.jit(lambda Y, nb=nb, kw=kw: _variant(Y, nb, **kw))
        R0, Z0 = fns["before"](Y)
        R1, Z1 = fns["current"](Y)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):
            for name, f in fns.items():
                times[name].append(timed(f))
        row = {"n": int(Y.shape[0]), "boxes": nb, "m": 3 * nb}
        row.update({f"{k}_ms": float(np.median(v)) for k, v in times.items()})
        row["current_over_before"] = row["current_ms"] / row["before_ms"]
        row["force_rel_diff"] = float(jnp.linalg.norm(R1 - R0) / jnp.linalg.norm(R0))
        row["z_rel_diff"] = float(abs(Z1 - Z0) / abs(Z0))
        rows.append(row)
        print(row, flush=True)
    print_table(
        rows,
        ["boxes", "before_ms", "current_ms", "batched_ms", "complex_spectra_ms", "z_channel_ms"]
        + ["current_over_before", "force_rel_diff", "z_rel_diff"],
    )
    csv_path, _ = write_results("bench_grid_fft", rows, machine_info())
    print(f"wrote {csv_path}")


if __name__ == "__main__":
    main()
