"""The one atomic-write helper: a temporary file in the target's folder, flushed, fsync'ed and
renamed over the target, so a crash (even SIGKILL) leaves the old file or the new one. The
temporary file's name holds the writer's host and pid; the next write to the same target
removes what a killed writer on this host left behind."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import re
import socket
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
    host = socket.gethostname()
    _remove_orphans(path, host)
    prefix = f".{path.name}.{host}-{os.getpid()}."
    for attempt in range(3):
        try:
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + suffix, dir=path.parent)
            break
        except FileNotFoundError:  # another process removed the folder as it emptied (runs/)
            if attempt == 2:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_orphans(path: Path, host: str) -> None:
    """Delete the temporary files of writes to ``path`` that a process on this host left when
    it was killed mid-write (its pid, in the name, no longer runs). Writers on other hosts,
    and live ones here, are left alone: their files may be about to be renamed."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{re.escape(host)}-(\d+)\..*\.tmp")
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        m = pattern.match(old.name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        old.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


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
