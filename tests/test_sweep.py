"""Sweeps: spec validation, trials equal fit, vmap/shard equality, crash-safe resume, report."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from tsnejax.build import phase_table, stepper_for
from tsnejax.checkpoint import load_meta
from tsnejax.config import TSNEConfig
from tsnejax.pipeline import fit
from tsnejax.run import DivergenceError
from tsnejax.sweep import (
    SweepStore,
    Workspace,
    expand_trials,
    load_data,
    load_spec,
    read_json,
    read_table,
    run_group,
    run_sweep,
    run_trial,
    spec_from_dict,
)
from tsnejax.sweep.executor import auto_batch_size, choose_mode
from tsnejax.sweep.report import make_report

ROOT = Path(__file__).resolve().parents[1]


def _spec(**over):
    d = {
        "name": "t",
        "data": {"name": "digits", "n_points": 400},
        "fixed": {"n_iter": 60, "early_exaggeration_iter": 40},
        "grid": {"learning_rate": [30, "N/12"]},
        "run": {"metrics": ["kl"]},
    }
    for k, v in over.items():
        d[k] = v
    return spec_from_dict(d)


BAD_SPECS = [
    ({"grid": {"learning_rte": [1]}}, r"\[grid\]: unknown key\(s\) \['learning_rte'\]"),
    ({"grid": {"learning_rate": []}}, "non-empty list"),
    ({"grid": {"learning_rate": ["N/x"]}}, "expression like 'N/12'"),
    ({"grid": {"perplexity": [-5]}}, "perplexity must be finite and > 0"),
    ({"grid": {"optimizer": ["adamm"]}}, "adamm"),
    ({"run": {"metrics": ["kl", "speed"]}}, r"metrics: unknown \['speed'\]"),
    ({"run": {"mode": "parallel"}}, "mode='parallel'"),
    ({"run": {"seeds": [0.5]}}, "seeds must be a non-empty list of integers"),
    ({"run": {"batch_size": 0}}, "batch_size must be a positive integer"),
    ({"data": {"name": "digits", "path": "x.npy"}}, "exactly one of name"),
    ({"data": {"name": "digits", "n_points": -1}}, "n_points must be a positive integer"),
    ({"fixed": {"n_iter": -1}}, "n_iter"),
    ({"colour": 1}, r"unknown key\(s\) \['colour'\]"),
    # a table that is not one was "'NoneType' object is not iterable"
    ({"grid": None}, r"\[grid\] must be a table/dict, got NoneType"),
    ({"run": 3}, r"\[run\] must be a table/dict, got int"),
    ({"grid": {"learning_rate": [10, 10]}}, "same settings; remove one"),  # found when run
    ({"run": {"metrics": "kl"}}, r"\[run\] metrics must be a list"),  # was "unknown ['k', 'l']"
    ({"data": {"name": "digits", "seed": "a"}}, "data.seed must be an integer"),  # NumPy's error
    ({"smoke": {"grid": {"foo": [1]}}}, r"\[grid\]: unknown key\(s\) \['foo'\]"),  # at --smoke
]


def test_sweep_paths_are_checked(tmp_path):
    """``run_sweep(spec, None)``, ``load_spec(None)`` and ``make_report(0)`` were ``os.fspath``'s
    ``TypeError``; an ``out`` that is a file was ``NotADirectoryError`` from the store."""
    from tsnejax.sweep import load_spec, run_sweep
    from tsnejax.sweep.report import make_report

    spec = _spec()
    (tmp_path / "taken").write_text("")
    for call, message in [
        (lambda: run_sweep(spec, None), "out must be a path"),
        (lambda: run_sweep(spec, tmp_path / "taken"), "is a file; give a folder"),
        (lambda: run_sweep(spec.__dict__, tmp_path / "s"), "spec must be a SweepSpec"),
        (lambda: load_spec(None), "path must be a path"),
        (lambda: make_report(0), "root must be a path"),
        (lambda: make_report(tmp_path / "nowhere"), "sweep folder .* does not exist"),
        (lambda: make_report(tmp_path), "is not a sweep folder"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize("override,message", BAD_SPECS)
def test_bad_specs_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        _spec(**override)


def test_seeds_that_cannot_differ_warn_before_running():
    """A sweep shares one kNN graph, so with PCA initialisation every seed repeats one run: say
    so before spending the time (the report only found them bit-identical afterwards)."""
    from tsnejax.sweep.executor import warn_seeds_change_nothing

    spec = _spec(run={"metrics": ["kl"], "seeds": [0, 1]})
    with pytest.warns(UserWarning, match=r"seeds \[0, 1\]: .* each seed repeats the same run"):
        warn_seeds_change_nothing(spec, expand_trials(spec, 400))
    for quiet in (
        _spec(run={"metrics": ["kl"], "seeds": [0, 1]}, fixed={"initialization": "random"}),
        _spec(run={"metrics": ["kl"], "seeds": [0]}),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_seeds_change_nothing(quiet, expand_trials(quiet, 400))


def test_spec_files_toml_and_python(tmp_path):
    (tmp_path / "a.toml").write_text('name = "a"\n[data]\nname = "digits"\n[grid]\ndof = [1, 2]\n')
    (tmp_path / "b.py").write_text(
        "def get_config():\n    return {'name': 'b', 'data': {'name': 'digits'},"
        " 'grid': {'dof': [1, 2]}}\n"
    )
    a, b = load_spec(tmp_path / "a.toml"), load_spec(tmp_path / "b.py")
    assert a.grid == b.grid == {"dof": [1, 2]}
    (tmp_path / "c.toml").write_text("name = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_spec(tmp_path / "c.toml")
    with pytest.raises(ValueError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="was not found"):
        load_data(spec_from_dict({"name": "x", "data": {"path": "no_such_file.npz"}}).data)


def test_expand_trials_resolves_expressions_and_rejects_duplicates():
    spec = _spec(grid={"learning_rate": [200, "N/4"], "exaggeration": [1, 4]})
    trials = expand_trials(spec, 400)
    assert [t.config.optimizer.learning_rate for t in trials] == [200.0, 200.0, 100.0, 100.0]
    assert len({t.trial_id for t in trials}) == 4
    spec = _spec(grid={"learning_rate": [100, "N/4"]})
    with pytest.raises(ValueError, match="resolve to the same settings for N=400"):
        expand_trials(spec, 400)


def test_phase_table_covers_the_schedule():
    cfg = TSNEConfig.from_preset("fitsne", early_exaggeration_iter=100, n_iter=200)
    phases = phase_table(cfg, 1000)
    assert phases.starts == (0, 100)
    assert phases.values[0] == {
        "exaggeration": 12.0,
        "learning_rate": 200.0,
        "momentum": 0.5,
        "dof": 1.0,
    }
    assert phases.values[1] == pytest.approx(
        {"exaggeration": 1, "learning_rate": 200, "momentum": 0.8, "dof": 1}
    )


# Acceptance (#17): boundaries that are not multiples of the chunk size, exact method.
ODD = {"n_iter": 113, "early_exaggeration_iter": 37, "negative_gradient_method": "exact"}


def test_sequential_trials_equal_fit():
    """A sequential trial is fit; trials differing in dynamic settings share one program."""
    spec = _spec(
        fixed={**ODD, "preset": "fitsne"},
        grid={"learning_rate": ["N/12"], "perplexity": [10, 30], "dof": [1, 0.7]},
    )
    ws, trials, runs = _sequential_runs_equal_fit(spec)
    assert all(run.n_iter == 150 for run in runs)
    assert len({id(stepper_for(t.config, ws.n)[0]) for t in trials}) == 1


def _sequential_runs_equal_fit(spec):
    """Each trial of ``spec`` run in one workspace, checked bit-identical to ``fit``."""
    data = load_data(spec.data)
    trials = expand_trials(spec, len(data.X), data.digest)
    ws = Workspace(data, trials)
    runs = []
    for t in trials:
        run = run_trial(ws, t)
        ref = fit(jax.random.key(t.seed), data.X, t.config)
        np.testing.assert_array_equal(run.embedding, ref.embedding)
        assert run.kl == ref.kl_divergence
        runs.append(run)
    return ws, trials, runs


def test_a_grid_over_metric_gives_each_trial_its_graph():
    """The workspace keyed its kNN graphs by the search alone: a grid over metric would have
    calibrated every trial on the first metric's graph."""
    spec = _spec(grid={"metric": ["euclidean", "cosine"], "perplexity": [10]})
    ws, _, _ = _sequential_runs_equal_fit(spec)
    assert len(ws._graphs) == 2  # one graph per (search, metric, metric_params)


