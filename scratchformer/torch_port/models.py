"""The NumPy models rebuilt from ``torch.nn`` blocks: same architecture, same parameter names.

Notation: B batch, S source length, T target length, D d_model, H heads, Dh = D / H,
V vocabulary, Tq / Tk query / key lengths.

Every module mirrors its NumPy namesake in ``scratchformer.core`` / ``scratchformer.models``
and registers its sub-modules under the same names, so ``state_dict()`` keys are exactly the
NumPy state_dict keys of docs/architecture.md (``encoder.layers.0.self_attn.q_proj.weight``, ...) and weights move
between the two unchanged. The math is the same line for line:

    x = dropout(√D · embed(tokens) + PE)                       PE: the NumPy sinusoid table
    post-LN:  x = norm(x + dropout(sublayer(x)))
    pre-LN:   x = x + dropout(sublayer(norm(x))),  and a final norm per stack
    attention: softmax(q kᵀ / √Dh, masked) v  via F.scaled_dot_product_attention

Masks are boolean, **True = may attend** (SDPA's own convention for boolean masks). A query
row with no allowed key gives zeros, as in NumPy, on every SDPA backend: such rows are
opened up before SDPA (so no backend sees an all-masked row and returns NaN) and their
output is zeroed after.

``TorchTransformer(cfg)`` / ``TorchGPT(cfg)`` start from exactly the weights the NumPy
``Transformer(cfg)`` / ``GPT(cfg)`` start from (copied from a freshly built NumPy model),
so one seed gives one initial model in both worlds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.layers import sinusoids
from ..models.gpt import GPT, GPTConfig, context_start
from ..models.transformer import Transformer, TransformerConfig

__all__ = ["TorchTransformer", "TorchGPT", "MultiHeadAttention", "FeedForward", "EncoderLayer",
           "DecoderLayer", "Encoder", "Decoder", "check_tokens", "as_mask", "padding_mask",
           "causal_mask"]


# ---- inputs ---------------------------------------------------------------------------
def check_tokens(name: str, tokens, vocab_size: int, max_len: int, device) -> torch.Tensor:
    """A (B, T) int64 tensor on ``device`` from an array or tensor; ids checked against V.

    Arrays are checked on the host before the copy; a tensor costs one ``aminmax`` (one
    device sync on a GPU).
    """
    is_tensor = isinstance(tokens, torch.Tensor)
    if not is_tensor:
        tokens = np.asarray(tokens)
        if tokens.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array of token ids, got dtype {tokens.dtype}")
    elif tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {tokens.dtype}")
    shape = tuple(tokens.shape)
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (B, T), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {shape}")
    if shape[1] > max_len:
        raise ValueError(f"{name} length {shape[1]} exceeds max_len {max_len}")
    lo, hi = (int(v) for v in torch.aminmax(tokens)) if is_tensor else (tokens.min(), tokens.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"token id {lo if lo < 0 else hi} out of range for vocab_size {vocab_size} ({name})")
    if not is_tensor:
        tokens = torch.from_numpy(tokens.astype(np.int64, copy=False))
    return tokens.to(device=device, dtype=torch.long)


def as_mask(mask, device) -> torch.Tensor | None:
    """A boolean mask (True = may attend) as a 4-D bool tensor on ``device``."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        mask = torch.from_numpy(np.asarray(mask))
    if mask.dtype != torch.bool:
        raise TypeError(f"attention mask must be boolean (True = may attend), got dtype {mask.dtype}")
    if mask.ndim != 4:
        raise ValueError(f"attention mask must be 4-D (B, H|1, Tq|1, Tk), got shape {tuple(mask.shape)}")
    return mask.to(device)


def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, T) → (B, 1, 1, T), True where the key is not PAD."""
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(T: int, device=None) -> torch.Tensor:
    """(1, 1, T, T), True on and below the diagonal: query i sees keys 0..i."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()[None, None]


def sinusoid_table(d_model: int, max_len: int) -> torch.Tensor:
    """The NumPy sinusoid table (max_len, D) itself (``core.layers.sinusoids``), so both
    add identical numbers."""
    return torch.from_numpy(sinusoids(d_model, max_len).astype(np.float32))


