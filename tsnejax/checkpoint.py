"""Save and reload a :class:`tsnejax.run.TSNEState` (embedding + optimizer state) as ``.npz``.

The file holds every leaf of the state pytree in order plus a JSON ``meta`` entry; reloading
needs the optimizer (to rebuild the tree structure), as with Orbax's "restore with a target".
Writes are atomic (temporary file, then rename), so a killed process leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsnejax.run import TSNEState, init_state

__all__ = ["save_state", "load_state", "load_meta"]

_FORMAT = "tsnejax-state-1"


def save_state(path: str | os.PathLike, state: TSNEState, **meta: Any) -> Path:
    """Write ``state`` (and JSON-serialisable ``meta``) to ``path`` atomically; returns the path."""
    path = Path(path)
    leaves = jax.tree.leaves(state)
    arrays = {f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
    header = {"format": _FORMAT, "n_leaves": len(leaves), "meta": meta}
    arrays["meta"] = np.asarray(json.dumps(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read(path: str | os.PathLike) -> tuple[dict, list[np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["meta"]))
            leaves = [z[f"leaf_{i:04d}"] for i in range(header["n_leaves"])]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint {str(path)!r} is not a readable tsnejax state: {e}") from e
    if header.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {header.get('format')!r}.")
    return header, leaves


def load_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` saved with a checkpoint."""
    return _read(path)[0]["meta"]


def load_state(path: str | os.PathLike, optimizer: optax.GradientTransformation) -> TSNEState:
    """Reload a state saved by :func:`save_state` for ``optimizer`` (same structure as saved).

    Raises ``ValueError`` if the file is missing, corrupt, or was saved for an optimizer with a
    different state structure (shapes and dtypes are checked leaf by leaf).
    """
    _, leaves = _read(path)
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
                f"the optimizer state's {jnp.result_type(a)}{list(np.shape(a))}."
            )
    return jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves])
