"""Run a sweep: one kNN graph, P per perplexity, compiled programs shared across trials.

Trials are grouped by their *static signature* (the config with the dynamic fields of
:data:`tsnejax.sweep.spec.DYNAMIC_FIELDS` blanked out, and the phase boundaries). Inside a group
the learning rate, exaggerations and momenta are numbers in the optimizer state (set at each
phase boundary with :func:`tsnejax.optim.set_hyperparams`), so every trial runs the same
compiled chunk program. Two ways to run a group:

``"sequential"``
    one trial after another through :func:`tsnejax.run.optimize`; programs compile once per
    (group, P shape, dof, grid) and are reused by later trials. A sequential trial gives the
    same embedding as :func:`tsnejax.fit` with the same key and config when the kNN search is
    exact and the phase boundaries are multiples of ``chunk_size`` (tested).
``"vmap"``
    a batch of trials as one vmapped program: states, P (padded to a common shape, so different
    perplexities batch together) and dof stacked on a leading trial axis, which is sharded over
    ``jax.devices()`` with ``shard_map`` when there are several. The grid is shared by the
    batch (the largest any member needs), so a vmapped trial can differ from its sequential run
    by the interpolation error of a finer grid (exact backend: the same up to rounding).

``choose_mode`` picks ``sequential`` on a single CPU device (a vmapped batch measured slower
per embedding there, ``benchmarks/bench_sweep.py``) and ``vmap`` otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tsnejax._checks import check_data
from tsnejax.affinity import Affinities, pad_affinities, perplexity_affinities
from tsnejax.data import load_array, load_dataset, shared_data_dir
from tsnejax.knn import KNNGraph, nearest_neighbors, precomputed_knn
from tsnejax.optim import get_hyperparams, set_hyperparams
from tsnejax.pipeline import (
    TSNEConfig,
    _initial_embedding,
    _n_neighbors,
    build_optimizer,
    fit,
    hyperparameter_phases,
    make_backend,
)
from tsnejax.run import (
    DivergenceError,
    Stepper,
    TSNEState,
    _chunk_fn,
    _signature,
    build_step,
    init_state,
    optimize,
)
from tsnejax.sweep.spec import DataSpec, SweepSpec, Trial, config_json, expand_trials
from tsnejax.sweep.store import SweepStore, atomic_save_npy, atomic_write_json

__all__ = [
    "Dataset",
    "TrialRun",
    "Workspace",
    "SweepSummary",
    "load_data",
    "static_signature",
    "choose_mode",
    "auto_batch_size",
    "run_trial",
    "run_batch",
    "score",
    "run_sweep",
]


class Dataset(NamedTuple):
    X: np.ndarray  # (n, d) float32, after subsampling and PCA
    labels: np.ndarray | None  # (n,)
    digest: str  # sha256 prefix of X and labels: part of every trial id


class TrialRun(NamedTuple):
    """What running one trial gives (before scoring)."""

    embedding: np.ndarray  # (n, d); the last finite embedding when diverged
    kl: float  # the backend's KL of the final embedding (nan if diverged)
    kl_history: list[tuple[int, float]]
    n_iter: int
    diverged_at: int | None  # iteration of divergence
    seconds: float  # optimisation time (a vmapped batch's time divided by its size)
    compile_seconds: float


def load_data(spec: DataSpec, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load, subsample and project the data a spec names (local files only)."""
    if spec.name is not None:
        X, y = load_dataset(spec.name)
    else:
        path = Path(spec.path)
        if not path.exists() and not path.is_absolute():
            path = shared_data_dir(data_dir) / spec.path
        if not path.exists():
            raise ValueError(
                f"data.path={spec.path!r} was not found (also looked in {str(path.parent)!r}); "
                "give an existing file or set TSNEJAX_DATA to the folder that holds it."
            )
        X, y = load_array(path)
    X = check_data(np.asarray(X, np.float32))
    if y is not None and len(y) != len(X):
        y = None
    if spec.n_points is not None and spec.n_points < len(X):
        rows = np.sort(np.random.default_rng(spec.seed).choice(len(X), spec.n_points, False))
        X, y = X[rows], (None if y is None else y[rows])
    if spec.pca is not None and spec.pca < X.shape[1]:
        from sklearn.decomposition import PCA

        X = PCA(spec.pca, random_state=spec.seed).fit_transform(X).astype(np.float32)
    h = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    if y is not None:
        h.update(np.asarray(y).astype(str).tobytes())
    return Dataset(np.ascontiguousarray(X), y, h.hexdigest()[:16])