# ---- layers -------------------------------------------------------------------------------
class MultiHeadAttention(nn.Module):
    """``mha(x, memory=None, mask=None)``: queries from x (B, Tq, D), keys and values from
    ``memory`` (B, Tk, D) or from x; mask broadcastable to (B, H, Tq, Tk) → (B, Tq, D).

    q_proj, k_proj, v_proj, out_proj are separate D → D Linears, as in the NumPy model.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.d_model, self.n_heads, self.head_dim, self.dropout = d_model, n_heads, d_model // n_heads, dropout

    def _heads(self, y: torch.Tensor) -> torch.Tensor:
        B, T, _ = y.shape
        return y.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)

    def forward(self, x, memory=None, mask=None, is_causal: bool = False):
        kv = x if memory is None else memory
        q = self._heads(self.q_proj(x))  # (B, H, Tq, Dh)
        k = self._heads(self.k_proj(kv))  # (B, H, Tk, Dh)
        v = self._heads(self.v_proj(kv))  # (B, H, Tk, Dh)
        p = self.dropout if self.training else 0.0
        if mask is None:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=is_causal)
        else:
            alive = mask.any(dim=-1, keepdim=True)  # (B|1, H|1, Tq|1, 1): row has a key
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~alive, dropout_p=p)
            o = o * alive  # fully masked rows → 0, as in NumPy
        B, H, Tq, Dh = o.shape
        return self.out_proj(o.transpose(1, 2).reshape(B, Tq, H * Dh))  # (B, Tq, D)


class FeedForward(nn.Module):
    """linear2(dropout(act(linear1(x)))), D → d_ff → D; act is tanh-GELU or ReLU."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = activation

    def forward(self, x):
        h = self.linear1(x)  # (B, T, F)
        h = F.gelu(h, approximate="tanh") if self.activation == "gelu" else F.relu(h)
        return self.linear2(self.dropout(h))  # (B, T, D)


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, post-LN or pre-LN; also the GPT block (causal)."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, activation="gelu", norm_first=False,
                 layer_norm_eps=1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x, mask=None, is_causal=False):
        """x (B, T, D) → (B, T, D)."""
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), mask=mask, is_causal=is_causal))
            return x + self.dropout2(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=mask, is_causal=is_causal)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention (norm1), cross-attention over memory (norm2), FFN (norm3)."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.1, activation="gelu", norm_first=False,
                 layer_norm_eps=1e-5):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.norm_first = norm_first

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        """x (B, T, D), memory (B, S, D) → (B, T, D)."""
        if self.norm_first:
            x = x + self.dropout1(self.self_attn(self.norm1(x), mask=tgt_mask))
            x = x + self.dropout2(self.cross_attn(self.norm2(x), memory, memory_mask))
            return x + self.dropout3(self.ffn(self.norm3(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask)))
        x = self.norm2(x + self.dropout2(self.cross_attn(x, memory, memory_mask)))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class Encoder(nn.Module):
    """``layers`` (+ a final LayerNorm ``norm`` when pre-LN; no ``norm`` key when post-LN)."""

    def __init__(self, n_layers, d_model, norm_first=False, layer_norm_eps=1e-5, **kw):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, norm_first=norm_first,
                                                 layer_norm_eps=layer_norm_eps, **kw)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if norm_first else None

    def forward(self, x, mask=None):
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) if self.norm is not None else x


class Decoder(nn.Module):
    """``layers`` (+ a final LayerNorm ``norm`` when pre-LN)."""

    def __init__(self, n_layers, d_model, norm_first=False, layer_norm_eps=1e-5, **kw):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, norm_first=norm_first,
                                                 layer_norm_eps=layer_norm_eps, **kw)
                                    for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps) if norm_first else None

    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, memory_mask)
        return self.norm(x) if self.norm is not None else x


# ---- tied weights and state dicts -----------------------------------------------------------
class _TiedStateDict:
    """Mixin: tied aliases (one Parameter reachable under several names) appear in
    ``state_dict()`` once, under the canonical NumPy name, and are restored on load.

    ``_aliases`` maps alias key → canonical key (e.g. ``generator.weight`` → ``src_embed.weight``).
    The hooks act at any prefix, so a model wrapped in DDP saves the same keys (with ``module.``).
    """

    _aliases: dict[str, str] = {}

    def _install_tie_hooks(self):
        def drop(module, state, prefix, local_metadata):
            for alias in module._aliases:
                state.pop(prefix + alias, None)
            return state

        def restore(state, prefix, *args, **kwargs):
            for alias, canon in self._aliases.items():
                if prefix + canon in state and prefix + alias not in state:
                    state[prefix + alias] = state[prefix + canon]

        self._register_state_dict_hook(drop)
        self._register_load_state_dict_pre_hook(restore)


def _init_from_numpy(torch_model: nn.Module, np_model) -> None:
    """Copy the NumPy model's (seeded) initial weights into the twin."""
    state = {k: torch.from_numpy(v) for k, v in np_model.state_dict().items()}
    torch_model.load_state_dict(state, strict=True)


