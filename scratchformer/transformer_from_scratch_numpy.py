"""The whole Transformer in one file: forward and backward, in the order of the paper.

"Attention Is All You Need" (Vaswani et al., 2017) as plain NumPy functions over a dict of
parameters, top to bottom: token embedding × √D, sinusoidal positions, padding and causal
masks, scaled dot-product attention, multi-head attention, the feed-forward, LayerNorm,
residual sublayers (post-LN as in the paper, or pre-LN), encoder and decoder stacks, the
generator and the cross-entropy, each backward right after its forward; then Adam, greedy
decoding, and a run that trains the copy task from random weights:

    python -m scratchformer.transformer_from_scratch_numpy    # ~15 s on one core, >= 99 %

This is the plain reading. The package (``scratchformer.Transformer``) is the tuned one
(fused projections, preallocated buffers, threads); tests/test_transformer_from_scratch.py
holds the two equal: from the same float64 weights, logits and every gradient agree to
1e-10. The derivations behind each backward are in docs/backprop.md.

* ``params``: a dict whose keys are exactly ``scratchformer.Transformer(cfg).state_dict()``'s.
  Tied embeddings are stored once, as ``src_embed.weight``; the target embedding and the
  generator use it, and their gradients are summed into it. The params' dtype is the
  computation's dtype (float64 params, float64 math).
* ``config``: a dict with ``TransformerConfig``'s fields (``dataclasses.asdict(cfg)``).
  Dropout is left out (taken as 0) and so is label smoothing.
* Only NumPy and the standard library are imported, nothing from the package, and
  ``import scratchformer`` does not import this file.

Notation: B batch, S source length, T target length, L either, D d_model, H heads,
Dh = D/H head size, F d_ff, V vocabulary. ``g`` is always the upstream gradient
dLoss/d(output), shaped like the output. Backward functions *add* parameter gradients
into ``grads`` and return the gradient of their input.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)  # tanh-GELU: z = √(2/π)(x + 0.044715 x³)


# ---- configuration and parameters ---------------------------------------------------------
def _config(config) -> dict:
    """The config as a dict (a TransformerConfig dataclass is accepted too), checked."""
    cfg = dict(config) if isinstance(config, dict) else dataclasses.asdict(config)
    fields = ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "n_encoder_layers",
              "n_decoder_layers", "max_len", "activation", "norm_first", "layer_norm_eps",
              "pad_id", "tie_embeddings")
    if any(f not in cfg for f in fields):
        raise KeyError(f"config lacks {[f for f in fields if f not in cfg]}")
    if cfg["activation"] not in ("gelu", "relu"):
        raise ValueError(f"activation must be 'gelu' or 'relu', got {cfg['activation']!r}")
    if cfg["d_model"] % cfg["n_heads"] or cfg["d_model"] % 2:
        raise ValueError(f"d_model ({cfg['d_model']}) must be even and divisible by n_heads")
    if cfg["tie_embeddings"] and cfg["src_vocab_size"] != cfg["tgt_vocab_size"]:
        raise ValueError("tie_embeddings needs src_vocab_size == tgt_vocab_size")
    return cfg


def _tied(cfg, key) -> str:
    """The key holding tgt_embed.weight / generator.weight: src_embed.weight when tied."""
    return "src_embed.weight" if cfg["tie_embeddings"] else key


def init_params(config, seed: int = 0) -> dict:
    """Fresh float32 weights, drawn in the package's order (same seed, same weights):
    Linear weights Xavier-uniform ±√(6/(in+out)), biases 0; embeddings N(0, 1/D);
    LayerNorm weight 1, bias 0."""
    cfg = _config(config)
    rng = np.random.default_rng(seed)
    D, F, V = cfg["d_model"], cfg["d_ff"], cfg["tgt_vocab_size"]
    p = {}

    def linear(name, n_in, n_out):
        limit = math.sqrt(6.0 / (n_in + n_out))
        p[name + ".weight"] = rng.uniform(-limit, limit, size=(n_out, n_in))  # (out, in)
        p[name + ".bias"] = np.zeros(n_out)  # (out,)

    def block(name, sublayers, n_norms):
        for attn in sublayers:
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                linear(f"{name}.{attn}.{proj}", D, D)
        linear(f"{name}.ffn.linear1", D, F)
        linear(f"{name}.ffn.linear2", F, D)
        for j in range(1, n_norms + 1):
            p[f"{name}.norm{j}.weight"], p[f"{name}.norm{j}.bias"] = np.ones(D), np.zeros(D)

    p["src_embed.weight"] = rng.normal(0.0, D ** -0.5, size=(cfg["src_vocab_size"], D))  # (V, D)
    p["tgt_embed.weight"] = rng.normal(0.0, D ** -0.5, size=(V, D))  # (V, D)
    for i in range(cfg["n_encoder_layers"]):
        block(f"encoder.layers.{i}", ("self_attn",), 2)
    if cfg["norm_first"]:
        p["encoder.norm.weight"], p["encoder.norm.bias"] = np.ones(D), np.zeros(D)
    for i in range(cfg["n_decoder_layers"]):
        block(f"decoder.layers.{i}", ("self_attn", "cross_attn"), 3)
    if cfg["norm_first"]:
        p["decoder.norm.weight"], p["decoder.norm.bias"] = np.ones(D), np.zeros(D)
    linear("generator", D, V)  # (V, D), (V,)
    if cfg["tie_embeddings"]:  # drawn (to keep the draws in step), then dropped: src_embed serves
        del p["tgt_embed.weight"], p["generator.weight"]
    return {k: v.astype(np.float32) for k, v in p.items()}


# ---- Linear: y = x Wᵀ + b ------------------------------------------------------------------
def linear(params, name, x, weight=None):
    """y = x Wᵀ + b, W = params[name.weight] (out, in) (or params[weight]), b (out,)."""
    W = params[weight or name + ".weight"]  # (out, in)
    return x @ W.T + params[name + ".bias"]  # (..., in) → (..., out)


def linear_backward(params, name, g, x, grads, weight=None):
    """Rows = every leading axis flattened:  dW = gᵀ x,  db = Σ_rows g,  dx = g W."""
    key = weight or name + ".weight"
    W = params[key]  # (out, in)
    # y = x @ W.T + b
    grads[key] += g.reshape(-1, W.shape[0]).T @ x.reshape(-1, W.shape[1])  # (out, in)
    grads[name + ".bias"] += g.reshape(-1, W.shape[0]).sum(axis=0)  # (out,)
    return g @ W  # (..., in)


# ---- 3.4 embeddings × √D, 3.5 positional encoding -----------------------------------------
def positional_encoding(L, D):
    """PE[pos, 2i] = sin(pos / 10000^(2i/D)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/D)).
    Computed in float64 and kept as a float32 constant, like the package's buffer."""
    pos = np.arange(L)[:, None]  # (L, 1)
    inv_freq = np.exp(-math.log(10000.0) * np.arange(0, D, 2) / D)  # (D/2,)
    pe = np.zeros((L, D))  # (L, D)
    pe[:, 0::2] = np.sin(pos * inv_freq)
    pe[:, 1::2] = np.cos(pos * inv_freq)
    return pe.astype(np.float32)  # (L, D)


