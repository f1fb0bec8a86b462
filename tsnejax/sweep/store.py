"""The results folder of a sweep: one sub-folder per trial, every write atomic.

Layout::

    OUT/sweep.json                  the spec (as run) and the data digest
    OUT/labels.npy                  labels of the points, when the data has them (for plots)
    OUT/trials/<id>/config.json     the resolved TSNEConfig, grid values and seed
    OUT/trials/<id>/embedding.npy   (n, d) float32 final embedding (last finite one if diverged)
    OUT/trials/<id>/metrics.json    metrics, status, timings; written last = "finished"
    OUT/trials/<id>/claim.json      while a process runs the trial: its host, pid, start time
    OUT/runs/<host>-<pid>.json      one per process running the sweep, removed when it ends
                                    (the folder too, once empty)
    OUT/checkpoints/<digest>.npz    with checkpoint_every: the state of a running trial or batch
                                    (the folder is removed once every trial is written)
    OUT/results.csv                 one row per finished trial of the spec, rewritten atomically

A file is written to a temporary name in the same folder, flushed, fsync'ed and renamed over the
target, so a crash (even SIGKILL) leaves either the old file or the new one. A trial counts as
finished only once its ``metrics.json`` exists, so a crash mid-trial loses that trial alone.

Several processes can run one sweep (``--resume`` in each): a process runs a trial only after
creating its ``claim.json`` exclusively (a complete draft hard-linked to that name: exactly one
process wins and the claim is never seen half-written, on local file systems and NFS), so
every trial runs once. A claim whose process is gone (same
host, no such pid: a crash, a kill) is stale and taken over. ``runs/`` lets a plain run see
that another process is using the folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tsnejax._io import atomic_save_npy, atomic_write_bytes, atomic_write_json, read_json

__all__ = [
    "SweepStore",
    "TABLE_COLUMNS",
    "CLAIM",
]

CLAIM = "claim.json"

#: Metric columns of ``results.csv`` (when present), after the grid columns.
TABLE_COLUMNS = (
    "status",
    "diverged_at",
    "diverged_cause",
    "n_iter",
    "early_exaggeration_iter",
    "kl",
    "kl_exact",
    "pbic",
    "knn_accuracy_10",
    "knn_preservation_10",
    "nn_precision_1",
    "nn_precision_10",
    "nn_precision_30",
    "trustworthiness_5",
    "continuity_5",
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

    def checkpoint_path(self, trial_ids: Sequence[str]) -> Path:
        """Where the run of these trials (one, or a vmapped batch) saves its state."""
        digest = hashlib.sha256("\n".join(trial_ids).encode()).hexdigest()[:20]
        return self.root / "checkpoints" / f"{digest}.npz"

    def drop_checkpoints_folder(self, trial_ids: Sequence[str]) -> None:
        """Remove ``checkpoints/`` once every trial is written and the folder holds nothing.

        Only then: an unfinished trial may still be saved there by another process. Removing
        a non-empty folder fails (``OSError``), which leaves a save of another process alone.
        """
        folder = self.root / "checkpoints"
        if not folder.is_dir() or not set(trial_ids) <= self.finished_ids():
            return
        for orphan in folder.glob(".*.tmp"):  # a killed writer's; its trial is finished
            orphan.unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass

    def finished_ids(self) -> set[str]:
        """Trials whose ``metrics.json`` exists and parses."""
        done = set()
        if not self.trials_dir.exists():
            return done
        for d in self.trials_dir.iterdir():
            try:
                read_json(d / "metrics.json")
            except (OSError, ValueError):
                continue
            done.add(d.name)
        return done

    # -- which process runs what ------------------------------------------------------------

    def claim(self, trial_id: str) -> bool:
        """Claim ``trial_id`` for this process; ``True`` if this process now owns it and the
        trial is not finished (then run it, :meth:`write_trial`, :meth:`release`).

        ``False`` when a live process holds the claim, or the trial finished meanwhile. A claim
        left by a process that is gone (same host, pid not running) is taken over.
        """
        path = self.trial_dir(trial_id) / CLAIM
        path.parent.mkdir(parents=True, exist_ok=True)
        me = _me()
        # The claim appears complete or not at all: written under a private name, then
        # hard-linked to claim.json (link fails if it exists: create-exclusive, NFS-safe too).
        # A claim created empty and then filled could be left empty by a kill in between and
        # would block its trial for ever.
        mine = path.with_name(f".claim-{me['host']}-{me['pid']}")
        mine.write_text(json.dumps(me))
        try:
            for _ in range(3):
                try:
                    os.link(mine, path)
                except FileExistsError:
                    owner = _read_json(path)
                    if owner is None or _alive(owner):
                        return False
                    _replace_stale(path, owner)
                    continue
                if (self.trial_dir(trial_id) / "metrics.json").exists():
                    self.release(trial_id)  # finished by another process since we listed it
                    return False
                _remove_dead_drafts(path.parent)
                return True
            return False
        finally:
            mine.unlink(missing_ok=True)

    def owner(self, trial_id: str) -> dict | None:
        """The claim's ``{"host", "pid", "started"}``, or ``None``."""
        return _read_json(self.trial_dir(trial_id) / CLAIM)

    def release(self, trial_id: str) -> None:
        """Drop this process's claim on ``trial_id`` (a claim of another process is kept)."""
        path = self.trial_dir(trial_id) / CLAIM
        owner = _read_json(path)
        if owner is not None and _is_me(owner):
            path.unlink(missing_ok=True)

    def register(self, **extra: Any) -> None:
        """Record this process as running the sweep (``runs/<host>-<pid>.json``; ``extra``
        fields are stored with it, e.g. its place in a ``jax.distributed`` group)."""
        me = _me()
        atomic_write_json(self.root / "runs" / f"{me['host']}-{me['pid']}.json", {**me, **extra})

    def unregister(self) -> None:
        """Remove this process's record, and ``runs/`` when no other is left in it (a process
        registering meanwhile re-creates the folder: :func:`tsnejax._io.atomic_path`)."""
        me = _me()
        (self.root / "runs" / f"{me['host']}-{me['pid']}.json").unlink(missing_ok=True)
        try:
            (self.root / "runs").rmdir()
        except OSError:  # another process's record, or gone already
            pass

    def live_runs(self) -> list[dict]:
        """Other processes running this sweep now (stale records of dead ones are removed)."""
        out = []
        runs = self.root / "runs"
        if not runs.exists():
            return out
        for f in sorted(runs.glob("*.json")):
            owner = _read_json(f)
            if owner is None or _is_me(owner):
                continue
            if _alive(owner):
                out.append(owner)
            else:
                f.unlink(missing_ok=True)
        return out

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
        return read_json(d / "config.json"), read_json(d / "metrics.json")

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


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}