def _embed(model, embed: nn.Embedding, tokens: torch.Tensor, dropout: nn.Dropout, start: int = 0):
    """dropout(√D · embed(tokens) + PE[start:start+T]) → (B, T, D)."""
    T = tokens.shape[1]
    x = embed(tokens) * math.sqrt(model.config.d_model)  # (B, T, D)
    return dropout(x + model.pe[start:start + T])


# ---- the encoder–decoder ----------------------------------------------------------------------
class TorchTransformer(_TiedStateDict, nn.Module):
    """The encoder–decoder of ``scratchformer.Transformer`` in torch.nn:
    ``model(src, tgt, src_mask=None, tgt_mask=None) -> logits (B, T, V_tgt)``.

    Inputs may be NumPy arrays or tensors; they are moved to the model's device. Masks left
    out are built from ``pad_id`` (and causality for the decoder), as in NumPy.
    """

    def __init__(self, cfg: TransformerConfig | dict, init_from_numpy: bool = True):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = TransformerConfig(**cfg)
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(f"cfg must be a TransformerConfig or dict, got {type(cfg).__name__}")
        self.config = cfg
        D = cfg.d_model
        self.src_embed = nn.Embedding(cfg.src_vocab_size, D)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, D)
        self.register_buffer("pe", sinusoid_table(D, cfg.max_len), persistent=False)  # (max_len, D)
        self.src_dropout, self.tgt_dropout = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)
        kw = dict(n_heads=cfg.n_heads, d_ff=cfg.d_ff, dropout=cfg.dropout, activation=cfg.activation,
                  norm_first=cfg.norm_first, layer_norm_eps=cfg.layer_norm_eps)
        self.encoder = Encoder(cfg.n_encoder_layers, D, **kw)
        self.decoder = Decoder(cfg.n_decoder_layers, D, **kw)
        self.generator = nn.Linear(D, cfg.tgt_vocab_size)
        self._aliases = {}
        if cfg.tie_embeddings:  # one Parameter, stored once as src_embed.weight
            self.tgt_embed.weight = self.src_embed.weight
            self.generator.weight = self.src_embed.weight
            self._aliases = {"tgt_embed.weight": "src_embed.weight",
                             "generator.weight": "src_embed.weight"}
        self._install_tie_hooks()
        if init_from_numpy:
            _init_from_numpy(self, Transformer(cfg))

    @property
    def device(self) -> torch.device:
        return self.generator.bias.device

    def encode(self, src, src_mask=None) -> torch.Tensor:
        """src (B, S) → memory (B, S, D)."""
        cfg = self.config
        src = check_tokens("src", src, cfg.src_vocab_size, cfg.max_len, self.device)
        return self._encode(src, as_mask(src_mask, self.device))

    def decode(self, memory, tgt, src_mask=None, tgt_mask=None) -> torch.Tensor:
        """memory (B, S, D), tgt (B, T) → logits (B, T, V); src_mask masks memory keys."""
        cfg = self.config
        tgt = check_tokens("tgt", tgt, cfg.tgt_vocab_size, cfg.max_len, self.device)
        if memory.ndim != 3 or memory.shape[0] != tgt.shape[0] or memory.shape[2] != cfg.d_model:
            raise ValueError(f"memory must have shape ({tgt.shape[0]}, S, {cfg.d_model}), "
                             f"got {tuple(memory.shape)}")
        return self._decode(memory, tgt, as_mask(src_mask, self.device), as_mask(tgt_mask, self.device))

    def forward(self, src, tgt, src_mask=None, tgt_mask=None) -> torch.Tensor:
        cfg = self.config
        src = check_tokens("src", src, cfg.src_vocab_size, cfg.max_len, self.device)
        tgt = check_tokens("tgt", tgt, cfg.tgt_vocab_size, cfg.max_len, self.device)
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt batch sizes differ: {src.shape[0]} vs {tgt.shape[0]}")
        src_mask = padding_mask(src, cfg.pad_id) if src_mask is None else as_mask(src_mask, self.device)
        memory = self._encode(src, src_mask)  # (B, S, D)
        return self._decode(memory, tgt, src_mask, as_mask(tgt_mask, self.device))

    # validated inputs from here on (tensors on the model's device)
    def _encode(self, src, src_mask):
        if src_mask is None:
            src_mask = padding_mask(src, self.config.pad_id)  # (B, 1, 1, S)
        return self.encoder(_embed(self, self.src_embed, src, self.src_dropout), src_mask)

    def _decode(self, memory, tgt, src_mask, tgt_mask):
        if tgt_mask is None:  # (B, 1, T, T): no PAD keys, no future
            tgt_mask = padding_mask(tgt, self.config.pad_id) & causal_mask(tgt.shape[1], tgt.device)
        y = self.decoder(_embed(self, self.tgt_embed, tgt, self.tgt_dropout), memory, tgt_mask, src_mask)
        return self.generator(y)  # (B, T, V)


