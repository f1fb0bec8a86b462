"""Exact repulsion: tsnejax's form against the previous one, interleaved in one process.

``tsnejax.gradients.exact_repulsion`` (Z's kernel recomputed in a loop of its own) against the
form it replaced (one kernel block, materialised by XLA, feeding the force sums and Z; columns
transposed once and the first two axes' force sums one complex lane sum in both), reproduced
here. Earlier steps: ``docs/gradients.md``. Both run on the same random
embedding (N points, span ~200, as late in a run), alternating call by call so a slow spell of
this shared host hits both; reported: median ms per call, the ratio new/previous and each
form's largest force error relative to a float64 NumPy reference (N <= 6000).

    python benchmarks/bench_exact.py [--sizes 1797 3000 5000 12000] [--dims 2 3] [--reps 15]
        [--tag T]

Writes ``benchmarks/out/bench_exact{tag}.{csv,json}``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine_info, print_table, write_results


def previous_form(Y, dof=1.0):
    """The exact repulsion as it was before Z's kernel got a loop of its own: one kernel
    block per row block feeds both the force sums and Z (so XLA materialises it)."""
    import jax
    import jax.numpy as jnp

    from tsnejax._lanes import lane_sum
    from tsnejax.gradients._kernel import kernel_and_force
    from tsnejax.gradients.exact import _blocks, _force_sums, auto_block

    n, dim = Y.shape
    bs, n_blocks = _blocks(n, auto_block(n))
    Yp = jnp.pad(Y, ((0, bs * n_blocks - n), (0, 0)))
    cols = jax.lax.optimization_barrier(Y.T)

    def one_block(start):
        Yb = jax.lax.dynamic_slice_in_dim(Yp, start, bs)
        diffs = [Yb[:, c : c + 1] - cols[c][None, :] for c in range(dim)]
        w, w2 = kernel_and_force(sum(d * d for d in diffs), dof)
        return _force_sums(w2, diffs), lane_sum(w)

    rep, z = jax.lax.map(one_block, jnp.arange(n_blocks) * bs)
    return rep.reshape(-1, dim)[:n], jnp.sum(z.reshape(-1)[:n]) - n


def _reference(Y: np.ndarray) -> np.ndarray:
    Y = Y.astype(np.float64)
    out = np.zeros_like(Y)
    for s in range(0, len(Y), 512):
        d = Y[s : s + 512, None] - Y[None]
        w = 1.0 / (1.0 + (d * d).sum(-1))
        out[s : s + 512] = ((w * w)[..., None] * d).sum(1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1797, 3000, 5000, 12000])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    import jax

    from tsnejax.gradients import exact_repulsion

    forms = {"tsnejax": jax.jit(exact_repulsion), "previous": jax.jit(previous_form)}
    rows = []
    for n in args.sizes:
        for dim in args.dims:
            Y = jax.random.normal(jax.random.key(0), (n, dim)) * 30.0 + 7.0
            out = {k: jax.block_until_ready(f(Y)) for k, f in forms.items()}
            times: dict[str, list[float]] = {k: [] for k in forms}
            for _ in range(args.reps):
                for k, f in forms.items():
                    t = time.perf_counter()
                    jax.block_until_ready(f(Y))
                    times[k].append(time.perf_counter() - t)
            ref = _reference(np.asarray(Y)) if n <= 6000 else None
            row = {"n": n, "dim": dim}
            for k in forms:
                row[f"{k}_ms"] = 1e3 * float(np.median(times[k]))
                if ref is not None:
                    err = np.max(np.abs(np.asarray(out[k][0]) - ref)) / np.max(np.abs(ref))
                    row[f"{k}_rel_err"] = float(err)
            row["ratio"] = row["tsnejax_ms"] / row["previous_ms"]
            rows.append(row)
            print_table([row], list(row))
    print()
    cols = ["n", "dim", "tsnejax_ms", "previous_ms", "ratio", "tsnejax_rel_err", "previous_rel_err"]
    print_table(rows, cols)
    paths = write_results(f"bench_exact{args.tag}", rows, machine_info())
    print("wrote", *paths)


if __name__ == "__main__":
    main()
