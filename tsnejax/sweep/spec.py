"""Sweep specifications: a TOML file or a Python ``get_config()`` -> :class:`SweepSpec` -> trials.

A spec names a dataset, fixed settings (any :class:`tsnejax.TSNEConfig` field, or a
``preset``), a grid of values (the product is taken, in the order given) and the metrics to
record. A grid value of ``learning_rate`` may be an expression in the number of points, such as
``"N/12"`` or ``"N"`` (Kobak & Berens' rule). ``optimizer`` values are registry specs
(``"adam:learning_rate=3,b1=0.8"``); in a Python spec they may also be Optax objects, and
``negative_gradient_method`` values :class:`tsnejax.gradients.Backend` objects. A grid entry
may be a dict ``{label: value}`` instead of a list: the labels name the trials (in
``results.csv``, the report and the trial ids), which objects need. A ``[smoke]`` table shrinks
the sweep for a quick check
(``tsnejax sweep CONFIG --smoke``): its ``data`` table replaces data fields, its ``grid`` table
replaces grid entries, and its other keys replace fixed settings.

Example (``experiments/configs/kobak_learning_rate.toml``)::

    name = "kobak-learning-rate"
    [data]
    path = "mnist.npz"    # relative: resolved against $TSNEJAX_DATA, default ../shared/data
    pca = 50
    [fixed]
    perplexity = 30
    [grid]
    learning_rate = [200, 1000, "N/12", "N"]
    [run]
    seeds = [0]
    metrics = ["kl", "quality"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import numbers
import runpy
import tomllib
from pathlib import Path
from typing import Any

import optax

from tsnejax._checks import check_pathlike
from tsnejax.config import DYNAMIC_FIELDS, FLAT_FIELDS, TSNEConfig, resolve_learning_rate
from tsnejax.gradients import Backend
from tsnejax.presets import PRESETS

__all__ = [
    "DataSpec",
    "SweepSpec",
    "Trial",
    "METRICS",
    "MODES",
    "DYNAMIC_FIELDS",
    "load_spec",
    "spec_from_dict",
    "expand_trials",
    "resolve_learning_rate",
]

#: Metric groups a spec may ask for. ``kl``: the backend's KL of the final embedding (free:
#: computed in the last chunk). ``kl_exact``: exact KL (O(N^2) time, blocked; N <= 20000).
#: ``quality``: NN precision/recall k = 1..30, 10-NN preservation and (with labels) 10-NN
#: accuracy. ``trustworthiness``: trustworthiness and continuity, k = 5 (N <= 20000).
#: ``global``: KNC and CPD (labels needed).
METRICS = ("kl", "kl_exact", "quality", "trustworthiness", "global")
#: ``auto`` picks per backend (see :func:`tsnejax.sweep.executor.choose_mode`).
MODES = ("auto", "vmap", "sequential")
_CONFIG_FIELDS = set(FLAT_FIELDS)
_FLOAT_FIELDS = {k: isinstance(v, float) for k, v in TSNEConfig().flat().items()}
_FLOAT_FIELDS["learning_rate"] = True
_GRID_EXTRA = {"seed", "optimizer", "preset"}
_TOP_KEYS = {"name", "description", "data", "fixed", "grid", "run", "smoke"}
_RUN_KEYS = {"seeds", "metrics", "mode", "batch_size"}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is prepared before the kNN search.

    Attributes:
      name: a bundled dataset (``"digits"``); or
      path: ``.npy``/``.npz``/``.csv``; a relative path that does not exist relative to the
        working directory is looked up in ``$TSNEJAX_DATA`` (default ``../shared/data``).
      n_points: a random subset of this many rows (drawn with ``seed``); ``None``: all.
      pca: project onto this many principal components first (Kobak's MNIST setting: 50).
      seed: subsample and kNN seed (trial seeds drive the initialisation).
      labels: a file of one label per row of ``path``'s data (``.npy``, ``.npz`` or one
        column of text), looked up like ``path``; for data files that hold none (``.npy``,
        ``.csv``). Labels enable the kNN-accuracy and global-structure metrics and colour
        the report's plots.
    """

    name: str | None = None
    path: str | None = None
    n_points: int | None = None
    pca: int | None = None
    seed: int = 0
    labels: str | None = None

    def __post_init__(self):
        if (self.name is None) == (self.path is None):
            raise ValueError("data: give exactly one of name (e.g. 'digits') or path (a file).")
        for field in ("n_points", "pca"):
            v = getattr(self, field)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"data.{field} must be a positive integer, got {v!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):  # NumPy's TypeError
            raise ValueError(f"data.seed must be an integer, got {self.seed!r}.")
        if self.labels is not None and (self.name is not None or not isinstance(self.labels, str)):
            raise ValueError(
                "data.labels must be a file path, given with data.path (bundled datasets "
                "bring their own labels)."
            )


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A whole sweep (see the module docstring for the file format)."""

    name: str
    data: DataSpec
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, list] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    metrics: tuple[str, ...] = ("kl", "quality")
    mode: str = "auto"
    batch_size: int | None = None
    description: str = ""
    smoke: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self, json_ready: bool = False) -> dict[str, Any]:
        """The spec as the dict :func:`spec_from_dict` reads; ``json_ready``: objects as their
        labels (:func:`label_of`), for ``sweep.json``."""
        lab = label_of if json_ready else (lambda v: v)

        def grid_entry(v: Any) -> Any:
            return {k: lab(x) for k, x in v.items()} if isinstance(v, dict) else [lab(x) for x in v]

        return {
            "name": self.name,
            "description": self.description,
            "data": {k: v for k, v in dataclasses.asdict(self.data).items() if v is not None},
            "fixed": {k: lab(v) for k, v in self.fixed.items()},
            "grid": {k: grid_entry(v) for k, v in self.grid.items()},
            "run": {
                "seeds": list(self.seeds),
                "metrics": list(self.metrics),
                "mode": self.mode,
                **({"batch_size": self.batch_size} if self.batch_size else {}),
            },
            "smoke": {k: lab(v) for k, v in self.smoke.items()},
        }

    def smoke_version(self) -> SweepSpec:
        """The spec with its ``[smoke]`` overrides applied (data, grid entries, fixed fields).

        Raises ``ValueError`` when the spec has no ``[smoke]`` table: a smoke run of the full
        sweep would silently cost the full sweep's time."""
        if not self.smoke:
            raise ValueError(
                f"--smoke: the spec {self.name!r} has no [smoke] table, so a smoke run would be "
                "the full sweep; add one (e.g. [smoke] n_iter = 50, early_exaggeration_iter = "
                "50 and [smoke.data] n_points = 500) or run without --smoke."
            )
        smoke = dict(self.smoke)
        data_over = smoke.pop("data", {})
        data = dataclasses.asdict(self.data)
        if "name" in data_over or "path" in data_over:
            data.update(name=None, path=None, labels=None)  # the smoke source replaces it
        data.update(data_over)
        data = {k: v for k, v in data.items() if v is not None}
        grid = {**self.grid, **smoke.pop("grid", {})}
        run = smoke.pop("run", {})
        out = self.to_dict()
        out.update(data=data, grid=grid, fixed={**self.fixed, **smoke}, smoke={})
        out["name"] = self.name + "-smoke"
        out["run"].update(run)
        return spec_from_dict(out)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One grid point and seed, resolved to a config for ``n`` points."""

    trial_id: str  # hash of (data digest, config, seed, metrics): the results sub-folder
    params: dict[str, Any]  # the grid values as written in the spec (plus "seed")
    config: TSNEConfig
    seed: int


def _check_keys(where: str, given: Any, allowed: set[str]) -> dict:
    """A copy of the table ``given`` once it is a dict with only ``allowed`` keys."""
    if not isinstance(given, dict):
        raise ValueError(f"{where} must be a table/dict, got {type(given).__name__}.")
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}.")
    return dict(given)


def spec_from_dict(d: dict[str, Any]) -> SweepSpec:
    """Validate a spec dict (parsed TOML or ``get_config()``); errors name the bad key."""
    _check_keys("sweep spec", d, _TOP_KEYS)
    if "name" not in d or not isinstance(d["name"], str) or not d["name"]:
        raise ValueError("sweep spec: 'name' (a non-empty string) is required.")
    if "data" not in d:
        raise ValueError("sweep spec: a [data] table with 'name' or 'path' is required.")
    _check_keys("[data]", d["data"], {f.name for f in dataclasses.fields(DataSpec)})
    data = DataSpec(**d["data"])
    fixed = _check_keys("[fixed]", d.get("fixed", {}), _CONFIG_FIELDS | {"preset", "optimizer"})
    grid = _check_keys("[grid]", d.get("grid", {}), _CONFIG_FIELDS | _GRID_EXTRA)
    for key, values in grid.items():
        if not isinstance(values, list | tuple | dict) or len(values) == 0:
            raise ValueError(
                f"[grid] {key} must be a non-empty list of values (or a dict label -> value), "
                f"got {values!r}."
            )
    run = _check_keys("[run]", d.get("run", {}), _RUN_KEYS)
    seeds = tuple(run.get("seeds", (0,)))
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"[run] seeds must be a non-empty list of integers, got {seeds!r}.")
    metrics = run.get("metrics", ("kl", "quality"))
    if not isinstance(metrics, list | tuple):  # "kl" was read as ['k', 'l']
        raise ValueError(f"[run] metrics must be a list, e.g. ['kl'], got {metrics!r}.")
    metrics = tuple(metrics)
    bad = sorted(set(metrics) - set(METRICS))
    if bad:
        raise ValueError(f"[run] metrics: unknown {bad}; choose from {list(METRICS)}.")
    mode = run.get("mode", "auto")
    if mode not in MODES:
        raise ValueError(f"[run] mode={mode!r} is not one of {list(MODES)}.")
    batch = run.get("batch_size")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"[run] batch_size must be a positive integer, got {batch!r}.")
    smoke = _check_keys(
        "[smoke]", d.get("smoke", {}), _CONFIG_FIELDS | {"data", "grid", "run", "preset"}
    )
    spec = SweepSpec(
        name=d["name"],
        data=data,
        fixed=fixed,
        grid=grid,
        seeds=seeds,
        metrics=metrics,
        mode=mode,
        batch_size=batch,
        description=str(d.get("description", "")),
        smoke=smoke,
    )
    # Every trial must resolve to a valid config; fail now, not after hours of sweeping.
    expand_trials(spec, n=None)
    if smoke:  # its overrides too (an unknown key was found only by a --smoke run)
        spec.smoke_version()
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    """Read a ``.toml`` spec, or a ``.py`` file whose ``get_config()`` returns a dict/spec."""
    p = Path(check_pathlike("path", path, "sweep.toml"))
    if not p.exists():
        raise ValueError(f"sweep config {str(p)!r} does not exist.")
    if p.suffix == ".toml":
        try:
            with open(p, "rb") as fh:
                d = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"sweep config {str(p)!r} is not valid TOML: {err}.") from err
    elif p.suffix == ".py":
        namespace = runpy.run_path(str(p))
        if "get_config" not in namespace:
            raise ValueError(f"sweep config {str(p)!r} defines no get_config().")
        d = namespace["get_config"]()
        if isinstance(d, SweepSpec):
            return d
    else:
        raise ValueError(f"sweep config {str(p)!r}: use a .toml file or a .py with get_config().")
    try:
        return spec_from_dict(d)
    except ValueError as err:
        raise ValueError(f"{p.name}: {err}") from None


def _config_for(spec: SweepSpec, point: dict[str, Any], n: int | None) -> TSNEConfig:
    values = {**spec.fixed, **point}
    values.pop("seed", None)
    preset = values.pop("preset", None)
    if "learning_rate" in values:
        values["learning_rate"] = resolve_learning_rate(values["learning_rate"], n)
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
        elif _FLOAT_FIELDS.get(key) and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)  # 50 and 50.0 are one trial (same hash)
    if isinstance(values.get("optimizer_kwargs"), dict):
        values["optimizer_kwargs"] = tuple(sorted(values["optimizer_kwargs"].items()))
    try:
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"preset={preset!r} is not one of {sorted(PRESETS)}.")
            return TSNEConfig.from_preset(preset, **values)
        return TSNEConfig.make(**values)
    except TypeError as err:  # a wrongly typed field surfaces as a TypeError in validation
        raise ValueError(f"trial {_show(point)}: {err}") from None
    except ValueError as err:
        where = f"trial {_show(point)}" if point else "[fixed]"
        raise ValueError(f"{where}: {err}") from None


def label_of(value: Any) -> Any:
    """JSON-ready stand-in for a setting: objects by a stable name (not their address)."""
    if isinstance(value, Backend):
        return f"backend:{value.name}"
    if isinstance(value, optax.GradientTransformation):
        return f"optax:{getattr(value.init, '__qualname__', type(value).__name__)}"
    if callable(getattr(value, "gradient_transformation", None)):  # optax.MultiSteps
        return f"optax:{type(value).__name__}"
    if callable(value):
        return f"callable:{getattr(value, '__qualname__', type(value).__name__)}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return repr(value)  # a rule set such as SklearnStopping(...): its fields, no address
    if isinstance(value, numbers.Number) and hasattr(value, "item"):
        return value.item()  # a numpy scalar
    if not isinstance(value, str | numbers.Number | tuple | list | dict | type(None)):
        return f"object:{type(value).__qualname__}"
    return value


def _show(point: dict[str, Any]) -> dict[str, Any]:
    return {k: label_of(v) for k, v in point.items()}


def config_json(config: TSNEConfig) -> dict[str, Any]:
    """``config`` by flat names as JSON-ready data (tuples become lists; inf stays a float;
    objects become their :func:`label_of`)."""
    out = {k: label_of(v) for k, v in config.flat().items()}
    out["optimizer_kwargs"] = {k: label_of(v) for k, v in config.optimizer.kwargs}
    return json.loads(json.dumps(out, default=list))


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _entries(values: Any) -> list[tuple[Any, Any]]:
    """``[(label, value)]`` of a grid entry: a dict's keys, or each value's :func:`label_of`."""
    if isinstance(values, dict):
        return [(str(k), v) for k, v in values.items()]
    return [(label_of(v), v) for v in values]


def expand_trials(spec: SweepSpec, n: int | None, data_digest: str = "") -> list[Trial]:
    """Every grid point x seed, as resolved :class:`Trial` s (``n``: points, for ``"N/12"``)."""
    keys = list(spec.grid)
    seeds = None if "seed" in spec.grid else spec.seeds
    trials = []
    entries = [_entries(spec.grid[k]) for k in keys]
    for combo in itertools.product(*entries):
        point = {k: value for k, (_, value) in zip(keys, combo, strict=True)}
        labels = {k: label for k, (label, _) in zip(keys, combo, strict=True)}
        config = _config_for(spec, point, n)
        for seed in [point["seed"]] if seeds is None else seeds:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"[grid] seed values must be integers, got {seed!r}.")
            params = {**labels, "seed": seed}
            # Objects are named by their grid labels (two chains share a qualname).
            named = {k: labels[k] for k, v in point.items() if label_of(v) is not v}
            tid = _digest(data_digest, config_json(config), named, seed, sorted(spec.metrics))
            trials.append(Trial(tid, params, config, seed))
    seen: dict[str, dict] = {}
    for t in trials:
        # With n unknown, equal grid values are refused ([10, 10.0]); "N/12" against 100 only
        # once N resolves them.
        key = t.trial_id if n is not None else repr(sorted(t.params.items()))
        if key in seen:
            objects = any(str(v).startswith(("optax:", "callable:")) for v in t.params.values())
            fix = (
                "objects are named by their type, so give each its own label with a dict, "
                "e.g. {'warm-10': schedule_a, 'warm-100': schedule_b}"
                if objects
                else "remove one of the values"
            )
            where = "" if n is None else f" for N={n}"
            raise ValueError(
                f"grid points {seen[key]} and {t.params} resolve to the same settings{where}; "
                f"{fix}."
            )
        seen[key] = t.params
    return trials
