"""Stateless math and its derivatives: softmax, log-softmax, GELU, ReLU, masks, attention.

Notation: B batch, H heads, T length (Tq queries, Tk keys), Dh head size, V vocabulary.
Every ``*_backward`` takes what the forward returned (or cached) plus the upstream
gradient ``g`` and returns the gradient with respect to the forward's input. None of
them builds a Jacobian: each is one or two element-wise passes.
"""

from __future__ import annotations

import math

import numpy as np

from . import parallel

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


# ---- fast reductions ---------------------------------------------------------------
def rowsum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, keepdims: (..., n) → (..., 1).

    Done as a matrix-vector product with a vector of ones: BLAS is several times faster
    than ``x.sum(-1)`` for the (rows, n) arrays of a Transformer.
    """
    n = x.shape[-1]
    return (x.reshape(-1, n) @ np.ones(n, dtype=x.dtype)).reshape(*x.shape[:-1], 1)


def colsum(x: np.ndarray) -> np.ndarray:
    """Sum of the rows of a 2-D (N, n) array → (n,), as ones(N) @ x (a BLAS call)."""
    return np.ones(x.shape[0], dtype=x.dtype) @ x


# ---- softmax ----------------------------------------------------------------------
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """s = exp(x - max x) / sum(exp(x - max x)); subtracting the max keeps exp finite."""
    s = x - x.max(axis=axis, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=axis, keepdims=True)
    return s


def softmax_backward(s: np.ndarray, g: np.ndarray, axis: int = -1,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Given s = softmax(x) and g = dL/ds: dx = s * (g - sum(g * s)).

    (The Jacobian is diag(s) - s sᵀ; multiplying it by g gives the line above.)
    ``out`` may be g itself (then g is overwritten); by default a new array.
    """
    if axis not in (-1, s.ndim - 1):
        return s * (g - (g * s).sum(axis=axis, keepdims=True))
    if out is None:
        out = np.empty(np.broadcast_shapes(s.shape, g.shape), np.result_type(s, g))
    parallel.map_rows(_softmax_backward_rows, _as_rows(s), _as_rows(g), _as_rows(out))
    return out


def _softmax_backward_rows(s, g, dx):
    """dx = s·(g - Σ g·s) on a block of rows; dx may be g."""
    c = np.einsum("...i,...i->...", g, s)[..., None]  # Σ g·s      (rows, 1)
    np.subtract(g, c, out=dx)
    dx *= s


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log s = (x - max x) - log(sum(exp(x - max x))): stable for logits of any size."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(logp: np.ndarray, g: np.ndarray, axis: int = -1) -> np.ndarray:
    """Given logp = log_softmax(x) and g = dL/dlogp: dx = g - exp(logp) * sum(g)."""
    return g - np.exp(logp) * g.sum(axis=axis, keepdims=True)


def masked_softmax(x: np.ndarray, mask: np.ndarray | None, axis: int = -1) -> np.ndarray:
    """Softmax over the entries where ``mask`` is True; masked entries get exactly 0.

    A row with no allowed entry gives all zeros, never NaN: its max is taken as 0 and
    its denominator as 1. No magic ``-1e9``: masked entries are set to -inf, so they
    drop out of the max and exp(-inf) = 0. The backward is ``softmax_backward``
    (masked entries have s = 0, so their gradient is 0). Works in place on ``x``
    (scores (B, H, Tq, Tk), mask broadcastable to it): pass a temporary.
    """
    if axis not in (-1, x.ndim - 1):
        raise ValueError("masked_softmax works over the last axis")
    if x.ndim < 2 or (mask is not None and mask.ndim > x.ndim):
        _masked_softmax_rows(x, mask)
    else:  # blocks of axis 0 (batch); a mask with one row there is shared by every block
        if mask is not None and mask.ndim < x.ndim:
            mask = mask.reshape((1,) * (x.ndim - mask.ndim) + mask.shape)
        parallel.map_rows(_masked_softmax_rows, x, mask)
    return x


def _masked_softmax_rows(s, mask):
    """In place on a block of scores: s ← softmax of s over the entries where mask is True."""
    if mask is not None:
        np.copyto(s, -np.inf, where=~mask)  # masked entries: -inf
    m = np.fmax.reduce(s, axis=-1, keepdims=True)  # row max (fmax: faster than max)
    m[~np.isfinite(m)] = 0.0  # fully masked row: nothing to subtract
    s -= m
    np.exp(s, out=s)  # exp(-inf) = 0 for masked entries
    d = np.einsum("...i->...", s)[..., None]  # row sum (einsum: faster than sum)
    d[d == 0] = 1.0  # fully masked row: 0 / 1 = 0
    s /= d


