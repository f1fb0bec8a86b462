"""Attraction: tsnejax's form against the previous one, interleaved in one process.

``tsnejax.gradients.attraction`` gathers each neighbour's coordinates two at a time, packed as
one complex number (``tsnejax._lanes.complex_lanes``); the form it replaced gathered every
coordinate from its own column (reproduced here). Both run on P of the first N MNIST rows (PCA-50,
perplexity 30; beyond 70k the jittered copies of ``bench_end_to_end.py``) and a random
embedding (span ~100), alternating call by call so a slow spell of this shared host hits both;
reported: median and best ms per call, the ratio new/previous (medians) and the largest
difference between the two forms relative to the largest force.

    python benchmarks/bench_attraction.py [--sizes 5000 20000 70000 250000] [--dims 2 3]
        [--reps 20] [--data-dir DIR] [--tag T]

Writes ``benchmarks/out/bench_attraction{tag}.{csv,json}``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import found_benchmark_data, machine_info, print_table, write_results


def previous_form(Y, P, dof=1.0):
    """The attraction as it was: one gather per coordinate and neighbour."""
    import jax.numpy as jnp

    from tsnejax._blocks import map_row_blocks
    from tsnejax.gradients._attraction import _row_block
    from tsnejax.gradients._kernel import inv_base
    from tsnejax.gradients._scatter import add_at

    cols = [Y[:, c] for c in range(Y.shape[1])]

    def part(own, nbr, w):
        diffs = [own[:, c : c + 1] - jnp.take(y, nbr, mode="clip") for c, y in enumerate(cols)]
        coef = w * inv_base(sum(d * d for d in diffs), dof)
        return jnp.stack([jnp.sum(coef * d, axis=1) for d in diffs], axis=1)

    main = map_row_blocks(part, (Y, P.neighbors, P.weights), _row_block(Y.shape[0]))
    own = jnp.stack([jnp.take(y, P.extra_rows, mode="clip") for y in cols], axis=1)
    extra = part(own, P.extra_neighbors, P.extra_weights)
    return main + add_at(P.extra_rows, extra, Y.shape[0], False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["5000", "20000", "70000"])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    import jax

    import tsnejax
    from tsnejax.gradients import attraction

    forms = {"tsnejax": jax.jit(attraction), "previous": jax.jit(previous_form)}
    rows = []
    for size in args.sizes:
        data = found_benchmark_data(size, args.data_dir)
        if data is None:
            continue
        P = tsnejax.perplexity_affinities(tsnejax.nearest_neighbors(data[0], 90), 30.0)
        for dim in args.dims:
            n = P.n_points
            Y = jax.random.normal(jax.random.key(0), (n, dim)) * 30.0
            out = {k: np.asarray(jax.block_until_ready(f(Y, P))) for k, f in forms.items()}
            times: dict[str, list[float]] = {k: [] for k in forms}
            for _ in range(args.reps):
                for k, f in forms.items():
                    t = time.perf_counter()
                    jax.block_until_ready(f(Y, P))
                    times[k].append(time.perf_counter() - t)
            row = {"n": n, "dim": dim, "width": int(P.neighbors.shape[1])}
            for k in forms:
                row[f"{k}_ms"] = 1e3 * float(np.median(times[k]))
                row[f"{k}_best_ms"] = 1e3 * float(np.min(times[k]))
            row["ratio"] = row["tsnejax_ms"] / row["previous_ms"]
            ref = out["previous"]
            row["rel_diff"] = float(np.abs(out["tsnejax"] - ref).max() / np.abs(ref).max())
            rows.append(row)
            print_table([row], list(row))
    if not rows:
        return
    print()
    print_table(rows, list(rows[0]))
    paths = write_results(f"bench_attraction{args.tag}", rows, machine_info())
    print("wrote", *paths)


if __name__ == "__main__":
    main()
