"""The layers: Linear, Embedding, PositionalEncoding, LayerNorm, Dropout, FeedForward,
and the token embedding both models share (``embed_tokens``).

Notation: B batch, T length, D d_model, F d_ff, V vocabulary, N = B·T rows.
Each layer's ``forward`` caches exactly what its ``backward`` needs; ``backward(g)``
walks the forward in reverse, *adds* into every parameter's ``.grad`` and returns the
gradient with respect to the layer's input. ``MultiHeadAttention`` is in ``attention.py``.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import linear
from ..kernels import rows as K
from . import functional as F
from .checks import check_choice, check_real
from .module import Module, Parameter
from .tokens import check_token_range


def default_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng``, or a generator seeded 0 when None (a layer built alone is deterministic)."""
    return rng if rng is not None else np.random.default_rng(0)


class Linear(Module):
    """y = x @ weightᵀ + bias, weight (out, in), bias (out,) — PyTorch's layout.

    Backward (x flattened to (N, in), g to (N, out)):
    dweight += gᵀ x,  dbias += Σ_rows g,  dx = g @ weight.
    Weights start Xavier-uniform (±√(6/(in+out))), biases at zero.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype=np.float32):
        limit = math.sqrt(6.0 / (in_features + out_features))
        w = default_rng(rng).uniform(-limit, limit, size=(out_features, in_features))
        self.weight = Parameter(w.astype(dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = linear.forward(self._keep_input(x), self.weight.data, self._b())  # (N, out)
        return y.reshape(*x.shape[:-1], self.out_features)

    def forward_gelu(self, x: np.ndarray, with_grad: bool) -> tuple:
        """``forward`` and GELU on its output in one pass (``kernels.linear.forward_gelu``):
        (y, gelu(y), gelu'(y) or None), each shaped (..., out). ``backward`` is the same."""
        out = linear.forward_gelu(self._keep_input(x), self.weight.data, self._b(), with_grad)
        return tuple(None if a is None else a.reshape(*x.shape[:-1], self.out_features) for a in out)

    def _keep_input(self, x: np.ndarray) -> np.ndarray:
        """Check x (..., in), keep it for the backward; return it as rows (N, in)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects last dimension {self.in_features}, got shape {x.shape}")
        self._x = x
        return x.reshape(-1, self.in_features)

    def _b(self) -> np.ndarray | None:
        return None if self.bias is None else self.bias.data

    def backward(self, g: np.ndarray) -> np.ndarray:
        x2 = self._x.reshape(-1, self.in_features)  # (N, in)
        g2 = g.reshape(-1, self.out_features)  # (N, out)
        db = None if self.bias is None else self.bias.grad
        dx2 = linear.backward(x2, g2, self.weight.data, self.weight.grad, db)  # adds gᵀx, Σ g
        return dx2.reshape(self._x.shape)  # g W (..., in)


def scatter_add_rows(target: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> None:
    """target[idx[i]] += rows[i] for every i, repeated indices summed.

    Faster than ``np.add.at``: sort the indices, sum each run with ``np.add.reduceat``.
    """
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    target[sorted_idx[starts]] += np.add.reduceat(rows[order], starts, axis=0)


class Embedding(Module):
    """A lookup table: ids (B, T) → weight[ids] (B, T, D); weight (V, D) ~ N(0, 1/D).

    Backward: dweight[id] += g at every position holding ``id`` (ids have no gradient).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int,
                 rng: np.random.Generator | None = None, dtype=np.float32, name: str = "tokens"):
        w = default_rng(rng).normal(0.0, embedding_dim ** -0.5, size=(num_embeddings, embedding_dim))
        self.weight = Parameter(w.astype(dtype))
        self.num_embeddings, self.embedding_dim, self.name = num_embeddings, embedding_dim, name

    def forward(self, ids: np.ndarray) -> np.ndarray:
        ids = check_token_range(self.name, ids, self.num_embeddings)
        self._ids = ids
        return self.weight.data[ids]  # (..., D)

    def backward(self, g: np.ndarray) -> None:
        scatter_add_rows(self.weight.grad, self._ids.ravel(), g.reshape(-1, self.embedding_dim))
        return None