def static_signature(config: TSNEConfig) -> TSNEConfig:
    """``config`` with the per-trial (dynamic) values blanked: equal signatures share a program."""
    return dataclasses.replace(
        config,
        learning_rate=1.0,
        learning_rate_rule="opentsne",
        early_exaggeration=1.0,
        exaggeration=1.0,
        initial_momentum=0.0,
        final_momentum=0.0,
        dof=1.0,
        perplexity=1.0,
        n_neighbors=1,
    )


def _piecewise(config: TSNEConfig) -> bool:
    return config.stopping == "fixed" and config.exaggeration_decay == "step"


class Workspace:
    """Per-dataset state shared by the trials: kNN graphs, P per perplexity, init, steppers."""

    def __init__(self, data: Dataset, trials: Sequence[Trial], seed: int = 0):
        self.X, self.labels = data.X, data.labels
        self.n = int(data.X.shape[0])
        self.key = jax.random.key(seed)
        self._k_max: dict[str, int] = {}
        for t in trials:
            perps = np.atleast_1d(t.config.perplexity)
            k = _n_neighbors(t.config, self.n, float(max(perps)))
            m = t.config.neighbors
            self._k_max[m] = max(self._k_max.get(m, 0), k)
        self._graphs: dict[str, KNNGraph] = {}
        self._P: dict[Any, Affinities] = {}
        self._init: dict[Any, jax.Array] = {}
        self._steppers: dict[TSNEConfig, tuple[Stepper, Any, set[str]]] = {}
        self.x_neighbors = None
        self.timings = {"knn": 0.0, "affinities": 0.0}

    def graph(self, method: str) -> KNNGraph:
        """The kNN graph for the largest k any trial needs (computed once per method)."""
        if method not in self._graphs:
            t0 = time.perf_counter()
            g = nearest_neighbors(self.X, self._k_max[method], method=method, key=self.key)
            self._graphs[method] = jax.block_until_ready(g)
            self.timings["knn"] += time.perf_counter() - t0
        return self._graphs[method]

    def affinities(self, config: TSNEConfig) -> Affinities:
        """P of the trial: its perplexity calibrated on the first k columns of the shared graph."""
        perps = tuple(float(p) for p in np.atleast_1d(config.perplexity))
        k = _n_neighbors(config, self.n, max(perps))
        key = (config.neighbors, perps, k)
        if key not in self._P:
            t0 = time.perf_counter()
            g = self.graph(config.neighbors)
            knn = precomputed_knn(g.indices[:, :k], g.distances[:, :k])
            self._P[key] = jax.block_until_ready(perplexity_affinities(knn, perps))
            self.timings["affinities"] += time.perf_counter() - t0
        return self._P[key]

    def initial(self, config: TSNEConfig, seed: int) -> jax.Array:
        """Initial embedding, drawn as :func:`tsnejax.fit` draws it from ``key(seed)``."""
        spec = config.initialization
        key = (spec, config.n_components) if spec == "pca" else (spec, config.n_components, seed)
        if key not in self._init:
            _, k_init = jax.random.split(jax.random.key(seed))
            self._init[key] = _initial_embedding(k_init, self.X, self.n, config, None)
        return self._init[key]

    def stepper(self, config: TSNEConfig) -> tuple[Stepper, Any, set[str]]:
        """``(stepper, optimizer, settable hyperparameter names)`` shared by a signature."""
        sig = static_signature(config)
        if sig not in self._steppers:
            opt, _, _ = build_optimizer(config, self.n, piecewise=True)
            backend = make_backend(config, self.n)
            step = build_step(
                backend, opt, gradient_scale=config.gradient_scale, recenter=config.recenter
            )
            names = set(get_hyperparams(opt.init(jnp.zeros((2, config.n_components)))))
            self._steppers[sig] = (step, opt, names)
        return self._steppers[sig]


