"""Save and reload a :class:`tsnejax.run.TSNEState` (embedding + optimizer state) as ``.npz``,
and resume a run from one.

The file holds every leaf of the state pytree in order plus a JSON ``meta`` entry; reloading
needs the optimizer (to rebuild the tree structure), as with Orbax's "restore with a target".
Writes are atomic (:mod:`tsnejax._io`), so a killed process leaves the previous checkpoint
intact. :class:`Checkpoint` is what :func:`tsnejax.run.optimize` saves through;
:func:`fingerprint` and :func:`resume` let :func:`tsnejax.fit` continue an interrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsnejax._checks import check_pathlike
from tsnejax._io import atomic_path
from tsnejax._loop_checks import check_state
from tsnejax.run import TSNEState, init_state
from tsnejax.shard import point_layout

__all__ = [
    "check_path",
    "save_state",
    "load_state",
    "load_meta",
    "load_records",
    "load_resumed",
    "Checkpoint",
    "fingerprint",
    "config_fingerprint",
    "run_digests",
    "resume",
]

_FORMAT = "tsnejax-state-1"


def _on_host(x: Any) -> np.ndarray:
    """``x`` whole on the host: an array split across processes (a point-sharded run joined by
    ``jax.distributed``) is gathered first; every process must call this together."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def check_path(path: Any) -> Path:
    """``path`` as a ``Path``, once a file can be created where it points (the missing folders
    are created by the save). A folder, or a place where nothing can be written, failed at the
    first save — after the kNN search, P and the first chunk — as a ``FileNotFoundError``
    naming a temporary file; a folder given to resume from was said not to exist."""
    p = Path(check_pathlike("checkpoint", path, "tsne.npz", "a file path"))
    if p.is_dir():
        raise ValueError(
            f"checkpoint {str(p)!r} is a folder; give a file in it, e.g. {str(p / 'tsne.npz')!r}."
        )
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=folder)
    except OSError as e:
        raise ValueError(
            f"checkpoint {str(p)!r} cannot be written: no file can be created in "
            f"{str(folder)!r} ({e.strerror}); choose another path."
        ) from e
    os.close(fd)
    os.unlink(probe)
    return p


def save_state(
    path: str | os.PathLike, state: TSNEState, *, records: Any = None, **meta: Any
) -> Path:
    """Write ``state`` (and JSON-serialisable ``meta``) to ``path`` atomically; returns the path.

    ``records``: the run's per-step records so far (a list of arrays, the leaves of what
    :func:`tsnejax.run.optimize`'s ``record`` returns, stacked), read back by
    :func:`load_records`.

    A point-sharded state is saved whole (padding rows included); a state split across
    processes is gathered by every one of them and written by process 0, so ``path`` must be
    on a file system all of them read. A state each process holds whole (a sweep's trials run
    by one process each) is written by the process that holds it, with no wait for the others.
    """
    path = Path(check_pathlike("path", path, "tsne.npz", "a file path"))
    check_state(state)
    leaves = jax.tree.leaves(state)
    spans = any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves)
    arrays = {f"leaf_{i:04d}": _on_host(x) for i, x in enumerate(leaves)}
    records = [] if records is None else list(records)
    arrays.update({f"record_{i:04d}": np.asarray(r) for i, r in enumerate(records)})
    if not spans or jax.process_index() == 0:
        header = {"format": _FORMAT, "n_leaves": len(leaves), "meta": meta}
        if records:
            header["n_records"] = len(records)
        arrays["meta"] = np.asarray(json.dumps(header))
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
    if spans:  # no process reads it (a resume) before it is written
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"tsnejax checkpoint {path}")
    return path


def _place_like(loaded: TSNEState, like: TSNEState, path: Any) -> TSNEState:
    """``loaded`` laid out as ``like`` is: split by points across the devices (and processes)
    of a point-sharded run; otherwise as loaded, uncommitted like a fresh state, so that
    :func:`tsnejax.run.optimize` places it as it places one (a batch on a trials mesh)."""
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(like), strict=True):
        if np.shape(a) != np.shape(b):
            raise ValueError(
                f"checkpoint {str(path)!r} holds arrays of shape {np.shape(a)} where this run "
                f"has {np.shape(b)}: a point-sharded state is padded to a multiple of the mesh "
                "size, so resume it on a mesh of the size it was saved from."
            )

    if not hasattr(like.embedding.sharding, "mesh"):
        return loaded

    def place(a: Any) -> Any:
        host = np.asarray(a)
        sharding = point_layout(host.shape, like.embedding)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(place, loaded)


