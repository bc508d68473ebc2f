"""Element-wise kernels run block by block over rows, on up to two threads.

Why this exists: a chain of NumPy calls such as GELU's ``t = x*x; t *= c; t += 1; ...``
streams the whole array through memory once per call. For the (B·T, d_ff) activations
of a Transformer (megabytes each) that memory traffic, not arithmetic, is the cost.
``map_rows`` instead runs the *whole chain* on one block of rows at a time, small
enough (~256 KB an array) to stay in the CPU's L2 cache, so memory is touched about once.
NumPy releases the GIL inside its ufunc loops, so a second thread can work on other
blocks meanwhile: the same kernel, on disjoint rows, written into preallocated outputs.

Exactness: a kernel only ever combines numbers within one row, so a row's result does
not depend on the blocking or on which thread computed it. The blocks depend only on
the arrays' shapes, never on the thread count: one thread and two give bit-identical
results. Small arrays (toy models) run as a single call on the calling thread, where
a thread hand-off would cost more than it saves.

The default is ONE thread (cache blocking only). Measured on a 2-core machine, small
benchmark config: idle, 2 threads gave no gain (OpenBLAS's threads keep spinning on the
second core between matmuls); with another process busy on one core, 2 threads were
~8% slower, and with two busy processes ~1.7× slower (GIL hand-offs between blocks).

    set_num_threads(2)   # or SCRATCHFORMER_NUM_THREADS=2: opt in to a helper thread
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_BLOCK_BYTES = 256 * 1024  # rows per block: about this many bytes of the first array
_MIN_BYTES = 1024 * 1024  # smaller first arrays: one call on the calling thread

_num_threads = max(1, int(os.environ.get("SCRATCHFORMER_NUM_THREADS", 1)))
_pool: ThreadPoolExecutor | None = None


def set_num_threads(n: int) -> None:
    """Threads used by ``map_rows`` (the calling thread included); 1 turns threading off."""
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    if _pool is not None and n != _num_threads:
        _pool.shutdown()
        _pool = None
    _num_threads = n


def get_num_threads() -> int:
    """Threads used by ``map_rows``: SCRATCHFORMER_NUM_THREADS, else 1."""
    return _num_threads


def map_rows(kernel, *args) -> None:
    """Call ``kernel(*blocks)`` on matching row blocks (axis 0) of the array arguments.

    An argument is split when it is an ndarray with as many rows as the first argument;
    anything else (a scalar, None, an array with one row that broadcasts) is passed
    whole. The kernel writes its results into output arrays among the arguments; it
    must treat its rows independently (see the module docstring).
    """
    first = args[0]
    n = first.shape[0]
    if first.nbytes < _MIN_BYTES or n < 2:
        kernel(*args)
        return
    rows = max(1, _BLOCK_BYTES * n // first.nbytes)
    split = [isinstance(a, np.ndarray) and a.ndim and a.shape[0] == n for a in args]
    blocks = iter([[a[i:i + rows] if s else a for a, s in zip(args, split)]
                   for i in range(0, n, rows)])

    def work():  # threads take the next block until none is left (next() holds the GIL)
        for block in blocks:
            kernel(*block)

    helpers = [_get_pool().submit(work) for _ in range(_num_threads - 1)]
    work()
    for h in helpers:
        h.result()


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max(1, _num_threads - 1), thread_name_prefix="scratchformer")
    return _pool