def embed(params, key, tokens):
    """x = √D · E[tokens] + PE[:L]."""
    E = params[key]  # (V, D)
    D = E.shape[1]
    pe = positional_encoding(tokens.shape[1], D).astype(E.dtype)  # (L, D)
    return E[tokens] * math.sqrt(D) + pe  # (B, L, D)


def embed_backward(key, tokens, g, grads):
    """dE[v] += √D · Σ g over every position holding v (PE is a constant: no gradient)."""
    # x = E[tokens] * √D + PE
    np.add.at(grads[key], tokens, g * math.sqrt(g.shape[-1]))  # (V, D), repeated ids summed


# ---- masks (True = may attend) -------------------------------------------------------------
def padding_mask(tokens, pad_id):
    """(B, L) → (B, 1, 1, L): True where the key is a real token, False at PAD."""
    return (tokens != pad_id)[:, None, None, :]  # (B, 1, 1, L)


def causal_mask(T):
    """(1, 1, T, T): True on and below the diagonal, so query i sees keys 0..i."""
    return np.tril(np.ones((T, T), dtype=bool))[None, None]  # (1, 1, T, T)


# ---- 3.2.1 scaled dot-product attention ------------------------------------------------------
def attention(q, k, v, mask):
    """softmax(q kᵀ / √Dh) v over the keys the mask allows (broadcast to (B, H, Tq, Tk)).
    Masked scores become -inf, so exp gives exactly 0; a query row with no allowed key
    gets p = 0, hence output 0 (never NaN). Returns (output, p)."""
    s = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    s = np.where(mask, s, -np.inf)  # (B, H, Tq, Tk)
    m = s.max(axis=-1, keepdims=True)  # (B, H, Tq, 1)
    m = np.where(np.isfinite(m), m, 0.0)  # fully masked row: subtract nothing
    e = np.exp(s - m)  # (B, H, Tq, Tk), 0 where masked
    z = e.sum(axis=-1, keepdims=True)  # (B, H, Tq, 1)
    p = e / np.where(z > 0, z, 1.0)  # (B, H, Tq, Tk), softmax; a fully masked row stays 0
    return p @ v, p  # (B, H, Tq, Dh), (B, H, Tq, Tk)


