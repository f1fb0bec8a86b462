"""Atomic writes: a write killed mid-way leaves the old file and its temporary file, which the
next write to the same target removes (only a dead writer's on this host). JSON is strict."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tsnejax._io import NONFINITE, atomic_write_bytes, atomic_write_json, read_json

HALF_WRITTEN = """
import sys, time
from tsnejax._io import atomic_path
with atomic_path(sys.argv[1], suffix=".npz") as tmp:
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(120)
"""


def test_a_write_killed_midway_leaves_a_file_the_next_write_removes(tmp_path):
    target = tmp_path / "state.npz"
    target.write_bytes(b"old")
    proc = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITTEN, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    (left,) = tmp_path.glob(".state.npz.*")  # the killed write's, named by host and pid
    assert f".{socket.gethostname()}-{proc.pid}." in left.name and target.read_bytes() == b"old"
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and not list(tmp_path.glob(".state.npz.*"))


def test_live_or_remote_writers_files_are_left_alone(tmp_path):
    host = socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # its pid names no process now
    names = {
        "dead": f".x.npz.{host}-{gone.pid}.a1.tmp.npz",
        "live": f".x.npz.{host}-{os.getppid()}.b2.tmp.npz",  # pytest's parent runs
        "remote": f".x.npz.elsewhere-{gone.pid}.c3.tmp.npz",  # no way to tell: kept
        "other target": f".y.npz.{host}-{gone.pid}.d4.tmp.npz",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    atomic_write_bytes(tmp_path / "x.npz", b"new")
    kept = {k for k, name in names.items() if (tmp_path / name).exists()}
    assert kept == {"live", "remote", "other target"}


def test_a_write_recreates_a_folder_another_process_removed_meanwhile(tmp_path, monkeypatch):
    # A sweep process removes runs/ as its last record goes; another registering at that
    # moment made the folder, then found it gone when creating its temporary file.
    import tempfile

    from tsnejax._io import atomic_write_json

    real = tempfile.mkstemp
    calls = []

    def racing(*args, dir=None, **kwargs):
        calls.append(dir)
        if len(calls) == 1:
            os.rmdir(dir)  # the other process's rmdir, between our mkdir and mkstemp
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", racing)
    atomic_write_json(tmp_path / "runs" / "me.json", {"pid": 1})
    assert len(calls) == 2
    assert (tmp_path / "runs" / "me.json").read_text().strip().startswith("{")


@settings(max_examples=40, deadline=None)
@given(
    st.recursive(
        st.floats(allow_nan=True, allow_infinity=True)
        | st.integers(-(2**40), 2**40)
        | st.text(max_size=5)
        | st.booleans()
        | st.none(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=12,
    )
)
def test_json_files_are_strict_and_read_back_the_same(tmp_path_factory, value):
    """Non-finite floats go out as "NaN" / "Infinity" / "-Infinity" (strict JSON) and come back
    as floats; NumPy scalars and arrays as Python values."""
    path = tmp_path_factory.mktemp("j") / "x.json"
    atomic_write_json(path, {"v": value, "np": [np.float32("nan"), np.arange(2), np.int64(3)]})

    def refuse(constant):
        raise AssertionError(f"bare {constant}")

    json.loads(path.read_text(), parse_constant=refuse)
    back = read_json(path)
    assert back["np"][1:] == [[0, 1], 3] and np.isnan(back["np"][0])

    def same(a, b):
        if isinstance(b, str) and b in NONFINITE:  # the one ambiguity: the string reads as
            b = NONFINITE[b]  # the float it spells
        if isinstance(a, float) and isinstance(b, float):
            return a == b or (np.isnan(a) and np.isnan(b))
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(map(same, a, b))
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return a == b and type(a) is type(b)

    assert same(back["v"], value)
