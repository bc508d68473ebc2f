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

    The weight gradient is cut along the output features: part lo:hi computes rows lo:hi
    of gᵀ x, adds them into dw and adds the column sums of g[:, lo:hi] into db.
    """
    ones = np.ones(g2.shape[0], dtype=g2.dtype)
    tmp = np.empty(dw.shape, dtype=np.result_type(g2, x2))

    def accumulate(lo, hi):
        dw[lo:hi] += tmp[lo:hi]
        if db is not None:
            db[lo:hi] += ones @ g2[:, lo:hi]  # a BLAS matrix-vector product: Σ_rows g

    pool.matmul_tn(g2, x2, out=tmp, then=accumulate)
    return pool.matmul(g2, w)
