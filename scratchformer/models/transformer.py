"""The encoder–decoder Transformer of "Attention Is All You Need", forward and backward.

Notation: B batch, S source length, T target length, D d_model, V vocabulary.

    memory = Encoder(√D · src_embed(src) + PE)            (B, S, D)
    logits = generator(Decoder(√D · tgt_embed(tgt) + PE, memory))   (B, T, V)

Each sublayer is wrapped in a residual connection and a LayerNorm, either after the sum
(post-LN, the paper: x = norm(x + dropout(sublayer(x)))) or before the sublayer
(pre-LN: x = x + dropout(sublayer(norm(x))), and the stack ends with a final norm).
``backward`` of every class below walks its ``forward`` in reverse.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..core.attention import KVCache, MultiHeadAttention, attention_maps
from ..core.checks import check_bool, check_int
from ..core.functional import causal_mask, padding_mask
from ..core.layers import (Dropout, Embedding, FeedForward, LayerNorm, Linear, PositionalEncoding,
                           default_rng, embed_tokens, embed_tokens_backward)
from ..core.module import Module, ModuleList
from ..core.tokens import check_tokens
from .sizes import check_fits_memory, config_field, validate_sizes


@dataclass
class TransformerConfig:
    """Sizes and switches of the encoder–decoder; invalid values raise ValueError naming the field."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1
    max_len: int = 512
    activation: str = "gelu"
    norm_first: bool = False
    layer_norm_eps: float = 1e-5
    pad_id: int = 0
    tie_embeddings: bool = False
    seed: int = 0

    def __post_init__(self):
        validate_sizes(self, ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff",
                              "n_encoder_layers", "n_decoder_layers", "max_len"))
        for name in ("norm_first", "tie_embeddings"):
            setattr(self, name, check_bool(name, getattr(self, name)))
        if self.tie_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"tie_embeddings requires src_vocab_size == tgt_vocab_size, got "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)  # a token id in both vocabularies
        self.pad_id = config_field(check_int, "pad_id", self.pad_id, 0, vocab - 1)
        check_fits_memory(self, self.param_shapes())

    def to_dict(self) -> dict:
        return asdict(self)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{state_dict key: shape}`` of the model this config builds, computed from the
        sizes alone (no array is made): what a checkpoint's tensors are checked against."""
        D, F = self.d_model, self.d_ff
        shapes = {"src_embed.weight": (self.src_vocab_size, D)}
        if not self.tie_embeddings:
            shapes["tgt_embed.weight"] = (self.tgt_vocab_size, D)
        for stack, n, subs in (("encoder", self.n_encoder_layers, ("self_attn",)),
                               ("decoder", self.n_decoder_layers, ("self_attn", "cross_attn"))):
            for i in range(n):
                shapes.update(layer_shapes(f"{stack}.layers.{i}", D, F, subs))
            if self.norm_first:
                shapes.update({f"{stack}.norm.weight": (D,), f"{stack}.norm.bias": (D,)})
        if not self.tie_embeddings:  # tied: stored once, as src_embed.weight
            shapes["generator.weight"] = (self.tgt_vocab_size, D)
        shapes["generator.bias"] = (self.tgt_vocab_size,)
        return shapes


def layer_shapes(prefix: str, D: int, F: int, attentions: tuple[str, ...]) -> dict:
    """Parameter shapes of one Encoder/DecoderLayer: its attentions, ffn and norms."""
    shapes = {}
    for attn in attentions:
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{prefix}.{attn}.{proj}.weight"] = (D, D)
            shapes[f"{prefix}.{attn}.{proj}.bias"] = (D,)
    shapes.update({f"{prefix}.ffn.linear1.weight": (F, D), f"{prefix}.ffn.linear1.bias": (F,),
                   f"{prefix}.ffn.linear2.weight": (D, F), f"{prefix}.ffn.linear2.bias": (D,)})
    for j in range(1, len(attentions) + 2):
        shapes.update({f"{prefix}.norm{j}.weight": (D,), f"{prefix}.norm{j}.bias": (D,)})
    return shapes


