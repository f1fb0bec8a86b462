"""The settings of a t-SNE run as composable frozen parts (defaults: openTSNE 1.0.4).

:class:`TSNEConfig` holds the generic settings and four parts, each with its own declared
validation:

- :class:`AffinityConfig`: how P is built (perplexity, neighbours, kernel);
- :class:`ScheduleConfig`: the phases (early exaggeration, iterations, exaggeration decay,
  opt-SNE stopping);
- :class:`OptimizerConfig`: the update rule (a registry name, a ``"name:key=value"`` spec or
  any Optax ``GradientTransformation``; learning rate, momentum, gains, safety rails);
- :class:`GradientConfig`: the gradient method (a registry name or any
  :class:`tsnejax.gradients.Backend`) and its grid parameters.

``TSNEConfig.make(perplexity=50, learning_rate="N/12")`` routes flat names to their parts (the
estimator, the command line and sweep specs use flat names); ``config.replace(...)`` does the
same for a copy. Fields marked dynamic (:func:`static_signature`) reach the run as data, so
configs that differ only there share one compiled program. Turning a config into objects
(optimizer, backend, phase table) is :mod:`tsnejax.build`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import optax

from tsnejax._checks import (
    check_grid_components,
    check_momentum,
    check_n_components,
    check_option,
)
from tsnejax._config_checks import (
    NEIGHBOR_METHODS,
    decay,
    dof_value,
    integer,
    n_neighbors_value,
    neighbor_search,
    number,
    option,
    perplexity_values,
    positive,
)
from tsnejax._fields import field, is_dynamic, validate_fields
from tsnejax._spec import parse_spec
from tsnejax.gradients import BACKENDS, Backend, canonical_method
from tsnejax.knn_ivf import IVFSearch
from tsnejax.knn_metric import check_metric, frozen_metric_params
from tsnejax.optim import GAINS_RULES, OPTIMIZERS, as_transformation, check_optimizer_args
from tsnejax.presets import preset_fields
from tsnejax.schedules import LR_RULES, check_learning_rate, resolve_learning_rate
from tsnejax.stopping import STOPPING_RULES, Stopping, check_stopping

__all__ = [
    "AffinityConfig",
    "ScheduleConfig",
    "OptimizerConfig",
    "GradientConfig",
    "TSNEConfig",
    "FLAT_FIELDS",
    "DYNAMIC_FIELDS",
    "static_signature",
    "resolve_learning_rate",
    "GRADIENT_METHODS",
    "NEIGHBOR_METHODS",
    "AFFINITY_METHODS",
    "STOPPING_RULES",
    "INIT_METHODS",
]

GRADIENT_METHODS = ("auto", *BACKENDS)
AFFINITY_METHODS = ("perplexity", "uniform")
INIT_METHODS = ("pca", "spectral", "random")


@dataclasses.dataclass(frozen=True)
class AffinityConfig:
    """How P is built from the data.

    Attributes:
      perplexity: target perplexity; a tuple averages the conditionals (multi-scale).
      n_neighbors: k of the kNN graph: an int, ``"3p"`` (3 x perplexity, openTSNE) or
        ``"3p+1"`` (scikit-learn).
      neighbors: kNN search: ``"auto"`` (:func:`tsnejax.knn.auto_search`: exact below 40k
        points, else ``"ivf"``), ``"exact"``, ``"ivf"`` (cluster-pruned, jitted,
        :mod:`tsnejax.knn_ivf`; an :class:`tsnejax.knn_ivf.IVFSearch` sets its effort),
        ``"faiss"`` (exact, optional extra), ``"faiss_hnsw"`` (approximate,
        deterministic, optional extra), ``"pynndescent"``, ``"sharded"`` (exact ring search
        over the run's mesh, :mod:`tsnejax.sharded_knn`; needs ``mesh=``).
      method: ``"perplexity"``, ``"uniform"``, or any callable ``KNNGraph -> Affinities``.
      metric, metric_params: the input distance (:mod:`tsnejax.knn_metric`: ``"euclidean"``,
        ``"cosine"``, ``"correlation"``, ``"precomputed"``, scikit-learn's names, a callable).
    """

    perplexity: float | tuple[float, ...] = field(30.0, perplexity_values, dynamic=True)
    n_neighbors: int | Literal["3p", "3p+1"] = field("3p", n_neighbors_value, dynamic=True)
    neighbors: (
        Literal["auto", "exact", "ivf", "faiss", "faiss_hnsw", "pynndescent", "sharded"] | IVFSearch
    ) = field("auto", neighbor_search, dynamic=True)
    method: str | Callable[..., Any] = field("perplexity", dynamic=True)
    metric: str | Callable[..., float] = field("euclidean", dynamic=True)
    metric_params: tuple[tuple[str, Any], ...] = field((), dynamic=True)

    def __post_init__(self):
        params = frozen_metric_params(self.metric_params)
        object.__setattr__(self, "metric_params", params)  # hashable, like the config
        check_metric(self.metric, params)
        if not callable(self.method):
            check_option("affinity method", self.method, AFFINITY_METHODS)
        if isinstance(self.perplexity, list | np.ndarray):  # hashable, like a tuple
            object.__setattr__(self, "perplexity", tuple(np.ravel(self.perplexity).tolist()))


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The phases of the run: early exaggeration, then the main phase.

    Attributes:
      early_exaggeration: attraction factor of the first phase.
      early_exaggeration_iter: its iterations (opt-SNE: the most it may run).
      n_iter: iterations of the main phase (opt-SNE: the most). The total is their sum.
      exaggeration: attraction factor of the main phase (1: plain t-SNE).
      exaggeration_decay: ``"step"`` (switch at once), ``"linear"`` or ``"exponential"`` over
        ``exaggeration_decay_iter`` iterations after early exaggeration; or any schedule (an
        Optax schedule, a hashable callable) of the steps since early exaggeration ended,
        giving the exaggeration over those iterations (then ``exaggeration``).
      stopping: ``"fixed"``, ``"optsne"`` (Belkina et al. 2019: each phase ends when the
        relative KL decrease says so; ``optsne_tol`` is the main phase's threshold),
        ``"sklearn"`` (scikit-learn's ``min_grad_norm`` and ``n_iter_without_progress``,
        checked every 50 iterations), or any rule set (:mod:`tsnejax.stopping`). With a rule,
        ``early_exaggeration_iter`` and ``n_iter`` cap the phases.
    """

    early_exaggeration: float = field(12.0, number(positive()), dynamic=True)
    early_exaggeration_iter: int = field(250, integer(0), dynamic=True)
    n_iter: int = field(500, integer(0), dynamic=True)
    exaggeration: float = field(1.0, number(positive()), dynamic=True)
    # A decay is a schedule compiled into the program, so these two are static.
    exaggeration_decay: Literal["step", "linear", "exponential"] | Callable[[Any], Any] = field(
        "step", decay
    )
    exaggeration_decay_iter: int = field(150, integer(0))
    stopping: Literal["fixed", "optsne", "sklearn"] | Stopping = field(
        "fixed", check_stopping, dynamic=True
    )
    optsne_tol: float = field(1e-4, positive(), dynamic=True)
    min_grad_norm: float = field(1e-7, positive(allow_zero=True), dynamic=True)
    n_iter_without_progress: int = field(300, integer(1), dynamic=True)

    def __post_init__(self):
        # A rule's setting without its rule used to change nothing without a word.
        for name, rule in (
            ("optsne_tol", "optsne"),
            ("min_grad_norm", "sklearn"),
            ("n_iter_without_progress", "sklearn"),
        ):
            default = ScheduleConfig.__dataclass_fields__[name].default
            if getattr(self, name) != default and self.stopping != rule:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} applies with stopping={rule!r}, but "
                    f"stopping={self.stopping!r}; set stopping={rule!r} or leave {name} out."
                )

    @property
    def total_iter(self) -> int:
        return self.early_exaggeration_iter + self.n_iter


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The update rule.

    Attributes:
      transform: a registry name (:data:`tsnejax.optim.OPTIMIZERS`), a spec
        ``"adam:b1=0.8,learning_rate=2"`` (parsed into ``transform``, ``kwargs`` and
        ``learning_rate``), or any Optax ``GradientTransformation`` (it keeps its own learning
        rate; see ``phase_scaling``).
      kwargs: further arguments of a registry optimizer, as ``((name, value), ...)``.
      learning_rate: a number, ``"auto"`` (``learning_rate_rule``; adaptive optimizers: a
        fixed step, :data:`tsnejax.build.ADAPTIVE_AUTO_LEARNING_RATE`), an expression in
        N (``"N/12"``), or a schedule of the iteration (an Optax schedule or hashable
        callable; iteration 0 is the first step of early exaggeration). Registry
        optimizers only. A schedule is compiled in: it is static, not a vmapped field.
      learning_rate_rule: which peer's ``"auto"``: ``"opentsne"`` (N / exaggeration, per
        phase), ``"fitsne"``, ``"sklearn"``, ``"cuml"``
        (:func:`tsnejax.schedules.auto_learning_rate`).
      initial_momentum, final_momentum, momentum_switch_iter: momentum before and from the
        switch (default: the end of early exaggeration); classic and sgd.
      gains_rule, min_gain: the classic rule's gains variant and floor.
      max_step_norm: clip each row of every update to this norm (``None``: off); also arms
        the divergence guard on the unclipped step. Every optimizer gets it.
      max_grad_norm: clip each row of the gradient first (``None``: off).
      gradient_scale: multiplies the gradient before the optimizer (4: scikit-learn's).
      recenter: subtract the mean after each step (all peers do).
      phase_scaling: for an Optax object: scale its updates in each phase as the ``"auto"``
        rule changes the learning rate (x 1/12 during early exaggeration with the openTSNE
        rule). ``"auto"`` does so when the object's update grows with the gradient (SGD-like,
        :func:`tsnejax.optim.scales_with_gradient`), as registry optimizers do; ``True`` /
        ``False`` force it.
    """

    transform: str | optax.GradientTransformation = "classic"
    kwargs: tuple[tuple[str, Any], ...] = ()
    learning_rate: float | str | Callable[[Any], Any] = field(
        "auto", check_learning_rate, dynamic=True
    )
    learning_rate_rule: Literal["opentsne", "fitsne", "sklearn", "cuml"] = field(
        "opentsne", option(*LR_RULES), dynamic=True
    )
    initial_momentum: float = field(0.8, number(check_momentum), dynamic=True)
    final_momentum: float = field(0.8, number(check_momentum), dynamic=True)
    momentum_switch_iter: int | None = field(None, integer(0, optional=True), dynamic=True)
    gains_rule: Literal["opentsne", "fitsne", "sklearn"] = field("opentsne", option(*GAINS_RULES))
    min_gain: float = field(0.01, positive(allow_zero=True))
    max_step_norm: float | None = field(5.0, positive(optional=True))
    max_grad_norm: float | None = field(None, positive(optional=True))
    gradient_scale: float = field(1.0, positive())
    recenter: bool = field(True, option(True, False))
    phase_scaling: bool | Literal["auto"] = field("auto", option("auto", True, False))

    def __post_init__(self):
        kwargs = self.kwargs
        if isinstance(kwargs, dict):
            kwargs = tuple(sorted(kwargs.items()))
        transform = self.transform
        if isinstance(transform, str):
            name, parsed = parse_spec(transform, "optimizer", OPTIMIZERS)
            if "learning_rate" in parsed:
                if self.learning_rate != "auto":
                    raise ValueError(
                        f"optimizer={transform!r} sets learning_rate and so does "
                        f"learning_rate={self.learning_rate!r}; keep one."
                    )
                object.__setattr__(self, "learning_rate", parsed.pop("learning_rate"))
            transform = name
            kwargs = tuple(sorted({**dict(kwargs), **parsed}.items()))
            check_optimizer_args(name, dict(kwargs))  # b1=NaN used to pass until the run
        else:
            transform = as_transformation(
                transform,
                f"a registry name ({', '.join(sorted(OPTIMIZERS))}), a spec like 'adam:b1=0.9'",
            )
            if self.learning_rate != "auto" or kwargs:
                raise ValueError(
                    "learning_rate and optimizer kwargs apply to registry optimizers; an Optax "
                    "object carries its own (e.g. optax.sgd(1000.0)). Leave learning_rate='auto'."
                )
        object.__setattr__(self, "transform", transform)
        object.__setattr__(self, "kwargs", tuple((str(k), v) for k, v in kwargs))

    @property
    def is_object(self) -> bool:
        return not isinstance(self.transform, str)


@dataclasses.dataclass(frozen=True)
class GradientConfig:
    """The gradient method and its grid.

    Attributes:
      method: ``"auto"`` (exact up to :data:`tsnejax.build.AUTO_EXACT_MAX_POINTS`, adaptive up
        to ``AUTO_ADAPTIVE_MAX_POINTS``, else interpolation), ``"exact"``, ``"interpolation"``,
        ``"splat"``, ``"adaptive"``, or any
        :class:`tsnejax.gradients.Backend` (e.g. your own; see docs/gradients.md).
      n_interpolation_points, min_num_intervals, ints_in_interval, max_boxes: the
        interpolation grid (:func:`tsnejax.gradients.interpolation_backend`).
      pixels_per_unit: the splat grid's resolution.
      deterministic_scatter: charge grids and fold P's continuation rows back without atomic
        adds (:mod:`tsnejax.gradients._scatter`): deterministic by construction on any device;
        slower on a CPU, where XLA's scatter is deterministic already.
    """

    method: str | Backend = "auto"
    n_interpolation_points: int = field(3, integer(1))
    min_num_intervals: int | None = field(None, integer(1, optional=True))
    ints_in_interval: float = field(1.0, positive())
    max_boxes: int | None = field(None, integer(1, optional=True))
    pixels_per_unit: float = field(4.0, positive())
    deterministic_scatter: bool = False

    def __post_init__(self):
        object.__setattr__(self, "method", canonical_method(self.method))  # "fft": openTSNE's
        if not isinstance(self.method, str | Backend):
            raise ValueError(
                f"negative_gradient_method must be one of {GRADIENT_METHODS} or a tsnejax."
                f"gradients.Backend (docs/gradients.md), got {type(self.method).__name__}."
            )
        if isinstance(self.method, str):
            check_option("negative_gradient_method", self.method, GRADIENT_METHODS)


_PARTS = {
    "affinities": AffinityConfig,
    "schedule": ScheduleConfig,
    "optimizer": OptimizerConfig,
    "gradient": GradientConfig,
}
#: Flat names that differ from their part's field name.
_RENAMED = {
    ("optimizer", "transform"): "optimizer",
    ("optimizer", "kwargs"): "optimizer_kwargs",
    ("gradient", "method"): "negative_gradient_method",
    ("affinities", "method"): "affinity_method",
}


@dataclasses.dataclass(frozen=True)
class TSNEConfig:
    """Every setting of a t-SNE run (hashable; defaults = openTSNE 1.0.4).

    Attributes:
      n_components: embedding dimension (1, 2 or 3; more with the exact gradient).
      dof: degrees of freedom of the output kernel (1: Cauchy, inf: Gaussian, < 1: heavier
        tails, Kobak et al. 2019).
      initialization: ``"pca"`` (PC1 std 1e-4), ``"spectral"`` (P's diffusion map) or ``"random"``.
      chunk_size: iterations per compiled chunk: the grid is re-sized and the KL recorded
        at multiples of it.
      affinities, schedule, optimizer, gradient: the parts.
    """

    n_components: int = field(2, lambda name, v: check_n_components(v))
    dof: float = field(1.0, number(dof_value), dynamic=True)
    initialization: Literal["pca", "spectral", "random"] = field(
        "pca", option(*INIT_METHODS), dynamic=True
    )
    chunk_size: int = field(50, integer(1))
    affinities: AffinityConfig = AffinityConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    gradient: GradientConfig = GradientConfig()

    @classmethod
    def make(cls, **flat: Any) -> TSNEConfig:
        """A config from flat names (:data:`FLAT_FIELDS`), e.g. ``make(perplexity=50)``."""
        return cls().replace(**flat)

    @classmethod
    def from_preset(cls, preset: str, **flat: Any) -> TSNEConfig:
        """A config with a peer's conventions (:mod:`tsnejax.presets`), then ``flat``."""
        return cls.make(**{**preset_fields(preset), **flat})

    def replace(self, **flat: Any) -> TSNEConfig:
        """A copy with flat names (or whole parts) replaced; validated."""
        unknown = sorted(
            k
            for k, v in flat.items()
            if k not in FLAT_FIELDS and not (k in _PARTS and isinstance(v, _PARTS[k]))
        )
        if unknown:
            raise ValueError(
                f"{unknown} are not TSNEConfig settings; valid: {sorted(FLAT_FIELDS)}."
            )
        top: dict[str, Any] = {}
        parts: dict[str, dict[str, Any]] = {}
        for k, v in flat.items():
            if k in _PARTS and isinstance(v, _PARTS[k]):
                top[k] = v  # a whole part
                continue
            part, name = FLAT_FIELDS[k]
            if part is None:
                top[name] = v
            else:
                parts.setdefault(part, {})[name] = v
        for part, values in parts.items():
            base = top.get(part, getattr(self, part))
            if part == "optimizer" and "transform" in values and "kwargs" not in values:
                values["kwargs"] = ()  # a new optimizer does not inherit the old kwargs
            try:
                top[part] = dataclasses.replace(base, **values)
            except TypeError as err:
                raise ValueError(str(err)) from None
        return dataclasses.replace(self, **top).validate()

    def validate(self) -> TSNEConfig:
        """Raise ``ValueError`` naming the first bad setting; returns self."""
        validate_fields(self)
        for name in _PARTS:
            part = getattr(self, name)
            if not isinstance(part, _PARTS[name]):
                raise ValueError(
                    f"{name} must be a {_PARTS[name].__name__}, got {type(part).__name__}."
                )
            validate_fields(part)
        method = self.gradient.method
        if isinstance(method, str) or method.name in BACKENDS:  # a user's backend says itself
            name = method if isinstance(method, str) else method.name
            check_grid_components(name, self.n_components, "negative_gradient_method")
        return self

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (the inverse of :meth:`make`)."""
        out = {}
        for key, (part, name) in FLAT_FIELDS.items():
            out[key] = getattr(self if part is None else getattr(self, part), name)
        return out

    @property
    def total_iter(self) -> int:
        return self.schedule.total_iter


def _flat_fields() -> dict[str, tuple[str | None, str]]:
    out: dict[str, tuple[str | None, str]] = {}
    for f in dataclasses.fields(TSNEConfig):
        if f.name not in _PARTS:
            out[f.name] = (None, f.name)
    for part, cls in _PARTS.items():
        for f in dataclasses.fields(cls):
            out[_RENAMED.get((part, f.name), f.name)] = (part, f.name)
    return out


#: Flat name -> (part or None for top-level, field name).
FLAT_FIELDS = _flat_fields()


def _dynamic_fields() -> tuple[str, ...]:
    out = []
    for key, (part, name) in FLAT_FIELDS.items():
        cls = TSNEConfig if part is None else _PARTS[part]
        if is_dynamic({f.name: f for f in dataclasses.fields(cls)}[name]):
            out.append(key)
    return tuple(out)


#: Flat names that do not shape the compiled step (see :func:`static_signature`).
DYNAMIC_FIELDS = _dynamic_fields()


@functools.lru_cache(maxsize=256)
def static_signature(config: TSNEConfig) -> TSNEConfig:
    """``config`` with every dynamic field at its default: configs with equal signatures share
    one compiled step (their differences are phase values, P or the initial embedding).

    ``dof = inf`` keeps its own signature: the Gaussian kernel is a different program; so does
    a learning-rate schedule, which is compiled in.
    """
    default = TSNEConfig()
    blank = {k: v for k, v in default.flat().items() if k in DYNAMIC_FIELDS}
    if config.dof == math.inf:
        blank["dof"] = math.inf
    if callable(config.optimizer.learning_rate):
        blank["learning_rate"] = config.optimizer.learning_rate
    return config.replace(**blank)
