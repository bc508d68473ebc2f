"""Multi-head attention with a hand-written backward and a KV cache for decoding.

Notation: B batch, H heads, Tq query length, Tk key length, D d_model, Dh = D / H.

    q, k, v = x W_qᵀ + b_q, m W_kᵀ + b_k, m W_vᵀ + b_v      (m = memory, or x itself)
    head_h  = softmax(q_h k_hᵀ / √Dh + mask) v_h             (functional.attention)
    out     = concat(head_1..head_H) W_oᵀ + b_o

The per-head math is ``functional.attention`` / ``attention_backward``, the same
functions the docs derive. The projections of one input run as one matmul with their
weights stacked (``StackedProjections``): w_qkv = [W_q; W_k; W_v] for self-attention, w_q
and w_kv = [W_k; W_v] for cross-attention. Heads and batch are matmul's batch dimensions,
so there is no Python loop over either.
"""

from __future__ import annotations

import numpy as np

from ..kernels import qkv
from . import functional as F
from .layers import Dropout, Linear, default_rng
from .module import Module


class KVCache:
    """Keys and values of the positions decoded so far, for one attention module.

    Self-attention appends the new positions' k, v at each step, so a step costs one
    position's work instead of re-running the prefix. Cross-attention stores the
    projected encoder memory once (``static``). ``reorder(idx)`` picks batch rows
    (beam search); ``length`` is the number of cached positions.
    """

    def __init__(self):
        self.k = self.v = None  # (B, H, capacity, Dh)
        self.length = 0
        self.static = False

    def append(self, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add (B, H, t, Dh) keys/values; return views of all cached positions."""
        t = k.shape[2]
        if self.k is None or self.length + t > self.k.shape[2]:
            cap = max(2 * (self.length + t), 16)
            B, H, _, Dh = k.shape
            nk, nv = np.empty((B, H, cap, Dh), k.dtype), np.empty((B, H, cap, Dh), v.dtype)
            if self.k is not None:
                nk[:, :, : self.length] = self.k[:, :, : self.length]
                nv[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = nk, nv
        self.k[:, :, self.length:self.length + t] = k
        self.v[:, :, self.length:self.length + t] = v
        self.length += t
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def reorder(self, idx: np.ndarray) -> None:
        if self.k is not None:
            self.k, self.v = self.k[idx], self.v[idx]


class StackedProjections:
    """Projections of one input, each a Linear (D → D), run as ONE matmul with their weights
    stacked (``kernels.qkv``)::

        x2 (N, D) @ [W_1; …; W_n]ᵀ + [b_1; …; b_n]  →  (N, nD)  →  n × (B, H, T, Dh)

    Self-attention stacks q, k, v on x (``weight`` is w_qkv, (3D, D)); cross-attention
    stacks q alone on x (w_q) and k, v on the memory (w_kv, (2D, D)). Made at each forward
    from the current weights, it keeps x2 and the stacked weight for the backward:
    dW = dyᵀ x2 and db = Σ_rows dy in one matmul, each projection's rows added onto its
    own ``.grad``, and dx2 = dy W.
    """

    def __init__(self, x2: np.ndarray, *projs: Linear):
        self.x2, self.projs = x2, projs
        self.weight = np.concatenate([p.weight.data for p in projs])  # (nD, D)
        self.bias = np.concatenate([p.bias.data for p in projs])  # (nD,)

    def heads(self, B: int, T: int, H: int) -> np.ndarray:
        """The n projections split into heads, (n, B, H, T, Dh): views of one matmul."""
        return qkv.project(self.x2, self.weight, self.bias, B, T, H)

    def grad_buffer(self, B: int, T: int, H: int) -> tuple:
        """(dy, views): where the attention's backward writes each projection's gradient,
        views (n, B, H, T, Dh) of one buffer dy (N, nD) (``qkv.head_buffer``)."""
        D = self.x2.shape[1]
        return qkv.head_buffer(B, T, len(self.projs), H, D // H, self.x2.dtype)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """The projections' gradients side by side, dy (N, nD) from ``grad_buffer`` → dx2
        (N, D); adds into the projections' .grad."""
        dx2, dw, db = qkv.project_backward(self.x2, self.weight, dy)  # (N, D), (nD, D), (nD,)
        D = self.x2.shape[1]
        for i, proj in enumerate(self.projs):
            proj.weight.grad += dw[i * D:(i + 1) * D]
            proj.bias.grad += db[i * D:(i + 1) * D]
        return dx2


class MultiHeadAttention(Module):
    """Self-attention ``mha(x, mask=...)`` or cross-attention ``mha(x, memory, mask=...)``.

    x (B, Tq, D) gives the queries; keys and values come from ``memory`` (B, Tk, D), or
    from x itself when memory is None. ``mask`` is boolean, True = may attend,
    broadcastable to (B, H, Tq, Tk). Returns (B, Tq, D) and keeps the attention weights
    in ``.attn`` (B, H, Tq, Tk). ``backward(g)`` returns dx (self) or (dx, dmemory) (cross).

    Parameters: q_proj, k_proj, v_proj, out_proj — each a Linear (D → D), as in PyTorch.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0,
                 rng: np.random.Generator | None = None, dtype=np.float32,
                 dropout_rng: np.random.Generator | None = None):
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        rng = default_rng(rng)
        self.q_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.out_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.attn_dropout = Dropout(dropout, dropout_rng if dropout_rng is not None else rng)
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.attn = None

    def forward(self, x: np.ndarray, memory: np.ndarray | None = None,
                mask: np.ndarray | None = None, cache: KVCache | None = None) -> np.ndarray:
        self._check(x, memory)
        B, Tq, D = x.shape
        x2 = x.reshape(B * Tq, D)
        if memory is None:  # self-attention: q, k, v from x in one matmul
            x_proj = StackedProjections(x2, self.q_proj, self.k_proj, self.v_proj)  # w_qkv
            q, k, v = x_proj.heads(B, Tq, self.n_heads)  # each (B, H, Tq, Dh)
            m_proj = None
            if cache is not None:
                k, v = cache.append(k, v)  # all positions so far: (B, H, Tk, Dh)
        else:  # cross-attention: q from x; k and v from the memory in one matmul
            x_proj = StackedProjections(x2, self.q_proj)  # w_q
            (q,) = x_proj.heads(B, Tq, self.n_heads)  # (B, H, Tq, Dh)
            k, v, m_proj = self._keys_values(memory, cache)  # each (B, H, Tk, Dh)
        if mask is not None:
            mask = self._check_mask(mask, B, Tq, k.shape[2])
        # o2 (B·Tq, D): the heads side by side; o (B, H, Tq, Dh) its view, written in place
        o2, (o,) = qkv.head_buffer(B, Tq, 1, self.n_heads, self.head_dim, np.result_type(q, v))
        _, p = F.attention(q, k, v, mask, self.attn_dropout, out=o)  # p (B, H, Tq, Tk)
        self.attn = p
        if cache is None:  # remember what backward needs
            self._saved = (x_proj, m_proj, q, k, v, p)
        return self.out_proj(o2).reshape(B, Tq, D)  # o2: concat(head_1, …, head_H)

    def backward(self, g: np.ndarray):
        x_proj, m_proj, q, k, v, p = self._saved
        B, H, Tq, Dh = q.shape
        do2 = self.out_proj.backward(g.reshape(B * Tq, -1))  # (B·Tq, D)
        do = qkv.split_heads(do2, B, Tq, 1, H)[0]  # (B, H, Tq, Dh)
        # dq, dk, dv are written straight into the buffers the projections' backward reads
        dy_x, views = x_proj.grad_buffer(B, Tq, H)  # (B·Tq, 3D | D)
        if m_proj is None:  # self-attention: x made q, k and v
            F.attention_backward(q, k, v, p, do, self.attn_dropout, out=tuple(views))
            return x_proj.backward(dy_x).reshape(B, Tq, -1)
        dy_m, (dk, dv) = m_proj.grad_buffer(B, k.shape[2], H)  # (B·Tk, 2D)
        F.attention_backward(q, k, v, p, do, self.attn_dropout, out=(views[0], dk, dv))
        dx = x_proj.backward(dy_x).reshape(B, Tq, -1)  # (B, Tq, D)
        return dx, m_proj.backward(dy_m).reshape(B, -1, self.d_model)  # (B, Tk, D)

    def _keys_values(self, memory, cache):
        """Cross-attention's k, v (B, H, Tk, Dh) from the memory, and their projection
        (w_kv, for the backward); from the cache, once filled, with no projection."""
        if cache is not None and cache.static:
            return cache.k, cache.v, None
        m_proj = StackedProjections(memory.reshape(-1, self.d_model), self.k_proj, self.v_proj)
        k, v = m_proj.heads(memory.shape[0], memory.shape[1], self.n_heads)
        if cache is not None:
            cache.k, cache.v, cache.static = k, v, True
        return k, v, m_proj

    # ---- argument checks ------------------------------------------------------------------
    def _check(self, x, memory):
        D = self.d_model
        if x.ndim != 3 or x.shape[-1] != D:
            raise ValueError(f"attention input must have shape (B, T, {D}), got {x.shape}")
        if memory is not None and (memory.ndim != 3 or memory.shape[-1] != D
                                   or memory.shape[0] != x.shape[0]):
            raise ValueError(f"memory must have shape ({x.shape[0]}, Tk, {D}), got {memory.shape}")

    def _check_mask(self, mask, B, Tq, Tk):
        mask = np.asarray(mask)
        if mask.dtype.kind == "f" and mask.ndim == 3 and mask.shape[-1] == self.d_model:
            raise TypeError("MultiHeadAttention is called as mha(x, memory=None, mask=None): keys "
                            "and values both come from memory; got a third float array of shape "
                            f"{mask.shape} where the mask goes (torch's (query, key, value) order?)")
        if mask.dtype != bool:
            raise TypeError(f"attention mask must be boolean (True = may attend), got dtype {mask.dtype}")
        try:
            np.broadcast_shapes(mask.shape, (B, self.n_heads, Tq, Tk))
        except ValueError:
            raise ValueError(f"attention mask of shape {mask.shape} does not broadcast to "
                             f"(B, H, Tq, Tk) = {(B, self.n_heads, Tq, Tk)}") from None
        if mask.ndim != 4:
            raise ValueError(f"attention mask must be 4-D (B, H|1, Tq|1, Tk), got shape {mask.shape}")
        return mask


def attention_maps(model: Module) -> dict[str, np.ndarray]:
    """{module name: attention weights (B, H, Tq, Tk)} of every MultiHeadAttention in
    ``model``, from its last forward pass."""
    return {name: m.attn for name, m in model.named_modules()
            if isinstance(m, MultiHeadAttention) and m.attn is not None}