def attention_backward(g, q, k, v, p):
    """dv = pᵀ g,  dp = g vᵀ,  ds = p ⊙ (dp − Σ_k dp ⊙ p),  dq = ds k / √Dh,  dk = dsᵀ q / √Dh.
    Masked entries have p = 0, hence ds = 0: no gradient reaches a key a query could not see."""
    # o = p @ v
    dv = p.swapaxes(-1, -2) @ g  # (B, H, Tk, Dh)
    dp = g @ v.swapaxes(-1, -2)  # (B, H, Tq, Tk)
    # p = softmax(s): dx = s * (g - sum(g * s)), never the Jacobian
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # (B, H, Tq, Tk)
    # s = q @ k.T / √Dh
    dq = ds @ k / math.sqrt(q.shape[-1])  # (B, H, Tq, Dh)
    dk = ds.swapaxes(-1, -2) @ q / math.sqrt(q.shape[-1])  # (B, H, Tk, Dh)
    return dq, dk, dv


# ---- 3.2.2 multi-head attention ------------------------------------------------------------
def split_heads(x, H):
    """(B, L, D) → (B, H, L, Dh): head h takes features h·Dh .. (h+1)·Dh − 1."""
    B, L, D = x.shape
    return x.reshape(B, L, H, D // H).transpose(0, 2, 1, 3)  # (B, H, L, Dh)


def merge_heads(x):
    """(B, H, L, Dh) → (B, L, D): concat(head_1, …, head_H), the inverse of split_heads."""
    B, H, L, Dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, L, H * Dh)  # (B, L, D)


def mha(params, name, x, mem, mask, H):
    """MultiHead = concat(head_1..head_H) W_oᵀ + b_o, head_h = attention(x W_qᵀ, mem W_kᵀ, mem W_vᵀ)
    restricted to head h's features. x (B, Tq, D) gives the queries, mem (B, Tk, D) the keys
    and values: mem is x for self-attention, the encoder output for cross-attention."""
    q = split_heads(linear(params, name + ".q_proj", x), H)  # (B, H, Tq, Dh)
    k = split_heads(linear(params, name + ".k_proj", mem), H)  # (B, H, Tk, Dh)
    v = split_heads(linear(params, name + ".v_proj", mem), H)  # (B, H, Tk, Dh)
    o, p = attention(q, k, v, mask)  # (B, H, Tq, Dh), (B, H, Tq, Tk)
    c = merge_heads(o)  # (B, Tq, D)
    y = linear(params, name + ".out_proj", c)  # (B, Tq, D)
    return y, (x, mem, q, k, v, p, c)


def mha_backward(params, name, g, cache, grads):
    """Returns (dx, dmem), the gradients of the queries' input and of the keys'/values' input
    (for self-attention both are the same tensor: the caller adds them)."""
    x, mem, q, k, v, p, c = cache
    # y = linear(c, out_proj)
    dc = linear_backward(params, name + ".out_proj", g, c, grads)  # (B, Tq, D)
    # c = merge_heads(o)
    do = split_heads(dc, q.shape[1])  # (B, H, Tq, Dh)
    # o, p = attention(q, k, v, mask)
    dq, dk, dv = attention_backward(do, q, k, v, p)  # (B, H, Tq|Tk, Dh)
    # q = split_heads(linear(x, q_proj)),  k, v = split_heads(linear(mem, k_proj | v_proj))
    dx = linear_backward(params, name + ".q_proj", merge_heads(dq), x, grads)  # (B, Tq, D)
    dmem = linear_backward(params, name + ".k_proj", merge_heads(dk), mem, grads)  # (B, Tk, D)
    dmem += linear_backward(params, name + ".v_proj", merge_heads(dv), mem, grads)  # (B, Tk, D)
    return dx, dmem


# ---- 3.3 position-wise feed-forward ----------------------------------------------------------
def gelu(h):
    """gelu(h) = ½ h (1 + tanh z),  z = √(2/π)(h + 0.044715 h³)."""
    return 0.5 * h * (1.0 + np.tanh(GELU_C * (h + 0.044715 * h ** 3)))


