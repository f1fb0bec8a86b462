"""XLA flag set-up at import: CPU speed flags and deterministic GPU reductions."""

import pytest

from tsnejax import _xla_flags as xf


@pytest.fixture
def env(monkeypatch):
    for name in ("XLA_FLAGS", "JAX_PLATFORMS", "TSNEJAX_GPU_DETERMINISTIC", "TSNEJAX_XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(xf, "_backends_initialized", lambda: False)
    return monkeypatch


def test_gpu_determinism_added_when_a_gpu_plugin_is_installed(env):
    env.setattr(xf, "_has_gpu_plugin", lambda: True)
    env.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert xf.configure_gpu_flags() == [xf.GPU_DETERMINISM_FLAG]
    assert xf.os.environ["XLA_FLAGS"] == f"--xla_dump_to=/tmp/x {xf.GPU_DETERMINISM_FLAG}"
    assert xf.configure_gpu_flags() == []  # idempotent


@pytest.mark.parametrize(
    "setting",
    [
        {"TSNEJAX_GPU_DETERMINISTIC": "0"},
        {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"},
        {"XLA_FLAGS": "--xla_gpu_exclude_nondeterministic_ops=true"},
        {"JAX_PLATFORMS": "cpu"},
        {"JAX_PLATFORMS": "tpu"},
    ],
)
def test_gpu_determinism_respects_the_user(env, setting):
    env.setattr(xf, "_has_gpu_plugin", lambda: True)
    for k, v in setting.items():
        env.setenv(k, v)
    before = xf.os.environ.get("XLA_FLAGS")
    assert xf.configure_gpu_flags() == []
    assert xf.os.environ.get("XLA_FLAGS") == before


def test_gpu_determinism_not_added_without_a_gpu(env):
    env.setattr(xf, "_has_gpu_plugin", lambda: False)
    assert xf.configure_gpu_flags() == []
    assert "XLA_FLAGS" not in xf.os.environ
    env.setenv("JAX_PLATFORMS", "cuda")  # asked for explicitly: added even if not found here
    assert xf.configure_gpu_flags() == [xf.GPU_DETERMINISM_FLAG]


def test_gpu_determinism_warns_when_too_late(env):
    env.setattr(xf, "_has_gpu_plugin", lambda: True)
    env.setattr(xf, "_backends_initialized", lambda: True)
    with pytest.warns(UserWarning, match="non-deterministic"):
        assert xf.configure_gpu_flags() == []


def test_cpu_flags_never_override_the_user(env):
    env.setattr(xf, "_has_accelerator_plugin", lambda: False)
    env.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
    added = xf.configure_cpu_flags()
    assert "--xla_backend_optimization_level=2" not in added
    assert xf.os.environ["XLA_FLAGS"].count("--xla_backend_optimization_level") == 1
    env.setattr(xf, "_has_accelerator_plugin", lambda: True)
    env.delenv("XLA_FLAGS")
    assert xf.configure_cpu_flags() == []
