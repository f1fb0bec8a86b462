"""The scikit-learn estimator: a shell over :func:`tsnejax.pipeline.fit` and
:func:`tsnejax.transform.transform` that follows scikit-learn's conventions."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import optax
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from tsnejax._checks import key_of, resolve_seed
from tsnejax._estimator_config import (
    check_picklable,
    check_resumable,
    estimator_config,
    estimator_initialization,
    estimator_tags,
    fitted_attributes,
    pbic_perplexity,
)
from tsnejax._scorer import trustworthiness_scorer
from tsnejax.build import stepper_for
from tsnejax.config import TSNEConfig
from tsnejax.knn_index import build_graph_index
from tsnejax.knn_metric import check_input, check_new_points, check_peer_options, check_query
from tsnejax.pipeline import TSNEResult, fit
from tsnejax.transform import TransformConfig, transform

__all__ = ["TSNE", "trustworthiness_scorer"]


class TSNE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """t-SNE as a scikit-learn estimator (defaults: openTSNE 1.0.4), over :func:`tsnejax.fit`.

    ``fit`` runs early exaggeration (``early_exaggeration_iter`` iterations) and then the main
    phase (``n_iter``); ``transform`` places new points into the fitted embedding without moving
    it (openTSNE's ``transform``). ``__init__`` stores its arguments and does nothing else, so
    ``get_params``/``set_params``/``sklearn.base.clone`` and pipelines work; everything computed
    ends in ``_``. A fitted estimator pickles (``pickle``, ``joblib.dump``): compiled programs are
    left out and rebuilt on first use.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the embedding: 1, 2 or 3 with every gradient method; more with the exact
        gradient (which ``"auto"`` then picks), as scikit-learn's ``method="exact"``.
    perplexity : float, sequence of float or "pbic", default=30.0
        Effective number of neighbours each point's affinities are calibrated to. A sequence
        averages the conditionals of each (multi-scale). Needs ``1 <= perplexity <= n - 1``
        (openTSNE's bound; k = min(n - 1, 3 * perplexity)). ``"pbic"``: the candidate of
        :func:`tsnejax.select_perplexity` with the least pBIC (``perplexity_``, ``pbic_``).
    early_exaggeration : float, default=12.0
        Factor on the attraction during the first phase.
    early_exaggeration_iter : int or None, default=None
        Iterations of the first phase; ``None``: the preset's (250).
    n_iter : int or None, default=None
        Iterations of the main phase, *after* early exaggeration; ``None``: the preset's (500).
        The fitted ``n_iter_`` counts both phases (750 by default), as scikit-learn's
        ``TSNE.n_iter_`` does.
    exaggeration : float, default=1.0
        Factor on the attraction in the main phase (above 1 pulls clusters tighter; Böhm et
        al. 2022).
    learning_rate : float, str or callable, default="auto"
        A number, ``"auto"`` (the preset's rule; openTSNE: N / exaggeration in each phase), an
        expression in N such as ``"N/12"``, or an Optax schedule of the iteration (counted
        from the first step of early exaggeration), e.g. ``optax.linear_schedule(10, 1000,
        250)``. Pickling the estimator then needs a picklable schedule.
    dof : float, default=1.0
        Degrees of freedom of the output kernel: 1 is the Cauchy kernel of t-SNE; below 1 gives
        heavier tails and finer clusters (Kobak et al. 2019); large values approach SNE.
    initialization : {"pca", "spectral", "random"} or ndarray, default="pca"
        ``"pca"``: principal components, PC1 at std 1e-4; ``"spectral"``: P's diffusion map
        (openTSNE's), likewise; ``"random"``: Gaussian from ``random_state``; or an array.
    negative_gradient_method : str or Backend, default="auto"
        ``"exact"`` (O(N^2)), ``"interpolation"`` (FIt-SNE's FFT grid), ``"splat"``
        (GPGPU-SNE's field), ``"adaptive"`` (interpolation, or exact in the chunks where that
        costs less), ``"auto"`` (exact for small N, adaptive up to 10k points in 2-D, else
        interpolation; see ``tsnejax.build.AUTO_EXACT_MAX_POINTS``) or any
        :class:`tsnejax.gradients.Backend`; openTSNE's ``"fft"`` is ``"interpolation"``.
    neighbors : {"auto", "exact", "ivf", "faiss", "faiss_hnsw", "pynndescent", "sharded"}, \
default="auto"
        kNN search for the affinities (``"auto"``: the exact blocked search below 40k points,
        then ``"ivf"``, the cluster-pruned jitted search, ``tsnejax.knn.auto_search``;
        ``"sharded"``: the exact ring search over ``mesh``).
    optimizer : str, dict or optax.GradientTransformation, default=None
        The update rule: a registry name (``"adam"``), a spec (``"adam:b1=0.9"``), a dict
        (``{"name": "adam", "learning_rate": 1.0, "b1": 0.9}``) or any Optax transformation
        (it keeps its own learning rate). ``None``: the classic momentum + gains rule.
    preset : {"opentsne", "fitsne", "sklearn"} or None, default=None
        Every convention in which the peers differ (learning-rate rule, gains, momentum,
        gradient scale; :mod:`tsnejax.presets`). Parameters left at ``None`` take the preset's
        value; the others override it. ``None``: openTSNE's.
    initial_momentum, final_momentum : float or None, default=None
        Momentum before and after the end of early exaggeration (classic and sgd rules), in
        ``[0, 1)``; ``None``: the preset's (0.8 and 0.8 for openTSNE; 0.5 and 0.8 for scikit-learn).
    max_step_norm : float, None or "auto", default="auto"
        Clip each row of every update to this norm (openTSNE: 5); ``None`` turns clipping off;
        ``"auto"``: the preset's.
    max_grad_norm : float or None, default=None
        Clip each row of the gradient to this norm first (openTSNE's; ``None``: off).
    n_interpolation_points : int, default=3
        Interpolation nodes per grid interval (interpolation method).
    min_num_intervals : int or None, default=None
        Least grid intervals per dimension (``None``: 50, or 18 in 3-D).
    ints_in_interval : float, default=1.0
        Embedding units per grid interval; smaller is finer and slower.
    max_boxes : int or None, default=None
        Cap on the grid intervals per dimension (``None``: the built-in memory-safe cap).
    pixels_per_unit : float, default=4.0
        Resolution of the splat method's field.
    exaggeration_decay : {"step", "linear", "exponential"} or schedule, default="step"
        How early exaggeration ends: at once, or decayed over 150 iterations; a schedule
        (e.g. ``optax.cosine_decay_schedule``) of the steps since it ended gives the decay.
    stopping : {"fixed", "optsne", "sklearn"} or rule set, default="fixed"
        ``"optsne"`` ends each phase when the relative KL decrease says so (Belkina et al.
        2019), ``"sklearn"`` by scikit-learn's rules (``min_grad_norm``,
        ``n_iter_without_progress``); ``early_exaggeration_iter`` and ``n_iter`` then cap the
        phases. Any rule set of :mod:`tsnejax.stopping` is accepted too.
    random_state : int, jax.random.key, numpy RandomState or Generator, or None, default=None
        Seed of the ``jax.random.key`` that drives the kNN search, the random initialisation and
        the transform, or that key itself; ``None`` draws a fresh seed, and a RandomState or
        Generator draws one from itself (advancing it, as scikit-learn estimators do); the seed
        (or key) used is stored in ``random_state_``. With PCA initialisation and the exact kNN
        search the result does not depend on it.
    verbose : bool, default=False
        Progress bar with the KL.
    metric : str or callable, default="euclidean"
        The input distance (:mod:`tsnejax.knn_metric`): ``"cosine"`` and ``"correlation"``
        use tsnejax's own searches; ``"precomputed"`` takes ``X`` as a square distance matrix
        (dense or sparse kNN graph; PCA initialisation becomes spectral); other
        scikit-learn names and callables search on the host.
    metric_params : dict or None, default=None
        Arguments of the metric (``{"p": 3}`` for ``"minkowski"``).
    n_jobs : int or None, default=None
        Accepted for openTSNE's and scikit-learn's signature; XLA uses every core the process
        may run on, so a value other than ``None`` warns that it has no effect.
    max_iter : int or None, default=None
        scikit-learn's length of the run: both phases together (its default 1000 = 250 early
        + 750), so the main phase gets ``max_iter - early_exaggeration_iter``. ``None``: the
        length ``n_iter`` (openTSNE's main phase) and the preset give; setting both is an error.
    init : {"pca", "spectral", "random"} or ndarray or None, default=None
        scikit-learn's name for ``initialization`` (``TSNE(init="random")`` as its docs write
        it); setting both is an error.
    min_grad_norm, n_iter_without_progress : float, int or None, default=None
        scikit-learn's stopping rules; either given turns on ``stopping="sklearn"`` (``None``:
        scikit-learn's 1e-7 and 300 when ``stopping="sklearn"``). Checked every 50 iterations
        as scikit-learn does; the gradient norm is of the gradient the optimizer receives.
    method, angle, theta : default=None
        scikit-learn's and openTSNE's, so their calls run: ``method="exact"`` is
        ``negative_gradient_method="exact"``, ``"barnes_hut"`` leaves the choice to it
        (``"auto"``: tsnejax has no Barnes-Hut); the Barnes-Hut accuracy ``angle``/``theta``
        warns that it changes nothing.
    callbacks, callbacks_every_iters : openTSNE's constructor form of ``fit``'s ``callbacks``
        and ``callbacks_every`` (those of ``fit``, when given, take precedence).
    mesh : jax.sharding.Mesh or None, default=None
        Split the points over the mesh's axis ``"points"`` (its devices, and processes joined
        by ``jax.distributed``; :mod:`tsnejax.shard`, ``docs/scaling.md``). ``state_`` is then
        sharded and padded to a multiple of the axis size. Devices do not pickle: a pickled
        estimator comes back with ``mesh=None``.

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components)
        The embedding (float32).
    kl_divergence_ : float
        KL(P || Q) of the final embedding, in nats.
    n_iter_ : int
        Iterations run, both phases (``early_exaggeration_iter_ + n_iter``, fewer under opt-SNE).
    early_exaggeration_iter_ : int
        Where the main phase began.
    kl_history_ : list of (int, float)
        KL at the end of every chunk: the convergence curve.
    resumed_from_ : int
        The iteration ``fit(X, checkpoint=...)`` went on from (0: a fresh run).
    affinities_ : tsnejax.Affinities
        The symmetric P in a padded sparse layout (its entries sum to 1).
    neighbors_ : tsnejax.KNNGraph or None
        The kNN graph P was built from (``None`` when affinities were given).
    state_ : tsnejax.TSNEState
        Final optimizer state; resume with ``tsnejax.run.optimize(est.stepper_, est.state_,
        est.affinities_, n)``.
    stepper_ : tsnejax.Stepper
        The compiled step of this run (rebuilt on first access after unpickling).
    config_ : tsnejax.TSNEConfig
        Every setting the run used.
    method_ : str
        The gradient method used (``"auto"`` resolved).
    timings_ : dict of str to float
        Seconds per stage (kNN, affinities, compile, optimisation, ...).
    grids_, n_compiles_ : list, int
        Grid structures used and the number of programs compiled.
    random_state_ : int or jax.random.key
        The seed (or key) used.
    perplexity_, pbic_ : float or tuple, dict or None
        The perplexity used; with ``perplexity="pbic"`` each candidate's pBIC, else None.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Column names of a DataFrame ``X`` (only when it has string column names).
    transform_result_ : tsnejax.transform.TransformResult
        Details of the last ``transform`` (its KL history, timings).

    See Also
    --------
    tsnejax.fit : the functional form (a key, data and a ``TSNEConfig``).
    tsnejax.tl.tsne : the same on an AnnData object, scanpy-style.

    Notes
    -----
    scikit-learn's ``TSNE`` has ``max_iter`` for both phases together; here ``n_iter`` is the
    main phase only (openTSNE's convention), and ``n_iter_`` is the total. ``fit_transform(X)``
    returns ``embedding_``; ``fit(X).transform(X)`` would instead place the points of ``X``
    anew into the embedding, as openTSNE does, so the two differ.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from tsnejax import TSNE
    >>> X = load_digits().data
    >>> est = TSNE(random_state=0).fit(X)  # doctest: +SKIP
    >>> est.embedding_.shape, est.n_iter_  # doctest: +SKIP
    ((1797, 2), 750)
    """

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        early_exaggeration: float = 12.0,
        early_exaggeration_iter: int | None = None,
        n_iter: int | None = None,
        exaggeration: float = 1.0,
        learning_rate: float | str | Callable[[Any], Any] = "auto",
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
        exaggeration_decay: Any = "step",
        stopping: Any = "fixed",
        random_state: int | None = None,
        verbose: bool = False,
        mesh: Any = None,
        metric: Any = "euclidean",
        metric_params: dict | None = None,
        n_jobs: int | None = None,
        max_iter: int | None = None,
        init: str | np.ndarray | None = None,
        method: str | None = None,
        angle: float | None = None,
        theta: float | None = None,
        min_grad_norm: float | None = None,
        n_iter_without_progress: int | None = None,
        max_grad_norm: float | None = None,
        callbacks: Any = None,
        callbacks_every_iters: int | None = None,
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
        self.mesh = mesh
        self.metric = metric
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.max_iter = max_iter
        self.init = init
        self.method = method
        self.angle = angle
        self.theta = theta
        self.min_grad_norm = min_grad_norm
        self.n_iter_without_progress = n_iter_without_progress
        self.max_grad_norm = max_grad_norm
        self.callbacks = callbacks
        self.callbacks_every_iters = callbacks_every_iters

    def _initialization(self) -> str | np.ndarray:
        return estimator_initialization(self)

    def _config(self) -> TSNEConfig:
        return estimator_config(self)

    def fit(
        self,
        X: Any = None,
        y: Any = None,
        *,
        affinities: Any = None,
        neighbors: Any = None,
        callbacks: Any = (),
        callbacks_every: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
    ) -> TSNE:
        """Embed ``X`` of shape ``(n_samples, n_features)``; ``y`` is ignored.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features), or None
            The data (float, int or bool; no NaN/inf); with ``metric="precomputed"`` the
            ``(n, n)`` distances (dense or a sparse kNN graph). May be ``None`` when
            ``affinities`` or ``neighbors`` are given (``transform`` then needs the reference
            data, so it is unavailable).
        y : None
            Ignored (scikit-learn API).
        affinities : tsnejax.Affinities or scipy.sparse matrix, optional
            A precomputed symmetric P instead of the perplexity calibration.
        neighbors : tsnejax.KNNGraph, (indices, distances) or sparse matrix, optional
            A precomputed kNN graph (self excluded) to calibrate P on; a sparse one as
            ``kneighbors_graph(X, k, mode="distance")`` writes it.
        callbacks : callable or sequence of callables
            ``callback(iteration, kl, embedding) -> stop`` every ``callbacks_every``
            iterations; a true return value stops the run.
        callbacks_every : int, optional
            Interval of the callbacks (default: the chunk size, 50); the embedding does not
            depend on it.
        checkpoint : path, optional
            An ``.npz`` state file saved every ``checkpoint_every`` iterations (default 50);
            if it holds this fit's interrupted run (same data, settings and seed), the fit
            goes on from there to the uninterrupted result (``resumed_from_``).
        checkpoint_every : int, optional
            Iterations between saves (any; the embedding does not depend on it).

        Returns
        -------
        self : TSNE
        """
        del y
        check_peer_options(self.metric, self.n_jobs, self.metric_params)
        if X is not None:
            Xv = check_input(X, self.metric)  # tsnejax's messages (NaN rows, AnnData) first
            validate_data(self, X, skip_check_array=True)  # n_features_in_, feature_names_in_
        else:
            Xv = None
        check_resumable(self.random_state, checkpoint)
        seed = resolve_seed(self.random_state)
        if not callbacks and self.callbacks is not None:  # openTSNE's constructor form
            callbacks = self.callbacks
            callbacks_every = callbacks_every or self.callbacks_every_iters
        init = self._initialization()
        init = None if isinstance(init, str) else init
        config = self._config()
        given = dict(affinities=affinities, neighbors=neighbors, callbacks=callbacks, init=init)
        given["checkpoint"] = checkpoint
        config, self.pbic_, chosen = pbic_perplexity(self, key_of(seed), Xv, config, given)
        result: TSNEResult = chosen or fit(
            key_of(seed),
            Xv,
            config,
            affinities=affinities,
            neighbors=neighbors,
            initialization=init,
            callbacks=callbacks,
            callbacks_every=callbacks_every,
            verbose=self.verbose,
            mesh=self.mesh,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
        )
        for name, value in fitted_attributes(result, config, seed).items():
            setattr(self, name, value)
        # Memoised derived objects (the compiled step; the transform's graph index, built on
        # the first transform): one dict, so transform leaves __dict__ as it was.
        self._cache = {"stepper": result.stepper}
        # The reference data, for transform (kept as the float32 array the kNN search used).
        self._X_fit = Xv
        return self

    @property
    def stepper_(self) -> Any:
        """The compiled step of the fitted run (rebuilt from ``config_`` after unpickling)."""
        check_is_fitted(self, "embedding_")
        if "stepper" not in self._cache:
            self._cache["stepper"] = stepper_for(self.config_, len(self.embedding_))[0]
        return self._cache["stepper"]

    @property
    def transform_result_(self) -> Any:
        """The last ``transform``'s :class:`tsnejax.transform.TransformResult` (KL history,
        timings)."""
        check_is_fitted(self, "embedding_")
        if "transform_result" not in self._cache:
            raise AttributeError("transform_result_ exists after the first transform call.")
        return self._cache["transform_result"]

    def transform(self, X: Any, *, config: Any = None, **overrides: Any) -> np.ndarray:
        """Place new points into ``embedding_`` without moving it (openTSNE's ``transform``).

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)
            New points, with the features ``fit`` saw.
        config : tsnejax.transform.TransformConfig, optional
            Default: openTSNE's transform defaults (perplexity 5, 100 iterations of
            optimisation with early exaggeration 4 after the placement at the neighbours'
            weighted mean).
        **overrides
            Replace fields of ``config``, e.g. ``transform(X, n_iter=0)`` for the placement
            alone.

        Returns
        -------
        Y_new : ndarray of shape (n_new, n_components)
        """
        check_is_fitted(self, "embedding_")
        if getattr(self, "_X_fit", None) is None:
            raise ValueError(
                "transform needs the data the embedding was fitted on; this TSNE was fitted "
                "from precomputed affinities. Use tsnejax.transform.transform(X_new, X_ref, Y)."
            )
        Xv = check_new_points(check_query(X, self.metric, len(self.embedding_)), self.metric)
        validate_data(self, X, skip_check_array=True, reset=False)
        if not isinstance(config, TransformConfig | None):  # was dataclasses' TypeError
            raise ValueError(f"config must be a TransformConfig or None, got {config!r:.40}.")
        config = dataclasses.replace(config or TransformConfig(), **overrides)
        key = key_of(self.random_state_)
        euclidean = isinstance(self.metric, str) and self.metric == "euclidean"
        euclidean = euclidean and not sp.issparse(self._X_fit)  # a graph index needs rows
        if "graph_index" not in self._cache and self.neighbors_ is not None and euclidean:
            # fit's kNN graph indexes the reference, as openTSNE keeps its Annoy index.
            self._cache["graph_index"] = build_graph_index(self._X_fit, self.neighbors_, key=key)
        result = transform(
            Xv,
            self._X_fit,
            self.embedding_,
            config,
            dof=self.dof,
            key=key,
            index=self._cache.get("graph_index"),
            metric=self.metric,
            metric_params=self.metric_params,
        )
        self._cache["transform_result"] = result
        return np.asarray(result.embedding)

    def score(self, X: Any, y: Any = None) -> float:
        """Trustworthiness (k = 5) of ``transform(X)``: how well held-out points are placed,
        so ``GridSearchCV(TSNE(), grid)`` and ``cross_val_score(TSNE(), X)`` need no
        ``scoring=`` (:func:`trustworthiness_scorer` chooses k)."""
        return trustworthiness_scorer(5)(self, X, y)

    def fit_transform(self, X: Any = None, y: Any = None, **kwargs: Any) -> np.ndarray:
        """``fit(X, **kwargs)`` and return ``embedding_`` (not ``transform(X)``: see Notes)."""
        return self.fit(X, y, **kwargs).embedding_

    @property
    def _n_features_out(self) -> int:
        """Output columns, for ``get_feature_names_out`` (``tsne0``, ``tsne1``, ...)."""
        return self.n_components

    def __getstate__(self) -> dict[str, Any]:
        """Pickle state: compiled programs and the transform's index are left out (rebuilt on
        demand); an unpicklable Optax object or Backend parameter gets a clear error."""
        state = dict(super().__getstate__())
        if "_cache" in state:
            state["_cache"] = {}
        state["mesh"] = None  # devices belong to a process
        check_picklable(state)
        return state

    def __sklearn_tags__(self):
        return estimator_tags(self, super().__sklearn_tags__())
