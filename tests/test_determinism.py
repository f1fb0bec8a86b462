"""The same inputs give the same bits: the CPU FFT (XLA's multi-threaded ducc transform was
not, see tsnejax/_xla_flags.py) and a whole grid-method run resumed from a checkpoint."""

import jax
import numpy as np

from tsnejax.gradients._grid import node_spectrum


def test_large_fft_is_bitwise_repeatable():
    m = 600  # a (1200 x 1200) transform: where the threaded transform varied
    x = jax.random.normal(jax.random.key(0), (m * m,))
    f = jax.jit(lambda x: node_spectrum(x, m, 2))
    first = np.asarray(f(x))
    for _ in range(15):
        np.testing.assert_array_equal(np.asarray(f(x)), first)
