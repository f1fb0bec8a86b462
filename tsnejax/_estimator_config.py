"""The :class:`tsnejax.TSNE` estimator's parameters as a :class:`~tsnejax.TSNEConfig`: its
flat openTSNE-style names, the preset, an optimizer given as a dict, and scikit-learn's names
for what openTSNE calls otherwise (``init``, ``max_iter``)."""

from __future__ import annotations

import pickle
import time
import warnings
from typing import Any

import numpy as np

from tsnejax._checks import check_int, is_key, outside_stacklevel
from tsnejax.config import TSNEConfig
from tsnejax.perplexity_selection import select_perplexity
from tsnejax.stopping import SKLEARN_SETTINGS

#: ``TSNE(perplexity=...)``'s name for choosing it by pBIC (:func:`tsnejax.select_perplexity`).
PBIC = "pbic"


def estimator_initialization(est: Any) -> str | np.ndarray:
    """``initialization``, or scikit-learn's ``init`` when that is given instead."""
    if est.init is None:
        return est.initialization
    if not (isinstance(est.initialization, str) and est.initialization == "pca"):
        raise ValueError(
            "init (scikit-learn's name) and initialization (openTSNE's) are both set; keep one."
        )
    return est.init


#: Peers' parameters tsnejax takes for their signatures but that change nothing here.
NO_EFFECT = {
    "angle": "Barnes-Hut's accuracy (tsnejax has no Barnes-Hut)",
    "theta": "Barnes-Hut's accuracy (tsnejax has no Barnes-Hut)",
}


def gradient_method(est: Any) -> Any:
    """``negative_gradient_method``, or scikit-learn's ``method`` when that is given."""
    if est.method is None or est.method == "barnes_hut":  # barnes_hut: the fast default
        return est.negative_gradient_method
    if est.method != "exact":
        raise ValueError(
            f"method={est.method!r} (scikit-learn's) must be 'exact' or 'barnes_hut'; "
            "tsnejax's methods are negative_gradient_method='auto', 'exact', 'interpolation', "
            "'splat' or 'adaptive'."
        )
    if not (
        isinstance(est.negative_gradient_method, str)
        and est.negative_gradient_method in ("auto", "exact")
    ):
        raise ValueError(
            "method (scikit-learn's) and negative_gradient_method (openTSNE's) are both set; "
            "keep one."
        )
    return "exact"


def estimator_config(est: Any) -> TSNEConfig:
    """The config a :class:`tsnejax.TSNE` ``est`` runs: its parameters over its preset's."""
    for name, what in NO_EFFECT.items():
        if getattr(est, name) is not None:
            warnings.warn(
                f"{name}={getattr(est, name)!r} has no effect: it is {what}.",
                UserWarning,
                stacklevel=outside_stacklevel(),
            )
    init = estimator_initialization(est)
    fields: dict[str, Any] = dict(
        n_components=est.n_components,
        perplexity=est.perplexity,  # AffinityConfig makes a list or array a tuple
        early_exaggeration=est.early_exaggeration,
        exaggeration=est.exaggeration,
        learning_rate=est.learning_rate,
        dof=est.dof,
        initialization=init if isinstance(init, str) else "pca",
        negative_gradient_method=gradient_method(est),
        neighbors=est.neighbors,
        metric=est.metric,
        metric_params=est.metric_params,
        n_interpolation_points=est.n_interpolation_points,
        min_num_intervals=est.min_num_intervals,
        ints_in_interval=est.ints_in_interval,
        max_boxes=est.max_boxes,
        pixels_per_unit=est.pixels_per_unit,
        exaggeration_decay=est.exaggeration_decay,
        stopping=est.stopping,
        max_grad_norm=est.max_grad_norm,
    )
    # None (or "auto" for max_step_norm, where None disables) keeps the preset's value.
    for name in ("early_exaggeration_iter", "n_iter", "initial_momentum", "final_momentum"):
        if getattr(est, name) is not None:
            fields[name] = getattr(est, name)
    given = [name for name in SKLEARN_SETTINGS if getattr(est, name) is not None]
    if given:
        if not (isinstance(est.stopping, str) and est.stopping in ("fixed", "sklearn")):
            raise ValueError(
                f"{given[0]} is scikit-learn's stopping rule and stopping={est.stopping!r} is "
                f"another; keep one (with {given[0]}, stopping='sklearn')."
            )
        fields["stopping"] = "sklearn"
        fields.update({name: getattr(est, name) for name in given})
    if not (isinstance(est.max_step_norm, str) and est.max_step_norm == "auto"):
        fields["max_step_norm"] = est.max_step_norm
    opt = est.optimizer
    if isinstance(opt, dict):
        spec = dict(opt)
        if "name" not in spec:
            raise ValueError(
                "optimizer given as a dict needs a 'name' key, e.g. "
                "{'name': 'adam', 'learning_rate': 1.0}."
            )
        fields["optimizer"] = spec.pop("name")
        if "learning_rate" in spec:
            fields["learning_rate"] = spec.pop("learning_rate")
        fields["optimizer_kwargs"] = tuple(sorted(spec.items()))
    elif opt is not None:
        fields["optimizer"] = opt  # a name, a "name:key=value" spec or an Optax object
    if isinstance(est.perplexity, str):
        if est.perplexity != PBIC:
            raise ValueError(
                f"perplexity={est.perplexity!r} is not a number, a list of numbers or {PBIC!r} "
                "(chosen by Cao & Wang's criterion, tsnejax.select_perplexity)."
            )
        del fields["perplexity"]  # the preset's stands in until fit chooses
    config = TSNEConfig.from_preset(est.preset or "opentsne", **fields)
    if est.max_iter is not None:
        config = config.replace(n_iter=_main_iterations(est, config))
    return config


