"""scikit-learn-style estimator: a thin shell over :func:`tsnejax.pipeline.fit`."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax

from tsnejax.config import TSNEConfig
from tsnejax.knn_index import build_graph_index
from tsnejax.pipeline import TSNEResult, fit
from tsnejax.transform import TransformConfig, transform

__all__ = ["TSNE"]


class TSNE:
    """t-SNE with openTSNE 1.0.4 defaults, scikit-learn's ``fit``/``fit_transform`` interface.

    Parameters mirror :class:`tsnejax.pipeline.TSNEConfig`. ``preset`` (``"opentsne"``,
    ``"fitsne"``, ``"sklearn"``; default openTSNE's) sets every convention in which the peers
    differ (:mod:`tsnejax.presets`); parameters left at ``None`` (``"auto"`` for
    ``max_step_norm``, where ``None`` disables clipping) take the preset's value, others
    override it. ``optimizer`` takes any Optax ``GradientTransformation``, a registry name
    (``"adam"``), a spec (``"adam:b1=0.9"``) or a dict (``{"name": "adam", "learning_rate":
    1.0, "b1": 0.9}``); default the classic momentum + gains rule.
    ``negative_gradient_method`` takes a name or any :class:`tsnejax.gradients.Backend`.
    ``learning_rate`` takes a number, ``"auto"`` or an expression in N (``"N/12"``).
    ``random_state`` is an int seed for ``jax.random.key`` (``None`` draws a fresh seed).

    Attributes after ``fit``: ``embedding_`` (numpy ``(n, n_components)``),
    ``kl_divergence_``, ``n_iter_``, ``affinities_``, ``state_`` (optimizer state, for
    resuming), ``timings_`` and ``random_state_`` (the seed used).

    Example:
      >>> from sklearn.datasets import load_digits
      >>> Y = TSNE(random_state=0).fit_transform(load_digits().data)  # doctest: +SKIP
    """

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        early_exaggeration: float = 12.0,
        early_exaggeration_iter: int | None = None,
        n_iter: int | None = None,
        exaggeration: float = 1.0,
        learning_rate: float | str = "auto",
        dof: float = 1.0,
        initialization: str | np.ndarray = "pca",
        negative_gradient_method: str = "auto",
        neighbors: str = "auto",
        optimizer: optax.GradientTransformation | str | dict | None = None,
        preset: str | None = None,
        initial_momentum: float | None = None,
        final_momentum: float | None = None,
        max_step_norm: float | str | None = "auto",
        n_interpolation_points: int = 3,
        min_num_intervals: int | None = None,
        ints_in_interval: float = 1.0,
        max_boxes: int | None = None,
        pixels_per_unit: float = 4.0,
        exaggeration_decay: str = "step",
        stopping: str = "fixed",
        random_state: int | None = None,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.early_exaggeration_iter = early_exaggeration_iter
        self.n_iter = n_iter
        self.exaggeration = exaggeration
        self.learning_rate = learning_rate
        self.dof = dof
        self.initialization = initialization
        self.negative_gradient_method = negative_gradient_method
        self.neighbors = neighbors
        self.optimizer = optimizer
        self.preset = preset
        self.initial_momentum = initial_momentum
        self.final_momentum = final_momentum
        self.max_step_norm = max_step_norm
        self.n_interpolation_points = n_interpolation_points
        self.min_num_intervals = min_num_intervals
        self.ints_in_interval = ints_in_interval
        self.max_boxes = max_boxes
        self.pixels_per_unit = pixels_per_unit
        self.exaggeration_decay = exaggeration_decay
        self.stopping = stopping
        self.random_state = random_state
        self.verbose = verbose

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        del deep
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params: Any) -> TSNE:
        for name, value in params.items():
            if name not in _PARAMS:
                raise ValueError(f"{name!r} is not a parameter of TSNE; valid: {sorted(_PARAMS)}.")
            setattr(self, name, value)
        return self

    def _config(self) -> TSNEConfig:
        init = self.initialization
        perp = self.perplexity
        fields: dict[str, Any] = dict(
            n_components=self.n_components,
            perplexity=tuple(perp) if isinstance(perp, list | tuple) else perp,
            early_exaggeration=self.early_exaggeration,
            exaggeration=self.exaggeration,
            learning_rate=self.learning_rate,
            dof=self.dof,
            initialization=init if isinstance(init, str) else "pca",
            negative_gradient_method=self.negative_gradient_method,
            neighbors=self.neighbors,
            n_interpolation_points=self.n_interpolation_points,
            min_num_intervals=self.min_num_intervals,
            ints_in_interval=self.ints_in_interval,
            max_boxes=self.max_boxes,
            pixels_per_unit=self.pixels_per_unit,
            exaggeration_decay=self.exaggeration_decay,
            stopping=self.stopping,
        )
        # None (or "auto" for max_step_norm, where None disables) keeps the preset's value.
        for name in ("early_exaggeration_iter", "n_iter", "initial_momentum", "final_momentum"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        if not (isinstance(self.max_step_norm, str) and self.max_step_norm == "auto"):
            fields["max_step_norm"] = self.max_step_norm
        opt = self.optimizer
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
        return TSNEConfig.from_preset(self.preset or "opentsne", **fields)

    def fit(
        self,
        X: Any = None,
        y: Any = None,
        *,
        affinities: Any = None,
        callbacks: Any = (),
        callbacks_every: int | None = None,
    ) -> TSNE:
        """Embed ``X`` (or precomputed ``affinities``); ``y`` is ignored.

        ``callbacks``: ``callback(iteration, kl, embedding) -> stop`` every
        ``callbacks_every`` iterations (see :func:`tsnejax.fit`).
        """
        del y
        seed = self.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**31))
        init = None if isinstance(self.initialization, str) else self.initialization
        result: TSNEResult = fit(
            jax.random.key(seed),
            X,
            self._config(),
            affinities=affinities,
            initialization=init,
            callbacks=callbacks,
            callbacks_every=callbacks_every,
            verbose=self.verbose,
        )
        self.embedding_ = result.embedding
        self.kl_divergence_ = result.kl_divergence
        self.n_iter_ = result.total_iter  # both phases (n_iter counts the main phase)
        self.affinities_ = result.affinities
        self.state_ = result.state
        self.timings_ = result.timings
        self.kl_history_ = result.kl_history
        self.method_ = result.method
        self.grids_ = result.grids
        self.n_compiles_ = result.n_compiles
        self.random_state_ = seed
        self.early_exaggeration_iter_ = result.early_exaggeration_iter
        self.stepper_ = result.stepper
        self.neighbors_ = result.neighbors  # the kNN graph of X (None when P was given)
        self._graph_index = None  # built from neighbors_ on the first transform
        # The reference data, for transform (kept as the float32 array the kNN search used).
        self._X_fit = None if X is None else np.asarray(X, np.float32)
        return self

    def transform(self, X: Any, *, config: Any = None, **overrides: Any) -> np.ndarray:
        """Place new points into ``embedding_`` without moving it (openTSNE's ``transform``).

        ``config`` is a :class:`tsnejax.transform.TransformConfig` (default: openTSNE's
        transform defaults, perplexity 5); keyword ``overrides`` replace its fields, e.g.
        ``transform(X, n_iter=0)`` for the placement alone.
        """
        if not hasattr(self, "embedding_"):
            raise ValueError("this TSNE is not fitted yet; call fit(X) before transform.")
        if getattr(self, "_X_fit", None) is None:
            raise ValueError(
                "transform needs the data the embedding was fitted on; this TSNE was fitted "
                "from precomputed affinities. Use tsnejax.transform.transform(X_new, X_ref, Y)."
            )
        config = dataclasses.replace(config or TransformConfig(), **overrides)
        key = jax.random.key(self.random_state_)
        if getattr(self, "_graph_index", None) is None and self.neighbors_ is not None:
            # fit's kNN graph indexes the reference, as openTSNE keeps its Annoy index.
            self._graph_index = build_graph_index(self._X_fit, self.neighbors_, key=key)
        result = transform(
            X,
            self._X_fit,
            self.embedding_,
            config,
            dof=self.dof,
            key=key,
            index=self._graph_index,
        )
        self.transform_result_ = result
        return result.embedding

    def fit_transform(self, X: Any = None, y: Any = None, **kwargs: Any) -> np.ndarray:
        """``fit(X)`` and return ``embedding_``."""
        return self.fit(X, y, **kwargs).embedding_


_PARAMS = tuple(TSNE.__init__.__code__.co_varnames[1 : TSNE.__init__.__code__.co_argcount])
