"""Stopping rules against their peers, same run: scikit-learn's ``min_grad_norm`` and
``n_iter_without_progress`` (``stopping="sklearn"``) and opt-SNE (``stopping="optsne"``).

- ``sklearn``: for each ``--thresholds`` value, scikit-learn's ``TSNE(init="pca",
  min_grad_norm=t)`` and tsnejax's ``TSNE(preset="sklearn", min_grad_norm=t)``: where early
  exaggeration ended, where the run ended (scikit-learn's ``n_iter_`` is the last index, so
  +1), the final KL and seconds. Where they differ, the gradient norms crossed the threshold at
  different checks (two P's, two gradient approximations).
- ``optsne``: tsnejax's fixed 250 + 500 against ``stopping="optsne"``: iterations, KL, seconds.
- ``batch``: a 4-trial batched ``run.optimize`` (the CPU's ``lax.map``; exact and interpolation
  gradients) of 750 iterations with no trial stopped, and with a ``stop=`` check freezing three
  of them at 300: a frozen trial runs no steps, so the second costs about 1 + 3 x 300/750
  trials' worth (warm times).
- ``optsne`` batched: four learning rates under opt-SNE as four ``fit`` calls and as one
  ``fit_batch`` (``"map"`` and ``"vmap"``), where each trial switches phase and stops where
  its rule says: where each ended, the KL against the single fits, warm seconds; with the
  default gradient (exact on digits) and the interpolation, whose one grid the batch shares.

    python benchmarks/bench_stopping.py      # digits, ~1 min
    python benchmarks/bench_stopping.py --size 10000 --thresholds 1e-2
    python benchmarks/bench_stopping.py --size 10000 --only ruled   # gpu.sh stage "stopping"

Writes benchmarks/out/bench_stopping{tag}.{csv,json}.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    found_benchmark_data,
    machine_info,
    print_table,
    size_parser,
    write_results,
)


def _sklearn_early_end(log: str) -> int | None:
    """Where scikit-learn's early exaggeration ended, from its verbose report."""
    m = re.search(r"KL divergence after (\d+) iterations with early exaggeration", log)
    return int(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    ap = size_parser(__doc__)
    ap.add_argument("--thresholds", nargs="+", type=float, default=[1e-2, 5e-3, 3e-3, 1e-3])
    ap.add_argument(
        "--only",
        choices=["all", "ruled"],
        default="all",
        help="'ruled': only the opt-SNE fits against one fit_batch (the GPU stage)",
    )
    args = ap.parse_args(argv)

    import contextlib
    import io

    import numpy as np
    from sklearn.manifold import TSNE as SKTSNE

    import tsnejax

    data = found_benchmark_data(args.size, args.data_dir)
    if data is None:
        return 0
    X, _ = data
    rows = []
    if args.only == "ruled":
        return _finish(args, X, _ruled_batch_rows(X))
    tsnejax.TSNE(random_state=0, preset="sklearn", n_iter=10).fit(X)  # compile once
    for t in args.thresholds:
        out = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out):
            ref = SKTSNE(init="pca", min_grad_norm=t, random_state=0, verbose=2).fit(
                X.astype(np.float64)
            )
        rows.append(
            {
                "rule": "sklearn",
                "min_grad_norm": t,
                "library": "scikit-learn",
                "early_end": _sklearn_early_end(out.getvalue()),
                "end": int(ref.n_iter_) + 1,
                "kl": float(ref.kl_divergence_),
                "seconds": time.perf_counter() - t0,
            }
        )
        t0 = time.perf_counter()
        est = tsnejax.TSNE(random_state=0, preset="sklearn", min_grad_norm=t).fit(X)
        rows.append(
            {
                "rule": "sklearn",
                "min_grad_norm": t,
                "library": "tsnejax",
                "early_end": est.early_exaggeration_iter_,
                "end": est.n_iter_,
                "kl": est.kl_divergence_,
                "seconds": time.perf_counter() - t0,
            }
        )
        print_table(rows[-2:], list(rows[-1]))
    for stopping in ("fixed", "optsne"):
        t0 = time.perf_counter()
        est = tsnejax.TSNE(random_state=0, stopping=stopping).fit(X)
        rows.append(
            {
                "rule": stopping,
                "library": "tsnejax",
                "early_end": est.early_exaggeration_iter_,
                "end": est.n_iter_,
                "kl": est.kl_divergence_,
                "seconds": time.perf_counter() - t0,
            }
        )
    rows += _batch_rows(X)
    rows += _ruled_batch_rows(X)
    return _finish(args, X, rows)