def _phase_plan(config: TSNEConfig, n: int, names: set[str]) -> list[tuple[int, int, dict]]:
    phases = hyperparameter_phases(config, n)
    ends = [s for s, _ in phases[1:]] + [config.total_iter]
    return [
        (s, e, {k: v for k, v in vals.items() if k in names})
        for (s, vals), e in zip(phases, ends, strict=True)
    ]


def run_trial(ws: Workspace, trial: Trial) -> TrialRun:
    """One trial on its own (the compiled programs of its signature are reused)."""
    cfg = trial.config
    Y0 = ws.initial(cfg, trial.seed)
    P = ws.affinities(cfg)
    if not _piecewise(cfg):  # opt-SNE or a decaying exaggeration: the plain pipeline
        try:
            r = fit(jax.random.key(trial.seed), None, cfg, affinities=P, initialization=Y0)
        except DivergenceError as err:
            return _diverged(err)
        t = r.timings
        return TrialRun(
            r.embedding, r.kl_divergence, r.kl_history, r.n_iter, None, t["optimize"], t["compile"]
        )
    stepper, opt, names = ws.stepper(cfg)
    state = init_state(Y0, opt)
    history: list[tuple[int, float]] = []
    run_s = compile_s = 0.0
    for start, end, values in _phase_plan(cfg, ws.n, names):
        state = state._replace(opt_state=set_hyperparams(state.opt_state, **values))
        try:
            res = optimize(
                stepper, state, P, end - start, dof=float(cfg.dof), chunk_size=cfg.chunk_size
            )
        except DivergenceError as err:
            return _diverged(err)
        state = res.state
        history += res.kl_history
        run_s += res.run_seconds
        compile_s += res.compile_seconds
    kl = history[-1][1] if history else float("nan")
    n_iter = int(state.iteration)
    return TrialRun(np.asarray(state.embedding), kl, history, n_iter, None, run_s, compile_s)


def _diverged(err: DivergenceError) -> TrialRun:
    Y = np.asarray(err.state.embedding)
    return TrialRun(Y, float("nan"), [], int(err.state.iteration), err.iteration, 0.0, 0.0)


_BATCHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _batched_chunk(stepper, n_steps, static_dof, grid, args, mesh) -> tuple[Callable, float]:
    cache = _BATCHED.setdefault(stepper, {})
    key = (n_steps, static_dof, grid, _signature(args), None if mesh is None else id(mesh))
    if key in cache:
        return cache[key][0], 0.0
    t0 = time.perf_counter()
    fn = jax.vmap(_chunk_fn(stepper, n_steps, static_dof, grid, True))
    if mesh is not None:
        spec = jax.sharding.PartitionSpec("trials")
        fn = jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
    compiled = jax.jit(fn).lower(*args).compile()
    cache[key] = (compiled, mesh)  # the mesh is kept alive with its program
    return compiled, time.perf_counter() - t0


def _join_grids(grids: list) -> Any:
    """The grid that serves every member of a batch: the largest (grids are size tuples)."""
    real = [g for g in grids if g is not None]
    return max(real) if real else None


