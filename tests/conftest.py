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