def gelu_backward(g, h):
    """dh = g ⊙ gelu'(h),  gelu'(h) = ½(1 + tanh z) + ½ h (1 − tanh² z) z',
    z' = √(2/π)(1 + 3·0.044715 h²)."""
    t = np.tanh(GELU_C * (h + 0.044715 * h ** 3))  # tanh z
    return g * (0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * GELU_C * (1.0 + 3 * 0.044715 * h * h))


def ffn(params, name, x, activation):
    """FFN(x) = act(x W1ᵀ + b1) W2ᵀ + b2, D → F → D; act is GELU (tanh form) or ReLU (the paper)."""
    h = linear(params, name + ".linear1", x)  # (B, L, F)
    a = gelu(h) if activation == "gelu" else np.maximum(h, 0)  # (B, L, F)
    y = linear(params, name + ".linear2", a)  # (B, L, D)
    return y, (x, h, a)


def ffn_backward(params, name, g, cache, activation, grads):
    x, h, a = cache
    # y = linear(a, linear2)
    da = linear_backward(params, name + ".linear2", g, a, grads)  # (B, L, F)
    # a = gelu(h) | relu(h):  relu' = [h > 0]
    dh = gelu_backward(da, h) if activation == "gelu" else da * (h > 0)  # (B, L, F)
    # h = linear(x, linear1)
    return linear_backward(params, name + ".linear1", dh, x, grads)  # (B, L, D)


# ---- LayerNorm -------------------------------------------------------------------------------
def layernorm(params, name, x, eps):
    """y = γ ⊙ x̂ + β,  x̂ = (x − mean) · r,  r = 1/√(var + eps), over the last axis (D)."""
    mu = x.mean(axis=-1, keepdims=True)  # (B, L, 1)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # (B, L, 1)
    r = 1.0 / np.sqrt(var + eps)  # (B, L, 1)
    xhat = (x - mu) * r  # (B, L, D)
    y = xhat * params[name + ".weight"] + params[name + ".bias"]  # (B, L, D)
    return y, (xhat, r)


def layernorm_backward(params, name, g, cache, grads):
    """dγ = Σ g ⊙ x̂,  dβ = Σ g;  with ĝ = g ⊙ γ:  dx = r ⊙ (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂))."""
    xhat, r = cache
    D = xhat.shape[-1]
    # y = xhat * γ + β
    grads[name + ".weight"] += (g * xhat).reshape(-1, D).sum(axis=0)  # (D,)
    grads[name + ".bias"] += g.reshape(-1, D).sum(axis=0)  # (D,)
    gh = g * params[name + ".weight"]  # (B, L, D)
    # xhat = (x - mean(x)) / √(var(x) + eps)
    return r * (gh - gh.mean(axis=-1, keepdims=True)
                - xhat * (gh * xhat).mean(axis=-1, keepdims=True))  # (B, L, D)


# ---- 5.4 residual sublayers: post-LN  x ← LN(x + f(x)),  pre-LN  x ← x + f(LN(x)) --------------
def sublayer_in(params, norm, x, cfg):
    """What the sublayer f reads: pre-LN LN(x), post-LN x itself."""
    if cfg["norm_first"]:
        return layernorm(params, norm, x, cfg["layer_norm_eps"])  # (B, L, D)
    return x, None


def sublayer_in_backward(params, norm, dh, cache, grads):
    # h = LN(x) (pre-LN) | x (post-LN)
    return dh if cache is None else layernorm_backward(params, norm, dh, cache, grads)


def sublayer_out(params, norm, x, fx, cfg):
    """The residual sum: pre-LN x + f, post-LN LN(x + f) (the paper: LayerNorm(x + Sublayer(x)))."""
    if cfg["norm_first"]:
        return x + fx, None  # (B, L, D)
    return layernorm(params, norm, x + fx, cfg["layer_norm_eps"])  # (B, L, D)


def sublayer_out_backward(params, norm, g, cache, grads):
    """The gradient of the sum x + f, which both x and f receive."""
    # y = x + f (pre-LN) | LN(x + f) (post-LN)
    return g if cache is None else layernorm_backward(params, norm, g, cache, grads)


# ---- 3.1 encoder and decoder layers ----------------------------------------------------------
def encoder_layer(params, name, x, mask, cfg):
    """Self-attention, then the feed-forward, each a residual sublayer. x (B, S, D)."""
    h1, n1 = sublayer_in(params, name + ".norm1", x, cfg)  # (B, S, D)
    a, c1 = mha(params, name + ".self_attn", h1, h1, mask, cfg["n_heads"])  # (B, S, D)
    x, r1 = sublayer_out(params, name + ".norm1", x, a, cfg)  # (B, S, D)
    h2, n2 = sublayer_in(params, name + ".norm2", x, cfg)  # (B, S, D)
    f, c2 = ffn(params, name + ".ffn", h2, cfg["activation"])  # (B, S, D)
    y, r2 = sublayer_out(params, name + ".norm2", x, f, cfg)  # (B, S, D)
    return y, (n1, c1, r1, n2, c2, r2)


