"""Multi-head attention with a hand-written backward and a KV cache for decoding.

Notation: B batch, H heads, Tq query length, Tk key length, D d_model, Dh = D / H.

    head_h = softmax(q_h k_hᵀ / √Dh + mask) v_h,   out = concat(head_1..head_H) W_oᵀ + b_o

Speed: the three projections run as ONE matmul with the weights stacked to (3D, D)
(two, K and V stacked, for cross-attention), with 1/√Dh folded into the q rows;
q, k, v are strided views of that product, and their gradients are written straight
into one buffer with ``matmul(..., out=view)`` so the weight gradient is one matmul too.
Heads and batch are matmul's batch dimensions: no Python loop over either.
"""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
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
        from .nn import Dropout, Linear  # nn imports this module; avoid the cycle

        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.q_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.out_proj = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.attn_dropout = Dropout(dropout, dropout_rng if dropout_rng is not None else rng)
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.attn = None

    # ---- helpers ------------------------------------------------------------------
    def _stacked(self, names: str):
        """Stack the chosen projections' weights (nD, D) and biases (nD,), q scaled by 1/√Dh."""
        scale = 1.0 / math.sqrt(self.head_dim)
        projs = {"q": self.q_proj, "k": self.k_proj, "v": self.v_proj}
        w = np.concatenate([projs[n].weight.data for n in names])
        b = np.concatenate([projs[n].bias.data for n in names])
        if names[0] == "q":
            w[: self.d_model] *= scale
            b[: self.d_model] *= scale
        return w, b

    def _split(self, y: np.ndarray, B: int, T: int, n: int) -> np.ndarray:
        """(B·T, n·D) → (n, B, H, T, Dh): strided views, no copy."""
        return y.reshape(B, T, n, self.n_heads, self.head_dim).transpose(2, 0, 3, 1, 4)

    def _check(self, x, memory):
        D = self.d_model
        if x.ndim != 3 or x.shape[-1] != D:
            raise ValueError(f"attention input must have shape (B, T, {D}), got {x.shape}")
        if memory is not None and (memory.ndim != 3 or memory.shape[-1] != D
                                   or memory.shape[0] != x.shape[0]):
            raise ValueError(f"memory must have shape ({x.shape[0]}, Tk, {D}), got {memory.shape}")

    # ---- forward ------------------------------------------------------------------
    def forward(self, x: np.ndarray, memory: np.ndarray | None = None,
                mask: np.ndarray | None = None, cache: KVCache | None = None) -> np.ndarray:
        self._check(x, memory)
        B, Tq, D = x.shape
        x2 = x.reshape(B * Tq, D)
        if memory is None:  # self-attention: one (B·Tq, D) @ (D, 3D) matmul
            w, b = self._stacked("qkv")
            stacked = (w,)  # kept for the backward's dx
            qkv = x2 @ w.T
            qkv += b
            q, k, v = self._split(qkv, B, Tq, 3)  # each (B, H, Tq, Dh)
            if cache is not None:
                k, v = cache.append(k, v)  # all positions so far: (B, H, Tk, Dh)
        else:  # cross-attention: q from x, k and v from memory in one matmul
            wq, bq = self._stacked("q")
            stacked = (wq, None)
            q = self._split(x2 @ wq.T + bq, B, Tq, 1)[0]
            if cache is not None and cache.static:
                k, v = cache.k, cache.v
            else:
                Tk = memory.shape[1]
                m2 = memory.reshape(B * Tk, D)
                wkv, bkv = self._stacked("kv")
                stacked = (wq, wkv)
                kv = m2 @ wkv.T
                kv += bkv
                k, v = self._split(kv, B, Tk, 2)
                if cache is not None:
                    cache.k, cache.v, cache.static = k, v, True
        if mask is not None:
            mask = self._check_mask(mask, B, q.shape[2], k.shape[2])
        scores = q @ k.swapaxes(-1, -2)  # (B, H, Tq, Tk), already scaled by 1/√Dh
        p = F.masked_softmax(scores, mask)
        self.attn = p
        pd = self.attn_dropout(p)
        o = pd @ v  # (B, H, Tq, Dh)
        o2 = o.transpose(0, 2, 1, 3).reshape(B * Tq, D)  # concat heads: (B·Tq, D)
        if cache is None:  # remember what backward needs
            self._saved = (x2, memory, q, k, v, p, pd, B, Tq, stacked)
        return self.out_proj(o2).reshape(B, Tq, D)

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

    # ---- backward -----------------------------------------------------------------
    def backward(self, g: np.ndarray):
        x2, memory, q, k, v, p, pd, B, Tq, stacked = self._saved
        D, H, Dh = self.d_model, self.n_heads, self.head_dim
        do2 = self.out_proj.backward(g.reshape(B * Tq, D))  # (B·Tq, D)
        do = do2.reshape(B, Tq, H, Dh).transpose(0, 2, 1, 3)  # (B, H, Tq, Dh)
        dpd = do @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
        dp = self.attn_dropout.backward(dpd)
        ds = F.softmax_backward(p, dp, out=dp)  # scores' gradient (masked: p = 0 → 0), in dp

        if memory is None:
            dqkv = np.empty((B * Tq, 3 * D), dtype=x2.dtype)
            dq, dk, dv = self._split(dqkv, B, Tq, 3)
        else:
            Tk = memory.shape[1]
            dqb = np.empty((B * Tq, D), dtype=x2.dtype)
            dkv = np.empty((B * Tk, 2 * D), dtype=x2.dtype)
            dq = self._split(dqb, B, Tq, 1)[0]
            dk, dv = self._split(dkv, B, Tk, 2)
        np.matmul(ds, k, out=dq)  # dq = ds k               (B, H, Tq, Dh)
        np.matmul(ds.swapaxes(-1, -2), q, out=dk)  # dk = dsᵀ q  (B, H, Tk, Dh)
        np.matmul(pd.swapaxes(-1, -2), do, out=dv)  # dv = pᵀ do (B, H, Tk, Dh)

        if memory is None:
            dw = dqkv.T @ x2  # (3D, D), gradient of the stacked (scaled) weights
            db = F.colsum(dqkv)
            self._accumulate("qkv", dw, db)
            (w,) = stacked  # the forward's stacked (3D, D) weights
            return (dqkv @ w).reshape(B, Tq, D)  # dx
        m2 = memory.reshape(-1, D)
        self._accumulate("q", dqb.T @ x2, F.colsum(dqb))
        self._accumulate("kv", dkv.T @ m2, F.colsum(dkv))
        wq, wkv = stacked  # the forward's stacked weights: q (D, D), kv (2D, D)
        dx = (dqb @ wq).reshape(B, Tq, D)
        dmemory = (dkv @ wkv).reshape(memory.shape)
        return dx, dmemory

    def _accumulate(self, names: str, dw: np.ndarray, db: np.ndarray) -> None:
        """Split stacked gradients back onto q/k/v_proj; the q rows carry the 1/√Dh factor."""
        D = self.d_model
        projs = {"q": self.q_proj, "k": self.k_proj, "v": self.v_proj}
        for i, n in enumerate(names):
            f = 1.0 / math.sqrt(self.head_dim) if n == "q" else 1.0
            projs[n].weight.grad += f * dw[i * D:(i + 1) * D]
            projs[n].bias.grad += f * db[i * D:(i + 1) * D]
