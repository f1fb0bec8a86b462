"""Perplexity x degrees-of-freedom gallery: small perplexities and heavy tails (dof < 1) show
finer cluster structure; large perplexities keep more global structure; dof -> inf (the
Gaussian kernel of SNE) crowds the clusters together (van der Maaten & Hinton 2008; Kobak &
Berens 2019; Kobak, Linderman, Steinerberger, Kluger & Berens 2019).

A random 10k subset of MNIST (PCA-50; perplexity 300 needs k = 900 neighbours, which on all
70k rows is beyond this figure's budget), openTSNE defaults otherwise (PCA init, 250 + 500
iterations, learning rate auto, interpolation gradient), perplexity 10, 30, 100, 300 x dof 0.5,
1, inf (the exact Gaussian limit w = exp(-d^2)), seed 0, run as one tsnejax sweep. Per
embedding: KL (against that dof's kernel), 10-NN accuracy, KNC (4 classes), CPD and the number
of pieces per digit (connected components of each digit's own 10-NN graph).

    python paper_figures/fig6_perplexity_dof.py            # ~6 min on 2 cores
    python paper_figures/fig6_perplexity_dof.py --smoke    # digits, seconds

Writes fig6_perplexity_dof.png and .csv into paper_figures/out/ (or --out).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, run_grid, save, subset, sweep_setup  # noqa: E402

PERPLEXITIES = [10, 30, 100, 300]
DOFS = [0.5, 1.0, math.inf]


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="MNIST rows (random subset)")
    args = ap.parse_args(argv)
    setup = sweep_setup(args)  # before JAX starts: one device per core
    if setup is None:
        return 0
    X, y, name, out = setup
    import jax

    from tsnejax.metrics import class_fragmentation, cpd_score, knc_score, knn_accuracy

    perplexities = PERPLEXITIES
    if args.smoke:
        fixed = {"early_exaggeration_iter": 30, "n_iter": 30}
        perplexities = [10, 100]
    else:
        X, y = subset(X, y, args.n)
        name = f"MNIST random {len(X) // 1000}k subset (PCA-50)"
        fixed = {}
    grid = {"perplexity": perplexities, "dof": DOFS}
    runs = {}
    for base, Y in run_grid(X, y, "fig6", fixed, grid, [0]):
        frag = class_fragmentation(Y, y)
        row = {
            "data": name,
            **base,
            "knn_accuracy_10": knn_accuracy(Y, y),
            "knc_4": knc_score(X, Y, y, 4),
            "cpd": cpd_score(X, Y, 1000, key=jax.random.key(0)),
            **frag,
        }
        runs[(float(row["perplexity"]), float(row["dof"]))] = (row, Y)
        print(row, flush=True)

    rows, panels = [], []
    for p in perplexities:  # one row per perplexity, one column per dof
        for dof in DOFS:
            row, Y = runs[(float(p), float(dof))]
            rows.append(row)
            dof_name = "inf (Gaussian)" if math.isinf(dof) else f"{dof:g}"
            panels.append(
                (
                    f"perplexity {p}, dof {dof_name}: KL {row['kl']:.2f}\n"
                    f"10-NN acc {row['knn_accuracy_10']:.3f}, KNC {row['knc_4']:.2f}, "
                    f"CPD {row['cpd']:.2f}\n"
                    f"{row['fragments_per_class']:.1f} pieces/digit",
                    Y,
                )
            )
    title = f"Perplexity x degrees of freedom\n{name}"
    return save(out, "fig6_perplexity_dof", rows, panels, y, title, ncols=len(DOFS))


if __name__ == "__main__":
    sys.exit(main())
