"""The one atomic-write helper: a temporary file in the target's folder, flushed, fsync'ed and
renamed over the target, so a crash (even SIGKILL) leaves the old file or the new one."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_save_npy"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    For writers that need a file name (``np.savez``, ``matplotlib``); ``suffix`` keeps the
    extension they dispatch on.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps: Any) -> None:
    """``obj`` as JSON (default: indent 1, sorted keys), atomically."""
    dumps = {"indent": 1, "sort_keys": True, **dumps}
    atomic_write_bytes(path, (json.dumps(obj, **dumps) + "\n").encode())


def atomic_save_npy(path: str | os.PathLike, array: Any) -> None:
    """``np.save`` of ``array`` (no pickles), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
