"""Differentiable t-SNE: the final embedding and KL as functions of the hyperparameters.

``Y, kl = diff.fit(X, {"learning_rate": lr, "perplexity": p}, key=key, n_iter=100, ...)`` is a
pure function of the dict's values, so ``jax.grad`` and ``jax.vmap`` apply to every entry:

- ``perplexity``: P is built inside the trace. Each row's precision solves the entropy equation
  ``H_i(beta_i) = log(perplexity)``; the forward pass bisects (as :mod:`tsnejax.affinity`,
  same P), and the derivative comes from the implicit function theorem
  (``dbeta/dlog u = 1 / (dH/dbeta)``, a ``jax.custom_jvp``), not from unrolling the bisection.
- ``early_exaggeration``, ``exaggeration``, ``dof``: step inputs of every iteration.
- ``learning_rate``, ``momentum`` (and ``early_learning_rate``, ``early_momentum`` for the
  early phase alone): set in the optimizer state each step (``optax.inject_hyperparams``);
  ``momentum`` is ``b1`` for Adam-like optimizers.

What is fixed outside the trace (concrete, cached per data set): the kNN graph (``n_neighbors``,
default 90 = 3 x 30, so perplexities up to 90 are valid), the symmetrised layout of P, the
initial embedding and the grids of the interpolation/splat methods. The grid schedule (which
grid from which iteration) is taken once from a forward run (:func:`tsnejax.fit` with the
same method, optimizer and iteration counts and default hyperparameters, resizing every 50
iterations as usual) and then held, whatever the hyperparameters, so finite differences and
``jax.grad`` see the same function; pass ``grid=`` to choose it. The forward pass then equals
:func:`tsnejax.fit`'s run with those settings (no step clipping in this path).

Memory: the iterations run as a scan of chunks of ``checkpoint_every`` steps (default about
the square root of the total); only the state at chunk starts is kept for the backward pass,
and each step inside a chunk is recomputed (``jax.checkpoint`` on chunks and on steps), so
memory grows as ``(T / c + c)`` states plus one step's intermediates.

The classic momentum + gains rule is differentiable almost everywhere but its sign-based gains
and step clipping make the result piecewise smooth: its hypergradients agree only roughly with
finite differences (docs/hypergradients.md). Use ``"sgd"`` or ``"adam"`` for gradients.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsnejax._checks import check_hashable, check_int, check_key
from tsnejax._diff_setup import (
    DEFAULT_MOMENTUM,
    DEFAULTS,
    HYPERPARAMS,
    check_graph_perplexity,
    check_grid,
    check_hyperparams,
    check_run_args,
    graph_perplexity_bound,
    hyperparam_in_range,
    phase_values,
    split_spec,
    stepper,
)
from tsnejax._diverge import CAUSE_WORDS, CAUSES, DivergenceError
from tsnejax._types import Array, PRNGKey
from tsnejax.affinity import (
    Affinities,
    AffinityLayout,
    build_layout,
    calibrate_perplexity,
    symmetrize,
)
from tsnejax.gradients import Backend, get_backend
from tsnejax.knn_metric import check_input, frozen_metric_params, graph_search
from tsnejax.run import TSNEState

__all__ = [
    "HYPERPARAMS",
    "clear_cache",
    "fit",
    "prepare",
    "perplexity_affinities",
    "precisions",
    "size_grid",
    "Prepared",
]


class Prepared(NamedTuple):
    """What :func:`fit` computes once per data set, outside the trace."""

    distances: Array  # (n, k) kNN distances in units of ``unit`` (self excluded)
    layout: AffinityLayout  # slots of the symmetrised P
    Y0: Array  # (n, n_components) initial embedding
    indices: Array  # (n, k) the kNN graph's neighbours, nearest first (for soft_knn_recall)


# ---------------------------------------------------------------- P(perplexity)


def _entropy(beta: Array, d2: Array) -> Array:
    """Row entropies (nats) of ``softmax(-beta_i * d2_i)`` (d2 shifted to row minimum 0)."""
    e = jnp.exp(-jnp.where(d2 > 0, d2 * beta[:, None], 0.0))
    s = jnp.sum(e, axis=1)
    p = e / s[:, None]
    return jnp.log(s) + beta * jnp.sum(d2 * p, axis=1)


@jax.custom_jvp
def precisions(d2: Array, perplexity: Array) -> Array:
    """``(n,)`` precisions beta with ``H_i(beta_i) = log(perplexity)`` for ``(n, k)`` squared
    distances ``d2`` (each row shifted to minimum 0). Forward: bisection; derivative: the
    implicit function theorem on the entropy equation."""
    return calibrate_perplexity(d2, perplexity)[1]


@precisions.defjvp
def _precisions_jvp(primals, tangents):
    d2, u = primals
    dd2, du = tangents
    beta = precisions(d2, u)
    # F(beta, d2, u) = H(beta, d2) - log u = 0  =>  dbeta = (du / u - dH/dd2 . dd2) / (dH/dbeta)
    _, dh_dbeta = jax.jvp(lambda b: _entropy(b, d2), (beta,), (jnp.ones_like(beta),))
    _, dh_d2 = jax.jvp(lambda d: _entropy(beta, d), (d2,), (dd2,))
    tiny = jnp.finfo(beta.dtype).tiny
    safe = jnp.abs(dh_dbeta) > tiny  # a constant row: H does not depend on beta
    dbeta = jnp.where(safe, (du / u - dh_d2) / jnp.where(safe, dh_dbeta, 1.0), 0.0)
    return beta, dbeta


def perplexity_affinities(distances: Array, layout: AffinityLayout, perplexity: Any) -> Affinities:
    """Symmetric P of :func:`tsnejax.affinity.perplexity_affinities`, differentiable in
    ``perplexity`` (and the ``(n, k)`` distances): the same calibration and symmetrisation."""
    d2 = jnp.square(distances)
    d2 = d2 - jnp.min(d2, axis=1, keepdims=True)
    beta = precisions(d2, jnp.asarray(perplexity, d2.dtype))
    e = jnp.exp(-jnp.where(d2 > 0, d2 * beta[:, None], 0.0))
    return symmetrize(e / jnp.sum(e, axis=1, keepdims=True), layout)


# ---------------------------------------------------------------- host preparation

_PREPARED: dict[tuple, Prepared] = {}
_GRIDS: dict[tuple, Hashable] = {}
_CACHE_SIZE = 8


def _digest(X: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest()[:16] + str(X.shape)


def clear_cache() -> None:
    """Forget the cached kNN graphs, layouts and grid schedules."""
    _PREPARED.clear()
    _GRIDS.clear()


def _remember(cache: dict, key: tuple, make: Any) -> Any:
    if key not in cache:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        # Host work on concrete data, also when fit is called inside jax.jit or a transform.
        with jax.ensure_compile_time_eval():
            cache[key] = make()
    return cache[key]


def prepare(
    X: Any,
    *,
    key: PRNGKey,
    n_neighbors: int = 90,
    initialization: str | Any = "pca",
    n_components: int = 2,
    metric: Any = "euclidean",
    metric_params: Any = None,
) -> Prepared:
    """kNN graph (in ``metric``), P's layout and the initial embedding of ``X`` (cached by
    content)."""
    if isinstance(X, jax.core.Tracer):
        raise ValueError(
            "diff.fit: X must be a concrete array (the kNN graph is computed once, outside "
            "the trace); differentiate with respect to the hyperparameters."
        )
    Xv = check_input(X, metric)
    n = Xv.shape[0]
    if metric == "precomputed" and isinstance(initialization, str) and initialization == "pca":
        raise ValueError(
            "diff.fit: X holds distances (metric='precomputed'); pass initialization='random' "
            "or an (n, d) array."
        )
    if not isinstance(n_neighbors, int) or not 1 <= n_neighbors < n:
        raise ValueError(f"n_neighbors={n_neighbors!r} must be an int in [1, {n - 1}].")
    from tsnejax import init as init_lib

    init_key = "pca" if isinstance(initialization, str) and initialization == "pca" else None
    cache_key = (_digest(Xv), n_neighbors, n_components, init_key, metric)
    cache_key += (frozen_metric_params(metric_params),)

    def make() -> Prepared:
        knn = graph_search(
            Xv, n_neighbors, method="exact", metric=metric, metric_params=metric_params
        )
        top = float(np.max(np.asarray(knn.distances)))
        unit = 2.0 ** round(math.log2(top)) if top > 0 else 1.0  # as affinity._conditional
        Y0 = init_lib.pca(Xv, n_components) if init_key == "pca" else None
        return Prepared(knn.distances / unit, build_layout(knn), Y0, knn.indices)

    prep = _remember(_PREPARED, cache_key, make)
    if isinstance(initialization, str):
        if initialization == "random":
            return prep._replace(Y0=init_lib.random(key, n, n_components))
        if initialization != "pca":
            raise ValueError(
                f"initialization={initialization!r}: use 'pca', 'random' or an (n, d) array "
                "(a spectral start: tsnejax.init.spectral(P, n_components, key))."
            )
        return prep
    return prep._replace(Y0=init_lib.user(initialization, n, n_components))


def size_grid(
    X: Any,
    *,
    key: PRNGKey,
    method: str | Backend,
    n_iter: int,
    early_exaggeration_iter: int,
    optimizer: str | optax.GradientTransformation = "sgd",
    n_components: int = 2,
    chunk_size: int = 50,
    metric: Any = "euclidean",
    metric_params: Any = None,
) -> tuple[tuple[int, Hashable], ...]:
    """The grid schedule :func:`fit` holds fixed: ``((start_iteration, grid), ...)``, the grids a
    forward :func:`tsnejax.fit` with the same method, optimizer and iteration counts and
    default hyperparameters chose at each multiple of ``chunk_size`` (cached per data set).
    ``()`` for the exact method."""
    backend = get_backend(method)
    if backend.name == "exact":
        return ()
    Xv = check_input(X, metric)
    cache_key = (_digest(Xv), backend, optimizer, n_iter, early_exaggeration_iter, n_components)
    cache_key += (chunk_size, metric, frozen_metric_params(metric_params))

    def make() -> tuple[tuple[int, Hashable], ...]:
        from tsnejax.config import TSNEConfig
        from tsnejax.pipeline import fit as pipeline_fit
        from tsnejax.pipeline import initial_embedding

        config = TSNEConfig.make(
            negative_gradient_method=backend,
            optimizer=optimizer,
            n_iter=n_iter,
            early_exaggeration_iter=early_exaggeration_iter,
            n_components=n_components,
            chunk_size=chunk_size,
            metric=metric,
            metric_params=metric_params,
            initialization="random" if metric == "precomputed" else "pca",
        )
        if isinstance(optimizer, str) and optimizer in ("sgd", "classic"):
            config = config.replace(
                initial_momentum=DEFAULT_MOMENTUM, final_momentum=DEFAULT_MOMENTUM
            )
        elif not isinstance(optimizer, str):  # fit steps an Optax object unscaled in each phase
            config = config.replace(phase_scaling=False)
        Y0 = initial_embedding(jax.random.split(key)[1], Xv, len(Xv), config)  # fit's Y0
        schedule = [(0, backend.allocate(Y0))]

        def record(iteration: int, kl: Any, embedding: Any) -> bool:
            grid = backend.allocate(embedding)
            if iteration < early_exaggeration_iter + n_iter and grid != schedule[-1][1]:
                schedule.append((int(iteration), grid))
            return False

        pipeline_fit(key, Xv, config, callbacks=[record], callbacks_every=chunk_size)
        return tuple(schedule)

    return _remember(_GRIDS, cache_key, make)


def _segments(grid: Any, n_total: int) -> tuple[tuple[int, int, Hashable], ...]:
    """``((start, stop, grid), ...)`` covering ``[0, n_total)`` from a grid or a schedule."""
    if grid is None or grid == ():
        return ((0, n_total, None),)
    is_schedule = isinstance(grid, tuple | list) and all(
        isinstance(e, tuple | list) and len(e) == 2 and isinstance(e[0], int) for e in grid
    )
    if not is_schedule:
        return ((0, n_total, grid),)
    starts = [int(s) for s, _ in grid]
    if starts[0] != 0 or starts != sorted(set(starts)):
        raise ValueError("grid schedule: start iterations must begin at 0 and increase.")
    bounds = [*starts[1:], n_total]
    return tuple(
        (s, min(e, n_total), g) for (s, g), e in zip(grid, bounds, strict=True) if s < n_total
    )


# ---------------------------------------------------------------- the differentiable run


@functools.partial(jax.jit, static_argnames=("step", "kl_fn", "n_early", "chunk", "segments"))
def _run(
    prep: Prepared,
    perplexity: Array,
    opt_state: Any,
    early: dict,
    main: dict,
    *,
    step: Any,
    kl_fn: Any,
    n_early: int,
    chunk: int,
    segments: tuple[tuple[int, int, Hashable], ...],
) -> tuple[Array, Array, Array]:
    """``(Y, kl, bad)``: ``bad`` is ``(iteration, cause)`` of the first non-finite step
    (``(-1, 0)`` if none); the run is not frozen there, so NaN flows on as JAX's does."""
    P = perplexity_affinities(prep.distances, prep.layout, perplexity)
    state = TSNEState(prep.Y0, opt_state, jnp.int32(0))
    bad = jnp.array([-1, 0], jnp.int32)
    for start, stop, grid in segments:  # one scan per grid (a static structure)
        state, bad = _segment(
            (state, bad), P, early, main, step, n_early, (start, stop), chunk, grid
        )
    Y = state.embedding
    return Y, kl_fn(Y, P, main["dof"], segments[-1][2]), bad