def test_vmapped_group_equals_fit_and_random_init():
    """A vmapped group (one batched program) equals fit trial by trial (<= 1e-5; on a CPU the
    batch runs its trials with lax.map). Seeds change the random initialisation."""
    spec = _spec(
        fixed={**ODD, "initialization": "random"},
        grid={"learning_rate": [30, 100], "perplexity": [10, 30], "exaggeration": [1, 2]},
        run={"seeds": [0, 1], "metrics": ["kl"]},
    )
    data = load_data(spec.data)
    trials = expand_trials(spec, len(data.X), data.digest)
    ws = Workspace(data, trials)
    batch = run_group(ws, trials)
    for t, b in zip(trials, batch, strict=True):
        ref = fit(jax.random.key(t.seed), data.X, t.config)
        # <= 1e-5 of the embedding's scale (coordinates near 0 have no relative sense).
        assert np.abs(b.embedding - ref.embedding).max() <= 1e-5 * np.abs(ref.embedding).max()
        assert b.kl == pytest.approx(ref.kl_divergence, rel=1e-5)
    assert np.abs(batch[0].embedding - batch[1].embedding).max() > 1.0


def test_a_grid_over_phase_lengths_is_one_group_each_trial_ending_at_its_own():
    """Trials differing in early_exaggeration_iter / n_iter / momentum_switch_iter share a
    signature and run as one batch (they were a group per phase table, and those differing
    only in n_iter all ran the first one's length); each equals its fit."""
    from tsnejax.sweep.executor import _groups

    spec = _spec(
        fixed={"negative_gradient_method": "exact", "initial_momentum": 0.5},
        grid={
            "early_exaggeration_iter": [20, 37],
            "n_iter": [30, 61],
            "momentum_switch_iter": [None, 25],
        },
    )
    data = load_data(spec.data)
    trials = expand_trials(spec, len(data.X), data.digest)
    assert len(_groups(trials)) == 1
    batch = run_group(Workspace(data, trials), trials)
    for t, b in zip(trials, batch, strict=True):
        ref = fit(jax.random.key(t.seed), data.X, t.config)
        assert b.n_iter == ref.total_iter and b.kl_history[-1][0] == ref.total_iter
        np.testing.assert_array_equal(b.embedding, ref.embedding)
    assert sorted({b.n_iter for b in batch}) == [50, 67, 81, 98]