# ---- the decoder-only GPT ------------------------------------------------------------------------
class TorchGPT(_TiedStateDict, nn.Module):
    """The decoder-only ``scratchformer.GPT`` in torch.nn: ``model(idx) -> logits (B, T, V)``.

    Blocks are EncoderLayers under a causal mask (SDPA ``is_causal``); pre-LN stacks end
    with ``norm``; ``lm_head`` is D → V without bias, and with tied embeddings its weight
    is ``tok_embed.weight`` (no ``lm_head`` key in the state dict). Positions: the
    sinusoid buffer ``pe`` (no key) or, with ``positions="learned"``, the nn.Embedding
    ``pos_embed`` (key ``pos_embed.weight``, (max_len, D)); token embeddings × √D only
    when ``scale_embeddings``.
    """

    def __init__(self, cfg, init_from_numpy: bool = True):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = GPTConfig(**cfg)
        if not isinstance(cfg, GPTConfig):
            raise TypeError(f"cfg must be a GPTConfig or dict, got {type(cfg).__name__}")
        self.config = cfg
        D = cfg.d_model
        self.tok_embed = nn.Embedding(cfg.vocab_size, D)
        if cfg.positions == "learned":
            self.pos_embed = nn.Embedding(cfg.max_len, D)  # (max_len, D), GPT-2's wpe
        else:
            self.register_buffer("pe", sinusoid_table(D, cfg.max_len), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            EncoderLayer(D, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.activation, cfg.norm_first,
                         cfg.layer_norm_eps) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps) if cfg.norm_first else None
        self.lm_head = nn.Linear(D, cfg.vocab_size, bias=False)  # no bias, as in NumPy (GPT-2)
        self._aliases = {}
        if cfg.tie_embeddings:  # one Parameter, stored once as tok_embed.weight
            self.lm_head.weight = self.tok_embed.weight
            self._aliases = {"lm_head.weight": "tok_embed.weight"}
        self._install_tie_hooks()
        if init_from_numpy:
            _init_from_numpy(self, GPT(cfg))

    @property
    def device(self) -> torch.device:
        return self.tok_embed.weight.device

    def forward(self, idx) -> torch.Tensor:
        """idx (B, T) → logits (B, T, V)."""
        cfg = self.config
        idx = check_tokens("idx", idx, cfg.vocab_size, cfg.max_len, self.device)
        T = idx.shape[1]
        x = self.tok_embed(idx)  # (B, T, D)
        if cfg.scale_embeddings:
            x = x * math.sqrt(cfg.d_model)
        pos = self.pos_embed.weight[:T] if cfg.positions == "learned" else self.pe[:T]  # (T, D)
        x = self.drop(x + pos)
        for block in self.blocks:
            x = block(x, is_causal=True)
        if self.norm is not None:
            x = self.norm(x)
        return self.lm_head(x)  # (B, T, V)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k=None,
                 rng: torch.Generator | None = None) -> torch.Tensor:
        """The prompt (B, T) followed by ``max_new_tokens`` new tokens → (B, T + n).

        Uncached: each step re-runs the context window, chosen by the NumPy rule
        ``scratchformer.models.gpt.context_start`` (so past ``max_len`` both pick the same window).
        ``top_k=1`` or ``temperature=0`` is greedy argmax; otherwise a token is sampled with
        ``torch.multinomial`` drawing from ``rng`` (a torch.Generator; random streams differ
        from NumPy's).
        """
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
        cfg = self.config
        idx = check_tokens("idx", idx, cfg.vocab_size, 2 ** 62, self.device)
        was_training = self.training
        self.eval()
        try:
            start = max(0, idx.shape[1] - cfg.max_len)
            for _ in range(max_new_tokens):
                start = context_start(idx.shape[1], start, cfg.max_len)
                logits = self(idx[:, start:])[:, -1]  # (B, V): the last position
                if top_k == 1 or temperature == 0:
                    nxt = logits.argmax(-1, keepdim=True)
                else:
                    logits = logits.float() / temperature
                    if top_k is not None and top_k < logits.shape[-1]:
                        kth = torch.topk(logits, top_k).values[:, -1:]  # (B, 1)
                        logits = logits.masked_fill(logits < kth, float("-inf"))
                    nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=rng)
                idx = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
        finally:
            self.train(was_training)
        return idx