def _segment(carry, P, early, main, step, n_early, span, chunk, grid):
    """Steps ``span[0] .. span[1] - 1`` as a scan of rematerialised chunks of rematerialised
    steps (memory: one state per chunk, one step's intermediates). ``carry`` is ``(state,
    bad)``, ``bad`` the first failed step's ``(iteration, cause)``."""
    start, stop = span
    c = max(1, min(chunk, stop - start))
    n_chunks = -(-(stop - start) // c)

    @jax.checkpoint
    def one_step(carry: tuple[TSNEState, Array], t: Array) -> tuple[TSNEState, Array]:
        state, bad = carry
        hyper = {k: jnp.where(t < n_early, early[k], main[k]) for k in main}
        new, info = step(state, P, hyper, grid)
        active = t < stop  # the last chunk is padded
        first = active & (bad[0] < 0) & ~info.finite
        bad = jnp.where(first, jnp.stack([t + 1, info.cause]).astype(bad.dtype), bad)
        return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state), bad

    @jax.checkpoint
    def one_chunk(carry, k: Array):
        def body(s, i):
            return one_step(s, start + k * c + i), None

        return jax.lax.scan(body, carry, jnp.arange(c))[0], None

    return jax.lax.scan(one_chunk, carry, jnp.arange(n_chunks))[0]