def _stack(trees: list) -> Any:
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def run_batch(ws: Workspace, trials: Sequence[Trial], mesh: Any = None) -> list[TrialRun]:
    """Trials of one group as one vmapped program (sharded over ``mesh`` when given).

    All trials must share :func:`static_signature` and phase boundaries. The batch is padded
    with copies of its last trial to a multiple of the mesh size (their results are dropped).
    """
    cfgs = [t.config for t in trials]
    cfg0 = cfgs[0]
    if any(static_signature(c) != static_signature(cfg0) for c in cfgs):
        raise ValueError("run_batch: the trials do not share one static signature.")
    stepper, opt, names = ws.stepper(cfg0)
    plans = [_phase_plan(c, ws.n, names) for c in cfgs]
    bounds = [(s, e) for s, e, _ in plans[0]]
    if any([(s, e) for s, e, _ in p] != bounds for p in plans):
        raise ValueError("run_batch: the trials' phase boundaries differ.")
    n_dev = 1 if mesh is None else mesh.size
    size = len(trials)
    order = list(range(size)) + [size - 1] * (-size % n_dev)
    Ps = [ws.affinities(cfgs[i]) for i in order]
    width = max(P.neighbors.shape[1] for P in Ps)
    n_extra = max(P.extra_neighbors.shape[0] for P in Ps)
    P = _stack([pad_affinities(p, width, n_extra) for p in Ps])
    Y0 = jnp.stack([ws.initial(cfgs[i], trials[i].seed) for i in order])
    dtype = Y0.dtype
    state = TSNEState(Y0, jax.vmap(opt.init)(Y0), jnp.zeros((len(order),), jnp.int32))
    dofs = {float(c.dof) for c in cfgs}
    static_dof = dofs.pop() if len(dofs) == 1 else None
    if static_dof is None and any(math.isinf(d) for d in dofs):
        raise ValueError("run_batch: dof = inf cannot share a batch with finite dofs.")
    dof = jnp.asarray([cfgs[i].dof for i in order], dtype)
    put = (lambda x: x) if mesh is None else _sharder(mesh)
    P, dof = put(P), put(dof)

    def set_all(opt_state, j):
        vals = {k: jnp.asarray([plans[i][j][2][k] for i in order], dtype) for k in plans[0][j][2]}
        return jax.vmap(lambda s, v: set_hyperparams(s, **v))(opt_state, vals)

    diverged: list[int | None] = [None] * size
    frozen: list[np.ndarray | None] = [None] * size
    history: list[list] = [[] for _ in range(size)]
    run_s = compile_s = 0.0
    for j, (start, end) in enumerate(bounds):
        state = put(state._replace(opt_state=set_all(state.opt_state, j)))
        it = start
        while it < end:
            length = min(cfg0.chunk_size, end - it)
            grid = _join_grids([stepper.allocate(state.embedding[b]) for b in range(size)])
            args = (state, P, dof)
            fn, c = _batched_chunk(stepper, length, static_dof, grid, args, mesh)
            compile_s += c
            t0 = time.perf_counter()
            new, ok, bad_at, _, kl = fn(*args)
            ok, bad_at, kl = np.asarray(ok), np.asarray(bad_at), np.asarray(kl)
            run_s += time.perf_counter() - t0
            it += length
            for b in range(size):
                if diverged[b] is not None:
                    continue
                if not ok[b]:
                    diverged[b] = int(bad_at[b])
                    frozen[b] = np.asarray(new.embedding[b])
                else:
                    history[b].append((it, float(kl[b])))
            state = new
    out = []
    for b in range(size):
        if diverged[b] is not None:
            out.append(
                TrialRun(frozen[b], float("nan"), history[b], diverged[b] - 1, diverged[b], 0, 0)
            )
            continue
        kl_b = history[b][-1][1] if history[b] else float("nan")
        Y = np.asarray(state.embedding[b])
        out.append(TrialRun(Y, kl_b, history[b], cfg0.total_iter, None, run_s / size, compile_s))
    return out


