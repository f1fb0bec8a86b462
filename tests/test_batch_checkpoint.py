"""A checkpointed batch: interrupted anywhere, it resumes to the uninterrupted batch (its frozen
trials frozen, each stopping rule where it was); what does not belong to it is refused."""

import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import tsnejax
from tsnejax.checkpoint import load_meta, save_state
from tsnejax.config import TSNEConfig
from tsnejax.run import build_step, init_state, optimize
from tsnejax.schedules import Phases

BASE = TSNEConfig.make(negative_gradient_method="exact")
# Each trial ends its own way: opt-SNE's rule (ends early exaggeration at 70 and the run at 240
# on these points), scikit-learn's (runs its 750), the fixed schedule with a shorter main
# phase (370), opt-SNE with a 45-iteration early phase, and a trial the step guard stops.
CONFIGS = [
    BASE.replace(stopping="optsne"),
    BASE.replace(stopping="sklearn", learning_rate=100.0),
    BASE.replace(n_iter=120),
    BASE.replace(stopping="optsne", early_exaggeration_iter=45),
    BASE.replace(learning_rate=1e12),
]
FIELDS = ("trial_iter", "early_exaggeration_iter", "stop_rule_at", "diverged_at")


@pytest.fixture(scope="module")
def setting(digits):
    X = digits[0][:400]
    keys = list(jax.random.split(jax.random.key(0), len(CONFIGS)))
    return X, keys, tsnejax.fit_batch(keys, X, CONFIGS)


def _same(got, ref):
    np.testing.assert_array_equal(got.embeddings, ref.embeddings)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    np.testing.assert_array_equal(got.diverged_cause, ref.diverged_cause)
    np.testing.assert_array_equal(got.kl_divergence, ref.kl_divergence)
    # every step's gradient norm, the saved part first; zeros after a trial froze
    np.testing.assert_array_equal(got.records, ref.records)
    # the history saved with the checkpoint heads the resumed run's (the cut run's callback
    # points add entries)
    hist = dict(got.kl_history)
    for t, v in ref.kl_history:
        np.testing.assert_array_equal(hist[t], v, err_msg=f"KL at {t}")


@pytest.mark.parametrize("cut", [30, 60, 330])
def test_an_interrupted_batch_resumes_to_the_uninterrupted_one(setting, tmp_path, cut):
    """Cut in every trial's early exaggeration (30), where a rule ends it (60: opt-SNE's check
    there), and after some trials ended or diverged (330); resumed, then resumed again once
    finished (nothing more runs)."""
    X, keys, ref = setting
    assert ref.diverged_at[4] > 0 and (ref.stop_rule_at[[0, 3]] > 0).all()
    path = tmp_path / "batch.npz"
    part = tsnejax.fit_batch(
        keys, X, CONFIGS, checkpoint=path, callbacks=[lambda t, kl, Y: t >= cut], callbacks_every=10
    )
    assert part.trial_iter.max() == cut
    meta = load_meta(path)
    assert meta["iteration"] == cut and len(meta["stopping"]["calls"]) == len(CONFIGS)
    assert meta["trials"]["diverged_at"] == part.diverged_at.tolist()
    resumed = tsnejax.fit_batch(keys, X, CONFIGS, checkpoint=path)
    _same(resumed, ref)
    assert resumed.resumed_from == cut and ref.resumed_from == 0  # from the cut, not from 0
    again = tsnejax.fit_batch(keys, X, CONFIGS, checkpoint=path)
    _same(again, ref)
    assert again.resumed_from == 750 and again.n_compiles == 0  # nothing more ran


def test_a_checkpoint_of_another_run_is_refused(setting, tmp_path):
    X, keys, _ = setting
    path = tmp_path / "batch.npz"
    short = [c.replace(n_iter=20, early_exaggeration_iter=20) for c in CONFIGS[2:4]]
    done = tsnejax.fit_batch(keys[:2], X, short, checkpoint=path)
    with pytest.raises(ValueError, match="different data, settings or key"):
        tsnejax.fit_batch(keys[:2], X, short[::-1], checkpoint=path)
    single = tmp_path / "single.npz"
    tsnejax.fit(keys[0], X, short[0], checkpoint=single)
    with pytest.raises(ValueError, match="different data, settings or key"):
        tsnejax.fit_batch(keys[:2], X, short, checkpoint=single)
    # A batch's own file without its trials' record (written by hand) cannot go on.
    save_state(tmp_path / "bare.npz", done.state, fingerprint=load_meta(path)["fingerprint"])
    with pytest.raises(ValueError, match="not written by fit_batch"):
        tsnejax.fit_batch(keys[:2], X, short, checkpoint=tmp_path / "bare.npz")