def sinusoids(d_model: int, max_len: int) -> np.ndarray:
    """The (max_len, D) float64 table PE[pos, 2i] = sin(pos / 10000^(2i/D)),
    PE[pos, 2i+1] = cos(pos / 10000^(2i/D)); shared with the PyTorch twin."""
    pos = np.arange(max_len)[:, None]  # (max_len, 1)
    inv_freq = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2) / d_model)  # (D/2,)
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(pos * inv_freq)
    pe[:, 1::2] = np.cos(pos * inv_freq[: d_model // 2])
    return pe


class PositionalEncoding(Module):
    """Adds the sinusoidal table (a buffer, not a parameter):

    PE[pos, 2i] = sin(pos / 10000^(2i/D)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/D)).
    ``start`` offsets the positions (incremental decoding). Backward is the identity.
    """

    def __init__(self, d_model: int, max_len: int = 512, dtype=np.float32):
        self.pe = sinusoids(d_model, max_len).astype(dtype)  # (max_len, D)
        self.max_len = max_len

    def forward(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        T = x.shape[1]
        if start + T > self.max_len:
            raise ValueError(f"sequence positions {start}..{start + T - 1} exceed max_len {self.max_len}")
        return x + self.pe[start:start + T]  # (B, T, D)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g


class LayerNorm(Module):
    """y = (x - mean) · rstd · weight + bias over the last axis, rstd = 1/√(var + eps).

    Backward, with x̂ = (x - mean)·rstd and ĝ = g·weight (means over the last axis):
    dx = rstd · (ĝ - mean(ĝ) - x̂ · mean(ĝ · x̂)),  dweight += Σ g·x̂,  dbias += Σ g.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, dtype=np.float32):
        self.weight = Parameter(np.ones(d_model, dtype=dtype))
        self.bias = Parameter(np.zeros(d_model, dtype=dtype))
        self.eps = eps

    def forward(self, x: np.ndarray) -> np.ndarray:
        x2 = x.reshape(-1, x.shape[-1])  # (N, D)
        # x̂ = (x - mean)·rstd, rstd = 1/√(var + eps);  y = x̂·weight + bias
        y, self._xhat, self._rstd = K.layernorm(x2, self.weight.data, self.bias.data, self.eps)
        return y.reshape(x.shape)

    def backward(self, g: np.ndarray) -> np.ndarray:
        g2 = g.reshape(self._xhat.shape)  # (N, D)
        # dx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), ĝ = g·weight;  Σ g·x̂;  Σ g
        dx, dweight, dbias = K.layernorm_backward(g2, self._xhat, self._rstd, self.weight.data)
        self.weight.grad += dweight
        self.bias.grad += dbias
        return dx.reshape(g.shape)


class Dropout(Module):
    """Training: y = x · m / (1 - p) with m ~ Bernoulli(1 - p); eval: y = x.

    Backward: dx = g · m / (1 - p). Draws from ``rng`` (shared with the model, so a
    seed fixes every mask).
    """

    def __init__(self, p: float = 0.1, rng: np.random.Generator | None = None):
        self.p = check_real("p", p, 0.0, 1.0, high_open=True)
        self._gen = default_rng(rng)
        self._mask = None

    @property
    def active(self) -> bool:
        """True when ``forward`` draws a mask (training with p > 0)."""
        return self.training and self.p > 0.0

    @property
    def mask(self) -> np.ndarray | None:
        """The last mask drawn, m / (1 - p) with m ~ Bernoulli(1 - p), or None (inactive)."""
        return self._mask

    def draw(self, shape: tuple[int, ...], dtype) -> np.ndarray | None:
        """Draw the mask for an input of ``shape`` (None when inactive) and keep it for
        ``backward``: what ``forward`` multiplies by, for a caller that applies it itself
        (attention's kernel)."""
        if not self.active:
            self._mask = None
            return None
        keep = self._gen.random(shape, dtype=np.float32) >= self.p
        self._mask = keep.astype(dtype)
        self._mask *= 1.0 / (1.0 - self.p)
        return self._mask

    def forward(self, x: np.ndarray) -> np.ndarray:
        m = self.draw(x.shape, x.dtype)
        return x if m is None else x * m

    def backward(self, g: np.ndarray) -> np.ndarray:
        return g if self._mask is None else g * self._mask


class FeedForward(Module):
    """Position-wise FFN: y = linear2(dropout(act(h))), h = linear1(x), D → F → D; act is
    GELU or ReLU. Backward: dh = da · act'(h), act'(h) kept from a training forward."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", dropout: float = 0.0,
                 rng: np.random.Generator | None = None, dtype=np.float32,
                 dropout_rng: np.random.Generator | None = None):
        self.activation = check_choice("activation", activation, ("gelu", "relu"))
        rng = default_rng(rng)
        self.linear1 = Linear(d_model, d_ff, rng=rng, dtype=dtype)
        self.linear2 = Linear(d_ff, d_model, rng=rng, dtype=dtype)
        self.dropout = Dropout(dropout, dropout_rng if dropout_rng is not None else rng)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.activation == "gelu":  # h = linear1(x), a = gelu(h): one fused pass
            h, a, self._dact = self.linear1.forward_gelu(x, with_grad=self.training)
        else:
            h = self.linear1(x)  # (B, T, F)
            a, self._dact = self._act(h, with_grad=self.training)  # act(h); act'(h) when training
        self._h = h
        return self.linear2(self.dropout(a))  # (B, T, D)

    def backward(self, g: np.ndarray) -> np.ndarray:
        da = self.dropout.backward(self.linear2.backward(g))  # (B, T, F)
        if self._dact is None:  # the forward ran in eval mode: act'(h) now
            self._dact = self._act(self._h, with_grad=True)[1]
        da *= self._dact  # dh = da · act'(h), in da's fresh buffer
        return self.linear1.backward(da)  # (B, T, D)

    def _act(self, h: np.ndarray, with_grad: bool):
        """(act(h), act'(h) or None): GELU's pair from one kernel pass; ReLU' = [h > 0]."""
        if self.activation == "relu":
            return F.relu(h), (h > 0) if with_grad else None
        return F.gelu_with_grad(h) if with_grad else (F.gelu(h), None)


def embed_tokens(embed: Embedding, pos: PositionalEncoding, dropout: Dropout, ids: np.ndarray,
                 start: int = 0) -> np.ndarray:
    """The input of a Transformer stack: dropout(√D · embed(ids) + PE[start:start+T]).

    ids (B, T) → (B, T, D). Shared by the encoder, the decoder and the GPT.
    """
    x = embed(ids) * math.sqrt(embed.embedding_dim)  # (B, T, D)
    return dropout(pos(x, start))


def embed_tokens_backward(embed: Embedding, pos: PositionalEncoding, dropout: Dropout,
                          g: np.ndarray) -> None:
    """Backward of ``embed_tokens``: adds √D · (dropout' g) into ``embed.weight.grad``
    (PE is a constant: its backward is the identity)."""
    g = pos.backward(dropout.backward(g))  # (B, T, D)
    embed.backward(g * math.sqrt(embed.embedding_dim))
