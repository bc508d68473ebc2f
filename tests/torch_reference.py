"""PyTorch references for the oracle tests: stock ``torch.nn`` modules fed the NumPy weights.

Nothing here comes from ``scratchformer.torch_port``: the oracle is assembled from
``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``,
``nn.Embedding``, ``nn.LayerNorm`` and ``nn.Linear``, so a shared mistake cannot hide.

Name mapping, NumPy → torch (``D`` = d_model):

    *.{q,k,v}_proj.weight   → *.in_proj_weight rows [0:D], [D:2D], [2D:3D]   (same for bias)
    *.cross_attn.*          → *.multihead_attn.*
    *.ffn.linear{1,2}.*     → *.linear{1,2}.*
    everything else         → the same name (out_proj, norm1..3, embeddings, generator)

Gradient comparison (``grad_errors``), for tensors a (ours) and b (autograd):

    err = ‖a - b‖ / max(‖b‖, FLOOR_FRAC · max_t ‖b_t‖)

The floor matters for gradients that are zero in exact arithmetic (a key projection's
bias: softmax ignores a per-row shift), where both sides hold rounding noise only; those
are measured against the scale of the largest gradient in the same check — never
against their own (noise) norm. Above the floor the error is a plain relative error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradcheck import rel_error

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

FLOOR_FRAC = 1e-2
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def torch_activation(name: str):
    """The torch activation matching ScratchFormer's ``activation`` field."""
    return gelu_tanh if name == "gelu" else "relu"


def tt(a: np.ndarray, grad: bool = False):
    """A torch tensor copy of ``a`` (float arrays may require grad)."""
    t = torch.from_numpy(np.array(a, copy=True))
    return t.requires_grad_(grad) if grad else t


def tn(t) -> np.ndarray:
    return t.detach().cpu().numpy()


# ---- parameters: NumPy name → torch slot ------------------------------------------------
def torch_slot(np_key: str, d_model: int) -> tuple[str, slice | None]:
    """(torch parameter name, row slice or None) holding the NumPy parameter ``np_key``."""
    parts = ["multihead_attn" if p == "cross_attn" else p for p in np_key.split(".")
             if p != "ffn"]
    if len(parts) >= 2 and parts[-2] in _QKV:
        i = _QKV[parts[-2]]
        name = ".".join(parts[:-2] + [f"in_proj_{parts[-1]}"])
        return name, slice(i * d_model, (i + 1) * d_model)
    return ".".join(parts), None


def perturb_parameters(module, rng: np.random.Generator) -> None:
    """Move NumPy parameters off their initial values, which hide bugs (LayerNorm weight 1
    hides a missing ``·weight``, zero biases hide a missing bias scale): 1-D ``weight``s
    become 1 + 0.2·N(0,1), biases 0.1·N(0,1); matrices keep their random init."""
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            p.data[...] = 0.1 * rng.standard_normal(p.shape)
        elif p.data.ndim == 1:
            p.data[...] = 1.0 + 0.2 * rng.standard_normal(p.shape)


def copy_into_torch(np_module, torch_module, d_model: int) -> None:
    """Copy every NumPy parameter into its torch slot; fail unless every torch parameter
    element was written exactly once (so the reference holds no stray initial weights)."""
    tparams = dict(torch_module.named_parameters())
    written = {name: torch.zeros_like(p, dtype=torch.int32) for name, p in tparams.items()}
    with torch.no_grad():
        for key, p in np_module.named_parameters():
            name, rows = torch_slot(key, d_model)
            if name not in tparams:
                raise KeyError(f"NumPy parameter {key!r} maps to {name!r}, absent in torch "
                               f"(torch has {sorted(tparams)})")
            dst = tparams[name] if rows is None else tparams[name][rows]
            if tuple(dst.shape) != p.shape:
                raise ValueError(f"{key}: NumPy shape {p.shape} vs torch {tuple(dst.shape)}")
            dst.copy_(torch.from_numpy(p.data))
            (written[name] if rows is None else written[name][rows]).add_(1)
    for name, count in written.items():
        if not bool((count == 1).all()):
            raise AssertionError(f"torch parameter {name} not covered exactly once by NumPy keys")


def torch_grads(np_module, torch_module, d_model: int, prefix: str = "") -> dict[str, np.ndarray]:
    """{NumPy key: autograd gradient} for every NumPy parameter (missing grad → zeros)."""
    tparams = dict(torch_module.named_parameters())
    out = {}
    for key, p in np_module.named_parameters():
        name, rows = torch_slot(key, d_model)
        g = tparams[name].grad
        g = torch.zeros_like(tparams[name]) if g is None else g
        out[prefix + key] = tn(g if rows is None else g[rows])
    return out


def numpy_grads(np_module, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + k: p.grad.copy() for k, p in np_module.named_parameters()}


def grad_errors(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray],
                floor_frac: float = FLOOR_FRAC) -> dict[str, float]:
    """{name: ‖a - b‖ / max(‖b‖, floor_frac · max_t ‖b_t‖)} — see the module docstring."""
    if set(ours) != set(ref):
        raise AssertionError(f"gradient names differ: only ours {sorted(set(ours) - set(ref))}, "
                             f"only torch {sorted(set(ref) - set(ours))}")
    for k in ours:
        if ours[k].shape != ref[k].shape:
            raise AssertionError(f"{k}: gradient shape {ours[k].shape} vs torch {ref[k].shape}")
    norms = {k: float(np.linalg.norm(ref[k].astype(np.float64))) for k in ref}
    floor = floor_frac * max(norms.values())
    if not floor > 0:
        raise AssertionError("every reference gradient is zero: the check would be vacuous")
    return {k: rel_error(ours[k], ref[k], floor) for k in ours}


