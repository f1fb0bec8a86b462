"""lane_sum: the vectorisable row sum used by the exact repulsion and the attraction."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tsnejax._lanes import LANES, lane_sum, tree_sum

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
