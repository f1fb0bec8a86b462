"""Command line: ``tsnejax embed``, ``metrics``, ``sweep`` and ``report``.

Errors in the input or options print one line (``tsnejax: error: ...``) and exit with 1.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tsnejax._io import atomic_path, atomic_save_npy, atomic_write_json

__all__ = ["main"]


def _lr(value: str) -> float | str:
    """A number, ``auto`` or an expression in N (``N/12``), checked by the config."""
    try:
        return float(value)
    except ValueError:
        return value


def _count(value: str) -> int:
    """A whole number >= 0 (``--metrics-queries -5`` ran as if 0 without a word)."""
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _metric_fields(spec: str) -> dict[str, Any]:
    """``--metric minkowski:p=3`` -> ``metric="minkowski", metric_params={"p": 3}``."""
    name, _, rest = spec.partition(":")
    if not rest:
        return {"metric": name}
    from tsnejax._spec import parse_spec

    _, params = parse_spec(spec, "metric", (name,))
    return {"metric": name, "metric_params": params}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsnejax", description="t-SNE in JAX.")
    sub = parser.add_subparsers(dest="verb", required=True)
    e = sub.add_parser("embed", help="embed a data set; writes embedding.npy, metrics.json, PNG")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="bundled data set (default: digits)")
    src.add_argument(
        "--input",
        default=None,
        help="features: .npy, .npz (X[, y]), .csv/.tsv/.txt or .h5ad (AnnData)",
    )
    e.add_argument(
        "--labels", default=None, help="labels: .npy/.npz, .txt (one per line) or a .csv table"
    )
    e.add_argument(
        "--use-rep", default=None, help=".h5ad: obsm key or X (default: X_pca when present)"
    )
    e.add_argument("--labels-key", default=None, help=".h5ad: obs column to colour by")
    e.add_argument(
        "--save-h5ad",
        action="store_true",
        help=".h5ad: also write OUT/<name>.h5ad with obsm['X_tsne'] and uns['tsne']",
    )
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument(
        "--perplexity",
        type=_lr,
        nargs="+",
        default=[30.0],
        help="one value, several for multiscale affinities (5 30: the mean of their P's), or "
        "'pbic': the least pBIC of tsnejax.select_perplexity's candidates",
    )
    e.add_argument("--n-components", type=int, default=2)
    e.add_argument("--early-exaggeration", type=float, default=12.0)
    e.add_argument("--early-exaggeration-iter", type=int, default=None, help="(preset: 250)")
    e.add_argument("--n-iter", type=int, default=None, help="main-phase iterations (preset)")
    e.add_argument("--exaggeration", type=float, default=1.0)
    e.add_argument(
        "--learning-rate", type=_lr, default="auto", help="number, auto, or an expression: N/12"
    )
    e.add_argument("--dof", type=float, default=1.0)
    e.add_argument("--initialization", default="pca", help="pca | spectral | random")
    e.add_argument(
        "--method",
        default="auto",
        help="negative gradient method: auto | exact | interpolation | splat | adaptive",
    )
    e.add_argument(
        "--neighbors", default="auto", help="auto | exact | ivf | faiss | faiss_hnsw | pynndescent"
    )
    e.add_argument(
        "--metric",
        default="euclidean",
        help="input distance: euclidean | cosine | correlation | precomputed (--input is the "
        "square distance matrix) | a scikit-learn name, with arguments: minkowski:p=3",
    )
    e.add_argument(
        "--preset", default="opentsne", help="peer conventions: opentsne | fitsne | sklearn"
    )
    e.add_argument(
        "--optimizer",
        default="classic",
        help="classic | sgd | adam | nadam | rmsprop | adabelief | lion, with optional "
        "arguments: adam:learning_rate=2,b1=0.8",
    )
    e.add_argument(
        "--stopping",
        default="fixed",
        help="fixed | optsne (opt-SNE automatic phase lengths) | sklearn (scikit-learn's "
        "min_grad_norm and n_iter_without_progress)",
    )
    e.add_argument("--min-grad-norm", type=float, default=None, help="with --stopping sklearn")
    e.add_argument(
        "--n-iter-without-progress", type=int, default=None, help="with --stopping sklearn"
    )
    e.add_argument("--seed", type=int, default=0, help="seed for jax.random.key")
    e.add_argument("--verbose", action="store_true", help="progress bar with KL")
    e.add_argument(
        "--checkpoint",
        default=None,
        help="state file (.npz): saved every --checkpoint-every iterations; if it exists the "
        "run resumes from it",
    )
    e.add_argument(
        "--checkpoint-every", type=int, default=50, help="iterations between saves (any)"
    )
    e.add_argument(
        "--metrics-queries",
        type=_count,
        default=5000,
        help="with labels, NN precision/recall over this many random points (0: skip)",
    )
    _add_sweep_verbs(sub)
    m = sub.add_parser("metrics", help="score an embedding; writes metrics.json and a PNG")
    m.add_argument(
        "--input", required=True, help="input features: .npy, .npz (X[, y]) or .csv/.tsv/.txt"
    )
    m.add_argument("--embedding", required=True, help="embedding: .npy/.npz/.csv/.txt, same rows")
    m.add_argument("--labels", default=None, help="labels file (.npy/.npz/.txt)")
    m.add_argument("--out", required=True, help="output folder")
    m.add_argument(
        "--k-max", type=int, default=None, help="ground-truth neighbours K (30, or n - 1)"
    )
    m.add_argument("--n-queries", type=int, default=None, help="random subset (default: all)")
    m.add_argument("--seed", type=int, default=0, help="seed for the subsets")
    m.add_argument(
        "--metric",
        default="euclidean",
        choices=("euclidean", "cosine", "correlation"),
        help="distance of the input's neighbours (the embedding's are Euclidean)",
    )
    return parser


def _add_sweep_verbs(sub: Any) -> None:
    s = sub.add_parser("sweep", help="run a hyperparameter sweep (TOML or .py get_config())")
    s.add_argument("config", help="sweep spec: .toml, or .py defining get_config()")
    s.add_argument("--out", required=True, help="sweep folder (one sub-folder per trial)")
    s.add_argument("--resume", action="store_true", help="continue a folder, skip finished")
    s.add_argument("--smoke", action="store_true", help="apply the spec's [smoke] overrides")
    s.add_argument("--mode", default=None, help="auto | vmap | sequential (default: spec's)")
    s.add_argument("--batch-size", type=int, default=None, help="trials per vmapped batch")
    s.add_argument("--data-dir", default=None, help="folder for relative data paths")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--report", action="store_true", help="also write the report at the end")
    s.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="save each running trial or batch every N iterations (OUT/checkpoints/); a "
        "--resume after a kill goes on from there",
    )
    s.add_argument(
        "--host-devices",
        type=int,
        default=None,
        help="on CPU, split the cores into this many JAX devices and shard trials over them "
        "(default: one per core; 1 = a single device, sequential trials)",
    )
    r = sub.add_parser("report", help="table and plots of a sweep folder")
    r.add_argument("dir", help="sweep folder written by 'tsnejax sweep'")


def _sweep(args: argparse.Namespace) -> str:
    from tsnejax.sweep import load_spec, run_sweep

    spec = load_spec(args.config)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    s = run_sweep(
        spec,
        args.out,
        resume=args.resume,
        smoke=args.smoke,
        mode=args.mode,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        checkpoint_every=args.checkpoint_every,
    )
    msg = (
        f"wrote {s.root}/results.csv ({s.n_trials} trials: {s.n_run} run, {s.n_skipped} "
        f"already finished, {s.n_elsewhere} run by other processes, {s.n_diverged} diverged; "
        f"mode {s.mode}; {s.seconds:.1f} s)"
    )
    if args.report:
        from tsnejax.sweep.report import make_report

        make_report(args.out)
        msg += f"; report in {s.root}/report/"
    return msg


def _report(args: argparse.Namespace) -> str:
    from tsnejax.sweep.report import make_report

    written = make_report(args.dir)
    return f"wrote {len(written)} files in {Path(args.dir) / 'report'}: " + ", ".join(
        p.name for p in written.values()
    )


def _writable_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".tsnejax_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--out {str(out)!r} is not a writable folder ({err.strerror}).") from err
    return out


def _embed(args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import scipy.sparse as sp

    from tsnejax.config import TSNEConfig
    from tsnejax.data import load_array, load_dataset, load_labels
    from tsnejax.knn_metric import FAST_METRICS, sparse_data
    from tsnejax.metrics import evaluate, knn_accuracy
    from tsnejax.perplexity_selection import select_perplexity
    from tsnejax.pipeline import fit
    from tsnejax.plot import plot_embedding, plot_precision_recall
    from tsnejax.stopping import SKLEARN_SETTINGS

    out = _writable_dir(args.out)
    t0 = time.perf_counter()
    adata = None
    h5ad = args.input is not None and str(args.input).lower().endswith(".h5ad")
    if not h5ad and (args.use_rep or args.labels_key or args.save_h5ad):
        raise ValueError("--use-rep, --labels-key and --save-h5ad apply to .h5ad input only.")
    if h5ad:
        from tsnejax import tl

        adata = tl.read_h5ad(args.input)
        X, rep = tl.representation(adata, args.use_rep)
        y = _obs_codes(adata, args.labels_key)
        source = f"{args.input} ({rep})"
    elif args.input is not None:
        X, y = load_array(args.input)
        source = str(args.input)
    else:
        name = args.dataset or "digits"
        X, y = load_dataset(name)
        source = name
    if args.labels is not None:
        y = load_labels(args.labels)
    if y is not None and np.shape(y) != (np.shape(X)[0],):
        raise ValueError(
            f"labels must have shape ({np.shape(X)[0]},) to match the data, got {np.shape(y)}."
        )
    load_s = time.perf_counter() - t0
    perplexity = args.perplexity[0] if len(args.perplexity) == 1 else tuple(args.perplexity)
    pbic = isinstance(perplexity, str) and perplexity == "pbic"
    if not pbic and any(isinstance(p, str) for p in args.perplexity):
        raise ValueError(
            f"--perplexity {' '.join(map(str, args.perplexity))}: give numbers, or 'pbic' alone."
        )
    fields: dict[str, Any] = dict(
        n_components=args.n_components,
        perplexity=30.0 if pbic else perplexity,
        early_exaggeration=args.early_exaggeration,
        exaggeration=args.exaggeration,
        learning_rate=args.learning_rate,
        dof=args.dof,
        initialization=args.initialization,
        negative_gradient_method=args.method,
        neighbors=args.neighbors,
        **_metric_fields(args.metric),
        optimizer=args.optimizer,  # "adam:learning_rate=2,b1=0.8": parsed by the config
        stopping=args.stopping,
    )
    for name in ("early_exaggeration_iter", "n_iter", "min_grad_norm", "n_iter_without_progress"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
            if name in SKLEARN_SETTINGS and args.stopping == "fixed":
                fields["stopping"] = "sklearn"  # as the estimator's parameters do
    config = TSNEConfig.from_preset(args.preset, **fields)
    if sp.issparse(X) and config.affinities.metric != "precomputed":
        X = sparse_data(X)  # dense when small, as fit would make it: the metrics read it
    selection = chosen = None
    if pbic:
        t0 = time.perf_counter()
        sel = select_perplexity(jax.random.key(args.seed), X, config=config, verbose=args.verbose)
        config = config.replace(perplexity=sel.perplexity)
        chosen = None if args.checkpoint else sel.best_run  # that run is the fit
        selection = {
            "perplexity": sel.perplexity,
            "candidates": sel.perplexities.tolist(),
            "kl": sel.kl.tolist(),
            "pbic": sel.pbic.tolist(),
            "seconds": time.perf_counter() - t0,
        }
    result = chosen or fit(
        jax.random.key(args.seed),
        X,
        config,
        verbose=args.verbose,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every if args.checkpoint else None,
    )
    Y = result.embedding
    metrics: dict[str, Any] = {
        "source": source,
        "n_samples": int(Y.shape[0]),
        "n_features": int(np.shape(X)[1]),
        "seed": args.seed,
        "config": config.flat(),
        "kl_divergence": result.kl_divergence,
        "total_iter": result.total_iter,
        "resumed_from": result.resumed_from,  # the --checkpoint's iteration (0: a fresh run)
        "early_exaggeration_iter": result.early_exaggeration_iter,
        "kl_history": result.kl_history,
        "method": result.method,
        "grids": [list(g) if g is not None else None for g in result.grids],
        "n_compiles": result.n_compiles,
        "timings_seconds": {"load": load_s, **result.timings},
        **({} if selection is None else {"perplexity_selection": selection}),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }
    if y is not None:
        metrics["knn_accuracy_10"] = knn_accuracy(Y, y, k=min(10, Y.shape[0] - 1))
        metric = config.affinities.metric
        if args.metrics_queries > 0 and sp.issparse(X):
            metrics["quality"] = {"skipped": "the input is a large sparse matrix"}
        elif args.metrics_queries > 0 and metric not in FAST_METRICS:
            metrics["quality"] = {"skipped": f"neighbour quality is Euclidean (metric={metric})"}
        elif args.metrics_queries > 0:
            quality = evaluate(
                X,
                Y,
                y,
                n_queries=min(args.metrics_queries, Y.shape[0]),
                key=jax.random.key(args.seed),
                metric=metric,  # cosine ranks: the Euclidean ones of unit rows
            )
            metrics["quality"] = quality
            plot_precision_recall(
                {"tsnejax": quality},
                out / "precision_recall.png",
                title=f"{source}: NN preservation",
            )
    atomic_save_npy(out / "embedding.npy", Y)
    atomic_write_json(out / "metrics.json", metrics, indent=2, sort_keys=False, default=str)
    if adata is not None and args.save_h5ad:
        from tsnejax import tl

        info = {k: metrics[k] for k in ("kl_divergence", "kl_history", "method", "seed")}
        info["params"] = {**config.flat(), "use_rep": rep}
        tl.store(adata, Y, {**info, "n_iter": result.total_iter}, None)
        with atomic_path(out / Path(args.input).name, suffix=".h5ad") as tmp:
            adata.write_h5ad(tmp)
    title = f"{source}: N={Y.shape[0]}, KL={result.kl_divergence:.3f}"
    with atomic_path(out / "embedding.png", suffix=".png") as tmp:
        plot_embedding(Y, y, tmp, title=title)
    return metrics


def _obs_codes(adata: Any, key: str | None) -> np.ndarray | None:
    """Integer codes of ``adata.obs[key]`` (categories in their order), for colouring."""
    if key is None:
        return None
    if key not in adata.obs:
        raise ValueError(f"--labels-key {key!r} is not an obs column (have {list(adata.obs)}).")
    col = adata.obs[key]
    codes = col.cat.codes if hasattr(col, "cat") else col.astype("category").cat.codes
    return np.asarray(codes, np.int32)


def _metrics(args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import scipy.sparse as sp

    from tsnejax._checks import check_data
    from tsnejax.data import load_array, load_labels
    from tsnejax.knn_metric import check_input
    from tsnejax.metrics import evaluate
    from tsnejax.plot import plot_precision_recall

    out = _writable_dir(args.out)
    X, y = load_array(args.input)
    Y, _ = load_array(args.embedding, labels=False)  # every column a coordinate
    X = check_input(X, "euclidean", "--input")  # a sparse one dense (if small enough)
    if sp.issparse(X):
        raise ValueError("--input is a sparse matrix too large to score; reduce it first.")
    Y = check_data(Y, "--embedding")
    if args.labels is not None:
        y = load_labels(args.labels)
    key = jax.random.key(args.seed)
    result = evaluate(
        X, Y, y, k_max=args.k_max, n_queries=args.n_queries, key=key, metric=args.metric
    )
    result = {"input": str(args.input), "embedding": str(args.embedding), **result}
    result["metric"] = args.metric
    atomic_write_json(out / "metrics.json", result, indent=2, sort_keys=False, default=str)
    with atomic_path(out / "precision_recall.png", suffix=".png") as tmp:
        plot_precision_recall(
            {Path(args.embedding).stem: result}, tmp, title=f"{Path(args.input).name}: N={len(X)}"
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.verb == "sweep" and (args.host_devices is None or args.host_devices > 1):
        # Before JAX starts its backend: trials sharded one per core measured 1.4x faster
        # than one at a time on 2 cores (benchmarks/bench_sweep.py).
        from tsnejax._xla_flags import request_host_devices

        request_host_devices(args.host_devices)
    from tsnejax.run import DivergenceError

    out = Path(args.out) if getattr(args, "out", None) else None
    out_existed = out is not None and out.exists()
    try:
        if args.verb == "embed":
            m = _embed(args)
            print(
                f"wrote {args.out}/embedding.npy, metrics.json, embedding.png "
                f"(N={m['n_samples']}, KL={m['kl_divergence']:.4f}, "
                f"{m['timings_seconds']['total']:.1f} s)"
            )
        elif args.verb == "metrics":
            m = _metrics(args)
            extra = "".join(
                f", {k}={m[k]:.4f}"
                for k in ("knn_accuracy_10", "trustworthiness_5", "continuity_5")
                if k in m
            )
            print(
                f"wrote {args.out}/metrics.json, precision_recall.png (N={m['n_samples']}{extra})"
            )
        elif args.verb == "sweep":
            print(_sweep(args))
        elif args.verb == "report":
            print(_report(args))
    except (ValueError, DivergenceError) as err:
        if out is not None and not out_existed:
            _remove_empty_tree(out)  # a failed run leaves no empty output folder behind
        print(f"tsnejax: error: {err}", file=sys.stderr)
        return 1
    return 0


def _remove_empty_tree(root: Path) -> None:
    """Remove ``root`` and its sub-folders bottom-up if they hold no files."""
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


if __name__ == "__main__":
    sys.exit(main())