# ---- masks ------------------------------------------------------------------------------
def key_padding(lengths, T: int) -> np.ndarray:
    """(B, T) bool, True at padded positions (torch's key_padding_mask convention)."""
    return np.arange(T)[None, :] >= np.asarray(lengths)[:, None]


def torch_causal(T: int):
    """(T, T) bool, True where attending is NOT allowed (above the diagonal)."""
    return torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)


def sinusoid_table(max_len: int, d_model: int):
    """The paper's PE table built independently in torch (float64, then float32)."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    div = torch.pow(10000.0, torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos / div)
    pe[:, 1::2] = torch.cos(pos / div)
    return pe.float()


# ---- reference modules --------------------------------------------------------------------
def torch_mha(np_mha):
    ref = nn.MultiheadAttention(np_mha.d_model, np_mha.n_heads, dropout=0.0, batch_first=True)
    copy_into_torch(np_mha, ref, np_mha.d_model)
    return ref


def torch_encoder_layer(np_layer, d_model, n_heads, d_ff, activation, norm_first, eps=1e-5):
    ref = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                     activation=torch_activation(activation), layer_norm_eps=eps,
                                     batch_first=True, norm_first=norm_first)
    copy_into_torch(np_layer, ref, d_model)
    return ref


def torch_decoder_layer(np_layer, d_model, n_heads, d_ff, activation, norm_first, eps=1e-5):
    ref = nn.TransformerDecoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                     activation=torch_activation(activation), layer_norm_eps=eps,
                                     batch_first=True, norm_first=norm_first)
    copy_into_torch(np_layer, ref, d_model)
    return ref


class _Stack(nn.Module):
    def __init__(self, layers, d_model, norm_first, eps):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model, eps=eps) if norm_first else None


class TorchReferenceTransformer(nn.Module):
    """The encoder–decoder from stock torch modules, named so ``torch_slot`` finds every
    NumPy key. Masks are built from ``pad_id`` as in the NumPy model (src padding; tgt
    padding & causal; memory keys masked by src padding)."""

    def __init__(self, cfg):
        super().__init__()
        D, H, Fd, eps = cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.layer_norm_eps
        act = torch_activation(cfg.activation)
        kw = dict(dropout=0.0, activation=act, layer_norm_eps=eps, batch_first=True,
                  norm_first=cfg.norm_first)
        self.cfg = cfg
        self.src_embed = nn.Embedding(cfg.src_vocab_size, D)
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, D)
        self.encoder = _Stack([nn.TransformerEncoderLayer(D, H, Fd, **kw)
                               for _ in range(cfg.n_encoder_layers)], D, cfg.norm_first, eps)
        self.decoder = _Stack([nn.TransformerDecoderLayer(D, H, Fd, **kw)
                               for _ in range(cfg.n_decoder_layers)], D, cfg.norm_first, eps)
        self.generator = nn.Linear(D, cfg.tgt_vocab_size)
        if cfg.tie_embeddings:  # one nn.Parameter in three places
            self.tgt_embed.weight = self.src_embed.weight
            self.generator.weight = self.src_embed.weight
        self.register_buffer("pe", sinusoid_table(cfg.max_len, D))

    def forward(self, src, tgt):
        cfg, scale = self.cfg, math.sqrt(self.cfg.d_model)
        src_pad, tgt_pad = src == cfg.pad_id, tgt == cfg.pad_id  # (B, S), (B, T) True = pad
        x = self.src_embed(src) * scale + self.pe[: src.shape[1]]
        for layer in self.encoder.layers:
            x = layer(x, src_key_padding_mask=src_pad)
        memory = self.encoder.norm(x) if self.encoder.norm is not None else x
        y = self.tgt_embed(tgt) * scale + self.pe[: tgt.shape[1]]
        causal = torch_causal(tgt.shape[1])
        for layer in self.decoder.layers:
            y = layer(y, memory, tgt_mask=causal, tgt_key_padding_mask=tgt_pad,
                      memory_key_padding_mask=src_pad)
        if self.decoder.norm is not None:
            y = self.decoder.norm(y)
        return self.generator(y)


def reference_from_numpy(np_model) -> TorchReferenceTransformer:
    """A TorchReferenceTransformer holding a copy of the NumPy model's weights."""
    ref = TorchReferenceTransformer(np_model.config)
    copy_into_torch(np_model, ref, np_model.config.d_model)
    return ref


def capture_attention(ref: nn.Module) -> tuple[dict, list]:
    """Record every nn.MultiheadAttention's per-head weights (B, H, Tq, Tk) during forward.

    Returns ({NumPy module name: weights}, hook handles). The hook re-runs the module
    with ``need_weights=True, average_attn_weights=False`` on the same inputs.
    """
    maps, handles = {}, []
    for name, m in ref.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            np_name = name.replace("multihead_attn", "cross_attn")

            def hook(mod, args, kwargs, out, np_name=np_name):
                kw = dict(kwargs, need_weights=True, average_attn_weights=False)
                with torch.no_grad():
                    maps[np_name] = tn(mod.forward(*args, **kw)[1])

            handles.append(m.register_forward_hook(hook, with_kwargs=True))
    return maps, handles
