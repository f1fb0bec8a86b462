"""Run a sweep: one kNN graph, P per affinity setting, compiled programs shared across trials.

Every trial runs through :func:`tsnejax.run.optimize`, the one loop, in one of two ways:

``"sequential"``
    one trial after another, each exactly :func:`tsnejax.fit` with the trial's key and config
    (given the workspace's P and initial embedding). Trials whose configs share the static
    signature (:func:`tsnejax.config.static_signature`: they differ only in learning rate,
    exaggerations, momenta, dof, perplexity, iteration counts, ...) share the compiled step.
``"vmap"``
    a group of trials with the same signature as one vmapped
    :func:`tsnejax.fit_batch`, sharded over ``jax.devices()`` when there are several. The grid
    is shared by the batch (the largest any member needs), so a vmapped trial can differ from
    its sequential run by the interpolation error of a finer grid (exact backend: the same up
    to rounding); a diverging trial is frozen and recorded while the others finish, and so is
    one that has run its own ``n_iter`` or that its stopping rule stops.

``choose_mode`` picks ``sequential`` on a single CPU device (a vmapped batch measured slower
per embedding there, ``benchmarks/bench_sweep.py``) and ``vmap`` otherwise.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from tsnejax import memory
from tsnejax._checks import check_int, check_pathlike, outside_stacklevel
from tsnejax._io import atomic_save_npy, atomic_write_json
from tsnejax.batch import fit_batch
from tsnejax.build import grid_nodes, resolve_method
from tsnejax.checkpoint import load_meta
from tsnejax.config import TSNEConfig, static_signature
from tsnejax.pipeline import fit
from tsnejax.run import DivergenceError
from tsnejax.sweep.scoring import TrialRun, score
from tsnejax.sweep.spec import SweepSpec, Trial, config_json, expand_trials
from tsnejax.sweep.store import SweepStore
from tsnejax.sweep.workspace import Workspace, load_data

__all__ = [
    "SweepSummary",
    "choose_mode",
    "auto_batch_size",
    "run_trial",
    "run_group",
    "run_sweep",
]


def run_trial(
    ws: Workspace, trial: Trial, checkpoint: Any = None, checkpoint_every: int | None = None
) -> TrialRun:
    """One trial: :func:`tsnejax.fit` on the workspace's P and initial embedding (resumed
    from ``checkpoint`` when that file holds this trial's interrupted run)."""
    cfg = trial.config
    Y0 = ws.initial(cfg, trial.seed)
    P = ws.affinities(cfg)
    if checkpoint is not None and Path(checkpoint).exists():
        if "diverged_at" in load_meta(checkpoint):  # it diverges again: run it to its report
            Path(checkpoint).unlink()
    try:
        r = fit(
            jax.random.key(trial.seed),
            None,
            cfg,
            affinities=P,
            initialization=Y0,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
        )
    except DivergenceError as err:
        Y = np.asarray(err.state.embedding)
        it = int(err.state.iteration)
        return TrialRun(Y, float("nan"), [], it, err.iteration, 0.0, 0.0, err.cause)
    t = r.timings
    return TrialRun(
        r.embedding,
        r.kl_divergence,
        r.kl_history,
        r.total_iter,
        None,
        t["optimize"],
        t["compile"],
        early_exaggeration_iter=r.early_exaggeration_iter if _ruled(cfg) else None,
        resumed_from=r.resumed_from,
    )


