"""scikit-learn-style estimator: a thin shell over :func:`tsnejax.pipeline.fit`."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax

from tsnejax.pipeline import TSNEConfig, TSNEResult, fit

__all__ = ["TSNE"]


class TSNE:
    """t-SNE with openTSNE 1.0.4 defaults, scikit-learn's ``fit``/``fit_transform`` interface.

    Parameters mirror :class:`tsnejax.pipeline.TSNEConfig`; ``optimizer`` takes any Optax
    ``GradientTransformation`` (default: the classic momentum + gains rule), and
    ``random_state`` an int seed for ``jax.random.key`` (``None`` draws a fresh seed).

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
        early_exaggeration_iter: int = 250,
        n_iter: int = 500,
        exaggeration: float = 1.0,
        learning_rate: float | str = "auto",
        dof: float = 1.0,
        initialization: str | np.ndarray = "pca",
        negative_gradient_method: str = "auto",
        neighbors: str = "auto",
        optimizer: optax.GradientTransformation | None = None,
        initial_momentum: float = 0.8,
        final_momentum: float = 0.8,
        max_step_norm: float | None = 5.0,
        n_interpolation_points: int = 3,
        min_num_intervals: int | None = None,
        ints_in_interval: float = 1.0,
        max_boxes: int | None = None,
        pixels_per_unit: float = 4.0,
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
        self.initial_momentum = initial_momentum
        self.final_momentum = final_momentum
        self.max_step_norm = max_step_norm
        self.n_interpolation_points = n_interpolation_points
        self.min_num_intervals = min_num_intervals
        self.ints_in_interval = ints_in_interval
        self.max_boxes = max_boxes
        self.pixels_per_unit = pixels_per_unit
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
        return TSNEConfig(
            n_components=self.n_components,
            perplexity=tuple(perp) if isinstance(perp, list | tuple) else perp,
            early_exaggeration=self.early_exaggeration,
            early_exaggeration_iter=self.early_exaggeration_iter,
            n_iter=self.n_iter,
            exaggeration=self.exaggeration,
            learning_rate=self.learning_rate,
            initial_momentum=self.initial_momentum,
            final_momentum=self.final_momentum,
            dof=self.dof,
            initialization=init if isinstance(init, str) else "pca",
            negative_gradient_method=self.negative_gradient_method,
            neighbors=self.neighbors,
            max_step_norm=self.max_step_norm,
            n_interpolation_points=self.n_interpolation_points,
            min_num_intervals=self.min_num_intervals,
            ints_in_interval=self.ints_in_interval,
            max_boxes=self.max_boxes,
            pixels_per_unit=self.pixels_per_unit,
        )

    def fit(self, X: Any = None, y: Any = None, *, affinities: Any = None) -> TSNE:
        """Embed ``X`` (or precomputed ``affinities``); ``y`` is ignored."""
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
            optimizer=self.optimizer,
            verbose=self.verbose,
        )
        self.embedding_ = result.embedding
        self.kl_divergence_ = result.kl_divergence
        self.n_iter_ = result.n_iter
        self.affinities_ = result.affinities
        self.state_ = result.state
        self.timings_ = result.timings
        self.kl_history_ = result.kl_history
        self.method_ = result.method
        self.grids_ = result.grids
        self.n_compiles_ = result.n_compiles
        self.random_state_ = seed
        return self

    def fit_transform(self, X: Any = None, y: Any = None, **kwargs: Any) -> np.ndarray:
        """``fit(X)`` and return ``embedding_``."""
        return self.fit(X, y, **kwargs).embedding_


_PARAMS = tuple(TSNE.__init__.__code__.co_varnames[1 : TSNE.__init__.__code__.co_argcount])
