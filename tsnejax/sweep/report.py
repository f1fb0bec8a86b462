"""``tsnejax report DIR``: a sweep's results as a table and plots (reads the store only).

Writes into ``DIR/report/``: ``table.md`` (one row per trial, grid values and metrics),
``embeddings.png`` (small multiples coloured by label; rows and columns follow the first two
varying grid axes when there are two), and for each metric a heatmap over the first two varying
axes (``heatmap_<metric>.png``, averaged over the others, e.g. seeds) or, with one varying axis,
a line plot (``<metric>_vs_<axis>.png``); ``kl_history.png``: KL against iteration per trial
(from each trial's recorded ``kl_history``: the convergence curves).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from tsnejax._checks import check_pathlike
from tsnejax._io import read_json
from tsnejax.sweep.store import TABLE_COLUMNS, SweepStore, read_table

__all__ = ["make_report", "REPORT_METRICS"]

#: Metrics the report plots, when the table has them.
REPORT_METRICS = (
    "kl",
    "pbic",
    "knn_accuracy_10",
    "knn_preservation_10",
    "trustworthiness_5",
    "continuity_5",
    "cpd",
)
#: Most embeddings drawn in the small multiples.
MAX_PANELS = 64
#: Most points drawn per panel (a fixed random subset above it keeps the PNG small).
MAX_PANEL_POINTS = 20_000


def _value(v: str) -> Any:
    try:
        return float(v)
    except ValueError:
        return v


def _sort_key(v: Any) -> tuple:
    """Numbers in numeric order, then strings ("N/12" after the numbers) in given order."""
    return (0, v, "") if isinstance(v, float) else (1, 0.0, str(v))


def _axis_values(rows: list[dict], key: str, spec_values: list) -> list:
    """A grid axis' values in the spec's order (that is how the user wrote them)."""
    seen = [str(v) for v in spec_values]
    present = {r[key] for r in rows}
    ordered = [v for v in seen if v in present]
    return ordered + sorted(present - set(ordered), key=lambda v: _sort_key(_value(v)))


def make_report(root: str | os.PathLike, *, max_panels: int = MAX_PANELS) -> dict[str, Path]:
    """Write the table and plots of the sweep in ``root``; returns ``{name: path}``."""
    root = Path(check_pathlike("root", root, "out/sweep"))
    if not root.exists():
        raise ValueError(f"sweep folder {str(root)!r} does not exist.")
    if not (root / "sweep.json").exists() or not (root / "results.csv").exists():
        raise ValueError(
            f"{str(root)!r} is not a sweep folder (no sweep.json/results.csv); run "
            "'tsnejax sweep CONFIG --out DIR' first."
        )
    meta = read_json(root / "sweep.json")
    rows = read_table(root / "results.csv")
    if not rows:
        raise ValueError(f"{str(root)!r} has no finished trials yet.")
    grid_spec = meta["spec"]["grid"]
    grid_keys = meta["grid_keys"]
    axes = {
        k: _axis_values(rows, k, grid_spec.get(k, meta["spec"]["run"]["seeds"])) for k in grid_keys
    }
    varying = [k for k in grid_keys if len(axes[k]) > 1]
    non_seed = [k for k in varying if k != "seed"] or varying
    out_dir = root / "report"
    out_dir.mkdir(exist_ok=True)
    written: dict[str, Path] = {}

    metrics = [m for m in REPORT_METRICS if any(r.get(m) for r in rows)]
    same = _identical_embeddings(root, rows, varying)
    # The table shows every column results.csv has; the plots the REPORT_METRICS.
    table_metrics = [c for c in TABLE_COLUMNS if c not in ("status", "seconds")]
    written["table"] = _write_markdown(
        out_dir / "table.md", rows, grid_keys, table_metrics, meta, same, non_seed, varying
    )

    store = SweepStore(root)
    labels = np.load(root / "labels.npy") if (root / "labels.npy").exists() else None
    shown = rows[:max_panels]
    subset = None
    if meta["n_points"] > MAX_PANEL_POINTS:  # the same points in every panel
        rng = np.random.default_rng(0)
        subset = np.sort(rng.choice(meta["n_points"], MAX_PANEL_POINTS, replace=False))
        labels = None if labels is None else labels[subset]
    panels = []
    for r in shown:
        name = ", ".join(f"{k}={r[k]}" for k in varying) or r["trial_id"]
        if r.get("kl"):
            name += f"\nKL {float(r['kl']):.3f}"
        try:
            Y = store.embedding(r["trial_id"])
            panels.append((name, Y if subset is None else Y[subset]))
        except OSError:
            panels.append((name, None))
    ncols = None
    if len(non_seed) >= 2 and len(rows) == len(shown):
        ncols = len(axes[non_seed[1]]) * (
            len(rows) // (len(axes[non_seed[0]]) * len(axes[non_seed[1]]))
        )
    from tsnejax.plot import plot_heatmap, plot_small_multiples

    title = meta["spec"]["name"]
    if len(rows) > len(shown):
        title += f" (first {len(shown)} of {len(rows)} trials)"
    if subset is not None:
        title += f" ({MAX_PANEL_POINTS} of {meta['n_points']} points drawn)"
    written["embeddings"] = out_dir / "embeddings.png"
    plot_small_multiples(panels, labels, written["embeddings"], ncols=ncols, title=title)

    for m in metrics:
        if len(non_seed) >= 2:
            a, b = non_seed[0], non_seed[1]
            table = np.full((len(axes[a]), len(axes[b])), np.nan)
            for i, va in enumerate(axes[a]):
                for j, vb in enumerate(axes[b]):
                    vals = [float(r[m]) for r in rows if r[a] == va and r[b] == vb and r.get(m)]
                    if vals:
                        table[i, j] = np.mean(vals)
            path = out_dir / f"heatmap_{m}.png"
            plot_heatmap(
                table,
                axes[a],
                axes[b],
                path,
                row_name=a,
                col_name=b,
                title=f"{m} (mean over other axes)",
            )
            written[f"heatmap_{m}"] = path
        elif non_seed:
            written[f"{m}_vs_{non_seed[0]}"] = _line_plot(out_dir, rows, non_seed[0], axes, m)
    curves = _kl_curves(store, shown, [k for k in varying if k != "seed"] or varying)
    if curves:
        written["kl_history"] = _curves_plot(out_dir / "kl_history.png", curves, title)
    return written


def _kl_curves(store: SweepStore, rows: list[dict], varying: list[str]) -> list:
    """``(name, iterations, KL)`` of each trial's recorded ``kl_history``."""
    out = []
    for r in rows:
        try:
            hist = store.read_trial(r["trial_id"])[1].get("kl_history") or []
        except (OSError, ValueError):
            continue
        hist = [(int(i), float(v)) for i, v in hist if v is not None and np.isfinite(v)]
        if len(hist) >= 2:
            name = ", ".join(f"{k}={r[k]}" for k in varying) or r["trial_id"]
            out.append((name, *zip(*hist, strict=True)))
    return out


