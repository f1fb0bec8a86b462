"""Hyperparameter sweeps: spec -> trials -> grouped, vmapped/sharded execution -> store -> report.

``load_spec`` reads a TOML file or a Python ``get_config()``; ``run_sweep`` runs it into a
results folder (resumable); ``make_report`` writes the table and plots. See docs/sweeps.md.
"""

from tsnejax._io import read_json
from tsnejax._xla_flags import request_host_devices
from tsnejax.config import DYNAMIC_FIELDS, resolve_learning_rate, static_signature
from tsnejax.sweep.executor import (
    SweepSummary,
    auto_batch_size,
    choose_mode,
    run_group,
    run_sweep,
    run_trial,
)
from tsnejax.sweep.scoring import TrialRun, score
from tsnejax.sweep.spec import (
    METRICS,
    MODES,
    DataSpec,
    SweepSpec,
    Trial,
    expand_trials,
    label_of,
    load_spec,
    spec_from_dict,
)
from tsnejax.sweep.store import SweepStore, read_table
from tsnejax.sweep.workspace import Dataset, Workspace, load_data

__all__ = [
    "DYNAMIC_FIELDS",
    "METRICS",
    "MODES",
    "DataSpec",
    "Dataset",
    "SweepSpec",
    "SweepStore",
    "SweepSummary",
    "Trial",
    "TrialRun",
    "Workspace",
    "auto_batch_size",
    "choose_mode",
    "expand_trials",
    "load_data",
    "load_spec",
    "read_json",
    "read_table",
    "request_host_devices",
    "label_of",
    "resolve_learning_rate",
    "run_group",
    "run_sweep",
    "run_trial",
    "score",
    "spec_from_dict",
    "static_signature",
]