class EncoderLayer(Module):
    """Self-attention then feed-forward, each with residual + LayerNorm (post- or pre-LN).

    Also the block of the decoder-only GPT (with a causal mask and an optional KV cache).
    """

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, activation="gelu", norm_first=False,
                 layer_norm_eps=1e-5, rng=None, dtype=np.float32, dropout_rng=None):
        rng = default_rng(rng)
        drng = dropout_rng if dropout_rng is not None else rng
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, rng, dtype, drng)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout, rng, dtype, drng)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, dtype)
        self.dropout1, self.dropout2 = Dropout(dropout, drng), Dropout(dropout, drng)
        self.norm_first = norm_first

    def forward(self, x, mask=None, cache: KVCache | None = None):
        """x (B, T, D) → (B, T, D); mask broadcastable to (B, H, T, T)."""
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), mask=mask, cache=cache))
            return x + self.dropout2(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=mask, cache=cache)))
        return self.norm2(x + self.dropout2(self.ffn(x)))

    def backward(self, g):
        if self.norm_first:  # y = x1 + f(norm2(x1)),  x1 = x + a(norm1(x))
            g = g + self.norm2.backward(self.ffn.backward(self.dropout2.backward(g)))
            return g + self.norm1.backward(self.self_attn.backward(self.dropout1.backward(g)))
        g = self.norm2.backward(g)  # y = norm2(x1 + f(x1)),  x1 = norm1(x + a(x))
        g = g + self.ffn.backward(self.dropout2.backward(g))
        g = self.norm1.backward(g)
        return g + self.self_attn.backward(self.dropout1.backward(g))


class DecoderLayer(Module):
    """Masked self-attention, cross-attention over the encoder memory, feed-forward;
    norm1 / norm2 / norm3 belong to them in that order. ``backward`` returns (dx, dmemory)."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, activation="gelu", norm_first=False,
                 layer_norm_eps=1e-5, rng=None, dtype=np.float32, dropout_rng=None):
        rng = default_rng(rng)
        drng = dropout_rng if dropout_rng is not None else rng
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, rng, dtype, drng)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout, rng, dtype, drng)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout, rng, dtype, drng)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, dtype)
        self.norm3 = LayerNorm(d_model, layer_norm_eps, dtype)
        self.dropout1, self.dropout2, self.dropout3 = (Dropout(dropout, drng) for _ in range(3))
        self.norm_first = norm_first

    def forward(self, x, memory, tgt_mask=None, memory_mask=None, cache=None):
        """x (B, T, D), memory (B, S, D) → (B, T, D). cache: (self KVCache, cross KVCache)."""
        sc, cc = cache if cache is not None else (None, None)
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), mask=tgt_mask, cache=sc))
            x = x + self.dropout2(self.cross_attn(self.norm2(x), memory, memory_mask, cc))
            return x + self.dropout3(self.ffn(self.norm3(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask, cache=sc)))
        x = self.norm2(x + self.dropout2(self.cross_attn(x, memory, memory_mask, cc)))
        return self.norm3(x + self.dropout3(self.ffn(x)))

    def backward(self, g):
        if self.norm_first:
            g = g + self.norm3.backward(self.ffn.backward(self.dropout3.backward(g)))
            dx, dmem = self.cross_attn.backward(self.dropout2.backward(g))
            g = g + self.norm2.backward(dx)
            return g + self.norm1.backward(self.self_attn.backward(self.dropout1.backward(g))), dmem
        g = self.norm3.backward(g)
        g = g + self.ffn.backward(self.dropout3.backward(g))
        g = self.norm2.backward(g)
        dx, dmem = self.cross_attn.backward(self.dropout2.backward(g))
        g = self.norm1.backward(g + dx)
        return g + self.self_attn.backward(self.dropout1.backward(g)), dmem


class Encoder(Module):
    """A stack of EncoderLayers (+ a final LayerNorm ``norm`` when pre-LN)."""

    def __init__(self, n_layers, d_model, norm_first=False, layer_norm_eps=1e-5, dtype=np.float32,
                 **layer_kwargs):
        self.layers = ModuleList(EncoderLayer(d_model, norm_first=norm_first, dtype=dtype,
                                              layer_norm_eps=layer_norm_eps, **layer_kwargs)
                                 for _ in range(n_layers))
        self.norm = LayerNorm(d_model, layer_norm_eps, dtype) if norm_first else None

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) if self.norm is not None else x

    def backward(self, g):
        if self.norm is not None:
            g = self.norm.backward(g)
        for layer in reversed(self.layers):
            g = layer.backward(g)
        return g


class Decoder(Module):
    """A stack of DecoderLayers (+ a final LayerNorm ``norm`` when pre-LN).
    ``backward`` returns (dx, dmemory), dmemory summed over the layers' cross-attention."""

    def __init__(self, n_layers, d_model, norm_first=False, layer_norm_eps=1e-5, dtype=np.float32,
                 **layer_kwargs):
        self.layers = ModuleList(DecoderLayer(d_model, norm_first=norm_first, dtype=dtype,
                                              layer_norm_eps=layer_norm_eps, **layer_kwargs)
                                 for _ in range(n_layers))
        self.norm = LayerNorm(d_model, layer_norm_eps, dtype) if norm_first else None

    def forward(self, x, memory, tgt_mask=None, memory_mask=None, cache=None):
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask, memory_mask, None if cache is None else cache[i])
        return self.norm(x) if self.norm is not None else x

    def backward(self, g):
        if self.norm is not None:
            g = self.norm.backward(g)
        dmemory = 0.0
        for layer in reversed(self.layers):
            g, dm = layer.backward(g)
            dmemory = dmemory + dm
        return g, dmemory


