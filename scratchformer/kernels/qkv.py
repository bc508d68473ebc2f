"""Fused projections for multi-head attention: q, k and v from ONE matmul.

Three Linear layers q_proj, k_proj, v_proj (each D → D) applied to the same input are
one matmul with their weights stacked to w_qkv = [W_q; W_k; W_v] (3D, D) — a single large
BLAS call instead of three. For cross-attention k and v share an input (the encoder
memory) and are stacked to w_kv = [W_k; W_v] (2D, D). The layer stacks its own weights and
passes the arrays in. The results come back as strided views split into heads, no copy::

    x (N, D) @ [W_q; W_k; W_v]ᵀ + [b_q; b_k; b_v]  →  (N, 3D)  →  3 × (B, H, T, Dh)

Backward goes the other way: the attention's backward writes the heads' gradients straight
into strided views of one (N, nD) buffer (``head_buffer``), so the stacked weights' gradient
is one matmul too, with no copy to merge the heads; the layer adds its slices onto each Linear.
``tests/kernels`` hold these equal to three separate ``Linear`` calls.

Notation: B batch, T length, N = B·T rows, D d_model, H heads, Dh = D / H, n projections.
"""

from __future__ import annotations

import numpy as np

from . import linear


def split_heads(y: np.ndarray, B: int, T: int, n: int, H: int) -> np.ndarray:
    """(B·T, n·D) → (n, B, H, T, Dh): strided views, no copy."""
    return y.reshape(B, T, n, H, -1).transpose(2, 0, 3, 1, 4)


def project(x2: np.ndarray, w: np.ndarray, b: np.ndarray, B: int, T: int, H: int) -> np.ndarray:
    """x2 (B·T, D) through the stacked projections → (n, B, H, T, Dh) views of one matmul."""
    y = linear.forward(x2, w, b)  # (B·T, nD)
    return split_heads(y, B, T, w.shape[0] // x2.shape[1], H)


def head_buffer(B: int, T: int, n: int, H: int, Dh: int, dtype) -> tuple:
    """(dy, views): an empty (B·T, n·H·Dh) buffer in the layout of ``project``'s output and
    its n head-split views (n, B, H, T, Dh), for a backward to write each projection's
    gradient into (``split_heads`` of it)."""
    dy = np.empty((B * T, n * H * Dh), dtype=dtype)
    return dy, split_heads(dy, B, T, n, H)


def project_backward(x2: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple:
    """Backward of ``project``: the n projections' gradients side by side, dy (B·T, nD)
    (``head_buffer``) → (dx2 = dy W (B·T, D), dW = dyᵀ x2 (nD, D), db = Σ_rows dy (nD,)).
    Every projection's weight gradient in one matmul; rows i·D:(i+1)·D of dW and db
    belong to projection i."""
    dw = np.zeros_like(w)  # (nD, D)
    db = np.zeros(w.shape[0], dtype=w.dtype)  # (nD,)
    dx2 = linear.backward(x2, dy, w, dw, db)  # adds dyᵀ x2 into dw, Σ dy into db
    return dx2, dw, db
