"""The optimizers' blocked update: each parameter cut into cache-sized 1-D blocks.

An Adam update is a dozen element-wise passes over p, grad, m and v. Run whole, each
pass streams megabytes through memory; run block by block (``BLOCK`` elements of each
array, all in L2 together), every pass after the first finds its data in cache. Blocks
are independent, so ``split`` can share them among threads (``pool.run``): the result does
not depend on the blocking or the thread count (``tests/kernels``).
"""

from __future__ import annotations

import numpy as np

BLOCK = 1 << 16  # elements per block: p, grad, state and scratch blocks fit in L2 together
PARALLEL_MIN = 1 << 20  # fewer elements than this: one thread (thread hand-off costs more)


def blocks(arrays: list[np.ndarray]):
    """Matching 1-D views of at most ``BLOCK`` elements of same-shape ``arrays``."""
    if not all(a.flags.c_contiguous for a in arrays):
        return [arrays]  # rare: reshape would copy and lose the in-place update; go whole
    flats = [a.reshape(-1) for a in arrays]  # views: a C-contiguous reshape never copies
    n = flats[0].size
    return [[f[s: s + BLOCK] for f in flats] for s in range(0, n, BLOCK)]


def split(blocks: list, n_parts: int) -> list[list]:
    """Cut ``blocks`` into at most ``n_parts`` runs of about equal element counts."""
    total = sum(b[0].size for b in blocks)
    if n_parts <= 1 or total < PARALLEL_MIN:
        return [blocks]
    parts, acc, cut = [[]], 0, total / n_parts
    for b in blocks:
        if acc >= cut * len(parts) and len(parts) < n_parts:
            parts.append([])
        parts[-1].append(b)
        acc += b[0].size
    return parts

