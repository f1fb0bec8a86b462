"""The one atomic-write helper: a temporary file in the target's folder, flushed, fsync'ed and
renamed over the target, so a crash (even SIGKILL) leaves the old file or the new one. The
temporary file's name holds the writer's host and pid; the next write to the same target
removes what a killed writer on this host left behind. JSON is written strict (no bare
``NaN``/``Infinity``) and read back by :func:`read_json`."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save_npy",
    "json_ready",
    "read_json",
    "NONFINITE",
]

#: How non-finite floats are written in JSON files: strict JSON has no NaN or Infinity
#: (JavaScript's ``JSON.parse``, R's jsonlite and DuckDB refuse Python's bare ``NaN``), so they
#: are these strings, as in protobuf's JSON mapping; :func:`read_json` turns them back.
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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


def json_ready(obj: Any) -> Any:
    """``obj`` with NumPy scalars and arrays as Python values and non-finite floats as the
    strings of :data:`NONFINITE`, through dicts, lists and tuples."""
    if isinstance(obj, np.ndarray | np.generic):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def _restore(obj: Any) -> Any:
    if isinstance(obj, str):
        return NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return obj


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file tsnejax wrote (``metrics.json``, a sweep's ``sweep.json`` and trial files),
    with the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` as the floats they stand for.
    Files of earlier versions, with bare ``NaN``, read the same."""
    return _restore(json.loads(Path(path).read_text()))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps: Any) -> None:
    """``obj`` as strict JSON (default: indent 1, sorted keys; :func:`json_ready`), atomically."""
    dumps = {"indent": 1, "sort_keys": True, **dumps}
    text = json.dumps(json_ready(obj), allow_nan=False, **dumps)
    atomic_write_bytes(path, (text + "\n").encode())


def atomic_save_npy(path: str | os.PathLike, array: Any) -> None:
    """``np.save`` of ``array`` (no pickles), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