class DecoderCache:
    """Per decoder layer (self-attention KVCache, cross-attention KVCache), plus how many
    target positions were decoded (``pos``, the next position's index)."""

    def __init__(self, n_layers: int):
        self.layers = [(KVCache(), KVCache()) for _ in range(n_layers)]
        self.pos = 0

    def __getitem__(self, i):
        return self.layers[i]

    def reorder(self, idx: np.ndarray) -> None:
        """Keep batch rows ``idx`` (in that order) of every cache — for beam search."""
        for sc, cc in self.layers:
            sc.reorder(idx)
            cc.reorder(idx)


class Transformer(Module):
    """Encoder–decoder Transformer: ``model(src, tgt) -> logits (B, T, V_tgt)``.

    Masks are boolean, True = may attend; left out, they are built from ``pad_id``
    (and causality for the decoder). ``backward(dlogits)`` back-propagates through the
    last forward and adds into every parameter's ``.grad``.
    """

    def __init__(self, cfg: TransformerConfig):
        self.config = cfg
        rng = np.random.default_rng(cfg.seed)  # initial weights
        self.rng = np.random.default_rng([cfg.seed, 1])  # dropout masks (saved in checkpoints)
        D = cfg.d_model
        self.src_embed = Embedding(cfg.src_vocab_size, D, rng=rng, name="src")
        self.tgt_embed = Embedding(cfg.tgt_vocab_size, D, rng=rng, name="tgt")
        self.pos = PositionalEncoding(D, cfg.max_len)
        self.src_dropout, self.tgt_dropout = Dropout(cfg.dropout, self.rng), Dropout(cfg.dropout, self.rng)
        kw = dict(n_heads=cfg.n_heads, d_ff=cfg.d_ff, dropout=cfg.dropout, activation=cfg.activation,
                  norm_first=cfg.norm_first, layer_norm_eps=cfg.layer_norm_eps, rng=rng,
                  dropout_rng=self.rng)
        self.encoder = Encoder(cfg.n_encoder_layers, D, **kw)
        self.decoder = Decoder(cfg.n_decoder_layers, D, **kw)
        self.generator = Linear(D, cfg.tgt_vocab_size, rng=rng)
        if cfg.tie_embeddings:  # one Parameter, stored once as src_embed.weight
            self.tgt_embed.weight = self.src_embed.weight
            self.generator.weight = self.src_embed.weight
        self._saved = None

    # ---- forward ----------------------------------------------------------------------
    def encode(self, src, src_mask=None):
        """src (B, S) → memory (B, S, D)."""
        src = check_tokens("src", src, self.config.max_len)
        return self._encode(src, src_mask)

    def decode(self, memory, tgt, src_mask=None, tgt_mask=None):
        """memory (B, S, D), tgt (B, T) → logits (B, T, V). src_mask masks the memory keys."""
        tgt = check_tokens("tgt", tgt, self.config.max_len)
        self._check_memory(memory, tgt)
        return self._decode(memory, tgt, src_mask, tgt_mask)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None):
        src = check_tokens("src", src, self.config.max_len)
        tgt = check_tokens("tgt", tgt, self.config.max_len)
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt batch sizes differ: {src.shape[0]} vs {tgt.shape[0]}")
        if src_mask is None:
            src_mask = padding_mask(src, self.config.pad_id)
        logits = self._decode(self._encode(src, src_mask), tgt, src_mask, tgt_mask)
        self._saved = "forward"
        return logits

    def _encode(self, src, src_mask):  # src checked by the caller
        if src_mask is None:
            src_mask = padding_mask(src, self.config.pad_id)  # (B, 1, 1, S)
        return self.encoder(embed_tokens(self.src_embed, self.pos, self.src_dropout, src), src_mask)

    def _decode(self, memory, tgt, src_mask, tgt_mask):  # tgt and memory checked by the caller
        if tgt_mask is None:
            tgt_mask = padding_mask(tgt, self.config.pad_id) & causal_mask(tgt.shape[1])  # (B, 1, T, T)
        x = embed_tokens(self.tgt_embed, self.pos, self.tgt_dropout, tgt)  # (B, T, D)
        return self.generator(self.decoder(x, memory, tgt_mask, src_mask))  # (B, T, V)

    def _check_memory(self, memory, tgt):
        memory = np.asarray(memory)
        if memory.ndim != 3 or memory.shape[0] != tgt.shape[0] or memory.shape[2] != self.config.d_model:
            raise ValueError(f"memory must have shape ({tgt.shape[0]}, S, {self.config.d_model}), "
                             f"got {memory.shape}")

    # ---- backward ---------------------------------------------------------------------
    def backward(self, dlogits: np.ndarray) -> None:
        """Back-propagate dL/dlogits (B, T, V) through decoder and encoder into every .grad."""
        if self._saved != "forward":
            raise RuntimeError("backward() needs a preceding model(src, tgt) forward pass")
        dy = self.generator.backward(dlogits)  # (B, T, D)
        dx, dmemory = self.decoder.backward(dy)
        embed_tokens_backward(self.tgt_embed, self.pos, self.tgt_dropout, dx)
        dsrc = self.encoder.backward(dmemory)  # (B, S, D)
        embed_tokens_backward(self.src_embed, self.pos, self.src_dropout, dsrc)
        self._saved = None

    # ---- incremental decoding -----------------------------------------------------------
    def init_cache(self) -> DecoderCache:
        """An empty KV cache for ``decode_step``."""
        return DecoderCache(len(self.decoder.layers))

    def decode_step(self, memory, tgt_new, cache: DecoderCache, src_mask=None):
        """Logits (B, t, V) for the t new target tokens ``tgt_new`` (B, t), reusing ``cache``.

        The new tokens sit at positions cache.pos .. cache.pos + t - 1; keys and values of
        earlier positions come from the cache, the encoder memory's from its cross cache.
        Equals the last t rows of ``decode(memory, all tokens so far)``.
        """
        cfg = self.config
        tgt_new = check_tokens("tgt", tgt_new)
        t = tgt_new.shape[1]
        if cache.pos + t > cfg.max_len:
            raise ValueError(f"decoding past max_len {cfg.max_len} (position {cache.pos + t - 1})")
        self._check_memory(memory, tgt_new)
        mask = causal_mask(t, offset=cache.pos) if t > 1 else None  # (1, 1, t, pos + t)
        x = embed_tokens(self.tgt_embed, self.pos, self.tgt_dropout, tgt_new, start=cache.pos)
        y = self.decoder(x, memory, mask, src_mask, cache=cache)
        cache.pos += t
        return self.generator(y)

    # ---- inspection ---------------------------------------------------------------------
    def attention_maps(self) -> dict[str, np.ndarray]:
        """{module name: attention weights (B, H, Tq, Tk)} from the last forward pass."""
        return attention_maps(self)
