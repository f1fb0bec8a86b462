"""Compiling the next chunk's program while the current one runs (tsnejax._ahead, _compile)."""

import jax.numpy as jnp
import numpy as np
import pytest

from tsnejax._ahead import MAX_GROWTH, growth, host_spans, predict_grid
from tsnejax._chunk import join_grids
from tsnejax.affinity import perplexity_affinities
from tsnejax.gradients import adaptive_backend, interpolation_backend, splat_backend
from tsnejax.init import pca
from tsnejax.knn import exact_knn
from tsnejax.optim import make_optimizer
from tsnejax.run import build_step, init_state, optimize
from tsnejax.schedules import Phases


def test_growth_is_the_damped_last_factor_capped_and_never_below_one():
    prev = np.array([10.0, 10.0, 10.0, 0.0, 10.0])
    now = np.array([12.0, 5.0, 400.0, 3.0, 10.0])
    np.testing.assert_allclose(growth(prev, now), [1.12, 1.0, MAX_GROWTH, 1.0, 1.0])


def test_host_spans_per_state_and_per_trial():
    Y = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal(host_spans(Y), [5.0, 5.0])
    assert host_spans(Y[1]) == 5.0 and np.ndim(host_spans(Y[1])) == 0


@pytest.mark.parametrize(
    "backend",
    [interpolation_backend(), splat_backend(), adaptive_backend()],
    ids=["interpolation", "splat", "adaptive"],
)
@pytest.mark.parametrize("scale", [0.5, 40.0, 130.0, 400.0])
def test_allocate_on_host_arrays_equals_allocate_on_device_arrays(backend, scale):
    """The loop sizes its guess from a NumPy copy: the backends must not read it differently."""
    Y = np.random.default_rng(0).normal(size=(3000, 2)).astype(np.float32) * scale / 6
    assert backend.allocate(Y) == backend.allocate(jnp.asarray(Y))


def test_predict_grid_scales_each_trial_and_joins():
    allocate = interpolation_backend(min_num_intervals=8).allocate
    Y = np.stack([np.linspace(0, 20, 200), np.linspace(0, 60, 200)])[:, :, None].repeat(2, 2)
    one = predict_grid(allocate, Y[0], np.float64(1.5), join_grids)
    assert one == allocate(Y[0] * 1.5)
    both = predict_grid(allocate, Y, np.array([1.5, 1.0]), join_grids)
    assert both == join_grids([allocate(Y[0] * 1.5), allocate(Y[1])])


def _run(X, P, ahead, monkeypatch):
    monkeypatch.setenv("TSNEJAX_COMPILE_AHEAD", "1" if ahead else "0")
    n = len(X)
    opt = make_optimizer("classic", learning_rate=1.0, momentum=0.8)
    # Few minimum boxes and a small learning rate: the span grows steadily after exaggeration
    # and the grid passes through several ladder sizes (8, 24, 30, 36, 45 boxes).
    step = build_step(interpolation_backend(min_num_intervals=8), opt)
    phases = Phases.of(
        {
            0: {"exaggeration": 12.0, "learning_rate": n / 12.0, "momentum": 0.5},
            100: {"exaggeration": 1.0, "momentum": 0.8},
        }
    )
    return optimize(step, init_state(pca(X), opt), P, 300, phases=phases)


def test_compiling_ahead_changes_nothing_but_when_programs_compile(digits, monkeypatch):
    X = digits[0][:400]
    P = perplexity_affinities(exact_knn(X, 45), 15.0)
    on = _run(X, P, True, monkeypatch)
    off = _run(X, P, False, monkeypatch)
    np.testing.assert_array_equal(np.asarray(on.state.embedding), np.asarray(off.state.embedding))
    assert on.grids == off.grids and len(on.grids) >= 4
    assert on.n_compiles == off.n_compiles == len(on.grids)
    # Work was done ahead for programs the run then used, and none with it switched off.
    assert on.ahead_seconds > 0 and off.ahead_seconds == 0
