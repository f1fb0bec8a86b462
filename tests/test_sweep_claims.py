"""Sweep folders shared by processes: atomic trial claims, stale claims, refused plain runs."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tsnejax.sweep import SweepStore, read_table, run_sweep, spec_from_dict


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _spec():
    return spec_from_dict(
        {
            "name": "claims",
            "data": {"name": "digits", "n_points": 300},
            "fixed": {"n_iter": 30, "early_exaggeration_iter": 20},
            "grid": {"learning_rate": [50, 100, 200]},
            "run": {"metrics": ["kl"]},
        }
    )


def test_claim_is_exclusive_released_and_stale_claims_are_taken_over(tmp_path):
    store = SweepStore(tmp_path)
    assert store.claim("a")
    assert not store.claim("a")  # this process already holds it: a second claim fails too
    assert store.owner("a")["pid"] == os.getpid()
    store.release("a")
    assert store.owner("a") is None
    # a claim left by a process that is gone is stale
    (tmp_path / "trials" / "b").mkdir(parents=True)
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": 0.0}
    (tmp_path / "trials" / "b" / "claim.json").write_text(json.dumps(stale))
    assert store.claim("b")
    # a live process's claim is respected, as is any claim from another host
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as sleeper:
        live = {"host": socket.gethostname(), "pid": sleeper.pid, "started": 0.0}
        (tmp_path / "trials" / "c").mkdir()
        (tmp_path / "trials" / "c" / "claim.json").write_text(json.dumps(live))
        assert not store.claim("c")
        sleeper.kill()
    other = {"host": "elsewhere.invalid", "pid": 1, "started": 0.0}
    (tmp_path / "trials" / "d").mkdir()
    (tmp_path / "trials" / "d" / "claim.json").write_text(json.dumps(other))
    assert not store.claim("d")
    # a finished trial is never claimed again
    store.write_trial("e", {"params": {}}, {"status": "ok"}, np.zeros((2, 2)))
    assert not store.claim("e") and store.owner("e") is None


def test_plain_run_into_a_folder_in_use_is_refused_resume_skips_its_claims(tmp_path):
    out = tmp_path / "out"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) as other:
        me = {"host": socket.gethostname(), "pid": other.pid, "started": 0.0}
        (out / "runs").mkdir(parents=True)
        (out / "runs" / f"{me['host']}-{other.pid}.json").write_text(json.dumps(me))
        with pytest.raises(ValueError, match=r"in use by another sweep process.*--resume"):
            run_sweep(_spec(), out)
        # joining with resume: the trial the other process holds is left to it
        from tsnejax.sweep import expand_trials, load_data

        ids = [t.trial_id for t in expand_trials(_spec(), 300, load_data(_spec().data).digest)]
        (out / "trials" / ids[1]).mkdir(parents=True)
        (out / "trials" / ids[1] / "claim.json").write_text(json.dumps(me))
        s = run_sweep(_spec(), out, resume=True)
        other.kill()
    assert (s.n_run, s.n_elsewhere) == (2, 1)
    assert SweepStore(out).finished_ids() == {ids[0], ids[2]}
    assert not (out / "runs" / f"{socket.gethostname()}-{os.getpid()}.json").exists()


def test_two_resume_processes_split_the_trials_and_run_each_once(tmp_path):
    config = tmp_path / "spec.toml"
    config.write_text(
        textwrap.dedent(
            """
            name = "split"
            [data]
            name = "digits"
            n_points = 300
            [fixed]
            n_iter = 60
            early_exaggeration_iter = 40
            negative_gradient_method = "exact"
            [grid]
            learning_rate = [10, 20, 40, 80, 160, 320, 640, 1280]
            [run]
            metrics = ["kl"]
            """
        )
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tsnejax.cli", "sweep", str(config), "--out", str(out)]
    cmd += ["--resume", "--no-progress"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    found = [re.search(r"(\d+) run,", so) for so, _ in outs]
    assert all(found), outs  # each process's summary line (a failure once showed no output)
    ran = [int(m.group(1)) for m in found]
    assert sum(ran) == 8, outs  # every trial exactly once across the two processes
    store = SweepStore(out)
    meta = json.loads((out / "sweep.json").read_text())
    assert store.finished_ids() == set(meta["trial_ids"])
    runners = [store.read_trial(t)[1]["runner"] for t in meta["trial_ids"]]
    assert {r.split(":")[1] for r in runners} <= {str(p.pid) for p in procs}
    assert len(read_table(out / "results.csv")) == 8
    print("trials run per process:", ran)
    assert not list((out / "trials").rglob("claim.json"))
    assert not (out / "runs").exists()  # both records gone, and with the last the folder