def _finish(args, X, rows: list[dict]) -> int:
    cols = ["rule", "min_grad_norm", "library", "early_end", "end", "kl", "kl_vs_fit", "seconds"]
    print()
    print_table(rows, [c for c in cols if any(c in r for r in rows)])
    meta = {**machine_info(), "size": args.size, "n": int(X.shape[0]), "only": args.only}
    csv_path, json_path = write_results(f"bench_stopping{args.tag}", rows, meta)
    print(f"wrote {csv_path} and {json_path}")
    return 0


def _batch_rows(X) -> list[dict]:
    import jax.numpy as jnp
    import numpy as np

    from tsnejax.affinity import perplexity_affinities
    from tsnejax.gradients import get_backend
    from tsnejax.init import pca
    from tsnejax.knn import exact_knn
    from tsnejax.optim import make_optimizer
    from tsnejax.run import build_step, init_state, optimize
    from tsnejax.schedules import Phases

    n = len(X)
    P = perplexity_affinities(exact_knn(X, 90), 30.0)
    opt = make_optimizer("classic", learning_rate=1.0, momentum=0.8)
    early = {"exaggeration": 12.0, "learning_rate": n / 12, "momentum": 0.8}
    table = Phases.of({0: early, 250: {"exaggeration": 1.0, "learning_rate": float(n)}})
    state = init_state(jnp.stack([pca(X)] * 4), opt)

    def three_at_300(t, kl, grad_norm):
        return np.array([t >= 300] * 3 + [False])

    rows = []
    for method in ("exact", "interpolation"):
        step = build_step(get_backend(method), opt)
        for label, kw in (
            ("batch, none stopped", {}),
            ("batch, 3 of 4 at 300", {"stop": three_at_300}),
        ):
            phases = Phases.stack([table] * 4)
            optimize(step, state, P, 750, phases=phases, **kw)  # compile
            t0 = time.perf_counter()
            r = optimize(step, state, P, 750, phases=phases, **kw)
            rows.append(
                {
                    "rule": label,
                    "library": f"tsnejax {method}",
                    "end": int(np.asarray(r.state.iteration).max()),
                    "kl": float(np.nanmax(r.kl_history[-1][1])),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print_table(rows[-1:], list(rows[-1]))
    return rows


def _ruled_batch_rows(X) -> list[dict]:
    """opt-SNE over four learning rates: each its own ``fit``, then one ``fit_batch`` per
    batch mode, in which each trial switches phase and stops where its rule says (warm); with
    the default gradient method and with the interpolation (whose grid the batch shares)."""
    import jax
    import numpy as np

    import tsnejax

    key = jax.random.key(0)
    rates = [200.0, 500.0, 1000.0, "auto"]
    rows = []
    for method in ("auto", "interpolation"):
        configs = [
            tsnejax.TSNEConfig.make(
                stopping="optsne", learning_rate=lr, negative_gradient_method=method
            )
            for lr in rates
        ]
        label = f"optsne {method}, lr " + "/".join(str(r) for r in rates)

        def singles(configs=configs):
            return [tsnejax.fit(key, X, c) for c in configs]

        singles()  # compile
        t0 = time.perf_counter()
        ref = singles()
        rows.append(
            {
                "rule": label,
                "library": "tsnejax fit x4",
                "early_end": "/".join(str(r.early_exaggeration_iter) for r in ref),
                "end": "/".join(str(r.total_iter) for r in ref),
                "kl": float(np.mean([r.kl_divergence for r in ref])),
                "kl_vs_fit": 0.0,
                "seconds": time.perf_counter() - t0,
            }
        )
        kl_ref = np.array([r.kl_divergence for r in ref])
        for mode in ("map", "vmap"):
            tsnejax.fit_batch([key] * len(configs), X, configs, batch=mode)  # compile
            t0 = time.perf_counter()
            b = tsnejax.fit_batch([key] * len(configs), X, configs, batch=mode)
            rows.append(
                {
                    "rule": label,
                    "library": f"tsnejax fit_batch {mode}",
                    "early_end": "/".join(str(int(e)) for e in b.early_exaggeration_iter),
                    "end": "/".join(str(int(e)) for e in b.trial_iter),
                    "kl": float(np.mean(b.kl_divergence)),
                    "kl_vs_fit": float(np.max(np.abs(b.kl_divergence - kl_ref) / kl_ref)),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print_table(rows[-2:], list(rows[-1]))
    return rows


if __name__ == "__main__":
    sys.exit(main())