def encoder_layer_backward(params, name, g, cache, cfg, grads):
    n1, c1, r1, n2, c2, r2 = cache
    # y = sublayer_out(x, f)
    g = sublayer_out_backward(params, name + ".norm2", g, r2, grads)  # (B, S, D)
    # f = ffn(h2),  h2 = sublayer_in(x)
    df = ffn_backward(params, name + ".ffn", g, c2, cfg["activation"], grads)  # (B, S, D)
    g = g + sublayer_in_backward(params, name + ".norm2", df, n2, grads)  # (B, S, D)
    # x = sublayer_out(x, a)
    g = sublayer_out_backward(params, name + ".norm1", g, r1, grads)  # (B, S, D)
    # a = mha(h1, h1),  h1 = sublayer_in(x)
    dq, dkv = mha_backward(params, name + ".self_attn", g, c1, grads)  # (B, S, D) each
    return g + sublayer_in_backward(params, name + ".norm1", dq + dkv, n1, grads)  # (B, S, D)


def decoder_layer(params, name, x, memory, tgt_mask, src_mask, cfg):
    """Masked self-attention, cross-attention over the encoder output, the feed-forward.
    x (B, T, D), memory (B, S, D)."""
    H = cfg["n_heads"]
    h1, n1 = sublayer_in(params, name + ".norm1", x, cfg)  # (B, T, D)
    a, c1 = mha(params, name + ".self_attn", h1, h1, tgt_mask, H)  # (B, T, D)
    x, r1 = sublayer_out(params, name + ".norm1", x, a, cfg)  # (B, T, D)
    h2, n2 = sublayer_in(params, name + ".norm2", x, cfg)  # (B, T, D)
    b, c2 = mha(params, name + ".cross_attn", h2, memory, src_mask, H)  # (B, T, D)
    x, r2 = sublayer_out(params, name + ".norm2", x, b, cfg)  # (B, T, D)
    h3, n3 = sublayer_in(params, name + ".norm3", x, cfg)  # (B, T, D)
    f, c3 = ffn(params, name + ".ffn", h3, cfg["activation"])  # (B, T, D)
    y, r3 = sublayer_out(params, name + ".norm3", x, f, cfg)  # (B, T, D)
    return y, (n1, c1, r1, n2, c2, r2, n3, c3, r3)


def decoder_layer_backward(params, name, g, cache, cfg, grads):
    """Returns (dx, dmemory)."""
    n1, c1, r1, n2, c2, r2, n3, c3, r3 = cache
    # y = sublayer_out(x, f),  f = ffn(h3),  h3 = sublayer_in(x)
    g = sublayer_out_backward(params, name + ".norm3", g, r3, grads)  # (B, T, D)
    df = ffn_backward(params, name + ".ffn", g, c3, cfg["activation"], grads)  # (B, T, D)
    g = g + sublayer_in_backward(params, name + ".norm3", df, n3, grads)  # (B, T, D)
    # x = sublayer_out(x, b),  b = mha(h2, memory),  h2 = sublayer_in(x)
    g = sublayer_out_backward(params, name + ".norm2", g, r2, grads)  # (B, T, D)
    dq, dmemory = mha_backward(params, name + ".cross_attn", g, c2, grads)  # (B, T, D), (B, S, D)
    g = g + sublayer_in_backward(params, name + ".norm2", dq, n2, grads)  # (B, T, D)
    # x = sublayer_out(x, a),  a = mha(h1, h1),  h1 = sublayer_in(x)
    g = sublayer_out_backward(params, name + ".norm1", g, r1, grads)  # (B, T, D)
    dq, dkv = mha_backward(params, name + ".self_attn", g, c1, grads)  # (B, T, D) each
    return g + sublayer_in_backward(params, name + ".norm1", dq + dkv, n1, grads), dmemory


# ---- the stacks ------------------------------------------------------------------------------
def encode(params, src, src_mask, cfg):
    """memory = Encoder(√D · E[src] + PE): the layers, then (pre-LN) a final LayerNorm."""
    x = embed(params, "src_embed.weight", src)  # (B, S, D)
    caches = []
    for i in range(cfg["n_encoder_layers"]):
        x, c = encoder_layer(params, f"encoder.layers.{i}", x, src_mask, cfg)  # (B, S, D)
        caches.append(c)
    final = None
    if cfg["norm_first"]:
        x, final = layernorm(params, "encoder.norm", x, cfg["layer_norm_eps"])  # (B, S, D)
    return x, (src, caches, final)


