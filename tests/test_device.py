"""Host data reaches the device without compiling a program per shape (tsnejax._device)."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsnejax._device import to_device
from tsnejax._knn_exact import rescaled as _rescaled
from tsnejax._layout import build_layout
from tsnejax.knn import exact_knn


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


# Unit 1: the search alone; 1e31-scale data: and the distances' rescaling.
@pytest.mark.parametrize("scale,extra", [(1.0, set()), (1e31, {"jit(multiply)"})])
def test_a_query_compiles_only_its_search(caplog, scale, extra):
    from tsnejax.knn import knn_query

    rng = np.random.default_rng(2)
    R, Q = rng.normal(size=(41, 3)) * scale, rng.normal(size=(11, 3)) * scale
    names = _compiled(caplog, lambda: knn_query(R, Q, 4))
    # No slicing of a device copy per shape (there used to be 3 more programs).
    assert {n.removeprefix("Compiling ") for n in names} <= {"jit(exact_query)", *extra}, names
    ref = exact_knn(np.concatenate([R, Q]), 4, rows=np.arange(41, 52))
    got = knn_query(R, Q, 4)
    d = np.linalg.norm(Q[:, None] - R[None], axis=-1)
    np.testing.assert_array_equal(np.asarray(got.indices), np.argsort(d, axis=1)[:, :4])
    np.testing.assert_allclose(np.asarray(got.distances), np.sort(d, axis=1)[:, :4], rtol=1e-5)
    assert ref.indices.shape == got.indices.shape


def test_placing_new_points_reports_its_kl_in_one_program(caplog, digits):
    from tsnejax.transform import TransformConfig, transform

    X = digits[0][:241]  # odd sizes: nothing cached from another test in this process
    Y_ref = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    names = _compiled(caplog, lambda: transform(X[200:], X[:200], Y_ref, TransformConfig(n_iter=0)))
    # Its KL (no loop ran) is one program; op by op it was ~15, one per operation.
    assert names.count("Compiling jit(_kl)") == 1, names
    assert not {"jit(multiply)", "jit(log)", "jit(true_divide)"} & {n[10:] for n in names}, names
