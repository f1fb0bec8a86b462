"""Checkpointed runs: periodic saves, resume after kill -9, divergence saves the last state."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tsnejax.checkpoint import load_meta
from tsnejax.config import TSNEConfig
from tsnejax.pipeline import fit
from tsnejax.run import DivergenceError


def test_fit_checkpoint_resume_equals_uninterrupted(digits, key, tmp_path):
    X = digits[0][:500]
    cfg = TSNEConfig.make(early_exaggeration_iter=100, n_iter=150, negative_gradient_method="exact")
    full = fit(key, X, cfg)
    ck = tmp_path / "state.npz"
    # An interrupted run: stopped by a callback at iteration 100, its checkpoint left behind.
    part = fit(key, X, cfg, checkpoint=ck, callbacks=[lambda it, kl, Y: it >= 100])
    assert part.total_iter == 100 and load_meta(ck)["total_iter"] == 250
    assert load_meta(ck)["iteration"] == 100
    resumed = fit(key, X, cfg, checkpoint=ck)
    assert resumed.total_iter == 250 and resumed.resumed_from == 100 and full.resumed_from == 0
    np.testing.assert_array_equal(resumed.embedding, full.embedding)
    assert resumed.kl_history == full.kl_history  # the saved part heads it
    assert part.records.shape == (100,) and resumed.records.shape == (250,)  # and its records
    np.testing.assert_array_equal(resumed.records, full.records)
    # A checkpoint from another run is refused.
    with pytest.raises(ValueError, match="different data, settings or key"):
        fit(jax.random.key(1), X, cfg, checkpoint=ck)
    # Any interval: checkpoints every 30 iterations leave the result unchanged.
    every30 = fit(key, X, cfg, checkpoint=tmp_path / "b.npz", checkpoint_every=30)
    np.testing.assert_array_equal(every30.embedding, full.embedding)
    assert load_meta(tmp_path / "b.npz")["iteration"] == 250
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1, got 0"):
        fit(key, X, cfg, checkpoint=tmp_path / "c.npz", checkpoint_every=0)
    # A finished run goes on with a larger n_iter (it was refused as "different settings"):
    # 250 + 50 from the checkpoint is the 300-iteration run ...
    longer = cfg.replace(n_iter=200)
    more = fit(key, X, longer, checkpoint=ck)
    assert more.total_iter == 300 and load_meta(ck)["iteration"] == 300
    np.testing.assert_array_equal(more.embedding, fit(key, X, longer).embedding)
    # ... and a shorter one than the checkpoint holds is named.
    with pytest.raises(ValueError, match="holds iteration 300, past this run's 250"):
        fit(key, X, cfg, checkpoint=ck)


@pytest.mark.parametrize(
    "rule, settings",
    [("optsne", {}), ("sklearn", {"min_grad_norm": 3e-3, "n_iter_without_progress": 50})],
)
def test_a_stopping_rule_resumes_where_the_run_would_have_gone_on(
    digits, key, tmp_path, rule, settings
):
    """A rule's run interrupted anywhere (in early exaggeration, where the rule ends it, in the
    main phase) resumes to the uninterrupted run: same embedding, same phase switch, same end.
    The checkpoint carries what the rule's check was asked and said (it was refused)."""
    X = digits[0][:500]
    cfg = TSNEConfig.make(
        stopping=rule,
        negative_gradient_method="exact",
        early_exaggeration_iter=250,
        n_iter=500,
        **settings,
    )
    full = fit(key, X, cfg)
    ended, end = full.early_exaggeration_iter, full.total_iter
    assert ended < 250 and end < ended + 500  # the rule ended both phases
    for cut in (ended - 30, ended, ended + 20):
        ck = tmp_path / f"{rule}{cut}.npz"
        part = fit(
            key,
            X,
            cfg,
            checkpoint=ck,
            callbacks=lambda it, kl, Y, c=cut: it >= c,
            callbacks_every=10,
        )
        assert part.total_iter == cut
        record = load_meta(ck)["stopping"]
        assert record["phase"] == ("early" if cut <= ended else "main")
        resumed = fit(key, X, cfg, checkpoint=ck)
        assert (resumed.total_iter, resumed.early_exaggeration_iter) == (end, ended)
        assert resumed.phases == full.phases
        np.testing.assert_array_equal(resumed.embedding, full.embedding)
        hist = dict(resumed.kl_history)  # the saved part heads it, with the callback points
        assert all(hist[t] == v for t, v in full.kl_history) and resumed.resumed_from == cut
        np.testing.assert_array_equal(resumed.records, full.records)  # across the two phases
    # A finished run resumed runs nothing more: its rule had stopped it.
    again = fit(key, X, cfg, checkpoint=ck)
    assert again.total_iter == end and again.resumed_from == end and again.n_compiles == 0
    assert again.kl_divergence == full.kl_divergence
    np.testing.assert_array_equal(again.embedding, full.embedding)
    np.testing.assert_array_equal(again.records, full.records)  # the saved ones, whole