def _is_me(owner: dict) -> bool:
    return owner.get("host") == socket.gethostname() and owner.get("pid") == os.getpid()


def _alive(owner: dict) -> bool:
    """Whether a claim's process may still run: another host's always counts as alive (it
    cannot be checked from here; remove its claim by hand after a crash there)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _read_json(path: Path) -> dict | None:
    try:
        v = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return v if isinstance(v, dict) else None


def _remove_dead_drafts(folder: Path) -> None:
    """Private claim drafts (``.claim-<host>-<pid>``) left by processes killed mid-claim."""
    host = socket.gethostname()
    for f in folder.glob(".claim-*"):
        h, _, pid = f.name[len(".claim-") :].rpartition("-")
        if h == host and pid.isdigit() and not _alive({"host": h, "pid": int(pid)}):
            f.unlink(missing_ok=True)


def _replace_stale(path: Path, owner: dict) -> None:
    """Remove a stale claim, unless another process replaced it meanwhile (two processes that
    both saw it stale must not remove each other's fresh claims)."""
    tmp = path.with_name(f"{CLAIM}.stale-{os.getpid()}")
    try:
        os.rename(path, tmp)  # atomic: only one process moves a given file
    except FileNotFoundError:
        return
    moved = _read_json(tmp)
    if moved is not None and moved != owner and _alive(moved):
        try:  # put the fresh claim back; link fails if yet another one exists by now
            os.link(tmp, path)
        except FileExistsError:
            pass
    tmp.unlink(missing_ok=True)


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


def read_table(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a ``results.csv`` as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


__all__ += ["read_table"]