def _curves_plot(path: Path, curves: list, title: str) -> Path:
    """KL against iteration, one line per trial (the convergence of each)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    colours: dict[str, Any] = {}
    for name, its, kls in curves:  # seeds of one setting share its colour and legend entry
        first = name not in colours
        colours.setdefault(name, f"C{len(colours) % 10}")
        ax.plot(its, kls, lw=1.0, color=colours[name], label=name if first else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("KL divergence (chunk ends)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if len(colours) <= 12:
        ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _line_plot(out_dir: Path, rows: list[dict], axis: str, axes: dict, metric: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    xs = axes[axis]
    means, stds = [], []
    for v in xs:
        vals = [float(r[metric]) for r in rows if r[axis] == v and r.get(metric)]
        means.append(np.mean(vals) if vals else np.nan)
        stds.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0 if vals else np.nan)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    pos = np.arange(len(xs))
    ax.errorbar(pos, means, yerr=stds, marker="o", capsize=3)
    ax.set_xticks(pos, [str(x) for x in xs], rotation=30)
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / f"{metric}_vs_{axis}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(v: str) -> str:
    try:
        x = float(v)
    except ValueError:
        return v
    return f"{x:.4g}"


def _identical_embeddings(root: Path, rows: list[dict], varying: list[str]) -> list[list[str]]:
    """Groups (2+) of finished trials whose embeddings are bit-identical, each trial named by
    its varying grid values. Diverged trials are left out: each holds its last finite state,
    and two that diverged at the first step both hold the start (they were reported as
    settings that "change nothing")."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        f = root / "trials" / r["trial_id"] / "embedding.npy"
        if f.exists():
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            name = ", ".join(f"{k}={r[k]}" for k in varying) or r["trial_id"]
            groups.setdefault(digest, []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def _seed_means(rows, metrics, non_seed) -> list[str]:
    """Markdown table: each setting of the non-seed axes, mean ± sd of every metric over its
    seeds (sample sd, ddof 1) and the number of seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in non_seed), []).append(r)
    cols = [m for m in metrics if any(r.get(m) not in (None, "") for r in rows)]
    lines = [
        "",
        "## Mean ± sd over seeds",
        "",
        "| " + " | ".join([*non_seed, "seeds", *cols]) + " |",
        "|" + "---|" * (len(non_seed) + 1 + len(cols)),
    ]
    for key, members in groups.items():
        cells = [*key, str(len(members))]
        for m in cols:
            vals = [float(r[m]) for r in members if r.get(m) not in (None, "")]
            if not vals:
                cells.append("")
            elif len(vals) == 1 or min(vals) == max(vals):
                cells.append(f"{vals[0]:.4g}")
            else:
                cells.append(f"{np.mean(vals):.4g} ± {np.std(vals, ddof=1):.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _write_markdown(
    path: Path, rows, grid_keys, metrics, meta, same=(), non_seed=(), varying=()
) -> Path:
    cols = [*grid_keys, "status", *[m for m in metrics], "seconds"]
    cols = [c for c in cols if any(c in r and r[c] != "" for r in rows) or c in grid_keys]
    lines = [
        f"# {meta['spec']['name']}",
        "",
        meta["spec"].get("description", ""),
        "",
        f"{meta['n_points']} points, {len(rows)} of {len(meta['trial_ids'])} trials finished.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    if "seed" in varying and list(non_seed) != list(varying):
        lines += _seed_means(rows, [*metrics, "seconds"], non_seed)
    for group in same:
        lines += [
            "",
            f"**Identical embeddings**: {'; '.join(group)} gave bit-identical results. "
            "Nothing in these runs depends on what differs between them — with PCA "
            "initialisation and the exact kNN search a seed changes nothing; use "
            "initialization='random' (or neighbors='pynndescent') for seed variation.",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path
