"""Static-shape storage of a symmetric sparse P: padded per-point neighbour lists (ELL, width
``w``) whose overflow continues in narrow extra rows owned by their point ("sliced ELL").

The layout depends only on the graph's sparsity pattern, so affinities for different
perplexities on one kNN graph share shapes (and vmap). Built on the host, once per pattern.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from tsnejax._checks import check_int
from tsnejax._device import to_device
from tsnejax._knn_exact import KNNGraph
from tsnejax._types import Array

__all__ = [
    "AffinityLayout",
    "EXTRA_WIDTH",
    "build_layout",
    "build_layout_unique",
    "layout_from_pattern",
]


class AffinityLayout(NamedTuple):
    """Where each entry of the symmetric P lives (built on the host once per sparsity pattern).

    Attributes:
      neighbors: ``(n, w) int32``; column indices per row, padded with the row's own index.
      extra_neighbors: ``(e, we) int32``; continuation rows for points with more than ``w``
        entries, then padding rows at point 0 with weight 0 up to :func:`extra_capacity`.
      extra_rows: ``(e,) int32``; the point each continuation row belongs to.
      fwd_pos, bwd_pos: ``(n, k) int32``; for kNN edge ``(i, indices[i, s])``, the flat slot of
        entry ``(i, j)`` and of ``(j, i)`` in ``concat(weights.ravel(), extra_weights.ravel())``
        (empty for layouts not built from a kNN graph).
    """

    neighbors: Array
    extra_neighbors: Array
    extra_rows: Array
    fwd_pos: Array
    bwd_pos: Array


#: Layouts with at least this many stored entries (MNIST-44k at k = 90) are built with small
#: pages; below it huge pages were faster (MNIST-20k: 0.55 s against 0.68 s per P,
#: ``docs/results/cpu_2core/bench_affinities_pages.*``).
SMALL_PAGES_MIN_ENTRIES = 4_000_000


def _hugepage_setter() -> Callable[[bool], bool] | None:
    """NumPy's switch for ``madvise(MADV_HUGEPAGE)`` on new large arrays (private API)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, "_set_madvise_hugepage", None)


@contextlib.contextmanager
def small_pages(entries: int) -> Iterator[None]:
    """New NumPy arrays without transparent huge pages while the block runs, for a layout of
    at least :data:`SMALL_PAGES_MIN_ENTRIES` entries.

    Where the kernel compacts memory on a huge-page fault (THP ``defrag = madvise``, as on the
    2-core test host), the first touch of a large layout's temporaries stalled: the first P in
    a process took 3.6 s at MNIST-70k and 13.3 s at 250k, with small pages 1.9 s and 7.8 s
    (``benchmarks/bench_affinities.py``; ``docs/performance.md``). NumPy's setting is restored
    afterwards.
    """
    setter = _hugepage_setter() if entries >= SMALL_PAGES_MIN_ENTRIES else None
    previous = setter(False) if setter is not None else None
    try:
        yield
    finally:
        if setter is not None:
            setter(previous)


