"""Stateless math and its derivatives: softmax, log-softmax, GELU, ReLU, masks, attention.

Notation: B batch, H heads, T length (Tq queries, Tk keys), Dh head size, V vocabulary.
Every ``*_backward`` takes what the forward returned (or cached) plus the upstream
gradient ``g`` and returns the gradient with respect to the forward's input. None of
them builds a Jacobian: each is one or two element-wise passes. Where a formula runs
through a tuned kernel, the docstring writes the formula and names the kernel, one call
(``kernels.rows.gelu``, ``kernels.attention.forward``), tested equal to it in ``tests/kernels``.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import attention as KA
from ..kernels import rows as K
from .checks import check_int


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
    Kernel: ``kernels.rows.softmax_backward`` (the line above, by blocks of rows).
    """
    return K.softmax_backward(s, g, out)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log s = (x - max x) - log(sum(exp(x - max x))): stable for logits of any size."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(logp: np.ndarray, g: np.ndarray, axis: int = -1) -> np.ndarray:
    """Given logp = log_softmax(x) and g = dL/dlogp: dx = g - exp(logp) * sum(g)."""
    return g - np.exp(logp) * g.sum(axis=axis, keepdims=True)


def masked_softmax(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis, over the entries where ``mask`` is True; masked entries
    get exactly 0::

        x ← where(mask, x, -inf);  m = max x (0 for a fully masked row);
        e = exp(x - m);  s = e / sum(e) (sum taken as 1 for a fully masked row)

    A row with no allowed entry gives all zeros, never NaN, and no magic ``-1e9`` is
    needed: masked entries drop out of the max, and exp(-inf) = 0. The backward is
    ``softmax_backward`` (masked entries have s = 0, so their gradient is 0). Works in
    place on ``x`` (scores (B, H, Tq, Tk), mask broadcastable to it): pass a temporary.
    Kernel: ``kernels.rows.masked_softmax`` (the lines above, by blocks of the batch).
    """
    return K.masked_softmax(x, mask)


# ---- activations --------------------------------------------------------------------
def gelu(x: np.ndarray) -> np.ndarray:
    """tanh-GELU: 0.5·x·(1 + tanh(z)), z = √(2/π)(x + 0.044715x³).
    Kernel: ``kernels.rows.gelu`` (this line, by blocks of rows)."""
    return K.gelu(np.asarray(x))


def gelu_with_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gelu(x), gelu'(x)) from shared intermediates z and tanh z, for a layer that will
    run the backward: it then costs one multiply, ``g * gelu'(x)``. Formula: ``gelu_backward``.
    Kernel: ``kernels.rows.gelu_with_grad``."""
    return K.gelu_with_grad(np.asarray(x))


def gelu_backward(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dx = g · gelu'(x), gelu'(x) = 0.5(1 + tanh z) + 0.5·x·(1 - tanh² z)·z',
    z' = √(2/π)(1 + 3·0.044715x²)."""
    return g * gelu_with_grad(x)[1]


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
    T, offset = check_int("T", T, low=1), check_int("offset", offset, low=0)
    return (np.arange(offset + T)[None, :] <= offset + np.arange(T)[:, None])[None, None]


# ---- scaled dot-product attention ---------------------------------------------------
def attention(q, k, v, mask=None, dropout=None, out=None):
    """softmax(q kᵀ / √Dh) v with a boolean mask (True = may attend)::

        s   = q kᵀ / √Dh                 scores    (B, H, Tq, Tk)
        p   = masked_softmax(s, mask)    weights   (B, H, Tq, Tk), each row sums to 1
        out = dropout(p) v                         (B, H, Tq, Dh)

    q (B, H, Tq, Dh), k and v (B, H, Tk, Dh), mask broadcastable to (B, H, Tq, Tk).
    ``dropout``: a ``Dropout`` applied to the weights before they meet v, or None.
    ``out``: an array (B, H, Tq, Dh) to write the result into, or None (a new one).
    Returns (out, p), p the weights before dropout. A fully masked query row gives zeros.
    Kernel: ``kernels.attention.forward``, these three lines chunk by chunk of the
    batch (equal to rounding: its softmax shifts each row by its first score, not its
    max); the plain lines run where it does not apply (3-D arrays, a batch axis that
    broadcasts).
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    drop = None if dropout is None else dropout.draw(_scores_shape(q, k), np.result_type(q, k))
    if KA.fusable(q, k, v, mask):
        return KA.forward(q, k, v, mask, scale, drop, out=out)
    p = masked_softmax(q @ k.swapaxes(-1, -2) * scale, mask)  # (B, H, Tq, Tk)
    return np.matmul(p if drop is None else p * drop, v, out=out), p  # (B, H, Tq, Dh)


def attention_backward(q, k, v, p, g, dropout=None, out=None):
    """Gradients (dq, dk, dv) of ``attention`` given its inputs, its weights p, the same
    ``dropout`` (holding the forward's mask m) and g = dL/dout. With pd = p ⊙ m::

        dv = pdᵀ g;  dp = (g vᵀ) ⊙ m;  ds = p (dp - sum(dp p));  dq = ds k / √Dh;  dk = dsᵀ q / √Dh.

    ``out``: three arrays (dq, dk, dv) to write into, or None (new ones).
    Kernel: ``kernels.attention.backward``, these lines chunk by chunk of the batch.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    drop = None if dropout is None else dropout.mask
    if KA.fusable(q, k, v):
        return KA.backward(q, k, v, p, g, scale, drop, out=out)
    dq, dk, dv = out if out is not None else (None, None, None)
    m = 1.0 if drop is None else drop
    dv = np.matmul((p * m).swapaxes(-1, -2), g, out=dv)  # (B, H, Tk, Dh)
    dp = (g @ v.swapaxes(-1, -2)) * m  # (B, H, Tq, Tk)
    ds = softmax_backward(p, dp) * scale  # masked entries: p = 0, so ds = 0
    dq = np.matmul(ds, k, out=dq)  # (B, H, Tq, Dh)
    return dq, np.matmul(ds.swapaxes(-1, -2), q, out=dk), dv  # (B, H, Tk, Dh)


def _scores_shape(q: np.ndarray, k: np.ndarray) -> tuple[int, ...]:
    """The shape of q kᵀ: (..., Tq, Tk), leading axes broadcast."""
    lead = q.shape[:-2] if q.shape[:-2] == k.shape[:-2] else np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    return lead + (q.shape[-2], k.shape[-2])
