"""Host data reaches the device without compiling a program per shape (tsnejax._device)."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsnejax._device import to_device
from tsnejax._layout import build_layout
from tsnejax.knn import _rescaled, exact_knn


def _compiled(caplog, fn):
    """Names of the programs ``fn()`` compiled (JAX logs each compilation when asked to)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="jax"), jax.log_compiles(True):
        fn()
    return [
        r.getMessage().split(" with ")[0] for r in caplog.records if "Compiling" in r.getMessage()
    ]


@pytest.mark.parametrize(
    "x,dtype",
    [
        (np.arange(6.0).reshape(3, 2), None),
        (np.arange(6.0).reshape(3, 2), jnp.float32),
        (np.arange(5), None),
        (np.arange(5), np.int32),
        ([1.5, 2.5], None),
    ],
)
def test_to_device_equals_jnp_asarray(x, dtype):
    a, b = to_device(x, dtype), jnp.asarray(x, dtype)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert to_device(b) is b and to_device(b, jnp.float16).dtype == jnp.float16


def test_host_preparation_compiles_nothing_per_shape(caplog):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(37, 5)) * 40  # a unit of 64: rescaled
    # odd shapes, so nothing is cached from another test in this process
    assert _compiled(caplog, lambda: to_device(np.zeros((13, 7), np.int32))) == []
    assert _compiled(caplog, lambda: _rescaled(X)) == []
    knn = exact_knn(X, 6)
    assert _compiled(caplog, lambda: build_layout(knn)) == []


def test_rescaling_on_host_equals_on_device():
    X = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32) * 1e30
    (a, ua), (b, ub) = _rescaled(X), _rescaled(jnp.asarray(X))
    assert ua == ub and np.log2(ua) == round(np.log2(ua)) and ua > 1e29
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _rescaled(np.zeros((0, 3)))[1] == 1.0
    # Magnitudes whose squares float32 holds are searched as they are (no pass, no program)
    assert _rescaled(np.full((3, 2), 40.0))[1] == 1.0
    assert _rescaled(np.full((3, 2), 1e-30))[1] < 1e-29
    assert _rescaled(np.zeros((3, 2)))[1] == 1.0