def test_custom_backend_and_optax_chain_in_a_python_spec(tmp_path):
    """Objects in a Python spec: a user-defined Backend and an optax.chain, labelled by a dict."""
    (tmp_path / "objects.py").write_text(
        textwrap.dedent(
            """
            import optax
            from tsnejax.gradients import Backend, exact_gradient, exact_kl_divergence

            def gradient(Y, P, dof, exaggeration, grid):
                return exact_gradient(Y, P, dof, exaggeration)

            def kl(Y, P, dof, grid):
                return exact_kl_divergence(Y, P, dof)

            MINE = Backend("mine", gradient, kl, lambda Y: None)

            def get_config():
                return {
                    "name": "objects",
                    "data": {"name": "digits", "n_points": 300},
                    "fixed": {"n_iter": 40, "early_exaggeration_iter": 20,
                              "negative_gradient_method": MINE},
                    "grid": {"optimizer": {
                        "classic": "classic",
                        "sgd-chain": optax.chain(optax.clip_by_global_norm(1e6),
                                                 optax.sgd(300.0, momentum=0.8)),
                    }},
                    "run": {"metrics": ["kl"]},
                }
            """
        )
    )
    spec = load_spec(tmp_path / "objects.py")
    s = run_sweep(spec, tmp_path / "out", mode="sequential")
    rows = read_table(tmp_path / "out" / "results.csv")
    assert s.n_run == 2 and [r["optimizer"] for r in rows] == ["classic", "sgd-chain"]
    assert all(r["status"] == "ok" and float(r["kl"]) < 2.0 for r in rows)
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert sweep["spec"]["fixed"]["negative_gradient_method"] == "backend:mine"
    # The exact backend under another name: the same embedding as the built-in one.
    data = load_data(spec.data)
    trial = expand_trials(spec, len(data.X), data.digest)[0]
    ref = fit(jax.random.key(0), data.X, trial.config.replace(negative_gradient_method="exact"))
    emb = np.load(tmp_path / "out" / "trials" / rows[0]["trial_id"] / "embedding.npy")
    np.testing.assert_allclose(emb, ref.embedding, rtol=1e-5, atol=1e-6)


