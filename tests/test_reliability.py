"""Issue #22: legitimate data never crashes; memory is checked before work; collapse warns."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tsnejax
from tsnejax import init, memory
from tsnejax._scale import check_initial_spread
from tsnejax.build import memory_plan


def _pca_before(X: np.ndarray, k: int) -> np.ndarray:
    """The PCA initialisation as it was before #22: eigh of the (d, d) covariance."""
    X = np.asarray(X, np.float64)
    Xc = X - X.mean(axis=0)
    _, vecs = np.linalg.eigh(Xc.T @ Xc / X.shape[0])
    comps = vecs[:, ::-1][:, :k]
    rows = np.argmax(np.abs(comps), axis=0)
    comps = comps * np.sign(comps[rows, np.arange(k)])
    Y = Xc @ comps
    return Y * (init.TARGET_STD / Y[:, 0].std())


def _mnist5k(data_dir) -> np.ndarray:
    with np.load(data_dir / "mnist.npz") as z:
        return z["X"][:5000].astype(np.float32)


@pytest.mark.parametrize("dataset", ["digits", "mnist5k"])
def test_pca_equals_previous_implementation(dataset, digits, request):
    X = digits[0] if dataset == "digits" else _mnist5k(request.getfixturevalue("data_dir"))
    for k in (1, 2, 3):
        Y = np.asarray(init.pca(X, k), np.float64)
        np.testing.assert_allclose(Y, _pca_before(X, k), rtol=0, atol=1e-6 * init.TARGET_STD)


@pytest.mark.parametrize("solver, tol", [("gram", 1e-9), ("randomized", 1e-5)])
def test_pca_solvers_agree_with_covariance(solver, tol, digits):
    """The Gram route is exact; the randomized one (7 power iterations) within 1e-5 of the
    scale (digits' third component: 3e-6), invisible after the 1e-4 rescaling."""
    X = digits[0][:700]
    ref, _ = init.principal_components(X, 3, solver="covariance")
    got, used = init.principal_components(X, 3, solver=solver)
    assert used == solver
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max())


def test_pca_solver_choice():
    assert init.pca_solver(70000, 784) == "covariance"  # 4.3e10 flops: exact
    assert init.pca_solver(300, 20000) == "gram"
    assert init.pca_solver(2000, 50000) == "randomized"
    assert init.pca_solver(10, 3) == "covariance"


