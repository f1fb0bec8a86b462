import os

import jax
import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(scope="session")
def data_dir():
    from tsnejax.data import shared_data_dir

    path = shared_data_dir(os.environ.get("TSNEJAX_DATA"))
    if not path.exists():
        pytest.skip(f"real data folder {path} not found (set TSNEJAX_DATA to run these tests)")
    return path


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.float32_only(why)``: a test that pins float32 behaviour (the float32
    range, a float32 divergence, float32 tie orders) is skipped under ``JAX_ENABLE_X64``, where
    the library computes in float64 as JAX's convention says (docs/gradients.md)."""
    if not jax.config.jax_enable_x64:
        return
    for item in items:
        mark = item.get_closest_marker("float32_only")
        if mark is not None:
            item.add_marker(
                pytest.mark.skip(reason=f"float32 only under JAX_ENABLE_X64: {mark.args[0]}")
            )
