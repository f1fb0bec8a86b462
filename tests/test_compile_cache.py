"""The persistent compilation cache: on by default, off by env, never changes a result."""

import json
import os
import subprocess
import sys

import numpy as np

_RUN = """
import json, sys, time, numpy as np, jax, tsnejax
from sklearn.datasets import load_digits
X = load_digits().data[:500]
t = time.perf_counter()
r = tsnejax.fit(jax.random.key(0), X, tsnejax.TSNEConfig.make(
    n_iter=60, early_exaggeration_iter=40, negative_gradient_method=sys.argv[2]))
np.save(sys.argv[1], np.asarray(r.embedding))
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "compile": r.timings["compile"],
                  "seconds": time.perf_counter() - t}))
"""


def _run(tmp_path, name, method, **env):
    out = tmp_path / f"{name}.npy"
    full = {**os.environ, **env}
    full.pop("JAX_COMPILATION_CACHE_DIR", None)
    r = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), method],
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return np.load(out), json.loads(r.stdout.strip().splitlines()[-1])


def test_cache_on_off_and_warm_give_identical_embeddings(tmp_path):
    """Interpolation: the method with the most programs (grid sizes). Exact was checked the
    same way when the cache landed (0.97 s cold, 0.15 s warm compile, identical)."""
    cache = tmp_path / "cache"
    for method in ("interpolation",):
        off, info_off = _run(tmp_path, "off", method, TSNEJAX_COMPILATION_CACHE="0")
        assert info_off["dir"] is None
        cold, info_cold = _run(tmp_path, "cold", method, TSNEJAX_CACHE_DIR=str(cache))
        assert info_cold["dir"] == str(cache)
        assert any(cache.glob("*-cache")), "nothing was written to the cache"
        warm, info_warm = _run(tmp_path, "warm", method, TSNEJAX_CACHE_DIR=str(cache))
        np.testing.assert_array_equal(cold, off)
        np.testing.assert_array_equal(warm, off)
        print(
            method,
            "compile off/cold/warm",
            info_off["compile"],
            info_cold["compile"],
            info_warm["compile"],
        )


def test_user_cache_setting_is_left_alone(tmp_path):
    mine = str(tmp_path / "mine")
    code = (
        f"import jax; jax.config.update('jax_compilation_cache_dir', {mine!r}); "
        "import tsnejax; print(jax.config.jax_compilation_cache_dir)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == mine
