"""Scaled dot-product attention, fused: each chunk of the batch goes q kᵀ → softmax → · v
in one go, on the worker pool.

The plain formula (``core.functional.attention``) is three passes over the whole
(B, H, Tq, Tk) score array: the q kᵀ matmul writes it, the softmax reads and rewrites it,
the · v matmul reads it again. For the small model's 4 MB of scores each pass goes to
memory. Here a chunk of a few batch elements (about ``CHUNK_BYTES`` of scores) runs the
three steps back to back while its scores are in cache, and the chunks are shared among
the pool's threads: one hand-off for the whole attention instead of three.

Exactness: a batch element's result depends only on that element (the batched matmuls
run one BLAS call per (T, Dh) matrix, the softmax one row at a time), so the chunking
changes nothing: results are bit-identical to the plain formula's and to any thread count.
Dropout is not fused: with a dropout active the callers use the plain formula.

Notation: q (B, H, Tq, Dh), k and v (B, H, Tk, Dh), p the weights (B, H, Tq, Tk).
"""

from __future__ import annotations

import math

import numpy as np

from . import pool
from .rows import masked_softmax_rows, softmax_backward_rows

CHUNK_BYTES = 256 * 1024  # scores per chunk: about an L2 cache


def fusable(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None) -> bool:
    """True when the fused kernels apply: 4-D q, k, v with one batch size (no broadcasting
    along it) and a mask of at most 4 dimensions."""
    return (q.ndim == k.ndim == v.ndim == 4 and q.shape[0] == k.shape[0] == v.shape[0]
            and (mask is None or mask.ndim <= 4))


def _parts(p_shape, itemsize: int) -> int:
    """How many chunks of the batch axis: ~CHUNK_BYTES of scores each, and at least two per
    thread when there is enough work to share."""
    B = p_shape[0]
    by_size = math.ceil(math.prod(p_shape) * itemsize / CHUNK_BYTES)
    return max(1, min(B, max(by_size, 2 * pool.num_threads() if by_size > 1 else 1)))


def forward(q, k, v, mask, scale: float):
    """(out, p): p = masked_softmax(q kᵀ · scale), out = p v, chunk by chunk."""
    B, H, Tq, _ = q.shape
    p = np.empty((B, H, Tq, k.shape[2]), dtype=np.result_type(q, k))
    out = np.empty((B, H, Tq, v.shape[3]), dtype=np.result_type(p, v))
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    mask_b = mask is not None and mask.shape[0] == B and B > 1  # a mask per batch element

    def chunk(lo, hi):
        s = p[lo:hi]
        np.matmul(q[lo:hi], k[lo:hi].swapaxes(-1, -2), out=s)
        s *= scale
        masked_softmax_rows(s, mask[lo:hi] if mask_b else mask)
        np.matmul(s, v[lo:hi], out=out[lo:hi])

    pool.run(chunk, B, _parts(p.shape, p.itemsize))
    return out, p


def backward(q, k, v, p, g, scale: float):
    """(dq, dk, dv) of ``forward`` given its p and g = dL/dout, chunk by chunk::

        dv = pᵀ g;  dp = g vᵀ;  ds = p (dp - Σ dp p) · scale;  dq = ds k;  dk = dsᵀ q.
    """
    B = q.shape[0]
    dq = np.empty(q.shape, dtype=np.result_type(p, k))
    dk = np.empty(k.shape, dtype=np.result_type(p, q))
    dv = np.empty(v.shape, dtype=np.result_type(p, g))
    ds = np.empty(p.shape, dtype=np.result_type(g, v))

    def chunk(lo, hi):
        np.matmul(p[lo:hi].swapaxes(-1, -2), g[lo:hi], out=dv[lo:hi])
        d = ds[lo:hi]
        np.matmul(g[lo:hi], v[lo:hi].swapaxes(-1, -2), out=d)  # dp
        softmax_backward_rows(p[lo:hi], d, d)  # masked entries: p = 0, so ds = 0
        d *= scale
        np.matmul(d, k[lo:hi], out=dq[lo:hi])
        np.matmul(d.swapaxes(-1, -2), q[lo:hi], out=dk[lo:hi])

    pool.run(chunk, B, _parts(p.shape, p.itemsize))
    return dq, dk, dv
