"""GPT: a decoder-only Transformer for language modelling (characters, or GPT-2's BPE).

Notation: B batch, T length, D d_model, H heads, V vocabulary, L layers.

    x0     = dropout(s · tok_embed(idx) + P[0:T])            (B, T, D)
    x_l    = block_l(x_{l-1}, causal mask)                    l = 1..L   (EncoderLayer)
    logits = lm_head(norm(x_L))                               (B, T, V)   (norm: pre-LN only)

    s = √D when ``scale_embeddings`` (the default, as the encoder–decoder), 1 otherwise (GPT-2)
    P = the sinusoidal table (``positions="sinusoidal"``, the default: a buffer, no key), or
        a learned table ``pos_embed.weight`` (max_len, D) (``positions="learned"``: GPT-2's wpe)

The blocks are the encoder–decoder's ``EncoderLayer`` with a causal mask — the same
attention, LayerNorm and feed-forward code, not a copy. ``lm_head`` is a Linear D → V
**without bias** (as GPT-2/nanoGPT); with ``tie_embeddings`` its weight *is*
``tok_embed.weight`` (one Parameter), so the state dict has no ``lm_head.*`` key at all,
and ``lm_head.weight`` when untied. With ``positions="learned", scale_embeddings=False``,
pre-LN, GELU (tanh) and tied embeddings the GPT is GPT-2 (``scratchformer.interop`` loads
its weights).

Backward of the embedding: dP[0:T] += Σ_batch g (learned positions only; every sequence
of the batch uses the same rows), dtok_embed[idx] += s · g.

Generation keeps a KV cache per block, so each new token costs one position's work.
Positions are absolute (sinusoidal or learned: the table has ``max_len`` rows and none
beyond), so when the context reaches ``max_len`` the window cannot slide one token at a
time without recomputing every key: instead the context is re-started from its last
``max_len // 2`` tokens (one prefill, at positions 0..), and decoding goes on from there.
The uncached path crops its context by the very same rule, so the two give identical
tokens — before and after ``max_len``, with either kind of positions. See
``context_start``. (A GPT-2 loaded from Hugging Face thus generates past its 1,024
positions, where ``transformers`` stops with an error.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..core.attention import KVCache, attention_maps
from ..core.checks import check_bool, check_choice, check_int
from ..core.functional import causal_mask
from ..core.layers import Dropout, Embedding, LayerNorm, Linear, PositionalEncoding
from ..core.module import Module, ModuleList, Parameter
from ..core.tokens import check_token_range, check_tokens
from .sampling import check_sampling, make_rng, sample_next
from .sizes import check_fits_memory, validate_sizes
from .transformer import EncoderLayer, layer_shapes


@dataclass
class GPTConfig:
    """Sizes and switches of the GPT; invalid values raise ValueError naming the field.

    The defaults are a small character-level model (≈0.8 M parameters for V = 65)
    that trains on a laptop CPU. ``positions``: "sinusoidal" (a fixed table, no
    parameter) or "learned" (``pos_embed.weight`` (max_len, D)); ``scale_embeddings``:
    multiply the token embeddings by √D (True) or not (False, as GPT-2). A config saved
    before these two fields existed loads with their defaults, i.e. the same model.
    """

    vocab_size: int
    d_model: int = 128
    n_heads: int = 4
    d_ff: int = 512
    n_layers: int = 4
    max_len: int = 256
    dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True
    layer_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    seed: int = 0
    positions: str = "sinusoidal"
    scale_embeddings: bool = True

    def __post_init__(self):
        validate_sizes(self, ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "max_len"))
        for name in ("norm_first", "tie_embeddings", "scale_embeddings"):
            setattr(self, name, check_bool(name, getattr(self, name)))
        check_choice("positions", self.positions, POSITIONS)
        check_fits_memory(self, self.param_shapes())

    def to_dict(self) -> dict:
        return asdict(self)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{state_dict key: shape}`` of the GPT this config builds, from the sizes alone."""
        D = self.d_model
        shapes = {"tok_embed.weight": (self.vocab_size, D)}
        if self.positions == "learned":
            shapes["pos_embed.weight"] = (self.max_len, D)
        for i in range(self.n_layers):
            shapes.update(layer_shapes(f"blocks.{i}", D, self.d_ff, ("self_attn",)))
        if self.norm_first:
            shapes.update({"norm.weight": (D,), "norm.bias": (D,)})
        if not self.tie_embeddings:
            shapes["lm_head.weight"] = (self.vocab_size, D)
        return shapes


POSITIONS = ("sinusoidal", "learned")


class TiedLinear(Linear):
    """The tied lm_head: a bias-free ``Linear`` (y = x Wᵀ, same forward and backward) whose
    weight *is* the Parameter ``weight`` (V, D) it is given. Built without a random matrix
    of its own, which would be thrown away (a float64 V×D draw, its float32 copy and its
    gradient at the end of construction: loading GPT-2 small peaked 405 MB higher)."""

    def __init__(self, weight: Parameter):
        self.weight, self.bias = weight, None
        self.out_features, self.in_features = weight.shape


