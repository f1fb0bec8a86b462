"""Shared by the paper-figure scripts: arguments, data, output paths."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--smoke", action="store_true", help="digits, few iterations (CI)")
    ap.add_argument(
        "--data-dir", default=None, help="real data (default $TSNEJAX_DATA or ../shared/data)"
    )
    ap.add_argument("--out", default=str(OUT), help="folder for the PNG and CSV")
    return ap


def sweep_setup(args) -> tuple[np.ndarray, np.ndarray, str, Path] | None:
    """For the sweep-based figures: one JAX device per core (no effect once JAX has started,
    e.g. in tests), MNIST (or digits with ``--smoke``) and the output folder; ``None`` when the
    data is missing (a message was printed)."""
    from tsnejax.sweep import request_host_devices

    request_host_devices()
    data = mnist(args.data_dir, args.smoke)
    if data is None:
        return None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return (*data, out)


def mnist(data_dir: str | None, smoke: bool) -> tuple[np.ndarray, np.ndarray, str] | None:
    """MNIST-70k in PCA-50 (Kobak & Berens' preprocessing), or digits in smoke mode."""
    from sklearn.decomposition import PCA

    from tsnejax.data import load_dataset, shared_data_dir

    if smoke:
        X, y = load_dataset("digits")
        return X, y, "digits (smoke)"
    src = shared_data_dir(data_dir) / "mnist.npz"
    if not src.exists():
        print(f"skipped: {src} not found (set TSNEJAX_DATA or --data-dir)")
        return None
    with np.load(src) as z:
        X, y = z["X"].astype(np.float32), z["y"]
    return PCA(50, random_state=0).fit_transform(X).astype(np.float32), y, "MNIST-70k (PCA-50)"


def subset(X: np.ndarray, y: np.ndarray, n: int, seed: int = 0):
    """``n`` rows drawn without replacement (fixed seed), in their original order."""
    if n >= len(X):
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(len(X), n, replace=False))
    return X[rows], y[rows]


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    return path


def run_grid(
    X, y, name: str, fixed: dict, grid: dict, seeds: list[int]
) -> list[tuple[dict, np.ndarray]]:
    """Run ``grid`` x ``seeds`` as one tsnejax sweep in a scratch folder; ``[(row, Y)]`` in grid
    order, ``row`` holding the grid values, seed and KL."""
    import tempfile

    from tsnejax.sweep import SweepStore, read_table, run_sweep, spec_from_dict

    work = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    np.savez(work / "data.npz", X=X, y=y)
    spec = spec_from_dict(
        {
            "name": name,
            "data": {"path": str(work / "data.npz")},
            "fixed": fixed,
            "grid": grid,
            "run": {"seeds": seeds, "metrics": ["kl"]},
        }
    )
    run_sweep(spec, work / "sweep")
    store = SweepStore(work / "sweep")
    out = []
    for r in read_table(work / "sweep" / "results.csv"):
        row = {k: r[k] for k in grid}
        row.update(seed=int(r["seed"]), kl=float(r["kl"]))
        out.append((row, store.embedding(r["trial_id"])))
    return out


def save(
    out: Path, stem: str, rows: list[dict], panels: list, labels, title: str, ncols: int = 2
) -> int:
    """Write ``<stem>.csv`` (the rows) and ``<stem>.png`` (small multiples, ``ncols`` wide)."""
    from tsnejax.plot import plot_small_multiples

    write_csv(out / f"{stem}.csv", rows)
    plot_small_multiples(panels, labels, out / f"{stem}.png", ncols=ncols, title=title)
    print(f"wrote {out / (stem + '.png')} and .csv")
    return 0