def run_group(
    ws: Workspace,
    trials: Sequence[Trial],
    mesh: Any = None,
    checkpoint: Any = None,
    checkpoint_every: int | None = None,
) -> list[TrialRun]:
    """Trials sharing a static signature as one vmapped batch (each with its own phase table
    where they differ, ending at its own iteration: its length, or where its rule stops it),
    resumed from ``checkpoint`` when that file holds this batch's interrupted run."""
    cfgs = [t.config for t in trials]
    keys = [jax.random.key(t.seed) for t in trials]
    Ps = [ws.affinities(c) for c in cfgs]
    Y0s = [ws.initial(c, t.seed) for c, t in zip(cfgs, trials, strict=True)]
    r = fit_batch(
        keys,
        None,
        cfgs,
        affinities=Ps,
        initializations=Y0s,
        mesh=mesh,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
    )
    size = len(trials)
    out = []
    for b in range(size):
        end = int(r.trial_iter[b])  # a trial that ended early is frozen: its KL repeats
        hist = [(it, float(v[b])) for it, v in r.kl_history if np.isfinite(v[b]) and it <= end]
        if r.diverged_at[b] >= 0:
            it = int(r.diverged_at[b])
            why = str(r.diverged_cause[b])
            run = TrialRun(r.embeddings[b], float("nan"), hist, it - 1, it, 0.0, 0.0, why)
            out.append(run._replace(resumed_from=r.resumed_from))
            continue
        seconds = r.timings["optimize"] / size
        out.append(
            TrialRun(
                r.embeddings[b],
                float(r.kl_divergence[b]),
                hist,
                end,
                None,
                seconds,
                r.timings["compile"],
                early_exaggeration_iter=(
                    int(r.early_exaggeration_iter[b]) if _ruled(cfgs[b]) else None
                ),
                resumed_from=r.resumed_from,
            )
        )
    return out


def choose_mode(requested: str, n_devices: int, platform: str | None = None) -> str:
    """``"auto"`` -> ``"sequential"`` on one CPU device, else ``"vmap"`` (see module doc)."""
    if requested != "auto":
        return requested
    platform = jax.default_backend() if platform is None else platform
    return "sequential" if platform == "cpu" and n_devices == 1 else "vmap"


def auto_batch_size(config: TSNEConfig, n: int, width: int, n_devices: int = 1) -> int:
    """Trials per vmapped batch that fit in half the free memory of each device.

    Per trial: :func:`tsnejax.memory.optimization_bytes` (P, ~40 embedding-sized temporaries,
    the FFT buffers of the grid of :func:`tsnejax.build.grid_nodes`). On CPU it is one trial
    per device: a batch of 2 or 4 on one CPU device measured slower per embedding than one at
    a time (``benchmarks/bench_sweep.py``).
    """
    method = resolve_method(config.gradient.method, n, config.n_components)
    grid = not (isinstance(method, str) and method == "exact")
    nodes = grid_nodes(config, n) if grid else 0
    per_trial = memory.optimization_bytes(n, config.n_components, width, nodes)
    dev = jax.devices()[0]
    free = memory.available_bytes("device")
    if free is None:
        free = 4e9
    if dev.platform == "cpu":  # the host's memory, shared by its CPU devices
        free /= max(n_devices, 1)
    per_device = max(1, int(0.5 * free // per_trial))
    if dev.platform == "cpu":
        per_device = 1
    return per_device * n_devices


class SweepSummary(NamedTuple):
    root: Path
    mode: str
    n_trials: int
    n_run: int  # trials run by this call
    n_skipped: int  # already finished (resume)
    n_diverged: int
    seconds: float
    timings: dict[str, float]
    n_elsewhere: int = 0  # claimed by other processes running the same folder


def _ruled(config: TSNEConfig) -> bool:
    """A stopping rule decided where the trial's phases ended."""
    return config.schedule.stopping != "fixed"


def _groups(trials: Sequence[Trial]) -> list[list[Trial]]:
    """Trials by static signature, perplexity-sorted inside a group."""
    groups: dict[Any, list[Trial]] = {}
    for t in trials:
        c = t.config
        groups.setdefault(static_signature(c), []).append(t)
    return [
        sorted(g, key=lambda t: (max(np.atleast_1d(t.config.affinities.perplexity)), t.seed))
        for g in groups.values()
    ]


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    smoke: bool = False,
    mode: str | None = None,
    batch_size: int | None = None,
    devices: Sequence[Any] | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = False,
    on_trial: Callable[[Trial, dict], Any] | None = None,
    checkpoint_every: int | None = None,
) -> SweepSummary:
    """Run every trial of ``spec`` not yet finished in ``out``; write the store and table.

    Args:
      spec: a :class:`SweepSpec` (:func:`tsnejax.sweep.load_spec`).
      out: the sweep folder (:mod:`tsnejax.sweep.store`).
      resume: continue a folder that already holds trials (finished ones are skipped and not
        touched); without it such a folder is refused so that sweeps are not mixed by accident.
      smoke: apply the spec's ``[smoke]`` overrides.
      mode: ``"auto"``/``"vmap"``/``"sequential"``; default: the spec's.
      batch_size: trials per vmapped batch; default the spec's, else :func:`auto_batch_size`.
      devices: devices to shard vmapped batches over (default: this process's,
        ``jax.local_devices()``).
      progress: a tqdm bar over trials.
      on_trial: called with ``(trial, metrics)`` after each trial is written.
      checkpoint_every: save each running trial (sequential) or batch (vmap) every this many
        iterations under ``out/checkpoints/``; a sweep killed mid-trial and resumed goes on
        from there (to the same result as an uninterrupted one) rather than from iteration 0.
        A file is removed once its trials are written. ``None``: no saves.

    Processes joined by ``jax.distributed.initialize`` (``jax.process_count() > 1``) that call
    this with the same spec and folder split the trials: process ``i`` of ``p`` runs every
    ``p``-th unfinished trial from the ``i``-th, on its own devices, into the one store; the
    final table is written after all have finished. Independent processes started with
    ``resume=True`` share the work through the store's claims instead.
    """
    t_start = time.perf_counter()
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every, minimum=1)
    if not isinstance(spec, SweepSpec):
        raise ValueError(
            f"spec must be a SweepSpec (tsnejax.sweep.load_spec(path) or spec_from_dict(d)), "
            f"got {type(spec).__name__}."
        )
    if Path(check_pathlike("out", out, "out/sweep")).is_file():  # was NotADirectoryError
        raise ValueError(f"out {str(out)!r} is a file; give a folder for the sweep.")
    if smoke:
        spec = spec.smoke_version()
    store = SweepStore(out)
    finished = store.finished_ids()
    if finished and not resume:
        raise ValueError(
            f"{str(store.root)!r} already holds {len(finished)} finished trial(s); pass "
            "resume=True (--resume) to continue it, or choose another output folder."
        )
    rank, n_proc = jax.process_index(), jax.process_count()
    if n_proc > 1:
        # Peers of one jax.distributed group: each lists the folder before any registers.
        others = store.live_runs()
        _barrier("tsnejax-sweep-start")
        store.register(jax_process=rank, jax_processes=n_proc)
    else:
        # Registered first, so that two plain runs started together both see the other.
        store.register()
        others = store.live_runs()
    try:
        if others and not resume:
            who = ", ".join(f"pid {o.get('pid')} on {o.get('host')}" for o in others)
            raise ValueError(
                f"{str(store.root)!r} is in use by another sweep process ({who}); pass "
                "resume=True (--resume) in every process to split the trials between them, or "
                "choose another output folder."
            )
        return _run_registered(
            spec,
            store,
            finished,
            resume,
            mode,
            batch_size,
            devices,
            data_dir,
            progress,
            on_trial,
            t_start,
            checkpoint_every,
        )
    finally:
        store.unregister()