def _rewrite_meta(path, change):
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    header = json.loads(str(arrays["meta"]))
    change(header["meta"])
    arrays["meta"] = np.asarray(json.dumps(header))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_stopping_record_that_does_not_replay_is_refused(digits, key, tmp_path):
    X = digits[0][:300]
    cfg = TSNEConfig.make(stopping="optsne", negative_gradient_method="exact", n_iter=300)
    ck = tmp_path / "s.npz"
    fit(key, X, cfg, checkpoint=ck, callbacks=lambda it, kl, Y: it >= 60, callbacks_every=10)
    calls = load_meta(ck)["stopping"]["calls"]
    assert [c[0] for c in calls] == [10, 20, 30, 40, 50, 60]

    def flip(meta):
        meta["stopping"]["calls"][-1][3] = not meta["stopping"]["calls"][-1][3]

    _rewrite_meta(ck, flip)
    with pytest.raises(ValueError, match="answers its 'early' check at iteration 60 otherwise"):
        fit(key, X, cfg, checkpoint=ck)
    _rewrite_meta(ck, lambda meta: meta.pop("stopping"))
    with pytest.raises(ValueError, match="holds no record of the stopping rule's checks"):
        fit(key, X, cfg, checkpoint=ck)


def test_a_schedule_setting_resumes_from_a_new_object(digits, key, tmp_path):
    """A schedule is fingerprinted by its values over the run, not its address: the same
    schedule built again (as a new process would) resumes the checkpoint; another is refused."""
    import optax

    X = digits[0][:300]
    short = dict(early_exaggeration_iter=40, n_iter=40, negative_gradient_method="exact")

    def cfg(end):
        return TSNEConfig.make(learning_rate=optax.linear_schedule(20.0, end, 60), **short)

    full = fit(key, X, cfg(300.0))
    ck = tmp_path / "s.npz"
    fit(key, X, cfg(300.0), checkpoint=ck, callbacks=[lambda it, kl, Y: it >= 50])
    assert load_meta(ck)["iteration"] == 50
    with pytest.raises(ValueError, match="different data, settings or key"):
        fit(key, X, cfg(301.0), checkpoint=ck)
    resumed = fit(key, X, cfg(300.0), checkpoint=ck)  # a new, equal schedule object
    np.testing.assert_array_equal(resumed.embedding, full.embedding)


