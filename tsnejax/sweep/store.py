"""The results folder of a sweep: one sub-folder per trial, every write atomic.

Layout::

    OUT/sweep.json                  the spec (as run) and the data digest
    OUT/labels.npy                  labels of the points, when the data has them (for plots)
    OUT/trials/<id>/config.json     the resolved TSNEConfig, grid values and seed
    OUT/trials/<id>/embedding.npy   (n, d) float32 final embedding (last finite one if diverged)
    OUT/trials/<id>/metrics.json    metrics, status, timings; written last = "finished"
    OUT/results.csv                 one row per finished trial of the spec, rewritten atomically

A file is written to a temporary name in the same folder, flushed, fsync'ed and renamed over the
target, so a crash (even SIGKILL) leaves either the old file or the new one. A trial counts as
finished only once its ``metrics.json`` exists, so a crash mid-trial loses that trial alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tsnejax._io import atomic_save_npy, atomic_write_bytes, atomic_write_json

__all__ = [
    "SweepStore",
    "TABLE_COLUMNS",
]

#: Metric columns of ``results.csv`` (when present), after the grid columns.
TABLE_COLUMNS = (
    "status",
    "diverged_at",
    "n_iter",
    "kl",
    "kl_exact",
    "knn_accuracy_10",
    "knn_preservation_10",
    "nn_precision_1",
    "nn_precision_10",
    "nn_precision_30",
    "trustworthiness_5",
    "knc_4",
    "cpd",
    "seconds",
)


class SweepStore:
    """Reads and writes one sweep folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.trials_dir = self.root / "trials"

    def trial_dir(self, trial_id: str) -> Path:
        return self.trials_dir / trial_id

    def finished_ids(self) -> set[str]:
        """Trials whose ``metrics.json`` exists and parses."""
        done = set()
        if not self.trials_dir.exists():
            return done
        for d in self.trials_dir.iterdir():
            try:
                json.loads((d / "metrics.json").read_text())
            except (OSError, ValueError):
                continue
            done.add(d.name)
        return done

    def write_trial(
        self, trial_id: str, config: dict, metrics: dict, embedding: np.ndarray
    ) -> None:
        """Embedding and config first, metrics last (its presence marks the trial finished)."""
        d = self.trial_dir(trial_id)
        atomic_save_npy(d / "embedding.npy", np.asarray(embedding, np.float32))
        atomic_write_json(d / "config.json", config)
        atomic_write_json(d / "metrics.json", metrics)

    def read_trial(self, trial_id: str) -> tuple[dict, dict]:
        d = self.trial_dir(trial_id)
        return json.loads((d / "config.json").read_text()), json.loads(
            (d / "metrics.json").read_text()
        )

    def embedding(self, trial_id: str) -> np.ndarray:
        return np.load(self.trial_dir(trial_id) / "embedding.npy", allow_pickle=False)

    def write_table(self, trial_ids: list[str], grid_keys: list[str]) -> Path:
        """``results.csv``: one row per finished trial in ``trial_ids`` (in that order)."""
        rows = []
        for tid in trial_ids:
            try:
                config, metrics = self.read_trial(tid)
            except (OSError, ValueError):
                continue
            row = {"trial_id": tid}
            row.update({k: _cell(config["params"].get(k)) for k in grid_keys})
            row.update({k: _cell(metrics[k]) for k in TABLE_COLUMNS if k in metrics})
            rows.append(row)
        columns = ["trial_id", *grid_keys]
        columns += [c for c in TABLE_COLUMNS if any(c in r for r in rows)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path = self.root / "results.csv"
        atomic_write_bytes(path, buf.getvalue().encode())
        return path


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


def read_table(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a ``results.csv`` as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


__all__ += ["read_table"]
