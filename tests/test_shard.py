"""Point-sharded runs (tsnejax.shard): across forced host devices, across two processes joined
by jax.distributed, and their errors."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

import tsnejax
from tsnejax import shard
from tsnejax.gradients import Backend, exact_gradient, exact_kl_divergence

# Float64, so that what is compared is the arithmetic and not float32 rounding amplified by the
# gains' sign decisions (docs/scaling.md: in float32 any two summation orders part after ~20
# iterations of early exaggeration, sharded or not).
DEVICES_SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + \\
        " --xla_force_host_platform_device_count=4"
    import tsnejax  # sets its XLA flags before JAX starts
    import jax, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    from sklearn.datasets import load_digits
    from tsnejax.shard import point_mesh
    assert len(jax.devices()) == 4, jax.devices()
    X = load_digits().data[:601]  # 601 points: padded to 604 over 4 devices
    mesh = jax.make_mesh((4,), ("points",))  # Explicit axes by default: made Auto by fit
    out = {}
    for method in sys.argv[1].split(","):
        cfg = tsnejax.TSNEConfig.make(
            negative_gradient_method=method, n_iter=100, early_exaggeration_iter=100)
        a = tsnejax.fit(jax.random.key(0), X, cfg)
        seen = []
        b = tsnejax.fit(jax.random.key(0), X, cfg, mesh=mesh,
                        callbacks=[lambda it, kl, Y: seen.append((it, Y.shape))],
                        callbacks_every=70)
        # going on from a sharded result (TSNEResult.optimize) stays sharded and equal
        c, d = a.optimize(30, exaggeration=2.0), b.optimize(30, exaggeration=2.0)
        out[method] = dict(
            more=[float(np.abs(c.embedding - d.embedding).max() / np.abs(c.embedding).max()),
                  d.total_iter, list(d.state.embedding.sharding.spec), list(d.embedding.shape)],
            rel=float(np.abs(a.embedding - b.embedding).max() / np.abs(a.embedding).max()),
            kl=[a.kl_divergence, b.kl_divergence], grids=[str(a.grids), str(b.grids)],
            compiles=[a.n_compiles, b.n_compiles], seen=seen,
            spec=list(b.state.embedding.sharding.spec), rows=b.state.embedding.shape[0],
            shards=len(b.state.embedding.addressable_shards))
    if "exact" in sys.argv[1]:  # an Optax chain and the ring kNN search, once
        cfg = tsnejax.TSNEConfig.make(negative_gradient_method="interpolation", n_iter=50,
            early_exaggeration_iter=50,
            optimizer=optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1.0)))
        a = tsnejax.fit(jax.random.key(0), X, cfg)
        b = tsnejax.fit(jax.random.key(0), X, cfg, mesh=mesh)
        out["adam"] = dict(rel=float(np.abs(a.embedding - b.embedding).max()
                                     / np.abs(a.embedding).max()))
        from tsnejax.knn import exact_knn
        from tsnejax.sharded_knn import sharded_knn
        rng = np.random.default_rng(0)
        for name, data in [("digits", X), ("gauss", rng.normal(size=(603, 20)))]:
            ref, got = exact_knn(data, 90), sharded_knn(data, 90, mesh, query_block=64)
            ri, gi = np.asarray(ref.indices), np.asarray(got.indices)
            out["knn_" + name] = dict(
                recall=float(np.mean([len(set(r) & set(g)) / 90 for r, g in zip(ri, gi)])),
                dist=float(np.abs(np.asarray(ref.distances) - np.asarray(got.distances)).max()
                           / np.asarray(ref.distances).max()),
                shape=list(gi.shape))
        # a fresh state's per-point optimizer leaves are split like the embedding (they were
        # whole on the first device: zeros_like does not inherit a layout)
        from tsnejax.shard import init_sharded_state, shard_embedding
        from tsnejax.optim import make_optimizer
        Y = shard_embedding(np.ones((601, 2)), mesh)
        st = init_sharded_state(Y, make_optimizer("classic", learning_rate=1.0, momentum=0.8))
        out["layout"] = [str(getattr(x.sharding, "spec", x.sharding))
                         for x in jax.tree.leaves(st) if x.ndim]
        # a checkpoint resumed on a mesh of another size: named, not a shape error inside JAX
        ck = os.path.join(os.path.dirname(sys.argv[0]), "four.npz")
        short = tsnejax.TSNEConfig.make(negative_gradient_method="exact", n_iter=5,
                                        early_exaggeration_iter=5)
        tsnejax.fit(jax.random.key(0), X, short, mesh=mesh, checkpoint=ck)
        two = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("points",))
        try:
            tsnejax.fit(jax.random.key(0), X, short.replace(n_iter=10), mesh=two, checkpoint=ck)
            out["other_mesh"] = "no error"
        except ValueError as err:
            out["other_mesh"] = str(err)
    print("RESULT" + json.dumps(out))
    """
)


