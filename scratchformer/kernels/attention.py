"""Scaled dot-product attention, tuned: ``forward`` and ``backward`` of

    s = q kᵀ · scale,   p = masked_softmax(s, mask),   out = (p ⊙ drop) v

(``drop``: a dropout's mask, scaled by 1/(1 - p_drop), or None) — the formula that
``core.functional.attention`` writes out.

Without dropout the three steps are fused: each chunk of the batch goes q kᵀ → softmax → · v
in one go, on the worker pool. The plain formula is three passes over the whole
(B, H, Tq, Tk) score array: the q kᵀ matmul writes it, the softmax reads and rewrites it,
the · v matmul reads it again. For the small model's 4 MB of scores each pass goes to
memory. Here a chunk of a few batch elements (about ``CHUNK_BYTES`` of scores) runs the
three steps back to back while its scores are in cache, and the chunks are shared among
the pool's threads: one hand-off for the whole attention instead of three. The chunk's
scores go to a scratch array and its softmax into p (``rows.masked_softmax_rows`` with
``out``), which shifts each row by its first score instead of its max: no reduction per
short row (the toy's attention forward 303 → 174 µs, char-GPT's 595 → 496 µs).

With a dropout mask the steps run one after the other over the whole batch, each one
shared among the pool's threads (``pool.matmul``, ``rows.masked_softmax``).

Exactness: a batch element's result depends only on that element (the batched matmuls
run one BLAS call per (T, Dh) matrix, the softmax one row at a time), so the chunking
changes nothing: results are bit-identical for any thread count, and a row never depends
on a key its mask hides. Without dropout they equal the plain formula's to rounding (its
softmax shifts by the row max); with dropout, bit for bit.

Notation: q (B, H, Tq, Dh), k and v (B, H, Tk, Dh), p the weights (B, H, Tq, Tk).
"""

from __future__ import annotations

import math

import numpy as np

from . import pool
from .rows import masked_softmax, masked_softmax_rows, softmax_backward, softmax_backward_rows

CHUNK_BYTES = 256 * 1024  # scores per chunk: about an L2 cache


def fusable(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None = None) -> bool:
    """True when these kernels apply: 4-D q, k, v with one batch size (no broadcasting
    along it) and a mask of at most 4 dimensions."""
    return (q.ndim == k.ndim == v.ndim == 4 and q.shape[0] == k.shape[0] == v.shape[0]
            and (mask is None or mask.ndim <= 4))


def forward(q, k, v, mask, scale: float, drop: np.ndarray | None = None, out=None):
    """(out, p): p = masked_softmax(q kᵀ · scale, mask), out = (p ⊙ drop) v; p is the
    weights before dropout. ``drop`` (B, H, Tq, Tk) or None (no dropout: fused).
    ``out``: a (B, H, Tq, Dh) array to write the result into, any strides (a view of the
    heads side by side, (B, Tq, H, Dh), saves the copy that concatenates them), or None."""
    if drop is not None:
        return _forward_with_dropout(q, k, v, mask, scale, drop, out)
    B, H, Tq, _ = q.shape
    p = np.empty((B, H, Tq, k.shape[2]), dtype=np.result_type(q, k))
    if out is None:
        out = np.empty((B, H, Tq, v.shape[3]), dtype=np.result_type(p, v))
    if mask is not None:
        mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
    mask_b = mask is not None and mask.shape[0] == B and B > 1  # a mask per batch element

    def chunk(lo, hi):  # batch elements lo:hi, start to end while their scores are in cache
        s = np.matmul(q[lo:hi], k[lo:hi].swapaxes(-1, -2))  # q kᵀ: the chunk's scores
        s *= scale
        masked_softmax_rows(s, mask[lo:hi] if mask_b else mask, out=p[lo:hi])  # p
        np.matmul(p[lo:hi], v[lo:hi], out=out[lo:hi])  # p v

    pool.run(chunk, B, _parts(p.shape, p.itemsize))
    return out, p


def backward(q, k, v, p, g, scale: float, drop: np.ndarray | None = None, out=None):
    """(dq, dk, dv) of ``forward`` given its p, its ``drop`` and g = dL/dout::

        pd = p ⊙ drop;  dv = pdᵀ g;  dp = (g vᵀ) ⊙ drop;
        ds = p (dp - Σ dp p) · scale;  dq = ds k;  dk = dsᵀ q.

    ``out``: three arrays (dq, dk, dv) to write into, any strides (views of the one buffer
    the stacked projections' backward reads, ``qkv.head_buffer``), or None.
    """
    if drop is not None:
        return _backward_with_dropout(q, k, v, p, g, scale, drop, out)
    dq, dk, dv = out if out is not None else (
        np.empty(q.shape, dtype=np.result_type(p, k)), np.empty(k.shape, dtype=np.result_type(p, q)),
        np.empty(v.shape, dtype=np.result_type(p, g)))
    ds = np.empty(p.shape, dtype=np.result_type(g, v))

    def chunk(lo, hi):
        np.matmul(p[lo:hi].swapaxes(-1, -2), g[lo:hi], out=dv[lo:hi])  # dv = pᵀ g
        d = ds[lo:hi]
        np.matmul(g[lo:hi], v[lo:hi].swapaxes(-1, -2), out=d)  # dp = g vᵀ
        softmax_backward_rows(p[lo:hi], d, d)  # masked entries: p = 0, so ds = 0
        d *= scale
        np.matmul(d, k[lo:hi], out=dq[lo:hi])  # dq = ds k
        np.matmul(d.swapaxes(-1, -2), q[lo:hi], out=dk[lo:hi])  # dk = dsᵀ q

    pool.run(chunk, q.shape[0], _parts(p.shape, p.itemsize))
    return dq, dk, dv


def _parts(p_shape, itemsize: int) -> int:
    """How many chunks of the batch axis: ~CHUNK_BYTES of scores each, and at least two per
    thread when there is enough work to share."""
    B = p_shape[0]
    by_size = math.ceil(math.prod(p_shape) * itemsize / CHUNK_BYTES)
    return max(1, min(B, max(by_size, 2 * pool.num_threads() if by_size > 1 else 1)))


def _forward_with_dropout(q, k, v, mask, scale: float, drop: np.ndarray, out=None):
    """``forward`` with a dropout mask: the three steps one after the other, each on the pool."""
    s = pool.matmul(q, k.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    s *= scale
    p = masked_softmax(s, mask)
    return pool.matmul(p * drop, v, out=out), p  # (B, H, Tq, Dh)


def _backward_with_dropout(q, k, v, p, g, scale: float, drop: np.ndarray, out=None):
    """``backward`` with a dropout mask: each step on the pool."""
    dq, dk, dv = out if out is not None else (None, None, None)
    dv = pool.matmul((p * drop).swapaxes(-1, -2), g, out=dv)  # (B, H, Tk, Dh)
    dp = pool.matmul(g, v.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    dp *= drop
    ds = softmax_backward(p, dp, out=dp)  # masked entries: p = 0, so ds = 0
    ds *= scale
    dq = pool.matmul(ds, k, out=dq)  # (B, H, Tq, Dh)
    dk = pool.matmul(ds.swapaxes(-1, -2), q, out=dk)  # (B, H, Tk, Dh)
    return dq, dk, dv