def test_pca_wide_matrix_is_fast_and_exact():
    """n << d takes the Gram route (milliseconds); the covariance was 3.2 GB at d = 20 000."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8000)).astype(np.float32)
    X[:, :3] *= 10  # a clear top-3 subspace
    Y, solver = init.principal_components(X, 2)
    assert solver == "gram"
    Xd = X.astype(np.float64)
    ref = np.linalg.svd(Xd - Xd.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(Y), np.abs(ref[0][:, :2] * ref[1][:2]), rtol=1e-6)


# -- large inputs in a subprocess: a crash is a failure, not a dead test runner ---------------

_EMBED = """
import sys, time, numpy as np, tsnejax
n, d = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
X = rng.normal(size=(n, d)).astype(np.float32)
X[: n // 2, :20] += 3.0  # two groups
t = time.perf_counter()
est = tsnejax.TSNE(n_iter=100, early_exaggeration_iter=50, random_state=0).fit(X)
Y = est.embedding_
assert Y.shape == (n, 2) and np.isfinite(Y).all(), "non-finite embedding"
print(f"embedded {n} x {d} in {time.perf_counter() - t:.1f} s, KL {est.kl_divergence_:.3f}")
"""


@pytest.mark.parametrize(
    "shape", [(300, 20000), pytest.param((2000, 50000), marks=pytest.mark.slow)]
)
def test_high_dimensional_input_embeds_in_subprocess(shape):
    """(300, 20 000) runs in CI (6 s); (2000, 50 000) is slow (27 s, 0.8 GB of data)."""
    r = subprocess.run(
        [sys.executable, "-c", _EMBED, *map(str, shape)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert "embedded" in r.stdout


# -- any legitimate matrix: a finite embedding or a clear ValueError ---------------------------


@st.composite
def _inputs(draw):
    n = draw(st.integers(4, 400))
    d = draw(st.sampled_from([1, 2, 3, 7, 50, 300, 3000]))
    kind = draw(
        st.sampled_from(
            ["normal", "duplicates", "constant_columns", "integers", "huge", "tiny", "all_same"]
        )
    )
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if kind == "duplicates":
        X = X[rng.integers(0, max(1, n // 3), size=n)]
    elif kind == "constant_columns":
        X[:, rng.random(d) < 0.5] = 7.0
    elif kind == "integers":
        X = rng.integers(0, 3, size=(n, d))
    elif kind == "huge":
        X = X * 1e30
    elif kind == "tiny":
        X = X * 1e-30
    elif kind == "all_same":
        X = np.ones((n, d))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64]))
    if dtype is np.int64 and kind not in ("integers", "all_same"):
        dtype = np.float32
    if kind in ("huge",) and dtype is np.float32:
        dtype = np.float64  # 1e30 x normal fits float32, but keep the widest case too
    method = draw(st.sampled_from(["exact", "interpolation", "splat"]))
    dim = draw(st.integers(1, 3 if method != "splat" else 2))
    perplexity = draw(st.sampled_from([1.0, 5.0, 30.0]))
    return X.astype(dtype), method, dim, perplexity


def _embed_or_value_error(X, method, dim, perplexity):
    try:
        Y = tsnejax.TSNE(
            n_components=dim,
            perplexity=perplexity,
            negative_gradient_method=method,
            n_iter=12,
            early_exaggeration_iter=8,
            random_state=0,
        ).fit_transform(X)
    except ValueError as err:
        msg = str(err)
        assert len(msg) > 20 and "\n" not in msg[:20], msg  # a sentence, not a bare token
        return None
    assert np.isfinite(Y).all() and Y.shape == (X.shape[0], dim)
    return Y


@settings(
    max_examples=int(os.environ.get("TSNEJAX_PROPERTY_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(_inputs())
def test_any_legitimate_matrix_embeds_or_raises_value_error(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collapse warnings on degenerate data are expected
        _embed_or_value_error(*case)


@pytest.mark.slow
def test_property_long_profile():
    """The same property with 150 examples (``TSNEJAX_PROPERTY_EXAMPLES`` sets the fast one)."""

    def check(case):  # a test under @given must return None
        _embed_or_value_error(*case)

    run = settings(max_examples=150, deadline=None, derandomize=False)(given(_inputs())(check))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()


# -- memory checked before any work -----------------------------------------------------------


def test_memory_guard_raises_before_any_allocation(monkeypatch, digits):
    calls = []
    # digits: PCA ~1 MB, the exact kNN blocks ~120 MB (the (block, k, d) re-ranking buffer)
    monkeypatch.setattr(memory, "available_bytes", lambda device="device": 50e6)
    monkeypatch.setattr("tsnejax.pipeline.graph_search", lambda *a, **k: calls.append("knn"))
    with pytest.raises(memory.InsufficientMemoryError, match="neighbors='ivf'") as e:
        tsnejax.TSNE(negative_gradient_method="exact").fit(digits[0])
    assert isinstance(e.value, ValueError) and isinstance(e.value, MemoryError)
    assert "TSNEJAX_MEMORY_CHECK=0" in str(e.value)
    assert calls == []  # stopped before the search


def test_memory_guard_names_the_exact_gradient(monkeypatch, digits, key):
    X = digits[0]
    # Blocks of 1024 rows, as on an accelerator (a CPU's cache-sized blocks are ~4x smaller).
    monkeypatch.setattr("tsnejax.build.auto_block", lambda n: 1024)
    graph = tsnejax.nearest_neighbors(X, 90)  # given: no search stage
    cfg = tsnejax.TSNEConfig.make(negative_gradient_method="exact", n_iter=10)
    stages = memory_plan(cfg, 1797, 64, search=False)
    need = next(s.bytes for s in stages if "gradient" in s.name)
    others = max(s.bytes for s in stages if "gradient" not in s.name)
    assert need > others  # digits: the exact gradient's (1024, n) blocks dominate
    free = 0.95 * need / memory.HEADROOM  # just short for the exact gradient
    monkeypatch.setattr(memory, "available_bytes", lambda device="device": free)
    with pytest.raises(memory.InsufficientMemoryError, match="negative_gradient_method="):
        tsnejax.fit(key, X, cfg, neighbors=graph)
    grid = memory_plan(cfg.replace(negative_gradient_method="interpolation"), 1797, 64)
    assert not [s for s in grid if "gradient" in s.name]  # the fix named has no such stage


def test_memory_guard_off_by_env(monkeypatch, digits):
    monkeypatch.setattr(memory, "available_bytes", lambda device="device": 1e6)
    monkeypatch.setenv("TSNEJAX_MEMORY_CHECK", "0")
    tsnejax.TSNE(n_iter=10, early_exaggeration_iter=5).fit(digits[0][:300])


def test_memory_estimates_bound_measured_peaks():
    """The estimates grow as the arrays they count (no hidden n^2 in a linear stage)."""
    assert memory.affinity_bytes(70_000, 90) >= 461 * 2**20  # MNIST-70k: measured peak growth
    assert memory.exact_gradient_bytes(4000, 2, 1024) == pytest.approx(
        2 * memory.exact_gradient_bytes(2000, 2, 1024)
    )
    assert memory.pca_bytes(300, 20000, "gram") < memory.pca_bytes(300, 20000, "covariance") / 50


# -- collapse / explosion ------------------------------------------------------------------


def test_collapse_warns_naming_exaggeration(digits):
    X = digits[0][:500]
    with pytest.warns(tsnejax.EmbeddingScaleWarning, match="exaggeration"):
        tsnejax.TSNE(exaggeration=1e6, n_iter=100, early_exaggeration_iter=50).fit(X)


def test_identical_rows_warn_and_give_one_point():
    with pytest.warns(tsnejax.EmbeddingScaleWarning, match="X: all 40 rows are identical"):
        Y = tsnejax.TSNE(perplexity=5, n_iter=5, early_exaggeration_iter=5).fit_transform(
            np.ones((40, 3))
        )
    assert np.ptp(Y) == 0  # faithful: the points are one point


@pytest.mark.float32_only("float64 does not round Z to 0 there, so the run does not diverge")
def test_huge_initialization_warns_and_its_divergence_names_the_scale():
    X = np.random.default_rng(0).normal(size=(40, 3))
    Y0 = np.random.default_rng(1).normal(size=(40, 2)) * 1e6  # Z rounds to 0 in float32
    est = tsnejax.TSNE(perplexity=5, n_iter=5, early_exaggeration_iter=5, initialization=Y0)
    with pytest.warns(tsnejax.EmbeddingScaleWarning, match="initialization has standard dev"):
        with pytest.raises(tsnejax.DivergenceError, match="rescale a large initialization"):
            est.fit(X)
    # A previous embedding as the start (std ~20, under the limit) gives no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", tsnejax.EmbeddingScaleWarning)
        check_initial_spread(Y0 * 2e-5, "array")


def test_ordinary_run_does_not_warn(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error", tsnejax.EmbeddingScaleWarning)
        tsnejax.TSNE(n_iter=100, early_exaggeration_iter=50).fit(digits[0][:500])


def _small_run(X, main_iter, main_lr, callbacks=()):
    """The default schedule on ``X`` piece by piece: spread after the early phase, result."""
    from tsnejax import affinity, knn, optim, run
    from tsnejax.schedules import Phases

    n = len(X)
    P = affinity.perplexity_affinities(knn.nearest_neighbors(X, k=90), 30.0)
    opt = optim.make_optimizer("classic", learning_rate=1.0, momentum=0.8)
    step = run.build_step("exact", opt)
    phases = Phases.of(
        {
            0: {"exaggeration": 12.0, "learning_rate": n / 12},
            250: {"exaggeration": 1.0, "learning_rate": main_lr},
        }
    )
    seen = {}

    def at_250(t, kl, Y):
        seen.setdefault(t, float(np.std(Y)))

    state = run.init_state(init.pca(X), opt)
    res = run.optimize(
        step,
        state,
        P,
        250 + main_iter,
        phases=phases,
        callbacks=[at_250, *callbacks],
        callbacks_every=250,
    )
    return seen[250], res


def test_an_early_phase_collapse_that_recovers_does_not_warn(digits):
    # 200 points at k = 90: P spans half the data and 12x exaggeration contracts it to a point
    # (openTSNE's run too: std 4e-14); the main phase expands it to openTSNE's quality.
    with warnings.catch_warnings():
        warnings.simplefilter("error", tsnejax.EmbeddingScaleWarning)
        at_250, res = _small_run(digits[0][:200], 100, 200.0)
    assert at_250 < 1e-8  # it did collapse, so a per-phase check would have warned
    assert np.std(np.asarray(res.state.embedding)) > 1.0


def test_an_early_phase_collapse_that_does_not_recover_warns_at_the_end(digits):
    X = digits[0][:200]
    with pytest.warns(
        tsnejax.EmbeddingScaleWarning,
        match="collapsed in iterations 0-250.*not recovered by the end",
    ):
        _small_run(X, 100, 1e-9)
    # Stopped by a callback right after the collapse: judged when the loop stops.
    with pytest.warns(tsnejax.EmbeddingScaleWarning, match="not recovered"):
        _small_run(X, 100, 200.0, callbacks=[lambda t, kl, Y: t >= 250])


def test_a_later_collapse_after_recovery_is_still_named():
    from tsnejax._scale import scale_messages

    pending = {0: (1e-4, "early collapse")}  # recovered from: 0.1 > 1e-6
    kw = dict(run_start=0, n=200, dim=2, where="main", active=np.array([True]))
    msgs = scale_messages(
        np.array([1e-4]),
        np.array([30.0]),
        np.array([0.1]),
        first=500,
        last=750,
        at_end=True,
        pending=pending,
        **kw,
    )
    assert len(msgs) == 1 and "collapsed in iterations 500-750" in msgs[0] and not pending


def test_memory_guard_counts_the_trials_of_a_batch(monkeypatch, digits):
    import jax

    X = digits[0][:600]
    cfg = tsnejax.TSNEConfig.make(
        negative_gradient_method="exact", n_iter=10, initialization="random"
    )
    P = tsnejax.perplexity_affinities(tsnejax.nearest_neighbors(X, 90), 30.0)
    one = max(s.bytes for s in memory_plan(cfg, 600, 64, search=False) if "trial" in s.name)
    free = 3 * one / memory.HEADROOM  # room for three trials' gradients, not eight
    monkeypatch.setattr(memory, "available_bytes", lambda device="device": free)
    keys = list(jax.random.split(jax.random.key(0), 8))
    with pytest.raises(memory.InsufficientMemoryError, match="8 trial"):
        tsnejax.fit_batch(keys, X, cfg, affinities=P)
    assert tsnejax.fit_batch(keys[:2], X, cfg, affinities=P).embeddings.shape == (2, 600, 2)