class LearnedPositions(Module):
    """A learned position table added to the token embeddings (GPT-2's ``wpe``).

    weight (max_len, D), initialised N(0, 1/D) like the token embedding.
    Forward:  y = x + weight[start:start+T]            x (B, T, D)
    Backward: dweight[start:start+T] += Σ_b g[b],  dx = g   (summed over the batch: every
    sequence adds the same rows).
    """

    def __init__(self, max_len: int, d_model: int, rng: np.random.Generator, dtype=np.float32):
        w = rng.normal(0.0, d_model ** -0.5, size=(max_len, d_model))
        self.weight = Parameter(w.astype(dtype))
        self.max_len = max_len

    def forward(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        T = x.shape[1]
        if start + T > self.max_len:
            raise ValueError(f"sequence positions {start}..{start + T - 1} exceed max_len {self.max_len}")
        self._span = (start, T)
        return x + self.weight.data[start:start + T]  # (B, T, D) + (T, D)

    def backward(self, g: np.ndarray) -> np.ndarray:
        start, T = self._span
        self.weight.grad[start:start + T] += g.sum(axis=0)  # (T, D): Σ over the batch
        return g


def context_start(length: int, start: int, max_len: int) -> int:
    """Start of the context window for predicting token number ``length`` (0-based).

    The window is tokens[start:length] and must hold at most ``max_len`` tokens. While it
    fits, it keeps its start; once it overflows, it restarts from the last
    ``max(1, max_len // 2)`` tokens (the KV cache is rebuilt from them with one prefill).
    A prompt longer than ``max_len`` is cropped first to its last ``max_len`` tokens
    (``generate`` begins with start = max(0, T - max_len)). Shared by the cached and the
    uncached path, so both see the same context at every step.
    """
    if length - start <= max_len:
        return start
    return length - max(1, max_len // 2)


class GPT(Module):
    """Decoder-only Transformer: ``model(idx) -> logits (B, T, V)``.

    ``backward(dlogits)`` back-propagates through the last forward and adds into every
    parameter's ``.grad``. ``generate`` continues a prompt (see the module docstring for
    the cache and the ``max_len`` policy). Dropout draws from ``model.rng``, seeded
    ``[seed, 1]`` (the initial weights from ``seed``).
    """

    def __init__(self, cfg: GPTConfig):
        if not isinstance(cfg, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(cfg).__name__}")
        self.config = cfg
        rng = np.random.default_rng(cfg.seed)  # initial weights
        self.rng = np.random.default_rng([cfg.seed, 1])  # dropout masks (saved in checkpoints)
        D = cfg.d_model
        self.tok_embed = Embedding(cfg.vocab_size, D, rng=rng, name="idx")
        if cfg.positions == "learned":  # a parameter, key pos_embed.weight
            self.pos_embed = LearnedPositions(cfg.max_len, D, rng)
            self.pos = None
        else:  # a buffer, no key
            self.pos_embed = None
            self.pos = PositionalEncoding(D, cfg.max_len)
        self.drop = Dropout(cfg.dropout, self.rng)
        self.blocks = ModuleList(
            EncoderLayer(D, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.activation, cfg.norm_first,
                         cfg.layer_norm_eps, rng=rng, dropout_rng=self.rng)
            for _ in range(cfg.n_layers))
        self.norm = LayerNorm(D, cfg.layer_norm_eps) if cfg.norm_first else None
        if cfg.tie_embeddings:  # one Parameter, stored once as tok_embed.weight
            self.lm_head = TiedLinear(self.tok_embed.weight)
        else:
            self.lm_head = Linear(D, cfg.vocab_size, bias=False, rng=rng)
        self._saved = None

    # ---- forward ----------------------------------------------------------------------
    def _embed(self, idx: np.ndarray, start: int = 0) -> np.ndarray:
        """dropout(s · tok_embed(idx) + P[start:start+t]) → (B, t, D); s = √D or 1."""
        x = self.tok_embed(idx)  # (B, t, D)
        if self.config.scale_embeddings:
            x = x * math.sqrt(self.config.d_model)
        positions = self.pos_embed if self.pos_embed is not None else self.pos
        return self.drop(positions(x, start))  # (B, t, D)

    def _embed_backward(self, g: np.ndarray) -> None:
        """Reverse of ``_embed``: dropout → P (adds Σ_b g into pos_embed's grad, or the
        identity) → × s → tok_embed (adds into its grad)."""
        g = self.drop.backward(g)  # (B, T, D)
        g = self.pos_embed.backward(g) if self.pos_embed is not None else self.pos.backward(g)
        if self.config.scale_embeddings:
            g = g * math.sqrt(self.config.d_model)
        self.tok_embed.backward(g)

    def _hidden(self, idx: np.ndarray, caches: list[KVCache] | None = None,
                start: int = 0) -> np.ndarray:
        """The final hidden states (B, t, D) of tokens ``idx`` (B, t) at positions start.. .

        Without caches: causal self-attention over idx. With caches (one per block): the
        keys and values of positions 0..start-1 come from the cache and the new ones are
        appended, so t = 1 costs one position's work.
        """
        t = idx.shape[1]
        x = self._embed(idx, start)  # (B, t, D)
        offset = 0 if caches is None else start  # cached keys before the new queries
        mask = causal_mask(t, offset) if t > 1 else None  # (1, 1, t, offset + t)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if caches is None else caches[i])  # (B, t, D)
        return self.norm(x) if self.norm is not None else x

    def forward(self, idx) -> np.ndarray:
        """idx (B, T) integer token ids, T ≤ max_len → logits (B, T, V).

        logits[:, t] scores token t + 1 given tokens 0..t (a causal mask hides the future).
        """
        cfg = self.config
        idx = check_tokens("idx", idx, cfg.max_len)
        logits = self.lm_head(self._hidden(idx))  # (B, T, V)
        self._saved = logits.shape
        return logits

    # ---- backward ---------------------------------------------------------------------
    def backward(self, dlogits: np.ndarray) -> None:
        """Back-propagate dL/dlogits (B, T, V) through every block into every ``.grad``.

        Reverse of forward: lm_head → final norm → blocks (last first) → dropout →
        positions (sinusoidal: identity; learned: dP += Σ_b g) → ×√D (if scaled) →
        tok_embed. With tied embeddings ``tok_embed.weight.grad`` receives both the lm_head
        and the embedding contributions.
        """
        if self._saved is None:
            raise RuntimeError("backward() needs a preceding model(idx) forward pass")
        dlogits = np.asarray(dlogits)
        if dlogits.shape != self._saved:
            raise ValueError(f"dlogits must have the logits' shape {self._saved}, got {dlogits.shape}")
        g = self.lm_head.backward(dlogits)  # (B, T, D)
        if self.norm is not None:
            g = self.norm.backward(g)
        for block in reversed(self.blocks):
            g = block.backward(g)  # (B, T, D)
        self._embed_backward(g)
        self._saved = None

    # ---- generation -------------------------------------------------------------------
    def init_cache(self) -> list[KVCache]:
        """One empty KVCache per block."""
        return [KVCache() for _ in self.blocks]

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 use_cache: bool = True, rng=None) -> np.ndarray:
        """Continue the prompts idx (B, T) by ``max_new_tokens`` tokens → (B, T + max_new_tokens).

        Each step samples from softmax(logits_last / temperature), restricted to the
        ``top_k`` largest logits when given (top_k ≥ V: no restriction); ``top_k=1`` (or
        ``temperature=0``) is greedy argmax. ``rng``: a np.random.Generator, an int seed, or
        None for ``default_rng([seed, 2])``. Runs in eval mode (no dropout) and restores
        the previous mode. ``use_cache=False`` recomputes the whole window every step —
        same tokens, slower; the window rule past ``max_len`` is ``context_start``.
        """
        cfg = self.config
        idx = check_token_range("idx", check_tokens("idx", idx), cfg.vocab_size)  # before any work
        check_int("max_new_tokens", max_new_tokens, 0)
        temperature, top_k = check_sampling(temperature, top_k)
        rng = make_rng(rng, cfg.seed)
        B, T0 = idx.shape
        out = np.empty((B, T0 + max_new_tokens), dtype=np.int64)
        out[:, :T0] = idx
        self._saved = None  # generation overwrites the activations backward would need
        with self.eval_mode():
            start, caches = max(0, T0 - cfg.max_len), None
            for n in range(T0, T0 + max_new_tokens):  # predict token n from tokens[start:n]
                new_start = context_start(n, start, cfg.max_len)
                if not use_cache:
                    h = self._hidden(out[:, new_start:n])  # whole window, every step
                elif caches is None or new_start != start:  # (re)fill the cache: one prefill
                    caches = self.init_cache()
                    h = self._hidden(out[:, new_start:n], caches, 0)
                else:  # one new position: token n-1 at position n-1-start
                    h = self._hidden(out[:, n - 1:n], caches, n - 1 - start)
                start = new_start
                logits = self.lm_head(h[:, -1])  # (B, V): the last position only
                out[:, n] = sample_next(logits, temperature, top_k, rng)
        return out

    # ---- inspection ---------------------------------------------------------------------
    def attention_maps(self) -> dict[str, np.ndarray]:
        """{module name: attention weights (B, H, Tq, Tk)} from the last forward pass."""
        return attention_maps(self)