def _run(script: str, tmp_path, name: str, *args: str, timeout: int = 600):
    path = tmp_path / name
    path.write_text(script)
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def _result(proc, timeout: int = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    line = [x for x in out.splitlines() if x.startswith("RESULT")][0]
    return json.loads(line[len("RESULT") :])


# Exact and interpolation (with an Optax chain and the sharded kNN) in the fast tier; the splat
# and adaptive backends shard through the same loop and layout, in the slow tier (each pair of
# fits costs ~20 s on two cores with an empty compilation cache).
@pytest.mark.parametrize(
    "methods",
    ["exact,interpolation", pytest.param("splat,adaptive", marks=pytest.mark.slow)],
)
def test_sharded_over_four_devices_equals_one_device(tmp_path, methods):
    res = _result(_run(DEVICES_SCRIPT, tmp_path, "devices.py", methods))
    for method in methods.split(","):
        r = res[method]
        assert r["rel"] <= 1e-6, (method, r)  # measured 1e-12 to 1e-9 (issue: 1e-4)
        assert abs(r["kl"][0] - r["kl"][1]) <= 1e-8 * abs(r["kl"][0])
        assert r["grids"][0] == r["grids"][1] and r["compiles"][0] == r["compiles"][1]
        # callbacks see the whole, unpadded embedding; the state stays split by points
        assert r["seen"] == [[70, [601, 2]], [140, [601, 2]]]
        assert r["spec"] == ["points"] and r["rows"] == 604
        assert r["shards"] == 4
        assert r["more"][0] <= 1e-6 and r["more"][1:] == [230, ["points"], [601, 2]]
    if "exact" not in methods:
        return
    assert res["adam"]["rel"] <= 1e-6  # an Optax object with global-norm clipping
    # the ring search: exact (digits' integer pixels tie at equal distances: same distances,
    # recall 0.999; continuous data: the same neighbours)
    assert res["knn_gauss"]["recall"] == 1.0 and res["knn_gauss"]["shape"] == [603, 90]
    assert res["knn_digits"]["recall"] >= 0.99 and res["knn_digits"]["dist"] <= 1e-5
    assert res["knn_gauss"]["dist"] <= 1e-5
    assert "resume it on a mesh of the size it was saved from" in res["other_mesh"]
    assert res["layout"] == ["P('points',)"] * 3  # embedding, gains, velocity


PROCESS_SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + \\
        " --xla_force_host_platform_device_count=" + sys.argv[3]
    import tsnejax  # sets its XLA flags before JAX starts
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    n_proc = int(sys.argv[2])
    if n_proc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address="localhost:" + sys.argv[4],
                                   num_processes=n_proc, process_id=int(sys.argv[1]))
    from sklearn.datasets import load_digits
    from tsnejax.shard import point_mesh
    X = load_digits().data[:501]
    cfg = tsnejax.TSNEConfig.make(negative_gradient_method="interpolation", n_iter=40,
                                  early_exaggeration_iter=40)
    r = tsnejax.fit(jax.random.key(0), X, cfg, mesh=point_mesh())
    # A checkpointed run stopped at 50, then resumed: the state is gathered and saved by
    # process 0, read back by every process and split by points again.
    ck = sys.argv[5]
    tsnejax.fit(jax.random.key(0), X, cfg, mesh=point_mesh(), checkpoint=ck,
                checkpoint_every=25, callbacks=[lambda it, kl, Y: it >= 50])
    resumed = tsnejax.fit(jax.random.key(0), X, cfg, mesh=point_mesh(), checkpoint=ck)
    print("RESULT" + json.dumps(dict(Y=r.embedding.tolist(), kl=r.kl_divergence,
          devices=len(jax.devices()), local=len(jax.local_devices()),
          processes=jax.process_count(),
          resumed=float(np.abs(resumed.embedding - r.embedding).max()))))
    """
)


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


def test_two_processes_joined_by_jax_distributed_equal_one(tmp_path):
    port = _free_port()
    ck2, ck1 = str(tmp_path / "two.npz"), str(tmp_path / "one.npz")
    procs = [
        _run(PROCESS_SCRIPT, tmp_path, "proc.py", str(i), "2", "2", port, ck2) for i in range(2)
    ]
    one = _run(PROCESS_SCRIPT, tmp_path, "one.py", "0", "1", "4", "0", ck1)
    two = [_result(p) for p in procs]
    ref = _result(one)
    assert [t["processes"] for t in two] == [2, 2] and ref["processes"] == 1
    assert [t["devices"] for t in two] == [4, 4] and [t["local"] for t in two] == [2, 2]
    Y_ref = np.asarray(ref["Y"])
    for t in two:  # every process gets the whole embedding
        Y = np.asarray(t["Y"])
        assert Y.shape == (501, 2)
        assert np.abs(Y - Y_ref).max() <= 1e-6 * np.abs(Y_ref).max()
        assert abs(t["kl"] - ref["kl"]) <= 1e-8 * ref["kl"]
    # A sharded run resumed from its checkpoint (it was refused with mesh=) is the
    # uninterrupted run, across processes and across devices.
    assert ref["resumed"] == 0.0 and [t["resumed"] for t in two] == [0.0, 0.0]


def test_one_device_mesh_equals_plain_run(digits):
    X = digits[0][:400]
    cfg = tsnejax.TSNEConfig.make(n_iter=30, early_exaggeration_iter=30)
    a = tsnejax.fit(jax.random.key(0), X, cfg)
    mesh = shard.point_mesh(jax.devices()[:1])
    b = tsnejax.fit(jax.random.key(0), X, cfg, mesh=mesh)
    np.testing.assert_allclose(b.embedding, a.embedding, rtol=0, atol=1e-5)
    assert b.method == a.method == "exact"
    # resume both for 10 iterations: the sharded state with P laid out for the mesh
    ra = tsnejax.optimize(a.stepper, a.state, a.affinities, 10, phases=a.phases)
    S = shard.shard_affinities(b.affinities, mesh)
    rb = tsnejax.optimize(b.stepper, b.state, S, 10, phases=b.phases)
    Yb = shard.gather_points(rb.state.embedding, len(X))
    np.testing.assert_allclose(Yb, np.asarray(ra.state.embedding), rtol=0, atol=1e-5)


def test_shard_affinities_regroups_continuation_rows():
    """Continuation rows land on their owner's shard with local owner indices (3 shards of a
    12-row layout, on the host)."""
    rng = np.random.default_rng(0)
    n, w, we = 10, 2, 3
    nbr = rng.integers(0, n, (n, w)).astype(np.int32)
    wts = rng.random((n, w)).astype(np.float32)
    owners = np.array([0, 4, 4, 9, 0], np.int32)  # a zero-weight padding row, last
    e_nbr = rng.integers(0, n, (5, we)).astype(np.int32)
    e_w = rng.random((5, we)).astype(np.float32)
    e_w[4] = 0
    P = tsnejax.Affinities(nbr, wts, e_nbr, e_w, owners)
    host = shard.regroup(P, n_pad=12, shards=3)
    assert host.neighbors.shape == (12, w) and np.all(host.weights[10:] == 0)
    assert np.all(host.neighbors[10:] == np.arange(10, 12)[:, None])
    e = host.extra_rows.shape[0] // 3
    assert e == 2  # shard 1 (rows 4..7) holds the two rows of point 4
    for s, expect in enumerate([[(0, 0)], [(4, 1), (4, 2)], [(9, 3)]]):
        rows = range(s * e, s * e + len(expect))
        for r, (point, src) in zip(rows, expect, strict=True):
            assert host.extra_rows[r] + s * 4 == point
            np.testing.assert_array_equal(host.extra_neighbors[r], e_nbr[src])
            np.testing.assert_array_equal(host.extra_weights[r], e_w[src])
    assert np.all(host.extra_weights[[1, 5]] == 0)  # unused slots add nothing


def test_mesh_errors(digits):
    X = digits[0][:200]
    cfg = tsnejax.TSNEConfig.make(n_iter=10, early_exaggeration_iter=10)
    bad_axis = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("trials",))
    with pytest.raises(ValueError, match="axis named 'points'"):
        tsnejax.fit(jax.random.key(0), X, cfg, mesh=bad_axis)
    with pytest.raises(TypeError, match="jax.sharding.Mesh"):
        tsnejax.fit(jax.random.key(0), X, cfg, mesh="points")
    mine = Backend(
        "mine",
        lambda Y, P, dof, ex, grid: exact_gradient(Y, P, dof, ex),
        lambda Y, P, dof, grid: exact_kl_divergence(Y, P, dof),
        lambda Y: None,
    )
    with pytest.raises(ValueError, match="no point-sharded form"):
        tsnejax.fit(
            jax.random.key(0),
            X,
            cfg.replace(negative_gradient_method=mine),
            mesh=shard.point_mesh(),
        )


def test_estimator_mesh_option_and_pickle(digits):
    import pickle

    X = digits[0][:300]
    mesh = shard.point_mesh(jax.devices()[:1])
    kw = dict(n_iter=20, early_exaggeration_iter=20, random_state=0)
    a = tsnejax.TSNE(**kw).fit(X)
    b = tsnejax.TSNE(mesh=mesh, **kw).fit(X)
    np.testing.assert_allclose(b.embedding_, a.embedding_, atol=1e-5)
    c = pickle.loads(pickle.dumps(b))
    assert c.mesh is None and b.mesh is mesh
    np.testing.assert_array_equal(c.embedding_, b.embedding_)


def test_optax_state_is_split_like_the_embedding():
    mesh = shard.point_mesh(jax.devices()[:1])
    Y = shard.shard_embedding(np.ones((5, 2), np.float32), mesh)
    state = shard.init_sharded_state(Y, optax.adam(1.0))
    mu = state.opt_state[0].mu
    assert mu.shape == (5, 2) and mu.sharding.is_equivalent_to(Y.sharding, 2)


SWEEP_SCRIPT = textwrap.dedent(
    """
    import os, sys, json
    import tsnejax
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address="localhost:" + sys.argv[2],
                               num_processes=2, process_id=int(sys.argv[1]))
    from tsnejax.sweep import spec_from_dict, run_sweep
    spec = spec_from_dict({"name": "mp", "data": {"name": "digits", "n_points": 300},
        "fixed": {"n_iter": 20, "early_exaggeration_iter": 20},
        "grid": {"learning_rate": [30, 100, 300, 1000, 3000]}, "run": {"metrics": ["kl"]}})
    ran = []
    s = run_sweep(spec, sys.argv[3], mode="sequential", checkpoint_every=5,
                  on_trial=lambda t, m: ran.append(t.trial_id))
    print("RESULT" + json.dumps(dict(ran=ran, n_run=s.n_run, n_trials=s.n_trials)))
    """
)


def test_sweep_across_two_processes_runs_every_trial_once(tmp_path):
    from tsnejax.sweep import read_table

    port, out = _free_port(), str(tmp_path / "sweep")
    procs = [_run(SWEEP_SCRIPT, tmp_path, "sweep.py", str(i), port, out) for i in range(2)]
    res = [_result(p) for p in procs]
    ran = [set(r["ran"]) for r in res]
    assert [len(r["ran"]) for r in res] == [3, 2]  # trials 0, 2, 4 and 1, 3
    assert not ran[0] & ran[1] and all(r["n_trials"] == 5 for r in res)
    rows = read_table(tmp_path / "sweep" / "results.csv")
    assert len(rows) == 5 and {r["trial_id"] for r in rows} == ran[0] | ran[1]
    assert all(r["status"] == "ok" for r in rows)
    metrics = [
        json.loads((tmp_path / "sweep" / "trials" / t / "metrics.json").read_text())
        for t in ran[0] | ran[1]
    ]
    assert len({m["runner"] for m in metrics}) == 2
    assert not list((tmp_path / "sweep" / "runs").glob("*.json"))  # both unregistered
    # Each process saved its own trials' states (a save waited for the other process, which
    # was running another trial) and removed them once written.
    assert not list((tmp_path / "sweep" / "checkpoints").glob("*.npz"))


def test_sharded_neighbors_option(digits):
    """neighbors='sharded' runs the ring search over fit's mesh (one device here: the same
    graph as the exact search) and asks for a mesh without one."""
    X = digits[0][:500]
    mesh = shard.point_mesh(jax.devices()[:1])
    cfg = tsnejax.TSNEConfig.make(n_iter=10, early_exaggeration_iter=10, neighbors="sharded")
    r = tsnejax.fit(jax.random.key(0), X, cfg, mesh=mesh)
    ref = tsnejax.knn.exact_knn(X, r.neighbors.k)
    np.testing.assert_allclose(r.neighbors.distances, ref.distances, rtol=1e-5)
    with pytest.raises(ValueError, match="pass mesh= to tsnejax.fit"):
        tsnejax.fit(jax.random.key(0), X, cfg)
