"""A linear layer's matmuls on the worker pool, with its element-wise work fused in.

``y = x Wᵀ + b`` and its backward ``dW += gᵀ x``, ``db += Σ_rows g``, ``dx = g W`` are
three large matmuls plus three passes over memory (add the bias; sum g's columns; add
into the gradients). Here each pass runs inside the matmul's parts (``pool.matmul``'s
``then``): on the same thread, right after that part of the product, while it is still
in cache, and on every worker at once instead of on one thread afterwards.

``core.layers.Linear`` and the fused q/k/v projections (``qkv``) both call these; the
tests hold them equal to the plain formulas. Notation: x2 (N, in), g2 (N, out), W (out, in).
"""

from __future__ import annotations

import functools

import numpy as np

from . import pool, rows


def forward(x2: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """x2 Wᵀ + b → (N, out), the bias added part by part."""
    if b is None:
        return pool.matmul(x2, w.T)
    y = np.empty((x2.shape[0], w.shape[0]), dtype=np.result_type(x2, w))

    def add_bias(lo, hi):
        y[lo:hi] += b

    return pool.matmul(x2, w.T, out=y, then=add_bias)


def forward_gelu(x2: np.ndarray, w: np.ndarray, b: np.ndarray | None, with_grad: bool):
    """(h, gelu(h), gelu'(h) or None) for h = x2 Wᵀ + b → each (N, out).

    The FFN's first layer and its activation in one hand-off: each part adds the bias and
    runs ``rows.gelu_rows`` over its rows right after the matmul wrote them, in blocks of
    about ``rows.BLOCK_BYTES`` while they are in cache, instead of a second pass over h
    (2048×1024: 10.8 → 8.9 ms on 2 threads). The same numbers as ``forward`` then
    ``rows.gelu_with_grad``, bit for bit: GELU is element-wise.
    """
    h = np.empty((x2.shape[0], w.shape[0]), dtype=np.result_type(x2, w))
    a = np.empty_like(h)
    d = np.empty_like(h) if with_grad else None
    step = max(1, rows.BLOCK_BYTES // (h.shape[1] * h.itemsize))  # rows per cache-sized block

    def bias_and_gelu(lo, hi):
        if b is not None:
            h[lo:hi] += b
        for s in range(lo, hi, step):
            e = min(s + step, hi)
            rows.gelu_rows(h[s:e], a[s:e], None if d is None else d[s:e])

    pool.matmul(x2, w.T, out=h, then=bias_and_gelu)
    return h, a, d


def backward(x2: np.ndarray, g2: np.ndarray, w: np.ndarray, dw: np.ndarray,
             db: np.ndarray | None) -> np.ndarray:
    """Adds gᵀ x into dw and Σ_rows g into db (unless None); returns dx2 = g W (N, in).

    Two matmuls, shared among the workers in ONE hand-off of ``pool.parts`` tasks, half
    for each product: dx cut along the rows of g, and the weight gradient cut along its
    longer side, so every part stays a squat, BLAS-friendly product (a (256, 1024) weight
    cut along its 256 output rows would leave thin (64, 2048) × (2048, 1024) parts: 7 %
    slower than cut along the 1024 inputs, measured). Part j of the weight gradient also
    adds the column sums of g for the j-th slice of the outputs into db.
    """
    (N, n_out), n_in = g2.shape, w.shape[1]
    ones = np.ones(N, dtype=g2.dtype)
    dx2 = np.empty((N, n_in), dtype=np.result_type(g2, w))
    along_in = n_in > n_out

    def weight_part(lo, hi, out_lo, out_hi):
        if along_in:
            dw[:, lo:hi] += g2.T @ x2[:, lo:hi]
        else:
            dw[lo:hi] += g2[:, lo:hi].T @ x2
        if db is not None:
            db[out_lo:out_hi] += ones @ g2[:, out_lo:out_hi]  # a BLAS matrix-vector product

    def input_part(lo, hi):
        np.matmul(g2[lo:hi], w, out=dx2[lo:hi])

    # one hand-off shares both products: worth it when their total is (char-GPT's (128, 128)
    # out_proj, 25 MFLOP each: two whole tasks, the step 3 % faster idle, 1 % slower busy)
    k = pool.parts(4.0 * N * n_out * n_in, min(N, n_in, n_out))
    if k == 1:  # too small to share: both here, no hand-off
        weight_part(0, n_in if along_in else n_out, 0, n_out)
        input_part(0, N)
        return dx2
    k = (k + 1) // 2  # parts per product: the two together make about pool.parts(...) tasks
    weight_cuts = pool.cuts(n_in if along_in else n_out, k)
    tasks = [functools.partial(weight_part, lo, hi, out_lo, out_hi)
             for (lo, hi), (out_lo, out_hi) in zip(weight_cuts, pool.cuts(n_out, k))]
    pool.run_tasks(tasks + [functools.partial(input_part, lo, hi) for lo, hi in pool.cuts(N, k)])
    return dx2
