"""lane_sum (the vectorisable row sum of the exact repulsion) and complex lanes (two values per
gather in the attraction and the grids' read-back)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsnejax._lanes import LANES, complex_lanes, lane_columns, lane_sum, tree_sum
from tsnejax.gradients._grid import gather

# Widths drawn from the cases that matter (under one lane group, exact groups, a remainder of
# one, several groups and a remainder): each distinct shape compiles its own program.
WIDTHS = [1, LANES - 1, LANES, LANES + 1, 3 * LANES + 5, 6 * LANES + 7]


@settings(max_examples=30, deadline=None)
@given(
    rows=st.sampled_from([1, 5]),
    m=st.sampled_from(WIDTHS),
    seed=st.integers(0, 2**16),
)
def test_lane_sum_equals_the_row_sum(rows, m, seed):
    x = np.random.default_rng(seed).normal(size=(rows, m)).astype(np.float32)
    got = np.asarray(jax.jit(lane_sum)(jnp.asarray(x)))
    ref = x.astype(np.float64).sum(axis=1)
    # float32 reassociation only: within a few ulps of the sum of magnitudes
    tol = 4 * m * np.finfo(np.float32).eps * np.abs(x).sum(axis=1) + 1e-30
    assert got.shape == (rows,)
    assert np.all(np.abs(got - ref) <= tol)


def test_lane_sum_reads_every_column_once():
    # one marked column at each position, remainder included: a skipped or doubled group shows
    m = 5 * LANES + 3
    x = np.eye(m, dtype=np.float32) * (1.0 + np.arange(m, dtype=np.float32))[:, None]
    np.testing.assert_array_equal(np.asarray(lane_sum(jnp.asarray(x))), 1.0 + np.arange(m))


def test_tree_sum_of_an_odd_count():
    xs = [jnp.full((3,), float(i)) for i in range(7)]
    np.testing.assert_array_equal(np.asarray(tree_sum(xs)), np.full(3, 21.0))


@pytest.mark.parametrize("c", [1, 2, 3, 4, 5])
def test_complex_lanes_hold_every_column_once(c):
    x = jnp.asarray(np.arange(7 * c, dtype=np.float32).reshape(7, c))
    lanes = complex_lanes(x)
    assert len(lanes) == (c + 1) // 2
    back = jnp.stack([col for lane in lanes for col in lane_columns(lane)], axis=1)
    np.testing.assert_array_equal(np.asarray(back), np.asarray(x))


@pytest.mark.parametrize("c", [1, 3, 4])  # 1-D, 2-D and 3-D grids' channels (d + 1)
def test_gather_equals_the_weighted_sum_of_node_values(c):
    rng = np.random.default_rng(c)
    values = rng.normal(size=(50, c)).astype(np.float32)
    idx = rng.integers(0, 50, size=(30, 9)).astype(np.int32)
    w = rng.random(size=(30, 9)).astype(np.float32)
    ref = np.einsum("ns,nsc->nc", w.astype(np.float64), values.astype(np.float64)[idx])
    got = np.asarray(gather(jnp.asarray(idx), jnp.asarray(w), jnp.asarray(values)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