def _main_iterations(est: Any, config: TSNEConfig) -> int:
    """The main phase's length from scikit-learn's ``max_iter`` (both phases together)."""
    if est.n_iter is not None:
        raise ValueError(
            f"max_iter={est.max_iter!r} (scikit-learn's count of both phases) and "
            f"n_iter={est.n_iter!r} (openTSNE's main phase) both set the run's length; "
            "keep one."
        )
    total = check_int("max_iter", est.max_iter, minimum=0)
    early = config.schedule.early_exaggeration_iter
    if total < early:
        raise ValueError(
            f"max_iter={total} counts both phases, so it must be at least "
            f"early_exaggeration_iter={early}; raise it (scikit-learn's default is 1000)."
        )
    return total - early


def check_picklable(state: dict[str, Any]) -> None:
    """A clear error for an estimator parameter that cannot be pickled (closures of Optax
    objects, lambdas), naming it and the picklable form."""
    names = ("optimizer", "negative_gradient_method", "learning_rate", "callbacks", "metric")
    for name in names:
        value = state.get(name)
        if value is not None and not isinstance(value, str | dict | int | float):
            try:
                pickle.dumps(value)
            except Exception as err:  # closures of Optax objects: PicklingError, TypeError, ...
                raise TypeError(
                    f"TSNE cannot be pickled: its {name}={type(value).__name__} object "
                    f"cannot ({err}). Give {name} as a name or spec (e.g. "
                    "optimizer='adam:b1=0.9') or as a module-level function."
                ) from err


def pbic_perplexity(
    est: Any, key: Any, X: Any, config: TSNEConfig, given: dict[str, Any]
) -> tuple[TSNEConfig, dict[float, float] | None, Any]:
    """``config`` with the perplexity ``TSNE(perplexity="pbic")`` chooses on ``X``, the
    candidates' pBIC and the chosen candidate's fit when it is the one ``fit`` would run (single
    fits; no callbacks to call, no initial array); ``(config, None, None)`` when the perplexity
    was given. ``given``: fit's ``affinities``, ``neighbors``, ``callbacks``, ``init`` and
    ``checkpoint``."""
    if not (isinstance(est.perplexity, str) and est.perplexity == PBIC):
        return config, None, None
    blocked = [k for k in ("affinities", "neighbors", "checkpoint") if given[k] is not None]
    blocked += ["mesh"] if est.mesh is not None else []
    if X is None or blocked:
        raise ValueError(
            f"perplexity={PBIC!r} calibrates P on X for each candidate, so it needs X and no "
            f"{blocked or ['X=None']}; run tsnejax.select_perplexity and pass its perplexity."
        )
    t0 = time.perf_counter()
    sel = select_perplexity(key, X, config=config, verbose=est.verbose)
    pbic = dict(zip(sel.perplexities.tolist(), sel.pbic.tolist(), strict=True))
    chosen = None
    if sel.best_run is not None and not given["callbacks"] and given["init"] is None:
        chosen = sel.best_run
        seconds = time.perf_counter() - t0  # every candidate's run, the kNN search included
        chosen = chosen._replace(timings={**chosen.timings, "select_perplexity": seconds})
    return config.replace(perplexity=sel.perplexity), pbic, chosen


def check_resumable(random_state: Any, checkpoint: Any) -> None:
    """A checkpointed fit needs a seed that is the same at every fit."""
    drawn = (type(None), np.random.RandomState, np.random.Generator)
    if checkpoint is not None and isinstance(random_state, drawn):
        raise ValueError(
            f"checkpoint= needs a fixed random_state (an int or key), got "
            f"{type(random_state).__name__}: every fit draws another key from it, so no rerun "
            "could resume the run."
        )


def fitted_attributes(result: Any, config: TSNEConfig, seed: Any) -> dict[str, Any]:
    """The attributes a :class:`tsnejax.TSNE` fit sets from the run's ``result``
    (:class:`tsnejax.TSNEResult`)."""
    return {
        "config_": config,
        "perplexity_": config.affinities.perplexity,
        "embedding_": np.asarray(result.embedding),
        "kl_divergence_": float(result.kl_divergence),
        "n_iter_": int(result.total_iter),  # both phases (n_iter counts the main phase)
        "affinities_": result.affinities,
        "state_": result.state,
        "timings_": result.timings,
        "kl_history_": result.kl_history,
        "resumed_from_": int(result.resumed_from),
        "method_": result.method,
        "grids_": result.grids,
        "n_compiles_": result.n_compiles,
        "random_state_": seed,
        "early_exaggeration_iter_": result.early_exaggeration_iter,
        "neighbors_": result.neighbors,  # the kNN graph of X (None when P was given)
    }


def estimator_tags(est: Any, tags: Any) -> Any:
    """scikit-learn's tags of a :class:`tsnejax.TSNE` ``est`` (``__sklearn_tags__``)."""
    tags.requires_fit = True  # a stateful transform: transform places points into embedding_
    # None and generator objects give another seed at every fit.
    fixed = isinstance(est.random_state, int | np.integer) or is_key(est.random_state)
    tags.non_deterministic = not fixed
    tags.input_tags.allow_nan = False
    tags.input_tags.sparse = True  # dense up to knn_metric.SPARSE_DENSE_ELEMENTS cells
    tags.input_tags.pairwise = est.metric == "precomputed"
    tags.target_tags.required = False
    tags.transformer_tags.preserves_dtype = []  # the embedding is float32 whatever X is
    return tags