def encode_backward(params, g, cache, cfg, grads):
    src, caches, final = cache
    if final is not None:  # x = LN(x)
        g = layernorm_backward(params, "encoder.norm", g, final, grads)  # (B, S, D)
    for i in reversed(range(cfg["n_encoder_layers"])):  # x = encoder_layer(x)
        g = encoder_layer_backward(params, f"encoder.layers.{i}", g, caches[i], cfg, grads)
    embed_backward("src_embed.weight", src, g, grads)  # x = √D · E[src] + PE


def decode(params, memory, tgt, tgt_mask, src_mask, cfg):
    """logits = Decoder(√D · E[tgt] + PE, memory) W_genᵀ + b_gen: the layers, (pre-LN) a
    final LayerNorm, then the generator (3.4) giving a score per target word."""
    x = embed(params, _tied(cfg, "tgt_embed.weight"), tgt)  # (B, T, D)
    caches = []
    for i in range(cfg["n_decoder_layers"]):
        x, c = decoder_layer(params, f"decoder.layers.{i}", x, memory, tgt_mask, src_mask, cfg)
        caches.append(c)  # x: (B, T, D)
    final = None
    if cfg["norm_first"]:
        x, final = layernorm(params, "decoder.norm", x, cfg["layer_norm_eps"])  # (B, T, D)
    logits = linear(params, "generator", x, weight=_tied(cfg, "generator.weight"))  # (B, T, V)
    return logits, (tgt, caches, final, x)


def decode_backward(params, g, cache, cfg, grads):
    """Returns dmemory, summed over every layer's cross-attention (all read the same memory)."""
    tgt, caches, final, x = cache
    # logits = linear(x, generator)
    g = linear_backward(params, "generator", g, x, grads, _tied(cfg, "generator.weight"))  # (B, T, D)
    if final is not None:  # x = LN(x)
        g = layernorm_backward(params, "decoder.norm", g, final, grads)  # (B, T, D)
    dmemory = 0.0
    for i in reversed(range(cfg["n_decoder_layers"])):  # x = decoder_layer(x, memory)
        g, dm = decoder_layer_backward(params, f"decoder.layers.{i}", g, caches[i], cfg, grads)
        dmemory = dmemory + dm  # (B, S, D)
    embed_backward(_tied(cfg, "tgt_embed.weight"), tgt, g, grads)  # x = √D · E[tgt] + PE
    return dmemory