def test_optimize_keeps_a_resumed_batchs_frozen_trials_frozen(digits):
    X = digits[0][:200]
    P = tsnejax.affinity.perplexity_affinities(tsnejax.knn.exact_knn(X, 30), 10.0)
    opt = tsnejax.optim.make_optimizer("classic", learning_rate=50.0, momentum=0.8)
    step = build_step("exact", opt)
    Y0 = tsnejax.init.pca(X)
    state = init_state(np.stack([Y0, 2 * Y0, 3 * Y0]), opt)
    phases = Phases.of(exaggeration=4.0)
    first = optimize(step, state, P, 20, phases=phases)
    # trial 1 stopped at 20 (a rule's answer, as its checkpoint says); 0 and 2 go on to 50
    book = {
        "active": [True, False, True],
        "diverged_at": [-1, -1, -1],
        "diverged_cause": ["", "", ""],
        "stop_rule_at": [-1, 20, -1],
    }
    saved = {"trials": book, "kl_history": first.kl_history, "records": [first.records]}
    more = optimize(step, first.state, P, 30, phases=phases, resumed=saved)
    np.testing.assert_array_equal(more.state.embedding[1], first.state.embedding[1])
    assert [t for t, _ in more.kl_history] == [20, 50]  # the earlier history heads it
    assert more.records.shape == (3, 50)  # and the earlier records
    np.testing.assert_array_equal(more.records[:, :20], first.records)
    assert (more.records[1, 20:] == 0).all() and (more.records[[0, 2], 20:] > 0).all()
    with pytest.raises(ValueError, match="resume with the record function"):
        pair = lambda s, i: (i.grad_norm, i.grad_norm)  # noqa: E731
        optimize(step, first.state, P, 10, phases=phases, resumed=saved, record=pair)
    # A resumed call that runs nothing returns the saved records in the record's structure.
    both = lambda s, i: {"norm": i.grad_norm, "it": s.iteration}  # noqa: E731
    done = optimize(step, state, P, 20, phases=phases, record=both)
    head = {"records": jax.tree.leaves(done.records)}
    again = optimize(step, done.state, P, 0, phases=phases, record=both, resumed=head)
    assert set(again.records) == {"norm", "it"} and again.records["it"].shape == (3, 20)
    np.testing.assert_array_equal(again.records["it"], done.records["it"])
    with pytest.raises(ValueError, match="resume with the record function"):
        optimize(step, done.state, P, 0, phases=phases, resumed=head)
    assert more.state.iteration.tolist() == [50, 20, 50]
    assert more.stop_rule_at.tolist() == [-1, 20, -1]
    whole = optimize(step, state, P, 50, phases=phases)
    np.testing.assert_array_equal(more.state.embedding[0], whole.state.embedding[0])
    np.testing.assert_array_equal(more.records[0], whole.records[0])
    # The running trials must share their iteration; the book must describe this batch.
    with pytest.raises(
        ValueError, match=r"every running trial at the same iteration, got \[20, 50\]"
    ):
        optimize(
            step,
            more.state,
            P,
            10,
            phases=phases,
            resumed={"trials": {**book, "active": [1, 1, 0]}},
        )
    with pytest.raises(ValueError, match="describes"):
        optimize(
            step, more.state, P, 10, phases=phases, resumed={"trials": {**book, "active": [1, 1]}}
        )
    with pytest.raises(ValueError, match="leading trial axis"):
        optimize(step, init_state(Y0, opt), P, 10, phases=phases, resumed={"trials": book})


MESH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + \\
        " --xla_force_host_platform_device_count=2"
    import jax, numpy as np, tsnejax
    from sklearn.datasets import load_digits
    sys.path.insert(0, sys.argv[1])
    from test_batch_checkpoint import CONFIGS
    X = load_digits().data[:400].astype(np.float32)
    keys = list(jax.random.split(jax.random.key(0), len(CONFIGS)))
    mesh = jax.make_mesh((2,), ("trials",))  # 5 trials: padded to 6
    ref = tsnejax.fit_batch(keys, X, CONFIGS, mesh=mesh)
    path = sys.argv[2]
    stop = [lambda t, kl, Y: t >= 60]
    tsnejax.fit_batch(keys, X, CONFIGS, mesh=mesh, checkpoint=path, callbacks=stop)
    out = tsnejax.fit_batch(keys, X, CONFIGS, mesh=mesh, checkpoint=path)
    same = np.array_equal(out.embeddings, ref.embeddings)
    # a batch on the mesh goes on (BatchResult.optimize) on the mesh, as the longer batch
    fixed = [c.replace(stopping="fixed", n_iter=50) for c in CONFIGS[:3]]
    more = tsnejax.fit_batch(keys[:3], X, fixed, mesh=mesh).optimize(30, mesh=mesh)
    longer = [c.replace(n_iter=80) for c in fixed]
    going_on = np.array_equal(
        more.embeddings, tsnejax.fit_batch(keys[:3], X, longer, mesh=mesh).embeddings
    )
    print("RESULT", same, out.trial_iter.tolist() == ref.trial_iter.tolist(), going_on)
    """
)


@pytest.mark.slow
def test_a_batch_sharded_over_two_devices_resumes_from_its_checkpoint(tmp_path):
    # A loaded state was committed to one device, which the mesh's program refused ("compiled
    # for input shardings that disagree"); one device did not show it. A batch's result, laid
    # out over the mesh, likewise goes on (BatchResult.optimize) only when taken back first.
    script = tmp_path / "mesh.py"
    script.write_text(MESH_SCRIPT)
    args = [sys.executable, str(script), str(Path(__file__).parent), str(tmp_path / "b.npz")]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RESULT True True True" in out.stdout