SHARD_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + \\
        " --xla_force_host_platform_device_count=2"
    import jax, numpy as np
    from tsnejax.sweep import spec_from_dict, load_data, expand_trials, Workspace, run_group
    assert len(jax.devices()) == 2, jax.devices()
    spec = spec_from_dict({"name": "s", "data": {"name": "digits", "n_points": 500},
        "fixed": {"n_iter": 60, "early_exaggeration_iter": 40,
                  "negative_gradient_method": "interpolation"},
        "grid": {"learning_rate": [30, 100, 300], "perplexity": [10, 30]}})
    data = load_data(spec.data)
    trials = expand_trials(spec, len(data.X), data.digest)
    ws = Workspace(data, trials)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("trials",))
    sharded = run_group(ws, trials[:5], mesh)  # 5 trials: padded to 6 for 2 devices
    plain = run_group(ws, trials[:5])
    diff = max(float(np.abs(a.embedding - b.embedding).max()) for a, b in zip(sharded, plain))
    print("MAXDIFF", diff, len(sharded))
    """
)


def test_sharded_over_two_host_devices_equals_unsharded(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("MAXDIFF")][0]
    diff, count = float(line.split()[1]), int(line.split()[2])
    assert count == 5 and diff <= 1e-5


def test_divergent_trial_is_recorded_not_fatal(tmp_path):
    # Two trials that diverge at the first step both hold the start: the report does not call
    # them settings that "change nothing" (it did).
    both = _spec(grid={"learning_rate": [1e12, 1e13], "dof": [float("inf")]}, fixed={"n_iter": 20})
    run_sweep(both, tmp_path / "both")
    assert "Identical embeddings" not in make_report(tmp_path / "both")["table"].read_text()
    # Strict JSON throughout (a diverged KL was a bare NaN, dof = inf a bare Infinity, which
    # JavaScript's JSON.parse and R's jsonlite refuse); read_json gives the floats back.
    files = sorted((tmp_path / "both").rglob("*.json"))
    assert len(files) == 5  # sweep.json, two trials' config.json and metrics.json

    def refuse(constant):
        raise AssertionError(f"bare {constant} in a JSON file")

    for f in files:
        json.loads(f.read_text(), parse_constant=refuse)
    assert read_json(tmp_path / "both" / "sweep.json")["spec"]["grid"]["dof"] == [np.inf]
    for f in (tmp_path / "both" / "trials").glob("*/metrics.json"):
        assert np.isnan(read_json(f)["kl"]) and '"kl": "NaN"' in f.read_text()
    spec = _spec(
        grid={"learning_rate": [30, 1e12]},
        fixed={"n_iter": 60, "early_exaggeration_iter": 40, "negative_gradient_method": "exact"},
    )
    for mode in ("sequential", "vmap"):
        out = tmp_path / mode
        s = run_sweep(spec, out, mode=mode)
        assert s.n_diverged == 1
        rows = read_table(out / "results.csv")
        assert [r["status"] for r in rows] == ["ok", "diverged"]
        assert 0 < int(rows[1]["diverged_at"]) <= 100 and rows[1]["kl"] == "nan"
        assert [r["diverged_cause"] for r in rows] == ["", "step"]  # lr 1e12: a runaway step
        assert np.isfinite(np.load(out / "trials" / rows[1]["trial_id"] / "embedding.npy")).all()


def test_sweep_store_resume_and_report(tmp_path):
    spec = _spec(
        grid={"learning_rate": [30, "N/12"], "exaggeration": [1, 2]},
        run={"metrics": ["kl", "quality", "trustworthiness"]},
    )
    s = run_sweep(spec, tmp_path)
    assert (s.n_trials, s.n_run, s.n_skipped) == (4, 4, 0)
    rows = read_table(tmp_path / "results.csv")
    assert len(rows) == 4 and all(float(r["knn_accuracy_10"]) > 0.8 for r in rows)
    for r in rows:  # Cao & Wang's pBIC of each trial's KL (perplexity 30, 400 points)
        want = 2 * float(r["kl"]) + np.log(400) * 30 / 400
        assert float(r["pbic"]) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="pass resume=True"):
        run_sweep(spec, tmp_path)
    again = run_sweep(spec, tmp_path, resume=True)
    assert (again.n_run, again.n_skipped) == (0, 4)
    written = make_report(tmp_path)
    assert {"table", "embeddings", "heatmap_kl", "heatmap_pbic", "heatmap_knn_accuracy_10"} <= set(
        written
    )
    assert all(p.stat().st_size > 5000 for k, p in written.items() if k != "table")
    assert "| learning_rate | exaggeration | seed |" in (tmp_path / "report/table.md").read_text()
    with pytest.raises(ValueError, match="not a sweep folder"):
        make_report(tmp_path / "trials")


def _digest_files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "trials").rglob("*"))
        if p.is_file()
    }


def test_sigkill_mid_sweep_then_resume(tmp_path):
    """Kill -9 while trials are running; --resume completes it, finished trials untouched."""
    config = tmp_path / "spec.toml"
    config.write_text(
        textwrap.dedent(
            """
            name = "crash"
            [data]
            name = "digits"
            n_points = 400
            [fixed]
            n_iter = 150
            early_exaggeration_iter = 50
            negative_gradient_method = "exact"
            [grid]
            learning_rate = [10, 20, 40, 80, 160, 320]
            [run]
            metrics = ["kl"]
            """
        )
    )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tsnejax.cli", "sweep", str(config), "--out", str(out)]
    cmd += ["--checkpoint-every", "10"]  # vmapped pairs over the two cores' host devices
    proc = subprocess.Popen(cmd + ["--no-progress"], stderr=subprocess.PIPE)
    deadline = time.time() + 300
    saves = out / "checkpoints"

    def mid_run() -> bool:
        for path in saves.glob("[!.]*.npz"):
            try:
                # past the first KL (50), and far enough from the end (200) that the batch
                # cannot finish (and remove its save) between this look and the kill
                return 60 <= load_meta(path)["iteration"] <= 120
            except ValueError:  # removed meanwhile (its trials were written)
                return False
        return False

    while time.time() < deadline and proc.poll() is None:
        # killed mid-trial: after two trials, once a running one has saved its state
        if len(SweepStore(out).finished_ids()) >= 2 and mid_run():
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = SweepStore(out).finished_ids()
    assert 2 <= len(done_before) < 6
    # the running trial's state survived (its trial not finished); saves of finished trials
    # were removed as they were written
    (left,) = saves.glob("[!.]*.npz")  # (a save being written is a hidden temporary file)
    killed_at = load_meta(left)["iteration"]
    assert 60 <= killed_at < 200
    before = {k: v for k, v in _digest_files(out).items() if k.split("/")[0] in done_before}
    res = subprocess.run(cmd + ["--resume", "--no-progress"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{len(done_before)} already finished" in res.stdout
    after = _digest_files(out)
    assert {k: after[k] for k in before} == before  # finished trials: same bytes
    meta = json.loads((out / "sweep.json").read_text())
    dirs = sorted(p.name for p in (out / "trials").iterdir())
    assert dirs == sorted(meta["trial_ids"])  # every trial exactly once
    rows = read_table(out / "results.csv")
    assert [r["trial_id"] for r in rows] == meta["trial_ids"]
    assert [r["learning_rate"] for r in rows] == ["10", "20", "40", "80", "160", "320"]
    assert not [p for p in (out / "trials").rglob("*.tmp")]
    assert not list((out / "trials").rglob("claim.json"))  # the killed run's claim taken over
    assert not (out / "runs").exists()  # every process's record removed, then the folder
    # The trials resumed from their save, and each is its own fit. Every trial written, the
    # saves' folder is gone (with a temporary file the kill may have left in it).
    assert not saves.exists()
    resumed = [r["trial_id"] for r in rows if r["trial_id"] not in done_before]
    first = json.loads((out / "trials" / resumed[0] / "metrics.json").read_text())
    assert first["resumed_from"] == killed_at
    spec = load_spec(config)
    data = load_data(spec.data)
    for t in expand_trials(spec, len(data.X), data.digest):
        ref = fit(jax.random.key(t.seed), data.X, t.config).embedding
        emb = np.load(out / "trials" / t.trial_id / "embedding.npy")
        assert np.abs(emb - ref).max() <= 1e-5 * np.abs(ref).max()


def test_a_sequential_trial_resumes_from_its_checkpoint(tmp_path):
    """A trial's save (as a killed sweep leaves it) is resumed to its uninterrupted fit; the
    save of a trial that diverged is dropped and the trial rerun to its report (resuming it
    was an error)."""
    spec = _spec(fixed=ODD, grid={"learning_rate": [30, 1e12]})
    data = load_data(spec.data)
    ok, bad = expand_trials(spec, len(data.X), data.digest)
    ws, store = Workspace(data, [ok, bad]), SweepStore(tmp_path / "out")
    args = dict(affinities=ws.affinities(ok.config), initialization=ws.initial(ok.config, ok.seed))
    key = jax.random.key(ok.seed)
    path = store.checkpoint_path([ok.trial_id])
    fit(key, None, ok.config, checkpoint=path, callbacks=[lambda t, kl, Y: t >= 100], **args)
    with pytest.raises(DivergenceError):
        fit(key, None, bad.config, checkpoint=store.checkpoint_path([bad.trial_id]), **args)
    run_sweep(spec, store.root, mode="sequential", checkpoint_every=10)
    metrics = json.loads((store.trial_dir(ok.trial_id) / "metrics.json").read_text())
    ref = fit(key, None, ok.config, **args)
    assert metrics["resumed_from"] == 100  # it went on from the save
    assert metrics["kl_history"] == [list(h) for h in ref.kl_history]  # the saved part too
    stored = ref.embedding.astype(np.float32)  # the store keeps float32 (also under x64)
    np.testing.assert_array_equal(store.embedding(ok.trial_id), stored)
    bad_metrics = json.loads((store.trial_dir(bad.trial_id) / "metrics.json").read_text())
    assert bad_metrics["status"] == "diverged"
    assert not (store.root / "checkpoints").exists()


def test_checkpoint_every_is_checked_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1, got 0"):
        run_sweep(_spec(), tmp_path / "out", checkpoint_every=0)
    assert not (tmp_path / "out").exists()


def test_mode_rule_and_batch_size():
    assert choose_mode("auto", 1, "cpu") == "sequential"
    assert choose_mode("auto", 2, "cpu") == "vmap"
    assert choose_mode("auto", 1, "gpu") == "vmap"
    assert choose_mode("sequential", 8, "gpu") == "sequential"
    assert auto_batch_size(TSNEConfig(), 70000, 128) == 1  # CPU: one trial per device


CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_experiment_configs_expand_in_full_and_smoke_mode(path):
    """Every shipped config parses and resolves to trials, full size and at smoke size."""
    spec = load_spec(path)
    assert spec.description and spec.smoke, f"{path.name}: needs a description and [smoke]"
    full, smoke = expand_trials(spec, 70_000), expand_trials(spec.smoke_version(), 500)
    assert len(full) >= len(smoke) >= 2
    assert all(isinstance(t.config, TSNEConfig) for t in full + smoke)


# One config runs in the fast tier (it shares every code path of a sweep with the others); each
# config's smoke run takes 10-17 s on two cores with an empty compilation cache, so the rest run
# in the slow tier.
@pytest.mark.parametrize(
    "path",
    [c if i == 0 else pytest.param(c, marks=pytest.mark.slow) for i, c in enumerate(CONFIGS)],
    ids=lambda p: p.stem,
)
def test_experiment_configs_run_in_smoke_mode(path, tmp_path):
    spec = load_spec(path)
    s = run_sweep(spec, tmp_path, smoke=True)
    rows = read_table(tmp_path / "results.csv")
    assert len(rows) == s.n_trials >= 2
    assert all(r["status"] == "ok" and np.isfinite(float(r["kl"])) for r in rows)
    assert make_report(tmp_path)["embeddings"].exists()


def test_request_host_devices_before_jax_starts():
    code = (
        "import os; os.environ.pop('XLA_FLAGS', None)\n"
        "from tsnejax.sweep import request_host_devices\n"
        "n = request_host_devices(2)\n"
        "import jax; print(n, len(jax.devices()), request_host_devices(4))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "2", "None"]  # too late once JAX has started


def test_smoke_without_a_smoke_table_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"no \[smoke\] table"):
        run_sweep(_spec(), tmp_path / "out", smoke=True)
    assert not (tmp_path / "out").exists()


def test_data_labels_file_for_npy_data(tmp_path, digits):
    X, y = digits
    np.save(tmp_path / "X.npy", X[:300])
    np.save(tmp_path / "y.npy", y[:300])
    d = {"path": str(tmp_path / "X.npy"), "labels": str(tmp_path / "y.npy")}
    spec = _spec(data=d, run={"metrics": ["kl", "quality"]})
    s = run_sweep(spec, tmp_path / "out")
    rows = read_table(s.root / "results.csv")
    assert all(float(r["knn_accuracy_10"]) > 0.5 for r in rows)
    assert (s.root / "labels.npy").exists()
    np.save(tmp_path / "y_short.npy", y[:299])
    bad = _spec(data={**d, "labels": str(tmp_path / "y_short.npy")})
    with pytest.raises(ValueError, match="one label per row"):
        run_sweep(bad, tmp_path / "out2")
    with pytest.raises(ValueError, match="data.labels must be a file path"):
        _spec(data={"name": "digits", "labels": "y.npy"})


def test_report_on_unlabelled_data_warns_nothing(tmp_path, digits):
    np.save(tmp_path / "X.npy", digits[0][:200])
    spec = _spec(data={"path": str(tmp_path / "X.npy")})
    run_sweep(spec, tmp_path / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_report(tmp_path / "out")


def test_report_names_seed_trials_that_are_identical(tmp_path):
    spec = _spec(grid={"learning_rate": [30]}, run={"metrics": ["kl"], "seeds": [0, 1]})
    with pytest.warns(UserWarning, match="each seed repeats the same run"):  # said up front too
        run_sweep(spec, tmp_path / "out")
    text = (make_report(tmp_path / "out")["table"]).read_text()
    assert "Identical embeddings" in text and "seed=0; seed=1" in text
    rnd = _spec(
        fixed={"n_iter": 60, "early_exaggeration_iter": 40, "initialization": "random"},
        grid={"learning_rate": [30]},
        run={"metrics": ["kl"], "seeds": [0, 1]},
    )
    run_sweep(rnd, tmp_path / "rnd")
    assert "Identical embeddings" not in make_report(tmp_path / "rnd")["table"].read_text()


def test_report_table_has_every_results_column(tmp_path):
    spec = _spec(grid={"learning_rate": [30]}, run={"metrics": ["kl", "quality", "global"]})
    run_sweep(spec, tmp_path / "out")
    rows = read_table(tmp_path / "out" / "results.csv")
    filled = [c for c in rows[0] if c != "trial_id" and any(r[c] for r in rows)]
    assert {"knc_4", "nn_precision_10"} <= set(filled)
    table = make_report(tmp_path / "out")["table"].read_text()
    cols = next(line for line in table.splitlines() if line.startswith("| learning_rate"))
    missing = [c for c in filled if f" {c} " not in cols]  # all-empty columns may go
    assert not missing, missing


def test_report_draws_convergence_curves(tmp_path):
    run_sweep(_spec(), tmp_path / "out")
    written = make_report(tmp_path / "out")
    assert written["kl_history"].name == "kl_history.png" and written["kl_history"].stat().st_size


def test_report_means_over_seeds(tmp_path):
    from tsnejax.sweep.store import read_table

    spec = _spec(
        fixed={"n_iter": 40, "early_exaggeration_iter": 30, "initialization": "random"},
        grid={"learning_rate": [30, 90]},
        run={"metrics": ["kl"], "seeds": [0, 1, 2]},
    )
    run_sweep(spec, tmp_path / "out")
    text = make_report(tmp_path / "out")["table"].read_text()
    assert "## Mean ± sd over seeds" in text
    rows = [r for r in read_table(tmp_path / "out" / "results.csv") if r["learning_rate"] == "30"]
    kls = [float(r["kl"]) for r in rows]
    line = next(x for x in text.splitlines() if x.startswith("| 30 | 3 |"))
    assert f"{np.mean(kls):.4g} ± {np.std(kls, ddof=1):.2g}" in line


def test_learning_rate_schedules_in_a_python_spec_group_apart():
    """Schedules are compiled in: each gets its own group; unlabelled ones are told to label."""
    import optax

    from tsnejax.sweep.executor import _groups

    warm = {
        "warm-10": optax.linear_schedule(10.0, 30.0, 50),
        "warm-100": optax.linear_schedule(100.0, 30.0, 50),
    }
    spec = _spec(grid={"learning_rate": {**warm, "30": 30, "N/12": "N/12"}})
    trials = expand_trials(spec, 400)
    assert [t.params["learning_rate"] for t in trials] == ["warm-10", "warm-100", "30", "N/12"]
    assert trials[0].config.optimizer.learning_rate is warm["warm-10"]
    groups = _groups(trials)
    assert sorted(len(g) for g in groups) == [1, 1, 2]  # the two numbers share one program
    with pytest.raises(ValueError, match="give each its own label with a dict"):
        expand_trials(_spec(grid={"learning_rate": list(warm.values())}), 400)
