"""Stateless math and its derivatives: softmax, log-softmax, GELU, ReLU, masks, attention.

Notation: B batch, H heads, T length (Tq queries, Tk keys), Dh head size, V vocabulary.
Every ``*_backward`` takes what the forward returned (or cached) plus the upstream
gradient ``g`` and returns the gradient with respect to the forward's input. None of
them builds a Jacobian: each is one or two element-wise passes. Where a formula runs
through a tuned kernel, the kernel is named (``kernels.rows``) and tested equal to it.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import attention as KA
from ..kernels import pool
from ..kernels import rows as K


# ---- softmax ----------------------------------------------------------------------
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """s = exp(x - max x) / sum(exp(x - max x)); subtracting the max keeps exp finite."""
    s = x - x.max(axis=axis, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=axis, keepdims=True)
    return s


def softmax_backward(s: np.ndarray, g: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Given s = softmax(x) over the last axis and g = dL/ds: dx = s * (g - sum(g * s)).

    (The Jacobian is diag(s) - s sᵀ; multiplying it by g gives the line above.)
    ``out`` may be g itself (then g is overwritten); by default a new array.
    Kernel: ``kernels.rows.softmax_backward_rows``.
    """
    if out is None:
        out = np.empty(np.broadcast_shapes(s.shape, g.shape), np.result_type(s, g))
    K.map_rows(K.softmax_backward_rows, K.as_rows(s), K.as_rows(g), K.as_rows(out))
    return out


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log s = (x - max x) - log(sum(exp(x - max x))): stable for logits of any size."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(logp: np.ndarray, g: np.ndarray, axis: int = -1) -> np.ndarray:
    """Given logp = log_softmax(x) and g = dL/dlogp: dx = g - exp(logp) * sum(g)."""
    return g - np.exp(logp) * g.sum(axis=axis, keepdims=True)