# ---- activations --------------------------------------------------------------------
def gelu(x: np.ndarray) -> np.ndarray:
    """tanh-GELU: 0.5·x·(1 + tanh(z)), z = √(2/π)(x + 0.044715x³)."""
    x = np.asarray(x)
    y = _empty_float(x)
    parallel.map_rows(_gelu_rows, _as_rows(x), _as_rows(y), None)
    return y


def gelu_with_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gelu(x), gelu'(x)) from shared intermediates z and tanh z, for a layer that will
    run the backward: it then costs one multiply, ``g * gelu'(x)``. Formula: ``gelu_backward``."""
    x = np.asarray(x)
    y, dydx = _empty_float(x), _empty_float(x)
    parallel.map_rows(_gelu_rows, _as_rows(x), _as_rows(y), _as_rows(dydx))
    return y, dydx


def gelu_backward(x: np.ndarray, g: np.ndarray, dydx: np.ndarray | None = None) -> np.ndarray:
    """dx = g · gelu'(x), gelu'(x) = 0.5(1 + tanh z) + 0.5·x·(1 - tanh² z)·z',
    z' = √(2/π)(1 + 3·0.044715x²). ``dydx`` (from ``gelu_with_grad``) skips recomputing it."""
    if dydx is None:
        dydx = gelu_with_grad(x)[1]
    return g * dydx


def _gelu_rows(x, y, dydx):
    """y = gelu(x) and, unless dydx is None, dydx = gelu'(x), for a block of rows."""
    x2 = x * x  # x²
    t = x2 * (_SQRT_2_OVER_PI * _GELU_C)
    t += _SQRT_2_OVER_PI
    t *= x  # z = √(2/π)(x + 0.044715x³)
    np.tanh(t, out=t)  # tanh z
    p = t + 1.0
    p *= 0.5  # 0.5(1 + tanh z)
    np.multiply(x, p, out=y)  # gelu
    if dydx is None:
        return
    x2 *= 1.5 * _SQRT_2_OVER_PI * _GELU_C
    x2 += 0.5 * _SQRT_2_OVER_PI
    x2 *= x  # 0.5·x·z'
    t *= t
    np.subtract(1.0, t, out=t)  # 1 - tanh² z
    t *= x2
    np.add(t, p, out=dydx)  # 0.5(1 + tanh z) + 0.5·x·(1 - tanh² z)·z'


def _empty_float(x: np.ndarray) -> np.ndarray:
    """A C-contiguous output buffer shaped like x, in x's float dtype (float64 for ints)."""
    return np.empty(x.shape, x.dtype if x.dtype.kind == "f" else np.float64)


def _as_rows(a: np.ndarray) -> np.ndarray:
    """A view of ``a`` as (rows, last axis), for ``parallel.map_rows`` (a must be contiguous)."""
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


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


def causal_mask(T: int) -> np.ndarray:
    """(1, 1, T, T) bool mask, True on and below the diagonal: query i sees keys 0..i."""
    if int(T) != T or T < 1:
        raise ValueError(f"causal_mask length must be a positive integer, got {T!r}")
    return np.tril(np.ones((int(T), int(T)), dtype=bool))[None, None]


# ---- scaled dot-product attention ---------------------------------------------------
def attention(q, k, v, mask=None):
    """softmax(q kᵀ / √Dh) v with a boolean mask (True = may attend).

    q (B, H, Tq, Dh), k and v (B, H, Tk, Dh), mask broadcastable to (B, H, Tq, Tk).
    Returns (out (B, H, Tq, Dh), p (B, H, Tq, Tk)). A fully masked query row gives zeros.
    """
    scores = q @ k.swapaxes(-1, -2)  # (B, H, Tq, Tk)
    scores *= 1.0 / math.sqrt(q.shape[-1])
    p = masked_softmax(scores, mask)
    return p @ v, p  # (B, H, Tq, Dh)


def attention_backward(q, k, v, p, g):
    """Gradients of ``attention`` given its inputs, its weights p and g = dL/dout.

    dv = pᵀ g;  dp = g vᵀ;  ds = p (dp - sum(dp p));  dq = ds k / √Dh;  dk = dsᵀ q / √Dh.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    dv = p.swapaxes(-1, -2) @ g  # (B, H, Tk, Dh)
    dp = g @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
    ds = softmax_backward(p, dp)
    ds *= scale
    dq = ds @ k  # (B, H, Tq, Dh)
    dk = ds.swapaxes(-1, -2) @ q  # (B, H, Tk, Dh)
    return dq, dk, dv