def _read(path: str | os.PathLike) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """``(header, state leaves, record leaves)`` of a checkpoint file."""
    path = Path(check_pathlike("checkpoint", path, "tsne.npz", "a file path"))
    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a folder, not a saved state.")
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["meta"]))
            leaves = [z[f"leaf_{i:04d}"] for i in range(header["n_leaves"])]
            records = [z[f"record_{i:04d}"] for i in range(header.get("n_records", 0))]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
        # numpy's own advice ("load it unsafely with allow_pickle=") does not apply here
        raise ValueError(
            f"checkpoint {str(path)!r} is not a readable tsnejax state (save_state writes one): "
            f"{type(e).__name__}."
        ) from e
    if header.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {header.get('format')!r}.")
    return header, leaves, records


def load_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` saved with a checkpoint."""
    return _read(path)[0]["meta"]


def load_records(path: str | os.PathLike) -> list[np.ndarray] | None:
    """The per-step records saved with a checkpoint (the leaves of the run's ``records`` up to
    its iteration), or ``None`` when the save holds none (written by ``save_state`` without
    them, or before tsnejax saved them)."""
    records = _read(path)[2]
    return records or None


def load_resumed(path: str | os.PathLike) -> dict:
    """What :func:`tsnejax.run.optimize` takes as ``resumed`` to go on from a checkpoint: its
    metadata (the KL history; a batch's trials) and, under ``"records"``, its per-step
    records, so the resumed run's ``kl_history`` and ``records`` are the whole run's."""
    header, _, records = _read(path)
    meta = dict(header["meta"])
    if records:
        meta["records"] = records
    return meta


def load_state(path: str | os.PathLike, optimizer: optax.GradientTransformation) -> TSNEState:
    """Reload a state saved by :func:`save_state` for ``optimizer`` (same structure as saved).

    Raises ``ValueError`` if the file is missing, corrupt, or was saved for an optimizer with a
    different state structure (shapes and dtypes are checked leaf by leaf).
    """
    _, leaves, _ = _read(path)
    template = init_state(jnp.asarray(leaves[0]), optimizer)
    ref, treedef = jax.tree.flatten(template)
    if len(ref) != len(leaves):
        raise ValueError(
            f"checkpoint {str(path)!r} holds {len(leaves)} arrays but this optimizer's state has "
            f"{len(ref)}: load it with the optimizer it was saved with."
        )
    for i, (a, b) in enumerate(zip(ref, leaves, strict=True)):
        if np.shape(a) != b.shape or jnp.result_type(a) != b.dtype:
            raise ValueError(
                f"checkpoint {str(path)!r} leaf {i}: {b.dtype}{list(b.shape)} does not match "
                f"the optimizer state's {jnp.result_type(a)}{list(np.shape(a))}: load it with "
                "the optimizer it was saved with."
            )
    return jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves])


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where and how often :func:`tsnejax.run.optimize` saves the state.

    Attributes:
      path: the ``.npz`` file (rewritten atomically each time).
      every: save when the iteration count reaches a multiple of it (``None``: the run's
        ``chunk_size``); also at the end and on divergence.
      meta: JSON-serialisable metadata stored with every save.
      annotate: ``() -> dict`` of more metadata, asked at each save (what changes during the
        run: e.g. a batch's stopping rules' records).
    """

    path: str | os.PathLike
    every: int | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    annotate: Callable[[], dict] | None = None

    def save(self, state: TSNEState, *, records: Any = None, **extra: Any) -> Path:
        more = {} if self.annotate is None else self.annotate()
        return save_state(self.path, state, records=records, **{**self.meta, **more, **extra})


def fingerprint(*parts: Any) -> str:
    """A digest of what determines a run: ``repr`` of settings and the bytes of arrays (keys,
    P, the initial embedding)."""
    h = hashlib.sha256()
    for part in parts:
        for a in jax.tree.leaves(part):
            if isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                a = jax.random.key_data(a)
            if isinstance(a, np.ndarray | jax.Array):
                a = np.ascontiguousarray(_on_host(a))
                h.update(str((a.shape, a.dtype)).encode())
                h.update(a.tobytes())
            else:
                h.update(repr(a).encode())
    return h.hexdigest()[:32]


#: Settings that may hold a schedule of the iteration.
SCHEDULE_FIELDS = ("learning_rate", "exaggeration_decay")
#: Settings that may hold a callable whose results P holds.
P_FIELDS = ("metric", "affinity_method")


def config_fingerprint(config: Any) -> Any:
    """``config``'s settings as :func:`fingerprint` reads them, stable across processes where
    possible: a schedule (``learning_rate``, ``exaggeration_decay``) is described by its values
    at iterations ``0 .. total_iter``, which is all the run sees of it, rather than by its
    ``repr`` (a memory address). Optax and Backend objects keep their ``repr``: a checkpoint
    written with one resumes only in the same process. A config without schedules is
    returned as it is (its ``repr`` is stable), so earlier checkpoints still match. A callable
    metric or affinity method is described by its qualified name: what it computes is in P,
    which the digest hashes."""
    flat = config.flat()
    schedules = {name for name in SCHEDULE_FIELDS if callable(flat[name])}
    named = {name for name in P_FIELDS if callable(flat[name])}
    if not schedules and not named:
        return config
    n = max(int(config.total_iter), 1)
    out: dict[str, Any] = {}
    for name, value in flat.items():
        if name in named:
            value = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
        if name in schedules:
            try:
                steps = jnp.arange(n + 1, dtype=jnp.int32)
                value = np.asarray(jax.vmap(value)(steps), np.float32)
            except Exception:  # noqa: BLE001 (not traceable: fall back on its repr)
                value = repr(value)
        out[name] = value if isinstance(value, np.ndarray) else repr(value)
    return out


def run_digests(config: Any, *arrays: Any) -> Iterator[str]:
    """The fingerprints a checkpoint of the run of ``config`` on ``arrays`` (key, initial
    embedding, P) may carry, the one to write first; the others are computed only when asked
    for (each hashes P again). Without a schedule or an Optax object the main phase's length
    is left out: iteration ``t`` of a run does not depend on how long it goes on, so a rerun
    with a larger ``n_iter`` continues a finished run instead of refusing it (the full config's
    digest, which earlier checkpoints carry, follows). A schedule's values are read over the
    whole run, and an Optax object's per-phase step scale is divided by the rate at the run's
    last step: their digest covers ``n_iter`` too."""
    flat = config.flat()
    if not config.optimizer.is_object and not any(callable(flat[k]) for k in SCHEDULE_FIELDS):
        yield fingerprint(config_fingerprint(config.replace(n_iter=0)), *arrays)
    yield fingerprint(config_fingerprint(config), *arrays)


def resume(
    path: Any,
    optimizer: Any,
    state: TSNEState,
    digest: str | Iterable[str],
    total_iter: Any = None,
) -> TSNEState:
    """The state saved at ``path`` by a run with one of the fingerprints ``digest`` (``state``
    if there is no file yet); ``ValueError`` if the file belongs to another run, to one that
    diverged, or to one already past ``total_iter``."""
    if not Path(path).exists():
        return state
    meta = load_meta(path)
    digests = (digest,) if isinstance(digest, str) else digest  # lazy: stops at a match
    if meta.get("fingerprint") not in digests:
        raise ValueError(
            f"checkpoint {str(path)!r} was written by a run with different data, settings or "
            "key; delete it or choose another checkpoint path."
        )
    if "diverged_at" in meta:
        raise ValueError(
            f"checkpoint {str(path)!r} holds the last finite state of a run that diverged at "
            f"iteration {meta['diverged_at']}; resuming would diverge again. Change the "
            "settings (and the checkpoint path)."
        )
    saved = _place_like(load_state(path, optimizer), state, path)
    reached = int(np.max(np.asarray(saved.iteration)))  # a batch's: its longest trial's
    if total_iter is not None and reached > int(total_iter):
        raise ValueError(
            f"checkpoint {str(path)!r} holds iteration {reached}, past this run's "
            f"{int(total_iter)} (both phases); raise n_iter or choose another checkpoint path."
        )
    return saved
