"""Hyperparameter sweeps: spec -> trials -> grouped, vmapped/sharded execution -> store -> report.

``load_spec`` reads a TOML file or a Python ``get_config()``; ``run_sweep`` runs it into a
results folder (resumable); ``make_report`` writes the table and plots. See docs/sweeps.md.
"""

from tsnejax._xla_flags import request_host_devices
from tsnejax.sweep.executor import (
    Dataset,
    SweepSummary,
    TrialRun,
    Workspace,
    auto_batch_size,
    choose_mode,
    load_data,
    run_batch,
    run_sweep,
    run_trial,
    score,
    static_signature,
)
from tsnejax.sweep.spec import (
    DYNAMIC_FIELDS,
    METRICS,
    MODES,
    DataSpec,
    SweepSpec,
    Trial,
    expand_trials,
    load_spec,
    resolve_learning_rate,
    spec_from_dict,
)
from tsnejax.sweep.store import SweepStore, read_table

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
    "read_table",
    "request_host_devices",
    "resolve_learning_rate",
    "run_batch",
    "run_sweep",
    "run_trial",
    "score",
    "spec_from_dict",
    "static_signature",
]
