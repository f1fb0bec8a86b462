"""Kobak & Berens (2019), learning rate: with random initialisation, lr = 200 splits MNIST
digit clusters into pieces; lr = N/12 does not.

MNIST-70k (PCA-50), random initialisation (std 1e-4), perplexity 30, early exaggeration 12 for
250 iterations then 500, constant learning rate 200 or N/12, seeds 0 and 1, FIt-SNE's
conventions (the paper's tool: momentum 0.5 then 0.8, its gains rule; ``--preset`` to change),
run as one tsnejax sweep. Quantified per embedding: KL, leave-one-out 10-NN accuracy, KNC
(k = 4 classes) and class fragmentation (connected components of each digit's own 10-NN graph
holding >= 1 % of the digit; 1.0 = every digit in one piece), beside a 2 x 2 panel.

    python paper_figures/fig1_learning_rate.py            # ~4 min on 2 cores
    python paper_figures/fig1_learning_rate.py --smoke    # digits, seconds

Writes fig1_learning_rate.png and .csv into paper_figures/out/ (or --out).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, run_grid, save, sweep_setup  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__.split("\n")[0])
    ap.add_argument("--preset", default="fitsne", help="peer conventions (default: fitsne)")
    args = ap.parse_args(argv)
    setup = sweep_setup(args)  # before JAX starts: one device per core
    if setup is None:
        return 0
    X, y, name, out = setup
    from tsnejax.metrics import class_fragmentation, knc_score, knn_accuracy

    iters = {"early_exaggeration_iter": 50, "n_iter": 50} if args.smoke else {}
    fixed = {"initialization": "random", "preset": args.preset, **iters}
    runs = run_grid(X, y, "fig1", fixed, {"learning_rate": [200, "N/12"]}, [0, 1])
    rows, panels = [], []
    for base, Y in runs:
        frag = class_fragmentation(Y, y)
        row = {
            "data": name,
            "preset": args.preset,
            **base,
            "knn_accuracy_10": knn_accuracy(Y, y),
            "knc_4": knc_score(X, Y, y, 4),
            **frag,
        }
        rows.append(row)
        panels.append(
            (
                f"lr={row['learning_rate']}, seed {row['seed']}: KL {row['kl']:.3f}\n"
                f"{frag['fragments_per_class']:.1f} pieces/digit, "
                f"{100 * frag['outside_largest']:.1f}% outside largest",
                Y,
            )
        )
        print(row, flush=True)
    title = f"Kobak & Berens 2019: learning rate\nrandom init, {args.preset} conventions, {name}"
    return save(out, "fig1_learning_rate", rows, panels, y, title)


if __name__ == "__main__":
    sys.exit(main())