def masked_softmax(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis, over the entries where ``mask`` is True; masked entries
    get exactly 0.

    A row with no allowed entry gives all zeros, never NaN: its max is taken as 0 and
    its denominator as 1. No magic ``-1e9``: masked entries are set to -inf, so they
    drop out of the max and exp(-inf) = 0. The backward is ``softmax_backward``
    (masked entries have s = 0, so their gradient is 0). Works in place on ``x``
    (scores (B, H, Tq, Tk), mask broadcastable to it): pass a temporary.
    Kernel: ``kernels.rows.masked_softmax_rows``, run over blocks of the batch axis.
    """
    if x.ndim < 2 or (mask is not None and mask.ndim > x.ndim):
        K.masked_softmax_rows(x, mask)
    else:  # blocks of axis 0 (batch); a mask with one row there is shared by every block
        if mask is not None and mask.ndim < x.ndim:
            mask = mask.reshape((1,) * (x.ndim - mask.ndim) + mask.shape)
        K.map_rows(K.masked_softmax_rows, x, mask)
    return x


# ---- activations --------------------------------------------------------------------
def gelu(x: np.ndarray) -> np.ndarray:
    """tanh-GELU: 0.5·x·(1 + tanh(z)), z = √(2/π)(x + 0.044715x³). Kernel: ``gelu_rows``."""
    x = np.asarray(x)
    y = _empty_float(x)
    K.map_rows(K.gelu_rows, K.as_rows(x), K.as_rows(y), None)
    return y


def gelu_with_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gelu(x), gelu'(x)) from shared intermediates z and tanh z, for a layer that will
    run the backward: it then costs one multiply, ``g * gelu'(x)``. Formula: ``gelu_backward``."""
    x = np.asarray(x)
    y, dydx = _empty_float(x), _empty_float(x)
    K.map_rows(K.gelu_rows, K.as_rows(x), K.as_rows(y), K.as_rows(dydx))
    return y, dydx


def gelu_backward(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dx = g · gelu'(x), gelu'(x) = 0.5(1 + tanh z) + 0.5·x·(1 - tanh² z)·z',
    z' = √(2/π)(1 + 3·0.044715x²)."""
    return g * gelu_with_grad(x)[1]


def _empty_float(x: np.ndarray) -> np.ndarray:
    """A C-contiguous output buffer shaped like x, in x's float dtype (float64 for ints)."""
    return np.empty(x.shape, x.dtype if x.dtype.kind == "f" else np.float64)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dx = g where x > 0, else 0."""
    return g * (x > 0)


# ---- masks ------------------------------------------------------------------------
def padding_mask(tokens: np.ndarray, pad_id: int = 0) -> np.ndarray:
    """(B, T) tokens → (B, 1, 1, T) bool mask, True where a key may be attended (not PAD)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"padding_mask expects tokens of shape (B, T), got shape {tokens.shape}")
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(T: int, offset: int = 0) -> np.ndarray:
    """(1, 1, T, offset + T) bool mask: query i, at position offset + i, sees keys 0..offset + i.

    With offset 0 it is square and True on and below the diagonal. A positive offset is
    incremental decoding: T new queries after ``offset`` cached positions.
    """
    if int(T) != T or T < 1:
        raise ValueError(f"causal_mask length must be a positive integer, got {T!r}")
    if int(offset) != offset or offset < 0:
        raise ValueError(f"causal_mask offset must be a non-negative integer, got {offset!r}")
    T, offset = int(T), int(offset)
    return (np.arange(offset + T)[None, :] <= offset + np.arange(T)[:, None])[None, None]


# ---- scaled dot-product attention ---------------------------------------------------
def attention(q, k, v, mask=None, dropout=None):
    """softmax(q kᵀ / √Dh) v with a boolean mask (True = may attend).

    q (B, H, Tq, Dh), k and v (B, H, Tk, Dh), mask broadcastable to (B, H, Tq, Tk).
    ``dropout``: a ``Dropout`` applied to the weights before they meet v (training), or None.
    Returns (out (B, H, Tq, Dh), p (B, H, Tq, Tk)), p the weights before dropout.
    A fully masked query row gives zeros. Kernel (no dropout): ``kernels.attention``, the
    same formula chunk by chunk of the batch, bit for bit.
    """
    if (dropout is None or not dropout.active) and KA.fusable(q, k, v, mask):
        return KA.forward(q, k, v, mask, 1.0 / math.sqrt(q.shape[-1]))
    scores = pool.matmul(q, k.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    scores *= 1.0 / math.sqrt(q.shape[-1])
    p = masked_softmax(scores, mask)
    pd = p if dropout is None else dropout(p)  # dropped weights, scaled by 1/(1 - p_drop)
    return pool.matmul(pd, v), p  # (B, H, Tq, Dh)


def attention_backward(q, k, v, p, g, dropout=None):
    """Gradients (dq, dk, dv) of ``attention`` given its inputs, its weights p, the same
    ``dropout`` (holding the forward's mask) and g = dL/dout. With pd = dropout(p)::

        dv = pdᵀ g;  dpd = g vᵀ;  dp = dropout.backward(dpd);
        ds = p (dp - sum(dp p));  dq = ds k / √Dh;  dk = dsᵀ q / √Dh.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    if (dropout is None or not dropout.active) and KA.fusable(q, k, v):
        return KA.backward(q, k, v, p, g, scale)
    pd = p if dropout is None else dropout.backward(p)  # the forward's p·m/(1-p_drop)
    dv = pool.matmul(pd.swapaxes(-1, -2), g)  # (B, H, Tk, Dh)
    dp = pool.matmul(g, v.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    if dropout is not None:
        dp = dropout.backward(dp)
    ds = softmax_backward(p, dp, out=dp)  # masked entries: p = 0, so ds = 0
    ds *= scale
    dq = pool.matmul(ds, k)  # (B, H, Tq, Dh)
    dk = pool.matmul(ds.swapaxes(-1, -2), q)  # (B, H, Tk, Dh)
    return dq, dk, dv
