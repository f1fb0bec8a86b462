"""Kobak & Berens (2019), initialisation: PCA initialisation preserves global structure better
than random initialisation and makes runs reproducible; random initialisation places the
clusters differently from seed to seed. Kobak & Linderman (2021): so does a spectral
initialisation (the diffusion map of P, openTSNE's ``"spectral"``).

MNIST-70k (PCA-50), openTSNE defaults (perplexity 30, exact kNN at this N, 250 iterations at
exaggeration 12 then 500, learning rate auto), initialisation PCA, spectral or random (all std
1e-4), seeds 0-4, run as one tsnejax sweep. Per embedding: KL, KNC (4 nearest classes), CPD
(Spearman correlation of 1000 random points' pairwise distances); per initialisation: Procrustes
disparity of every pair of seeds (0 = same up to rotation, reflection and scale; 1 = unrelated).

    python paper_figures/fig3_initialization.py            # ~20 min on 2 cores
    python paper_figures/fig3_initialization.py --smoke    # digits, seconds

Writes fig3_initialization.png and .csv (one row per embedding) and
fig3_initialization_stability.csv (one row per initialisation) into paper_figures/out/.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, run_grid, save, sweep_setup, write_csv  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.split("\n")[0]).parse_args(argv)
    setup = sweep_setup(args)  # before JAX starts: one device per core
    if setup is None:
        return 0
    X, y, name, out = setup
    import jax

    from tsnejax.metrics import cpd_score, knc_score, procrustes_disparity

    fixed = {"early_exaggeration_iter": 50, "n_iter": 50} if args.smoke else {}
    seeds = [0, 1] if args.smoke else [0, 1, 2, 3, 4]
    inits = ["pca", "spectral", "random"]
    runs = run_grid(X, y, "fig3", fixed, {"initialization": inits}, seeds)

    rows, by_init = [], {}
    for base, Y in runs:
        row = {
            "data": name,
            **base,
            "knc_4": knc_score(X, Y, y, 4),
            "cpd": cpd_score(X, Y, 1000, key=jax.random.key(0)),
        }
        rows.append(row)
        by_init.setdefault(row["initialization"], []).append((row, Y))
        print(row, flush=True)

    stability = []
    for init, members in by_init.items():
        pairs = [procrustes_disparity(a[1], b[1]) for a, b in itertools.combinations(members, 2)]
        stats = {
            "data": name,
            "initialization": init,
            "seeds": len(members),
            "disparity_mean": float(np.mean(pairs)),
            "disparity_min": float(np.min(pairs)),
            "disparity_max": float(np.max(pairs)),
        }
        for key in ("kl", "knc_4", "cpd"):
            values = [r[key] for r, _ in members]
            stats[f"{key}_mean"] = float(np.mean(values))
            stats[f"{key}_sd"] = float(np.std(values, ddof=1))
        stability.append(stats)
        print(stats, flush=True)
    write_csv(out / "fig3_initialization_stability.csv", stability)

    # Three columns (PCA | spectral | random), one row per seed.
    panels = []
    for seed in seeds:
        for init in inits:
            row, Y = next(m for m in by_init[init] if m[0]["seed"] == seed)
            panels.append(
                (
                    f"{init} init, seed {seed}: KL {row['kl']:.3f}\n"
                    f"KNC {row['knc_4']:.2f}, CPD {row['cpd']:.2f}",
                    Y,
                )
            )
    disp = ", ".join(f"{s['initialization']} {s['disparity_mean']:.3f}" for s in stability)
    title = (
        f"Kobak & Berens 2019, Kobak & Linderman 2021: initialisation, {len(seeds)} seeds\n"
        f"{name}; mean Procrustes disparity between seeds: {disp}"
    )
    return save(out, "fig3_initialization", rows, panels, y, title, ncols=len(inits))


if __name__ == "__main__":
    sys.exit(main())