# ---- the whole model -------------------------------------------------------------------------
def _check_tokens(name, tokens, vocab_size, max_len):
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu" or tokens.ndim != 2 or tokens.size == 0:
        raise ValueError(f"{name} must be a non-empty (B, L) integer array, got {tokens.dtype} "
                         f"{tokens.shape}")
    if tokens.shape[1] > max_len:
        raise ValueError(f"{name} length {tokens.shape[1]} exceeds max_len {max_len}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        bad = tokens[(tokens < 0) | (tokens >= vocab_size)][0]
        raise ValueError(f"token id {bad} in {name} out of range for vocab_size {vocab_size}")
    return tokens


def forward(params, src, tgt_in, config):
    """src (B, S), tgt_in (B, T) token ids → (logits (B, T, V), cache for ``backward``).
    Encoder self-attention and cross-attention skip PAD source keys; decoder self-attention
    skips PAD target keys and the future."""
    cfg = _config(config)
    src = _check_tokens("src", src, cfg["src_vocab_size"], cfg["max_len"])
    tgt_in = _check_tokens("tgt_in", tgt_in, cfg["tgt_vocab_size"], cfg["max_len"])
    if src.shape[0] != tgt_in.shape[0]:
        raise ValueError(f"src and tgt_in batch sizes differ: {src.shape[0]} vs {tgt_in.shape[0]}")
    src_mask = padding_mask(src, cfg["pad_id"])  # (B, 1, 1, S)
    tgt_mask = padding_mask(tgt_in, cfg["pad_id"]) & causal_mask(tgt_in.shape[1])  # (B, 1, T, T)
    memory, enc = encode(params, src, src_mask, cfg)  # (B, S, D)
    logits, dec = decode(params, memory, tgt_in, tgt_mask, src_mask, cfg)  # (B, T, V)
    return logits, {"config": cfg, "encoder": enc, "decoder": dec}


def backward(params, cache, dlogits):
    """dLoss/dlogits (B, T, V) → {key: dLoss/dparams[key]}, the same keys as params."""
    cfg = cache["config"]
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    dmemory = decode_backward(params, dlogits, cache["decoder"], cfg, grads)  # (B, S, D)
    encode_backward(params, dmemory, cache["encoder"], cfg, grads)
    return grads


# ---- loss: cross-entropy over non-PAD targets --------------------------------------------------
def cross_entropy(logits, targets, pad_id=0):
    """loss = (1/n) Σ_valid −log softmax(z)[y], n = number of non-PAD targets, and
    dlogits = (softmax(z) − onehot(y)) / n on valid positions, 0 on PAD ones."""
    V = logits.shape[-1]
    z = logits.reshape(-1, V)  # (N, V), N = B·T
    y = np.asarray(targets).reshape(-1)  # (N,)
    valid = y != pad_id  # (N,)
    n = int(valid.sum())
    if n == 0:
        raise ValueError("every target is PAD: the mean loss is undefined")
    if ((y < 0) | (y >= V)).any():
        raise ValueError(f"target id {y[(y < 0) | (y >= V)][0]} out of range for {V} classes")
    shifted = z - z.max(axis=-1, keepdims=True)  # (N, V): exp cannot overflow
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (N, V), log softmax
    rows, y_safe = np.arange(y.size), np.where(valid, y, 0)
    loss = -logp[rows, y_safe][valid].sum() / n
    # loss = -(1/n) Σ_valid logp[y]
    d = np.exp(logp)  # (N, V), softmax
    d[rows, y_safe] -= 1.0  # softmax − onehot(y)
    d = np.where(valid[:, None], d / n, 0.0)  # (N, V)
    return float(loss), d.reshape(logits.shape)  # (B, T, V)


# ---- 5.3 optimizer: Adam ------------------------------------------------------------------------
def adam_step(params, grads, state, lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0):
    """One Adam step, in place on ``params`` and ``state`` (pass {} the first time), t from 1:
    g ← grad + wd·p,  m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
    p ← p − lr · m̂ / (√v̂ + ε),  m̂ = m / (1−β₁ᵗ),  v̂ = v / (1−β₂ᵗ)."""
    b1, b2 = betas
    if not state:
        state.update(t=0, m={k: np.zeros_like(p) for k, p in params.items()},
                     v={k: np.zeros_like(p) for k, p in params.items()})
    state["t"] += 1
    t = state["t"]
    for k, p in params.items():
        g = grads[k] + weight_decay * p if weight_decay else grads[k]
        state["m"][k] = b1 * state["m"][k] + (1 - b1) * g
        state["v"][k] = b2 * state["v"][k] + (1 - b2) * g * g
        m_hat = state["m"][k] / (1 - b1 ** t)
        v_hat = state["v"][k] / (1 - b2 ** t)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)


# ---- greedy decoding ---------------------------------------------------------------------------
def greedy_decode(params, src, config, max_len, bos_id=1, eos_id=2):
    """y_0 = BOS, y_{t+1} = argmax p(· | y_0..y_t, src). Re-runs the decoder over the whole
    prefix each step (no KV cache), masking only the future. Returns (B, ≤max_len) int64
    tokens without the BOS; each row ends at its EOS, PAD after; stops once all rows ended."""
    cfg = _config(config)
    src = _check_tokens("src", src, cfg["src_vocab_size"], cfg["max_len"])
    if not 1 <= max_len <= cfg["max_len"]:
        raise ValueError(f"max_len must be in [1, {cfg['max_len']}], got {max_len}")
    src_mask = padding_mask(src, cfg["pad_id"])  # (B, 1, 1, S)
    memory, _ = encode(params, src, src_mask, cfg)  # (B, S, D)
    B = src.shape[0]
    ys = np.full((B, 1), bos_id, dtype=np.int64)  # (B, t + 1): BOS and the tokens so far
    done = np.zeros(B, dtype=bool)  # (B,)
    for t in range(max_len):
        logits, _ = decode(params, memory, ys, causal_mask(t + 1), src_mask, cfg)  # (B, t+1, V)
        nxt = np.where(done, cfg["pad_id"], logits[:, -1].argmax(axis=-1))  # (B,)
        ys = np.concatenate([ys, nxt[:, None]], axis=1)  # (B, t + 2)
        done |= nxt == eos_id
        if done.all():
            break
    return ys[:, 1:]  # (B, ≤max_len)