def warn_seeds_change_nothing(spec: SweepSpec, trials: Sequence[Trial]) -> None:
    """Warn before running when several ``[run] seeds`` cannot differ: a sweep shares one kNN
    graph (``[data] seed``), so a trial's seed only draws a random initialisation, and with
    ``"pca"`` (or an array) every seed repeats the same run (the report finds them bit-identical
    afterwards, once the time is spent)."""
    seeds = sorted({t.seed for t in trials})
    if "seed" in spec.grid or len(seeds) < 2:
        return
    if any(t.config.initialization in ("random", "spectral") for t in trials):
        return
    warnings.warn(
        f"[run] seeds {seeds}: every trial starts from a PCA initialisation (or an array) and "
        "the sweep's one kNN graph, so each seed repeats the same run; use "
        "initialization = 'random' to draw one per seed, or a single seed.",
        UserWarning,
        stacklevel=outside_stacklevel(),
    )


def _run_registered(
    spec: SweepSpec,
    store: SweepStore,
    finished: set[str],
    resume: bool,
    mode: str | None,
    batch_size: int | None,
    devices: Sequence[Any] | None,
    data_dir: str | os.PathLike | None,
    progress: bool,
    on_trial: Callable[[Trial, dict], Any] | None,
    t_start: float,
    checkpoint_every: int | None = None,
) -> SweepSummary:
    data = load_data(spec.data, data_dir)
    n = data.X.shape[0]
    trials = expand_trials(spec, n, data.digest)
    warn_seeds_change_nothing(spec, trials)
    grid_keys = [*spec.grid, *([] if "seed" in spec.grid else ["seed"])]
    atomic_write_json(
        store.root / "sweep.json",
        {
            "spec": spec.to_dict(json_ready=True),
            "data_digest": data.digest,
            "n_points": n,
            "n_features": int(data.X.shape[1]),
            "grid_keys": grid_keys,
            "trial_ids": [t.trial_id for t in trials],
        },
    )
    if data.labels is not None:
        atomic_save_npy(store.root / "labels.npy", np.asarray(data.labels))
    todo = [t for t in trials if t.trial_id not in finished]
    rank, n_proc = jax.process_index(), jax.process_count()
    share = todo[rank::n_proc]  # this process's part (all of it without jax.distributed)
    devices = list(jax.local_devices() if devices is None else devices)
    mode = choose_mode(mode or spec.mode, len(devices))
    mesh = None
    if mode == "vmap" and len(devices) > 1:
        mesh = jax.sharding.Mesh(np.asarray(devices), ("trials",))
    ws = Workspace(data, share, spec.data.seed)
    ids = [t.trial_id for t in trials]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc=spec.name, unit="trial")
    n_div = n_run = 0
    held: set[str] = set()
    saves = checkpoint_every is not None

    def claimed(trials: Sequence[Trial]) -> list[Trial]:
        mine = [t for t in trials if store.claim(t.trial_id)]
        held.update(t.trial_id for t in mine)
        return mine

    def finish(trial: Trial, run: TrialRun) -> None:
        nonlocal n_div, n_run
        metrics = score(ws, trial, run, spec.metrics)
        metrics["runner"] = f"{socket.gethostname()}:{os.getpid()}"  # which process ran it
        n_div += metrics["status"] == "diverged"
        n_run += 1
        config = {"params": trial.params, "seed": trial.seed, "config": config_json(trial.config)}
        store.write_trial(trial.trial_id, config, metrics, run.embedding)
        store.release(trial.trial_id)
        held.discard(trial.trial_id)
        if on_trial is not None:
            on_trial(trial, metrics)
        if bar is not None:  # one line per trial in a log, the last drawn by close()
            if metrics.get("kl") is not None:
                bar.set_postfix(kl=f"{metrics['kl']:.4f}", refresh=False)
            if bar.n + 1 >= bar.total:
                bar.n += 1
            else:
                bar.update(1)

    try:
        for group in _groups(share):
            if mode == "sequential":
                for trial in group:
                    if claimed([trial]):
                        path = store.checkpoint_path([trial.trial_id]) if saves else None
                        finish(trial, run_trial(ws, trial, path, checkpoint_every))
                        if path is not None:
                            path.unlink(missing_ok=True)
                        store.write_table(ids, grid_keys)
                continue
            size = batch_size or spec.batch_size
            if size is None:
                width = ws.affinities(group[-1].config).neighbors.shape[1]
                size = auto_batch_size(group[0].config, n, width, len(devices))
            pending = list(group)
            while pending:
                batch: list[Trial] = []
                while pending and len(batch) < size:
                    batch += claimed([pending.pop(0)])
                if batch:
                    path = store.checkpoint_path([t.trial_id for t in batch]) if saves else None
                    runs = run_group(ws, batch, mesh, path, checkpoint_every)
                    for trial, run in zip(batch, runs, strict=True):
                        finish(trial, run)
                    if path is not None:
                        path.unlink(missing_ok=True)
                    store.write_table(ids, grid_keys)
        if n_proc > 1:  # the table once every process has written its trials
            _barrier("tsnejax-sweep-end")
        store.write_table(ids, grid_keys)
        store.drop_checkpoints_folder(ids)
    finally:
        for tid in held:
            store.release(tid)
        if bar is not None:
            bar.close()
    return SweepSummary(
        store.root,
        mode,
        len(trials),
        n_run,
        len(trials) - len(todo),
        n_div,
        time.perf_counter() - t_start,
        dict(ws.timings),
        len(todo) - n_run,
    )


def _barrier(name: str) -> None:
    """Wait for every process of the ``jax.distributed`` group."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