def fit(
    X: Any,
    hyperparams: Mapping[str, Any],
    *,
    key: PRNGKey,
    n_iter: int = 500,
    early_exaggeration_iter: int = 250,
    method: str | Backend = "exact",
    optimizer: str | optax.GradientTransformation = "sgd",
    n_components: int = 2,
    n_neighbors: int = 90,
    initialization: str | Any = "pca",
    grid: Hashable | None = None,
    checkpoint_every: int | None = None,
    metric: Any = "euclidean",
    metric_params: Any = None,
) -> tuple[Array, Array]:
    """t-SNE as a differentiable function of ``hyperparams``: returns ``(Y, kl)``.

    Args:
      X: ``(n, d)`` concrete data (its kNN graph is computed once and cached).
      hyperparams: dict of scalars (JAX arrays, possibly traced) with any of
        :data:`HYPERPARAMS`; missing ones take openTSNE's defaults (perplexity 30,
        exaggerations 12 and 1, dof 1; learning rate N / exaggeration per phase for
        ``"sgd"``/``"classic"``, :data:`tsnejax.build.ADAPTIVE_AUTO_LEARNING_RATE` for Adam-like;
        momentum 0.8). A given ``learning_rate`` (``momentum``) applies to both phases unless
        ``early_learning_rate`` (``early_momentum``) is given too.
      key: ``jax.random.key`` (random initialisation and the grid-sizing run).
      n_iter, early_exaggeration_iter: main-phase and early-phase iterations (static).
      method: ``"exact"``, ``"interpolation"``, ``"splat"`` or a :class:`Backend`.
      optimizer: a registry name (``"sgd"``, ``"adam"``, ``"classic"``, ...), a spec
        (``"adam:b1=0.5"``: its arguments are fixed; a ``learning_rate`` in it is a fixed
        rate, so ``hyperparams`` must not give one too) or an Optax transformation whose named
        hyperparameters are injected (``optax.inject_hyperparams``). The registry's Adam and
        Nadam get ``eps_root=1e-30`` here (a coordinate with a zero gradient throughout made
        every hypergradient NaN); give an Optax Adam of your own ``eps_root > 0`` too.
      n_neighbors: k of the kNN graph (perplexity must stay at or below it).
      initialization: ``"pca"``, ``"random"`` or an ``(n, n_components)`` array.
      grid: one grid held over the whole run, or a schedule ``((start_iteration, grid), ...)``
        (default: :func:`size_grid`, the grids a forward run chose).
      checkpoint_every: steps per rematerialised chunk (default ``ceil(sqrt(total))``).
      metric, metric_params: the input distance of the kNN graph (:mod:`tsnejax.knn_metric`).

    Returns:
      ``Y (n, n_components)`` after ``early_exaggeration_iter + n_iter`` steps and its KL
      (the method's own KL: exact, or with the grid's Z).
    """
    n_iter, early_exaggeration_iter = check_run_args(
        n_iter, early_exaggeration_iter, method, optimizer, n_components
    )
    n_total = early_exaggeration_iter + n_iter
    check_key(key)
    prep = prepare(
        X,
        key=key,
        n_neighbors=n_neighbors,
        initialization=initialization,
        n_components=n_components,
        metric=metric,
        metric_params=metric_params,
    )
    n = prep.Y0.shape[0]
    hp = check_hyperparams(hyperparams, HYPERPARAMS, n_neighbors, n)
    if "perplexity" not in hp:  # it used to calibrate a saturated P without a word
        check_graph_perplexity("the default perplexity", DEFAULTS["perplexity"], n_neighbors, n)
    name, fixed, hp = split_spec(optimizer, hp)
    step, transform = stepper(method, name, tuple(sorted(fixed.items())))
    check_hashable("grid", grid, "a grid from the backend's allocate")
    check_grid(grid, step.backend, prep.Y0)
    if grid is None:
        grid = size_grid(
            X,
            key=key,
            method=step.backend,
            optimizer=optimizer,
            n_iter=n_iter,
            early_exaggeration_iter=early_exaggeration_iter,
            n_components=n_components,
            metric=metric,
            metric_params=metric_params,
        )
    early, main = phase_values(hp, n, name)
    dtype = prep.Y0.dtype
    early = {k: jnp.asarray(v, dtype) for k, v in early.items()}
    main = {k: jnp.asarray(v, dtype) for k, v in main.items()}
    chunk = max(1, math.ceil(math.sqrt(n_total)))  # 0 used to mean this, silently
    if checkpoint_every is not None:
        chunk = check_int("checkpoint_every", checkpoint_every, minimum=1)
    perplexity = jnp.asarray(hp.get("perplexity", DEFAULTS["perplexity"]), dtype)
    Y, kl, bad = _run(
        prep,
        perplexity,
        transform.init(prep.Y0),
        early,
        main,
        step=step.step,
        kl_fn=step.kl_divergence,
        n_early=int(early_exaggeration_iter),
        chunk=int(chunk),
        segments=_segments(grid, n_total),
    )
    if not isinstance(bad, jax.core.Tracer) and int(bad[0]) >= 0:
        it, cause = int(bad[0]), CAUSES[int(bad[1])]
        hyper = ", ".join(f"{k}={float(v):.4g}" for k, v in hp.items()) or "the defaults"
        raise DivergenceError(
            f"diff.fit diverged at iteration {it} ({CAUSE_WORDS[cause]}) with {hyper}: "
            "lower the learning rate or the exaggeration (or raise dof). Under jax.grad, jit "
            "or vmap the same run returns NaN instead (check jnp.isfinite).",
            it,
            None,
            cause,
        )
    traced = {k: v for k, v in hyperparams.items() if isinstance(v, jax.core.Tracer)}
    if traced:  # concrete ones were checked
        Y, kl = _nan_out_of_range(Y, kl, traced, graph_perplexity_bound(n_neighbors, n))
    return Y, kl


def _nan_out_of_range(Y: Array, kl: Array, traced: Mapping[str, Array], bound: float):
    """``Y`` and the KL, NaN (value and derivatives) where a traced hyperparameter is outside the
    range a concrete one is refused for (:func:`hyperparam_in_range`). Each returned a finite,
    wrong answer (digits[:300], 100 steps): a perplexity of 99 on 90 neighbours saturates the
    calibration (gradient -3186), -5 gave a KL of 0.68 with a gradient of 2.3e5; a learning rate
    of 0 or -50, a momentum of 1 or -0.2 and a negative exaggeration ran to a finite KL."""
    ok = jnp.asarray(True)
    for name, value in traced.items():
        ok = ok & hyperparam_in_range(name, value, bound)
    # times the values' sum, so the derivative with respect to each is NaN where out of range
    poison = jnp.where(ok, 0.0, jnp.nan).astype(kl.dtype) * sum(traced.values())
    return Y + poison, kl + poison
