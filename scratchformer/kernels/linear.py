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

from . import pool


def forward(x2: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """x2 Wᵀ + b → (N, out), the bias added part by part."""
    if b is None:
        return pool.matmul(x2, w.T)
    y = np.empty((x2.shape[0], w.shape[0]), dtype=np.result_type(x2, w))

    def add_bias(lo, hi):
        y[lo:hi] += b

    return pool.matmul(x2, w.T, out=y, then=add_bias)


def backward(x2: np.ndarray, g2: np.ndarray, w: np.ndarray, dw: np.ndarray,
             db: np.ndarray | None) -> np.ndarray:
    """Adds gᵀ x into dw and Σ_rows g into db (unless None); returns dx2 = g W (N, in).

    Two matmuls, shared among the workers in ONE hand-off: the weight gradient cut along
    the output features (part lo:hi adds rows lo:hi of gᵀ x into dw and the column sums
    of g[:, lo:hi] into db) and dx cut along the rows of g.
    """
    (N, n_out), n_in = g2.shape, w.shape[1]
    ones = np.ones(N, dtype=g2.dtype)
    dx2 = np.empty((N, n_in), dtype=np.result_type(g2, w))

    def weight_part(lo, hi):
        dw[lo:hi] += g2[:, lo:hi].T @ x2
        if db is not None:
            db[lo:hi] += ones @ g2[:, lo:hi]  # a BLAS matrix-vector product: Σ_rows g

    def input_part(lo, hi):
        np.matmul(g2[lo:hi], w, out=dx2[lo:hi])

    flops = 2.0 * N * n_out * n_in
    split = [(fn, pool.parts(flops, n), n) for fn, n in ((weight_part, n_out), (input_part, N))]
    if all(k == 1 for _, k, _ in split):  # too small to share: both here, no hand-off
        weight_part(0, n_out)
        input_part(0, N)
        return dx2
    pool.run_tasks([functools.partial(fn, lo, hi) for fn, k, n in split
                    for lo, hi in pool.cuts(n, k)])
    return dx2