def _extra_rows(degrees: np.ndarray, w: int, we: int) -> int:
    return int((-(-np.maximum(degrees - w, 0) // we)).sum())


#: Width of continuation rows. Narrow, so the few long rows waste little padding.
EXTRA_WIDTH = 16


def _default_width(degrees: np.ndarray, we: int = EXTRA_WIDTH) -> int:
    """Main ELL width (multiple of 8) minimising padded slots + 8 slots per continuation row.

    Continuation rows cost a segment-sum of their results (the "+8"); see
    ``docs/performance.md`` for the MNIST-70k measurements behind this layout.
    """
    if degrees.size == 0 or degrees.max() == 0:
        return 1
    top = int(np.ceil(degrees.max() / 8.0) * 8)
    best, best_cost = top, None
    for w in range(8, top + 1, 8):
        e = _extra_rows(degrees, w, we)
        cost = degrees.size * w + e * (we + 8)
        if best_cost is None or cost < best_cost:
            best, best_cost = w, cost
    return best


def extra_capacity(e: int, n: int) -> int:
    """Continuation rows allocated for ``e`` needed ones among ``n`` points: ``e`` rounded up to
    a multiple of ``n / 16`` (at least 8), and at least one row.

    Graphs of one size then usually share P's shapes, hence their compiled programs and
    persistent-cache entries: five random MNIST-5k subsets needed 6120..6256 rows and all get
    6260 (``docs/performance.md``). The padding rows point at point 0 with weight 0 and add
    exact zeros; they cost at most n slots (under 1 % of MNIST-70k's 9.6 M).
    """
    step = max(8, -(-n // 16))
    return max(1, -(-e // step) * step)


def _index_dtype(*sizes: int) -> type:
    return np.int32 if max(sizes) < 2**31 - 1 else np.int64


def layout_from_pattern(
    indptr: np.ndarray,
    indices: np.ndarray,
    n: int,
    width: int | None = None,
    extra_width: int = EXTRA_WIDTH,
) -> tuple[AffinityLayout, np.ndarray]:
    """Sliced-ELL layout for a CSR sparsity pattern (rows sorted).

    The first ``width`` entries of each row go to the main ``(n, width)`` block; the rest
    continue in rows of ``extra_width`` owned by the point. Returns the layout (with empty
    ``fwd_pos``/``bwd_pos``) and, for each CSR entry, its slot in
    ``concat(weights.ravel(), extra_weights.ravel())``. Index arrays are int32 whenever the
    sizes allow (the 1M-point layout peaked at 15 GB with int64 temporaries).
    """
    with small_pages(len(indices)):
        return _fill(indptr, indices, n, width, extra_width)


def _fill(indptr, indices, n, width, extra_width) -> tuple[AffinityLayout, np.ndarray]:
    indptr = np.asarray(indptr)
    degrees = np.diff(indptr)
    we = check_int("extra_width", extra_width, minimum=1)
    w = _default_width(degrees, we) if width is None else check_int("width", width, minimum=1)
    nnz = len(indices)
    n_cont = -(-np.maximum(degrees - w, 0) // we)
    e = int(n_cont.sum())
    cap = extra_capacity(e, n)
    itype = _index_dtype(n * w + cap * we, nnz)
    neighbors = np.repeat(np.arange(n, dtype=np.int32)[:, None], w, axis=1)
    flat_main = neighbors.reshape(-1)
    extra = np.zeros((cap, we), np.int32)
    extra_rows = np.zeros(cap, np.int32)
    if e:
        extra_rows[:e] = np.repeat(np.arange(n, dtype=np.int32), n_cont)
        extra[:e] = extra_rows[:e, None]
    first_cont = np.concatenate([[0], np.cumsum(n_cont)])[:-1].astype(itype)
    starts = indptr[:-1].astype(itype)
    flat = np.empty(nnz, itype)
    # Row blocks of about 2^22 entries: the per-entry temporaries stay small.
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(indptr, indptr[r0] + (1 << 22), side="right")) - 1
        r1 = min(n, max(r1, r0 + 1))
        s0, s1 = int(indptr[r0]), int(indptr[r1])
        rows = np.repeat(np.arange(r0, r1, dtype=itype), degrees[r0:r1])
        rank = np.arange(s0, s1, dtype=itype) - starts[rows]
        block = indices[s0:s1]
        slot = rows * itype(w) + rank
        main = rank < w
        flat_main[slot[main]] = block[main]
        over_at = np.flatnonzero(~main)
        over = rank[over_at] - itype(w)
        er = first_cont[rows[over_at]] + over // itype(we)
        col = over % itype(we)
        extra[er, col] = block[over_at]
        slot[over_at] = itype(n * w) + er * itype(we) + col
        flat[s0:s1] = slot
        r0 = r1
    empty = np.zeros((0, 0), np.int32)
    layout = AffinityLayout(
        to_device(neighbors), to_device(extra), to_device(extra_rows), empty, empty
    )
    return layout, flat


def build_layout(
    knn: KNNGraph, width: int | None = None, extra_width: int = EXTRA_WIDTH
) -> AffinityLayout:
    """Layout of the symmetrised kNN graph: ``(i, j)`` is stored if j in kNN(i) or i in kNN(j).

    Built with scipy's CSR transpose and a flagged union (int32 indices, int8 flags) from which
    each kNN edge's slots are read in one pass: a few bytes of temporaries per stored entry.
    """
    with small_pages(int(np.prod(np.shape(knn.indices)))):
        return _build(knn, width, extra_width)


def _build(knn: KNNGraph, width: int | None, extra_width: int) -> AffinityLayout:
    idx = np.array(knn.indices, dtype=np.int32)
    n, k = idx.shape
    m = n * k
    itype = _index_dtype(2 * m + 1)
    edge = np.arange(1, m + 1, dtype=itype)  # 1-based: a 0 would read as no entry
    A = sp.csr_matrix((edge, idx.reshape(-1), np.arange(0, m + 1, k, dtype=itype)), (n, n))
    del idx, edge
    A.sort_indices()
    if k > 1 and np.any(np.diff(A.indices.reshape(n, k), axis=1) == 0):
        return build_layout_unique(knn, width, extra_width)  # duplicate neighbours
    B = A.T.tocsr()
    B.sort_indices()
    # Union with flags: 1 = in A, 2 = in B, 3 = both. Canonical CSR sums are canonical, so
    # A's entries appear in S in A's own (row, column) order, and B's in B's: each edge's slot
    # is read off the flags without searching (O(nnz); a searchsorted took 1 s at 70k).
    flags = sp.csr_matrix((np.ones(m, np.int8), A.indices, A.indptr), (n, n))
    flags = flags + sp.csr_matrix((np.full(m, 2, np.int8), B.indices, B.indptr), (n, n))
    S = flags.tocsr()
    del flags
    S.sort_indices()
    layout, flat = layout_from_pattern(S.indptr, S.indices, n, width, extra_width)
    flags = S.data
    del S
    # Slots gathered in S's order (sequential reads), then put in edge order: A's edges only
    # move within their row, B's are the one random scatter.
    fwd = np.empty(m, np.int32)
    fwd[A.data - 1] = flat[np.flatnonzero(flags & 1)]
    del A
    bwd = np.empty(m, np.int32)
    bwd[B.data - 1] = flat[np.flatnonzero(flags & 2)]
    del B, flat, flags
    return layout._replace(
        fwd_pos=to_device(fwd.reshape(n, k)), bwd_pos=to_device(bwd.reshape(n, k))
    )


def build_layout_unique(knn: KNNGraph, width: int | None, extra_width: int) -> AffinityLayout:
    """The same layout by ``np.unique`` on int64 keys: handles repeated neighbours in a row."""
    with small_pages(2 * int(np.prod(np.shape(knn.indices)))):
        return _build_unique(knn, width, extra_width)


def _build_unique(knn: KNNGraph, width: int | None, extra_width: int) -> AffinityLayout:
    idx = np.asarray(knn.indices, dtype=np.int64)
    n, k = idx.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = idx.ravel()
    keys = np.concatenate([rows * n + cols, cols * n + rows])
    uniq, inverse = np.unique(keys, return_inverse=True)
    u_rows, u_cols = uniq // n, uniq % n
    indptr = np.concatenate([[0], np.cumsum(np.bincount(u_rows, minlength=n))])
    layout, flat = layout_from_pattern(indptr, u_cols, n, width, extra_width)
    pos = flat[inverse]
    return layout._replace(
        fwd_pos=to_device(pos[: n * k].reshape(n, k), np.int32),
        bwd_pos=to_device(pos[n * k :].reshape(n, k), np.int32),
    )