def test_a_callable_metric_or_affinity_method_resumes_in_another_process(digits, key, tmp_path):
    """A callable's repr is its address, so a checkpoint of a run with metric= or
    affinity_method= a function was refused in every new process; they are fingerprinted by
    their qualified name (what they compute is in P, which is hashed). A callback that stops
    the run between saves (a time budget) saves where it stopped (that state was lost)."""
    from tsnejax import perplexity_affinities

    X = digits[0][:300]
    short = dict(early_exaggeration_iter=20, n_iter=20, negative_gradient_method="exact")

    def make():  # a new function object each call, as a new process defines it
        def l1(a, b):
            return float(np.abs(a - b).sum())

        def p10(knn):
            return perplexity_affinities(knn, 10.0)

        return TSNEConfig.make(metric=l1, affinity_method=p10, **short)

    full = fit(key, X, make())
    ck = tmp_path / "m.npz"
    fit(key, X, make(), checkpoint=ck, callbacks=[lambda it, kl, Y: it >= 20], callbacks_every=10)
    assert load_meta(ck)["iteration"] == 20
    resumed = fit(key, X, make(), checkpoint=ck)
    np.testing.assert_array_equal(resumed.embedding, full.embedding)


def test_a_checkpoint_that_cannot_be_written_is_named_before_the_run(key, tmp_path, monkeypatch):
    # A folder, or a path under a file, failed at the first save (a FileNotFoundError naming a
    # temporary file) after the kNN search, P and the first chunk had run.
    import tsnejax.batch
    import tsnejax.pipeline

    def no_run(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(tsnejax.pipeline, "prepare", no_run)
    monkeypatch.setattr(tsnejax.batch, "_as_list", no_run)
    X = np.random.default_rng(0).normal(size=(40, 3))
    (tmp_path / "a_file").write_text("")
    cases = [
        (tmp_path, r"is a folder; give a file in it, e.g. '.*tsne\.npz'"),
        (tmp_path / "a_file" / "ck.npz", r"cannot be written: no file can be created in .*a_file"),
        (True, "checkpoint must be a file path"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            fit(key, X, TSNEConfig(), checkpoint=path)
        with pytest.raises(ValueError, match=message):
            tsnejax.batch.fit_batch([key], X, checkpoint=path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # no probe left behind


@pytest.mark.float32_only("the divergence it provokes is a float32 one")
def test_divergence_saves_last_finite_state(digits, key, tmp_path):
    X = digits[0][:300]
    ck = tmp_path / "d.npz"
    cfg = TSNEConfig.make(learning_rate=1e12, max_step_norm=None, negative_gradient_method="exact")
    with pytest.raises(DivergenceError, match="saved in") as err:
        fit(key, X, cfg, checkpoint=ck)
    meta = load_meta(ck)
    assert meta["diverged_at"] == err.value.iteration
    assert np.isfinite(np.asarray(err.value.state.embedding)).all()
    with pytest.raises(ValueError, match="diverged"):
        fit(key, X, cfg, checkpoint=ck)


def _embed_cmd(out, ck=None):
    cmd = [sys.executable, "-m", "tsnejax.cli", "embed", "--out", str(out), "--n-iter", "150"]
    cmd += ["--metrics-queries", "0", "--method", "exact"]
    return cmd + (["--checkpoint", str(ck), "--checkpoint-every", "10"] if ck else [])


def test_kill_9_then_resume_gives_the_uninterrupted_embedding(tmp_path):
    ck = tmp_path / "ck.npz"
    proc = subprocess.Popen(_embed_cmd(tmp_path / "a", ck), stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while not ck.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(json.dumps(load_meta(ck)))  # a complete checkpoint survived
    assert not (tmp_path / "a" / "embedding.npy").exists()
    # Resume and the uninterrupted reference in this process (only the kill needs its own).
    from tsnejax.cli import main

    assert main(_embed_cmd(tmp_path / "a", ck)[3:]) == 0
    assert main(_embed_cmd(tmp_path / "b")[3:]) == 0
    a = np.load(tmp_path / "a" / "embedding.npy")
    b = np.load(tmp_path / "b" / "embedding.npy")
    np.testing.assert_array_equal(a, b)
    assert killed_at["total_iter"] == 400 and 10 <= killed_at["iteration"] < 400
    # metrics.json says where the run went on from, and its KL history is the whole run's
    a_meta = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b_meta = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a_meta["resumed_from"] == killed_at["iteration"] and b_meta["resumed_from"] == 0
    assert a_meta["kl_history"] == b_meta["kl_history"]