# ---- training on the copy task -----------------------------------------------------------------
PAD, BOS, EOS = 0, 1, 2


def copy_pairs(rng, n, min_symbols, max_symbols, n_symbols, exclude=frozenset()):
    """n random sequences (lengths min..max_symbols, symbols 3..3+n_symbols−1), none in exclude:
    src = x + PAD, tgt_in = BOS x + PAD, tgt_out = x EOS + PAD."""
    lengths = rng.integers(min_symbols, max_symbols + 1, size=n)  # (n,)
    x = rng.integers(3, 3 + n_symbols, size=(n, max_symbols))  # (n, L)
    x = np.where(np.arange(max_symbols) < lengths[:, None], x, PAD)  # (n, L)
    for i in range(n):  # redraw a held-out sequence (data only: the model has no such loop)
        while tuple(x[i]) in exclude:
            lengths[i] = rng.integers(min_symbols, max_symbols + 1)
            row = rng.integers(3, 3 + n_symbols, size=max_symbols)  # (L,)
            x[i] = np.where(np.arange(max_symbols) < lengths[i], row, PAD)
    padded = np.concatenate([x, np.full((n, 1), PAD)], axis=1)  # (n, L + 1)
    tgt_in = np.concatenate([np.full((n, 1), BOS), x], axis=1)  # (n, L + 1)
    tgt_out = np.where(np.arange(max_symbols + 1) == lengths[:, None], EOS, padded)  # (n, L + 1)
    return x, tgt_in, tgt_out


def exact_match(params, cfg, src, tgt_out):
    """Fraction of rows whose greedy output equals tgt_out (up to and including EOS)."""
    out = greedy_decode(params, src, cfg, max_len=tgt_out.shape[1])  # (n, ≤L + 1)
    pred = np.full_like(tgt_out, PAD)
    pred[:, : out.shape[1]] = out
    return float((pred == tgt_out).all(axis=1).mean()), pred


def train_copy(steps=600, batch_size=64, lr=3e-3, warmup=50, min_symbols=3, max_symbols=8,
               n_symbols=10, n_held_out=500, eval_every=50, target=0.99, seed=0, log=print):
    """Train from random weights with Adam until held-out exact match ≥ target (or ``steps``).
    Returns {"steps", "accuracy", "seconds", "losses", "examples"}. Sequences have at least 3
    symbols, so the held-out ones are a small part of each length's sequences (there are
    only 10 of length 1: a held-out set would take them all, and training would never see one)."""
    cfg = dict(src_vocab_size=3 + n_symbols, tgt_vocab_size=3 + n_symbols, d_model=64, n_heads=4,
               d_ff=128, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0,
               max_len=max_symbols + 2, activation="gelu", norm_first=True, layer_norm_eps=1e-5,
               pad_id=PAD, tie_embeddings=True, seed=seed)
    rng = np.random.default_rng(seed)
    held_src, _, held_out = copy_pairs(rng, n_held_out, min_symbols, max_symbols, n_symbols)
    exclude = {tuple(row) for row in held_src}  # never trained on
    params, state = init_params(cfg, seed), {}
    start, acc, step, losses = time.perf_counter(), 0.0, 0, []
    while step < steps and acc < target:
        step += 1
        src, tgt_in, tgt_out = copy_pairs(rng, batch_size, min_symbols, max_symbols, n_symbols,
                                          exclude)
        logits, cache = forward(params, src, tgt_in, cfg)  # (B, T, V)
        loss, dlogits = cross_entropy(logits, tgt_out, PAD)
        losses.append(loss)
        grads = backward(params, cache, dlogits)
        # lr: linear warm-up, then linear decay to 0 at ``steps``
        decay = min(step / warmup, (steps - step + 1) / max(steps - warmup + 1, 1), 1.0)
        adam_step(params, grads, state, lr * decay)
        if step % eval_every == 0 or step == steps:
            acc, pred = exact_match(params, cfg, held_src, held_out)
            log(f"step {step:4d}  loss {loss:.4f}  held-out exact match {acc:.1%}")
    examples = [(held_src[i][held_src[i] != PAD].tolist(), pred[i][pred[i] != PAD].tolist())
                for i in range(3)]
    return {"steps": step, "accuracy": acc, "seconds": time.perf_counter() - start,
            "losses": losses, "examples": examples}


if __name__ == "__main__":
    result = train_copy()
    for src, out in result["examples"]:
        print(f"  {src} → {out}")
    print(f"copy task: {result['accuracy']:.1%} exact match on 500 held-out sequences after "
          f"{result['steps']} steps, {result['seconds']:.1f} s")
