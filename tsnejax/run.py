"""The optimisation loop: jitted chunks of steps, host work in between, one state or a batch.

``build_step`` fixes the structure (gradient backend, optimizer) and returns a pure
``step(state, P, hyper, grid) -> (state, info)``: ``hyper`` holds the phase's values
(exaggeration and dof for the gradient; every other name is set in the optimizer state before
the update). :func:`optimize` is the only host loop. It runs a phase table
(:class:`tsnejax.schedules.Phases`) in chunks of at most ``chunk_size`` steps, split at every
phase start, callback point and checkpoint, so each takes effect at exactly its iteration.
Each chunk is one compiled ``fori_loop`` whose trip count is an argument, so chunks of any
length share a program. The grid is chosen on the host at multiples of ``chunk_size`` only:
where the other splits fall does not change the result.

A state whose arrays carry a leading trial axis is run as a batch: the chunk is vmapped (and
sharded over a ``Mesh`` axis ``"trials"`` when given), phase values may differ per trial, the
grid serves every member, and a trial that diverges is frozen and reported while the others
go on.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsnejax import _loop_checks as chk
from tsnejax._ahead import growth, host_spans, predict_grid
from tsnejax._checks import check_int, outside_stacklevel
from tsnejax._chunk import (
    BATCH_MODES,
    StepInfo,
    TSNEState,
    chunk_program,
    grad_norm,
    join_grids,
    pad_trials,
    resolve_batch,
    split_values,
    static_values,
)
from tsnejax._compile import ahead_enabled
from tsnejax._device import auto_axes
from tsnejax._diverge import CAUSES, DivergenceError, raise_divergence, spread, step_cause
from tsnejax._loop_host import (
    Checkpointer,
    Records,
    advance_bar,
    batch_start,
    boundaries,
    history_meta,
    kl_point,
    resumed_history,
    stop_trials,
    trial_book,
    trial_meta,
    unpad,
)
from tsnejax._scale import EmbeddingScaleWarning, scale_messages, unrecovered
from tsnejax._types import Array
from tsnejax.gradients import Backend, checked_backend, get_backend
from tsnejax.optim import gains_of, set_hyperparams, step_exploded
from tsnejax.schedules import STEP_INPUTS, Phases

__all__ = [
    "TSNEState",
    "StepInfo",
    "OptimizeResult",
    "DivergenceError",
    "EmbeddingScaleWarning",
    "Stepper",
    "Checkpointer",
    "build_step",
    "init_state",
    "optimize",
    "join_grids",
    "resolve_batch",
    "BATCH_MODES",
]

#: ``callback(iteration, kl, embedding) -> stop``; a truthy return ends the run. In a batched
#: run ``kl`` is ``(n_trials,)`` and ``embedding`` ``(n_trials, n, d)``.
Callback = Callable[[int, Any, np.ndarray], Any]


class OptimizeResult(NamedTuple):
    state: TSNEState
    # (iteration, KL) at each chunk end and callback point; KL is (n_trials,) in a batch
    kl_history: list[tuple[int, Any]]
    records: Any  # per step, what ``record`` returned, stacked (default: gradient norms)
    compile_seconds: float  # time the loop waited for chunk programs to compile in this call
    run_seconds: float  # time from dispatching chunks to their results (the rest of the wall)
    n_compiles: int
    stopped_early: bool
    grids: list  # distinct grid structures used, in order (None for the exact backend)
    diverged_at: np.ndarray | None = None  # batched: (n_trials,) iteration, -1 if finite
    # compile work (lowering + compiling) of the programs used, done ahead while chunks ran
    ahead_seconds: float = 0.0
    # batched: (n_trials,) why each diverged ("gradient", "update", "step"; "" if finite)
    diverged_cause: np.ndarray | None = None
    # where the ``stop`` check ended the run (None if it did not); batched: (n_trials,), -1
    # for trials it did not stop
    stop_rule_at: Any = None

    @property
    def grad_norms(self) -> Any:
        return self.records


def init_state(embedding: Array, optimizer: optax.GradientTransformation) -> TSNEState:
    """Fresh state at iteration 0; an ``(n_trials, n, d)`` embedding gives a batched state."""
    embedding = chk.check_start(embedding)
    chk.check_transformation(optimizer)
    if embedding.ndim == 3:
        n_trials = embedding.shape[0]
        return TSNEState(
            embedding, jax.vmap(optimizer.init)(embedding), jnp.zeros((n_trials,), jnp.int32)
        )
    return TSNEState(embedding, optimizer.init(embedding), jnp.zeros((), jnp.int32))


@dataclasses.dataclass(frozen=True, eq=False)
class Stepper:
    """What :func:`build_step` returns: the pure step and the backend's host/KL hooks.

    Attributes:
      step: ``(state, P, hyper, grid) -> (state, StepInfo)``, pure; ``grid`` is static.
      allocate: host ``Y -> grid`` (the backend's static structure for the next chunk).
      kl_divergence: ``(Y, P, dof, grid) -> KL``.
      backend: the gradient backend.
    """

    step: Callable[..., tuple[TSNEState, StepInfo]]
    allocate: Callable[[Any], Hashable]
    kl_divergence: Callable[..., Array]
    backend: Backend


def build_step(
    backend: Backend | str,
    optimizer: optax.GradientTransformation,
    *,
    gradient_scale: float = 1.0,
    recenter: bool = True,
    project: Callable[[Array, Any], Array] | None = None,
) -> Stepper:
    """One t-SNE iteration as a pure function, plus what the loop needs around it.

    Args:
      backend: a :class:`tsnejax.gradients.Backend` or a registry name (``"exact"``,
        ``"interpolation"``, ``"splat"``) with default parameters.
      optimizer: any Optax transformation; updates are added to the embedding. Names in
        ``hyper`` other than ``exaggeration`` and ``dof`` are set in its state before the
        update (:func:`tsnejax.optim.set_hyperparams`), so they must be injected there.
      gradient_scale: multiplies the gradient before the optimizer (4 reproduces
        scikit-learn's convention, 1 openTSNE/FIt-SNE).
      recenter: subtract the mean after each step (all peers do).
      project: ``(Y, P) -> Y`` applied after each step instead of recentring, when given
        (e.g. keeping transformed points inside a frozen grid whose bounds travel in P).
    """
    chk.check_transformation(optimizer)
    chk.check_step_options(gradient_scale, project)
    backend = get_backend(backend)
    checked = checked_backend(backend)  # the contract checked when traced

    def step(
        state: TSNEState, P: Any, hyper: dict[str, Any], grid: Hashable
    ) -> tuple[TSNEState, StepInfo]:
        hyper = dict(hyper)
        ex = hyper.pop("exaggeration", STEP_INPUTS["exaggeration"])
        dof = hyper.pop("dof", STEP_INPUTS["dof"])
        opt_state = set_hyperparams(state.opt_state, **hyper) if hyper else state.opt_state
        grad, _ = checked.gradient(state.embedding, P, dof, ex, grid)
        grad = gradient_scale * grad
        updates, opt_state = optimizer.update(grad, opt_state, state.embedding)
        chk.check_update_shapes(updates, state.embedding)
        Y = optax.apply_updates(state.embedding, updates)
        if project is not None:
            Y = project(Y, P)
        elif recenter:
            Y = Y - jnp.mean(Y, axis=0, keepdims=True)
        cause = step_cause(grad, Y, step_exploded(opt_state))
        gains = gains_of(opt_state)
        gained = jnp.linalg.norm(grad if gains is None else gains * grad)
        info = StepInfo(cause == 0, jnp.linalg.norm(grad), cause, gained.astype(grad.dtype))
        return TSNEState(Y, opt_state, state.iteration + 1), info

    return Stepper(step, checked.allocate, checked.kl_divergence, backend)


def optimize(
    stepper: Stepper,
    state: TSNEState,
    P: Any,
    n_iter: int,
    *,
    phases: Phases | None = None,
    dof: Any = None,
    chunk_size: int = 50,
    kl: bool = True,
    record: Callable[[TSNEState, StepInfo], Any] | None = None,
    callbacks: Sequence[Callback] = (),
    callbacks_every: int | None = None,
    verbose: bool = False,
    describe: Callable[[int], str] | None = None,
    checkpoint: Checkpointer | None = None,
    mesh: jax.sharding.Mesh | None = None,
    P_axis: int | None | str = "auto",
    batch: str = "auto",
    check_scale: bool = True,
    host_embedding: Callable[[Array], np.ndarray] | None = None,
    stop: Callable[[int, Any, Any], Any] | None = None,
    stop_every: int | Callable[[int], int | None] | None = None,
    resumed: Mapping | None = None,
) -> OptimizeResult:
    """Run ``n_iter`` iterations from ``state`` (resumable: pass the result's state on).

    Args:
      stepper: from :func:`build_step`; reuse the same object to avoid recompiling.
      state: start state (its ``iteration`` selects the phase); a leading trial axis on every
        leaf makes a batched run (all trials at the same iteration).
      P: affinities (any pytree the gradient function accepts); in a batched run with a
        leading trial axis (``P_axis=0``; :func:`tsnejax.batch.stack_affinities`) or shared by
        all trials (``P_axis=None``).
      n_iter: iterations to run in this call.
      phases: the phase table (default: exaggeration 1 throughout), or the mapping
        ``Phases.of`` takes (``{0: {...}, 250: {...}}``). Its values are numbers (traced),
        per-trial arrays in a batch, or schedules of the iteration. A batch may instead give
        one table per trial (:class:`tsnejax.schedules.TrialPhases`: read afresh at every
        chunk, so a ``stop`` check may move a trial to another phase).
      dof: shorthand for ``phases.replace(dof=dof)``; a Python number is compiled in (dof = 1
        takes a faster kernel), an array is traced.
      chunk_size: the grid is re-sized and the KL recorded every ``chunk_size`` iterations.
      kl: evaluate the backend's KL at the end of each chunk (and at callback points), inside
        the chunk's program; the values form ``kl_history``.
      record: ``(state, info) -> pytree`` evaluated after every step inside the program; the
        results are stacked in ``records`` (default: the gradient norm).
      callbacks: ``callback(iteration, kl, embedding) -> stop`` (one, or a sequence) every
        ``callbacks_every`` iterations (default ``chunk_size``); a truthy return stops the run.
        Where they fall does not change the embedding.
      verbose: a tqdm progress bar with the KL.
      describe: ``iteration -> str`` for error messages (default: the phase's values).
      checkpoint: an object with ``every`` and ``save(state, **extra)``
        (:class:`tsnejax.checkpoint.Checkpoint`): saved at multiples of ``every``, at the end,
        and on divergence (the last finite state, with ``diverged_at``).
      mesh: a batched run is sharded over its axis ``"trials"`` (padded to a multiple of it).
      P_axis: 0 if ``P`` has a leading trial axis, ``None`` if shared (batched runs);
        ``"auto"``: read from an :class:`~tsnejax.Affinities` P's shape (0 for any other
        pytree).
      batch: how a batched chunk runs its trials: ``"vmap"`` (vectorised: the fast way on a
        GPU/TPU; each trial equals its own run up to float rounding, which t-SNE's early
        exaggeration amplifies, measured 1e-3 relative after 150 iterations on digits) or
        ``"map"`` (one after another inside the one program, ``lax.map``: often bitwise equal
        to separate runs, else within 5e-4 of the scale after 100 iterations; on a CPU as fast
        as the trials' own programs). ``"auto"``: ``"map"`` on CPU devices, ``"vmap"`` on
        accelerators. docs/loop.md has the measurements.
      check_scale: at every phase end, an :class:`EmbeddingScaleWarning` when the embedding
        collapsed, exploded or (at the end) never expanded (:mod:`tsnejax._scale`).
      host_embedding: ``Y -> numpy array`` that callbacks receive (default ``np.asarray``;
        a point-sharded run passes :func:`tsnejax.shard.gather_points`, dropping padding).
      stop: a stopping check ``(iteration, kl, grad_norm) -> stop`` (:mod:`tsnejax.stopping`)
        called every ``stop_every`` iterations (default ``chunk_size``) with the KL there and
        the last step's ``StepInfo.gained_norm`` (gains x gradient with the classic optimizer,
        scikit-learn's ``grad_norm``; else the gradient's norm). A truthy return ends the run;
        in a batch, ``kl`` and ``grad_norm`` are ``(n_trials,)`` and each trial it stops is
        frozen there while the others go on (the run ends when none is left).
        ``stop_rule_at`` says where. ``stop_every`` may also be a function ``t -> the next
        iteration to check at`` (``None``: no more), for checks at uneven iterations.
      resumed: ``checkpoint.load_resumed(path)`` of the save ``state`` was loaded from: its
        ``"kl_history"`` and ``"records"`` head this run's, a batch's ``"trials"`` keeps
        frozen trials frozen where they stopped (``diverged_at``, ``diverged_cause`` and
        ``stop_rule_at`` go on). Each save passes ``records=`` (arrays) to ``save``.

    Raises:
      DivergenceError: a non-finite embedding or gradient, or an exploded step (one state);
        names the iteration and holds the last finite state. A batched run freezes such a
        trial instead and reports it in ``diverged_at``.
    """
    phases = chk.check_loop_options(phases, checkpoint, mesh, P_axis)
    if dof is not None:
        phases = phases.replace(dof=dof)
    phases = phases if "dof" in phases.values[0] else phases.replace(dof=1.0)
    n_iter = check_int("n_iter", n_iter, minimum=0)  # -5 used to run nothing without a word
    chunk_size = chk.check_loop_inputs(stepper, state, P, chunk_size)
    chk.check_state_points(P, state, mesh)
    mesh = None if mesh is None else auto_axes(mesh)
    callbacks = chk.check_callbacks(callbacks)
    if stop is not None:
        chk.check_callable("stop", stop, "(iteration, kl, grad_norm)")
        if not callable(stop_every):
            stop_every = chunk_size if stop_every is None else stop_every  # 0 is an error
            stop_every = check_int("stop_every", stop_every, minimum=1)
    batched = jnp.ndim(state.iteration) == 1
    n_trials = int(state.iteration.shape[0]) if batched else None
    if batched:
        P_axis = chk.check_P_axis(P_axis, P, n_trials)
    batch = resolve_batch(batch)
    size = n_trials if not batched or mesh is None else -(-n_trials // mesh.size) * mesh.size
    resumed = {} if resumed is None else resumed
    live, diverged, causes, stop_at = trial_book(size or 1, n_trials, resumed.get("trials"))
    if batched:
        start = batch_start(np.asarray(state.iteration), live[:n_trials])
        if mesh is not None:
            state = pad_trials(state, size)
            if P_axis == 0:
                P = pad_trials(P, size)
    else:
        start = int(state.iteration)
    # 0 used to fall back to the chunk size (`or`), silently.
    every = (
        chunk_size
        if callbacks_every is None
        else check_int("callbacks_every", callbacks_every, minimum=1)
    )
    ck_every = 0
    if checkpoint is not None:
        ck_every = chunk_size if checkpoint.every is None else checkpoint.every
        check_int("checkpoint_every", ck_every, minimum=1)
    record = grad_norm if record is None else chk.check_callable("record", record, "(state, info)")
    dtype = state.embedding.dtype
    active = jnp.asarray(live) if batched else jnp.bool_(True)
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter, desc="t-SNE", unit="it")
    history = resumed_history(resumed.get("kl_history"), batched, state.embedding.dtype)
    recs = Records(resumed.get("records"), batched, n_trials, record, state)
    compile_s = run_s = ahead_s = 0.0
    n_compiles = 0
    # Compile the next chunk's program while this one runs (tsnejax._ahead), for one state
    # or batch on one device; spans_at: (iteration, spans) at the last allocation.
    devices = getattr(getattr(state.embedding, "sharding", None), "device_set", ())
    ahead = ahead_enabled() and mesh is None and len(devices) == 1
    spans_at: tuple[int, np.ndarray] | None = None
    factor = Yh = None
    grids: list[Hashable] = []
    grid: Hashable = None
    t, end = start, start + n_iter
    stopped = False
    s_run = s_phase = spread(state.embedding) if check_scale else None
    phase_first = start
    collapsed: dict[int, tuple[float, str]] = {}  # earlier phases' collapses (tsnejax._scale)
    try:
        while t < end:
            points = [chunk_size, every if callbacks else 0, ck_every]
            next_stop = None
            if stop is not None:
                next_stop = (
                    stop_every(t) if callable(stop_every) else (t // stop_every + 1) * stop_every
                )
            seg_end = boundaries(t, end, points, phases, next_stop)
            length = seg_end - t
            if t == start or t % chunk_size == 0:
                # With compiling ahead, one host copy serves this allocation and the guess.
                Ys = np.asarray(state.embedding) if ahead else state.embedding
                if batched:
                    grid = join_grids([stepper.allocate(Ys[b]) for b in range(size)])
                else:
                    grid = stepper.allocate(Ys)
                if grid not in grids:
                    grids.append(grid)
                if ahead:
                    Yh = Ys
                    spans = host_spans(Yh)
                    last = spans_at is not None and t - spans_at[0] == chunk_size
                    factor = growth(spans_at[1], spans) if last else None
                    spans_at = (t, spans)
            static, values = split_values(phases.at(t), dtype, size)
            at_report = seg_end % chunk_size == 0 or seg_end == end
            at_callback = bool(callbacks) and seg_end % every == 0
            at_stop = next_stop is not None and seg_end == next_stop
            want_kl = (kl and (at_report or at_callback)) or at_stop
            args = (state, P, values, active, jnp.int32(length), jnp.bool_(want_kl))
            c = chunk_program(
                stepper, chunk_size, static, grid, record, args, size, mesh, P_axis, batch
            )
            compile_s += c.seconds
            ahead_s += c.ahead_seconds
            n_compiles += c.fresh
            t0 = time.perf_counter()
            new_state, ok, bad_at, bad_cause, buf, kl_value, norm = c.program(*args)
            if factor is not None and seg_end < end and seg_end % chunk_size == 0:
                nxt = phases.at(seg_end)
                nxt_static = static_values(nxt)
                if set(nxt) - set(nxt_static) == set(values):  # the same argument signature
                    try:
                        guess = predict_grid(stepper.allocate, Yh, factor, join_grids)
                        if guess != grid:
                            chunk_program(
                                stepper,
                                chunk_size,
                                nxt_static,
                                guess,
                                record,
                                args,
                                size,
                                None,
                                P_axis,
                                batch,
                                ahead=True,
                            )
                    except Exception:  # a guess only: the chunk that needs it compiles it
                        pass
            ok = np.asarray(ok)
            run_s += time.perf_counter() - t0
            if not batched and not ok:
                it = int(bad_at)
                where = describe(it) if describe is not None else phases.describe(max(it - 1, 0))
                name = stepper.backend.name
                raise_divergence(it, int(bad_cause), new_state, where, name, checkpoint)
            if batched:
                newly = np.asarray(active) & ~ok
                diverged[newly] = np.asarray(bad_at)[newly]
                causes[newly] = np.asarray(bad_cause)[newly]
                active = jnp.asarray(ok)
            state = new_state
            t = seg_end
            cut = (slice(None), slice(length)) if batched else (slice(length),)
            recs.append(jax.tree.map(lambda b, cut=cut: np.asarray(b)[cut], buf))
            if check_scale and (t == end or t in phases.starts):
                s_now = spread(state.embedding)
                for msg in scale_messages(
                    s_run,
                    s_phase,
                    s_now,
                    first=phase_first,
                    last=t,
                    run_start=start,
                    at_end=t == end,
                    n=int(state.embedding.shape[-2]),
                    dim=int(state.embedding.shape[-1]),
                    where=(describe or phases.describe)(t - 1),
                    active=(diverged < 0)[: n_trials or 1],
                    pending=collapsed,
                ):
                    warnings.warn(msg, EmbeddingScaleWarning, stacklevel=outside_stacklevel())
                s_phase, phase_first = s_now, t
            value = None
            if want_kl:
                value = kl_point(kl_value, diverged, n_trials, stepper.backend.name)
                history.append((t, value if not batched else value[:n_trials]))
            if bar is not None:
                advance_bar(bar, length, value if not batched else None, last=t == end)
            if at_callback and want_kl:
                Y = (
                    np.asarray(state.embedding)[:n_trials]
                    if batched
                    else (host_embedding or np.asarray)(state.embedding)
                )
                v = value[:n_trials] if batched else value
                stopped = any([chk.says_stop(i, cb(t, v, Y)) for i, cb in enumerate(callbacks)])
            # The rule is asked even when a callback stopped the run here, as it would be had
            # the run gone on: a checkpoint then records its answer for the resumed run.
            if at_stop and batched:
                go_on, hit = stop_trials(stop, t, value, norm, active, n_trials)
                stop_at[hit] = t
                active = jnp.asarray(go_on)
                stopped = stopped or not go_on.any()
            elif at_stop and not batched:
                said = bool(stop(t, value, float(norm)))
                if not stopped:
                    stopped, stop_at[0] = said, t if said else -1
            # Saved after the checks at t, so a save records what they decided (a stopping
            # rule's record travels in the checkpoint: tsnejax.stopping.run_staged).
            if checkpoint is not None and (stopped or t % ck_every == 0 or t == end):
                extra = {"iteration": t, "kl_history": history_meta(history)}
                if batched:
                    extra["trials"] = trial_meta(active, diverged, causes, stop_at, n_trials)
                checkpoint.save(unpad(state, n_trials), records=recs.leaves(), **extra)
            if stopped:
                break
        if collapsed and t < end:  # stopped early: judge the earlier collapses now
            live = {b: c for b, c in collapsed.items() if diverged[b] < 0}
            for msg in unrecovered(live, spread(state.embedding)):
                warnings.warn(msg, EmbeddingScaleWarning, stacklevel=outside_stacklevel())
    finally:
        if bar is not None:
            bar.close()
    return OptimizeResult(
        unpad(state, n_trials),
        history,
        recs.stacked(),
        compile_s,
        run_s,
        n_compiles,
        stopped,
        grids,
        diverged[:n_trials] if batched else None,
        ahead_s,
        np.asarray(CAUSES, object)[causes[:n_trials]].astype(str) if batched else None,
        stop_at[:n_trials] if batched else (int(stop_at[0]) if stop_at[0] >= 0 else None),
    )
