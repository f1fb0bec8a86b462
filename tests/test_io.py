"""Atomic writes: a write killed mid-way leaves the old file and its temporary file, which the
next write to the same target removes (only a dead writer's on this host)."""

import os
import signal
import socket
import subprocess
import sys

from tsnejax._io import atomic_write_bytes

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