def _sharder(mesh: Any) -> Callable:
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("trials"))
    return lambda tree: jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def choose_mode(requested: str, n_devices: int, platform: str | None = None) -> str:
    """``"auto"`` -> ``"sequential"`` on one CPU device, else ``"vmap"`` (see module doc)."""
    if requested != "auto":
        return requested
    platform = jax.default_backend() if platform is None else platform
    return "sequential" if platform == "cpu" and n_devices == 1 else "vmap"


#: Late-phase grid boxes per axis assumed by :func:`auto_batch_size`: about 50 + sqrt(N)
#: (measured: 162 boxes at the end of an MNIST-10k run, ~256 at 70k).
def _expected_boxes(n: int, config: TSNEConfig) -> int:
    cap = config.max_boxes or (32 if config.n_components == 3 else 1000)
    return int(min(cap, 50 + math.sqrt(n)))


def auto_batch_size(config: TSNEConfig, n: int, width: int, n_devices: int = 1) -> int:
    """Trials per vmapped batch that fit in half the free memory of each device.

    Per trial: P (``n * width`` indices and weights), ~40 embedding-sized temporaries and the
    interpolation grid's FFT buffers (``(2 * 3 * boxes)^d`` complex values, ``2d + 6`` of
    them). On CPU it is one trial per device: a batch of 2 or 4 on one CPU device measured
    slower per embedding than one at a time (``benchmarks/bench_sweep.py``).
    """
    d = config.n_components
    per_trial = 8 * n * width + 4 * n * d * 40
    if n > 5000 or config.negative_gradient_method in ("interpolation", "splat"):
        m = 2 * 3 * _expected_boxes(n, config)
        per_trial += 8 * m**d * (2 * d + 6)
    dev = jax.devices()[0]
    free = None
    try:
        stats = dev.memory_stats() or {}
        free = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0) or None
    except Exception:  # CPU devices have no memory_stats
        free = None
    if free is None:
        free = _mem_available() / max(n_devices, 1)
    per_device = max(1, int(0.5 * free // per_trial))
    if dev.platform == "cpu":
        per_device = 1
    return per_device * n_devices


def _mem_available() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 4e9


def _summary_quality(m: dict) -> dict:
    out = {}
    for k in (1, 10, 30):
        if "nn_precision" in m and len(m["nn_precision"]) >= k:
            out[f"nn_precision_{k}"] = m["nn_precision"][k - 1]
    return out


def score(ws: Workspace, trial: Trial, run: TrialRun, metrics: Sequence[str]) -> dict:
    """The trial's metrics.json: status, KL, the requested quality metrics and timings."""
    out: dict[str, Any] = {
        "status": "ok" if run.diverged_at is None else "diverged",
        "diverged_at": run.diverged_at,
        "n_iter": run.n_iter,
        "kl": run.kl,
        "kl_history": run.kl_history,
        "seconds": run.seconds,
        "compile_seconds": run.compile_seconds,
    }
    if run.diverged_at is not None:
        return out
    Y = run.embedding
    if "kl_exact" in metrics and ws.n <= 20000:
        from tsnejax.metrics import kl_divergence

        out["kl_exact"] = float(kl_divergence(ws.affinities(trial.config), Y, trial.config.dof))
    if {"quality", "trustworthiness", "global"} & set(metrics):
        from tsnejax.metrics.report import evaluate, input_neighbors

        n_queries = None if ws.n <= 100_000 else 10_000
        if ws.x_neighbors is None:
            ws.x_neighbors = input_neighbors(ws.X, n_queries=n_queries)
        q = evaluate(
            ws.X,
            Y,
            ws.labels,
            n_queries=n_queries,
            global_scores="global" in metrics,
            trustworthiness="trustworthiness" in metrics,
            x_neighbors=ws.x_neighbors,
        )
        q.pop("timings_seconds", None)
        out.update(q)
        out.update(_summary_quality(q))
    return out


class SweepSummary(NamedTuple):
    root: Path
    mode: str
    n_trials: int
    n_run: int  # trials run by this call
    n_skipped: int  # already finished (resume)
    n_diverged: int
    seconds: float
    timings: dict[str, float]


def _groups(trials: Sequence[Trial], n: int) -> list[list[Trial]]:
    """Trials by (static signature, phase boundaries), perplexity-sorted inside a group."""
    groups: dict[Any, list[Trial]] = {}
    for t in trials:
        c = t.config
        phases = tuple(s for s, _ in hyperparameter_phases(c, n)) if _piecewise(c) else ()
        # dof = inf is a compiled-in kernel (a traced dof must be finite): its own group.
        key = (static_signature(c), _piecewise(c), phases, math.isinf(c.dof))
        if not _piecewise(c):
            key = (key, t.trial_id)  # the plain pipeline, one at a time
        groups.setdefault(key, []).append(t)
    return [
        sorted(g, key=lambda t: (max(np.atleast_1d(t.config.perplexity)), t.seed))
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
      devices: devices to shard vmapped batches over (default ``jax.devices()``).
      progress: a tqdm bar over trials.
      on_trial: called with ``(trial, metrics)`` after each trial is written.
    """
    t_start = time.perf_counter()
    if smoke:
        spec = spec.smoke_version()
    store = SweepStore(out)
    finished = store.finished_ids()
    if finished and not resume:
        raise ValueError(
            f"{str(store.root)!r} already holds {len(finished)} finished trial(s); pass "
            "resume=True (--resume) to continue it, or choose another output folder."
        )
    data = load_data(spec.data, data_dir)
    n = data.X.shape[0]
    trials = expand_trials(spec, n, data.digest)
    grid_keys = [*spec.grid, *([] if "seed" in spec.grid else ["seed"])]
    atomic_write_json(
        store.root / "sweep.json",
        {
            "spec": spec.to_dict(),
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
    devices = list(jax.devices() if devices is None else devices)
    mode = choose_mode(mode or spec.mode, len(devices))
    mesh = None
    if mode == "vmap" and len(devices) > 1:
        mesh = jax.sharding.Mesh(np.asarray(devices), ("trials",))
    ws = Workspace(data, todo, spec.data.seed)
    ids = [t.trial_id for t in trials]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc=spec.name, unit="trial")
    n_div = 0

    def finish(trial: Trial, run: TrialRun) -> None:
        nonlocal n_div
        metrics = score(ws, trial, run, spec.metrics)
        n_div += metrics["status"] == "diverged"
        config = {"params": trial.params, "seed": trial.seed, "config": config_json(trial.config)}
        store.write_trial(trial.trial_id, config, metrics, run.embedding)
        if on_trial is not None:
            on_trial(trial, metrics)
        if bar is not None:
            bar.update(1)
            if metrics.get("kl") is not None:
                bar.set_postfix(kl=f"{metrics['kl']:.4f}")

    try:
        for group in _groups(todo, n):
            if mode == "sequential" or not _piecewise(group[0].config):
                for trial in group:
                    finish(trial, run_trial(ws, trial))
                    store.write_table(ids, grid_keys)
                continue
            size = batch_size or spec.batch_size
            if size is None:
                width = ws.affinities(group[-1].config).neighbors.shape[1]
                size = auto_batch_size(group[0].config, n, width, len(devices))
            for i in range(0, len(group), size):
                batch = group[i : i + size]
                for trial, run in zip(batch, run_batch(ws, batch, mesh), strict=True):
                    finish(trial, run)
                store.write_table(ids, grid_keys)
        store.write_table(ids, grid_keys)
    finally:
        if bar is not None:
            bar.close()
    return SweepSummary(
        store.root,
        mode,
        len(trials),
        len(todo),
        len(trials) - len(todo),
        n_div,
        time.perf_counter() - t_start,
        dict(ws.timings),
    )
