"""Hugging Face GPT-2 folders in and out: ``load_hf_gpt2(path) -> GPT``, ``save_hf_gpt2(model, path)``.

A GPT-2 folder holds ``config.json`` and ``model.safetensors`` (``transformers``'
``save_pretrained``, or the Hub's ``gpt2`` repository). GPT-2 is our GPT with learned
positions, unscaled embeddings, pre-LN, tanh-GELU and a tied, bias-free lm_head:

    GPTConfig(positions="learned", scale_embeddings=False, norm_first=True, activation="gelu",
              tie_embeddings=True, vocab_size=vocab_size, d_model=n_embd, n_heads=n_head,
              n_layers=n_layer, max_len=n_positions, d_ff=n_inner or 4·n_embd,
              layer_norm_eps=layer_norm_epsilon)

Tensor names, GPT-2 → ours (D = n_embd; GPT-2's Conv1D stores weights (in, out), the
transpose of our Linear's (out, in); ``transformer.`` may be present or not)::

    wte.weight                      tok_embed.weight                          (V, D)
    wpe.weight                      pos_embed.weight                          (max_len, D)
    h.{i}.ln_1.{weight,bias}        blocks.{i}.norm1.*
    h.{i}.attn.c_attn.weight        blocks.{i}.self_attn.{q,k,v}_proj.weight  (D, 3D): columns
                                    [0:D] → qᵀ, [D:2D] → kᵀ, [2D:3D] → vᵀ
    h.{i}.attn.c_attn.bias          blocks.{i}.self_attn.{q,k,v}_proj.bias    (3D,) split in three
    h.{i}.attn.c_proj.{weight,bias} blocks.{i}.self_attn.out_proj.*           weight transposed
    h.{i}.ln_2.{weight,bias}        blocks.{i}.norm2.*
    h.{i}.mlp.c_fc.{weight,bias}    blocks.{i}.ffn.linear1.*                  (D, F) transposed
    h.{i}.mlp.c_proj.{weight,bias}  blocks.{i}.ffn.linear2.*                  (F, D) transposed
    ln_f.{weight,bias}              norm.*
    lm_head.weight                  tied: ignored (it is wte); untied: lm_head.weight

``h.{i}.attn.bias`` / ``attn.masked_bias`` (the causal-mask buffers older files carry) are
ignored. Also expressible, and so accepted both ways: ``activation_function="relu"`` and
``tie_word_embeddings=false``. Anything else GPT-2 cannot express (post-LN, sinusoidal
positions, √D-scaled embeddings) or we cannot (erf-GELU, attention without the 1/√Dh
scale or with per-layer scaling, cross-attention) is refused with a ValueError naming the
field — never approximated.

Loading reads one tensor at a time into the freshly built model (``SafetensorsReader``):
it never holds a second copy of the weights. A ``pytorch_model.bin`` (a pickle) is refused
with the one-line conversion.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..models.gpt import GPT, GPTConfig
from .safetensors_io import SafetensorsReader, write_safetensors, write_text_atomic

# config.json fields, with transformers' GPT2Config defaults for the ones a file may omit
HF_DEFAULTS = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
               "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
               "tie_word_embeddings": True, "scale_attn_weights": True,
               "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}
# GPT-2's activation names → ours (gelu_new, gelu_pytorch_tanh, gelu_fast: the tanh formula)
ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu"}
IGNORED = re.compile(r"transformer\.h\.\d+\.attn\.(bias|masked_bias)")  # causal-mask buffers
PICKLE_HINT = ("a pickle, which ScratchFormer never opens; convert it once with transformers: "
               "python -c \"import sys, transformers as t; "
               "t.GPT2LMHeadModel.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1])\" DIR")

Part = tuple[str, "slice | None", bool]  # (our key, columns of the GPT-2 tensor, transposed?)


# ---- configs --------------------------------------------------------------------------------
def gpt2_config_from_hf(hf: dict, where="config.json", dropout: float = 0.0) -> GPTConfig:
    """GPT-2's ``config.json`` (a dict) → ``GPTConfig``; a ValueError naming ``where`` and the
    field for anything our GPT cannot run exactly."""
    if not isinstance(hf, dict) or hf.get("model_type") != "gpt2":
        got = hf.get("model_type") if isinstance(hf, dict) else type(hf).__name__
        raise ValueError(f"{where}: model_type {got!r}; load_hf_gpt2 reads GPT-2 (model_type 'gpt2')")
    get = {k: hf.get(k, v) for k, v in HF_DEFAULTS.items()}
    for flag, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                       ("add_cross_attention", False)):
        if get[flag] != want:
            raise ValueError(f"{where}: {flag}={get[flag]!r} is not supported (expected {want}: "
                             f"attention scaled by 1/√Dh, no cross-attention)")
    act = get["activation_function"]
    if act not in ACTIVATIONS:
        raise ValueError(f"{where}: activation_function={act!r} is not supported; expected one of "
                         f"{', '.join(map(repr, ACTIVATIONS))} (our GELU is the tanh approximation)")
    D = get["n_embd"]
    try:
        return GPTConfig(vocab_size=get["vocab_size"], d_model=D, n_heads=get["n_head"],
                         d_ff=get["n_inner"] if get["n_inner"] is not None else 4 * D,
                         n_layers=get["n_layer"], max_len=get["n_positions"], dropout=dropout,
                         activation=ACTIVATIONS[act], norm_first=True,
                         layer_norm_eps=get["layer_norm_epsilon"],
                         tie_embeddings=get["tie_word_embeddings"], seed=0, positions="learned",
                         scale_embeddings=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def hf_config_from_gpt2(cfg: GPTConfig) -> dict:
    """``GPTConfig`` → GPT-2's ``config.json`` dict; a ValueError naming the field GPT-2 cannot
    express (post-LN, sinusoidal positions, scaled embeddings)."""
    for field, want, why in (("positions", "learned", "GPT-2 learns its positions (wpe)"),
                             ("scale_embeddings", False, "GPT-2 adds wte and wpe unscaled"),
                             ("norm_first", True, "GPT-2 is pre-LN")):
        if getattr(cfg, field) != want:
            raise ValueError(f"{field}={getattr(cfg, field)!r} cannot be written as GPT-2 "
                             f"({why}): expected {field}={want!r}")
    D, V = cfg.d_model, cfg.vocab_size
    special = 50256 if V > 50256 else None  # GPT-2's <|endoftext|>, when the vocabulary has it
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V,
            "n_positions": cfg.max_len, "n_ctx": cfg.max_len, "n_embd": D, "n_layer": cfg.n_layers,
            "n_head": cfg.n_heads, "n_inner": None if cfg.d_ff == 4 * D else cfg.d_ff,
            "activation_function": "gelu_new" if cfg.activation == "gelu" else "relu",
            "layer_norm_epsilon": cfg.layer_norm_eps, "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "tie_word_embeddings": cfg.tie_embeddings, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "add_cross_attention": False, "bos_token_id": special, "eos_token_id": special,
            "use_cache": True}


# ---- tensor names ---------------------------------------------------------------------------
def hf_layout(cfg: GPTConfig) -> dict[str, list[Part]]:
    """{GPT-2 tensor name (with ``transformer.``): its parts [(our key, column slice or
    None, transposed?)]} — the table of the module docstring, for the sizes of ``cfg``."""
    D, t = cfg.d_model, "transformer."
    layout = {t + "wte.weight": [("tok_embed.weight", None, False)],
              t + "wpe.weight": [("pos_embed.weight", None, False)]}
    for i in range(cfg.n_layers):
        h, b = f"{t}h.{i}.", f"blocks.{i}."
        qkv = [f"{b}self_attn.{n}_proj" for n in "qkv"]
        layout[h + "ln_1.weight"], layout[h + "ln_1.bias"] = [(b + "norm1.weight", None, False)], \
            [(b + "norm1.bias", None, False)]
        layout[h + "attn.c_attn.weight"] = [(f"{p}.weight", slice(j * D, (j + 1) * D), True)
                                            for j, p in enumerate(qkv)]
        layout[h + "attn.c_attn.bias"] = [(f"{p}.bias", slice(j * D, (j + 1) * D), False)
                                          for j, p in enumerate(qkv)]
        for hf, ours in (("attn.c_proj", "self_attn.out_proj"), ("ln_2", "norm2"),
                         ("mlp.c_fc", "ffn.linear1"), ("mlp.c_proj", "ffn.linear2")):
            transposed = not hf.startswith("ln")
            layout[f"{h}{hf}.weight"] = [(f"{b}{ours}.weight", None, transposed)]
            layout[f"{h}{hf}.bias"] = [(f"{b}{ours}.bias", None, False)]
    layout[t + "ln_f.weight"], layout[t + "ln_f.bias"] = [("norm.weight", None, False)], \
        [("norm.bias", None, False)]
    if not cfg.tie_embeddings:
        layout["lm_head.weight"] = [("lm_head.weight", None, False)]
    return layout


def canonical_name(name: str) -> str:
    """A GPT-2 tensor name with the ``transformer.`` prefix (files from ``GPT2Model`` and the
    Hub's original ``gpt2`` omit it); ``lm_head.weight`` stays as it is."""
    return name if name.startswith("transformer.") or name == "lm_head.weight" else "transformer." + name


def hf_shape(parts: list[Part], shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The GPT-2 tensor's shape from our parts' shapes (transposed, side by side)."""
    pieces = [shapes[key][::-1] if tr else shapes[key] for key, _, tr in parts]
    return (*pieces[0][:-1], sum(p[-1] for p in pieces))


def split_hf_tensor(t: np.ndarray, parts: list[Part]):
    """Yield (our key, view of ``t``) for each part: the columns, transposed if Conv1D."""
    for key, cols, transposed in parts:
        a = t if cols is None else t[..., cols]
        yield key, (a.T if transposed else a)


def join_hf_tensor(parts: list[Part], arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The GPT-2 tensor made of our ``arrays`` (inverse of ``split_hf_tensor``), float32."""
    pieces = [arrays[key].T if tr else arrays[key] for key, _, tr in parts]
    joined = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=-1)
    return np.ascontiguousarray(joined, dtype=np.float32)


def gpt2_arrays_from_hf(cfg: GPTConfig, hf_arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """GPT-2 tensors by name (either spelling; buffers and a tied lm_head skipped) → our
    state_dict arrays (views). Used for weights and for gradients alike."""
    layout, out = hf_layout(cfg), {}
    for name, t in hf_arrays.items():
        canon = canonical_name(name)
        if IGNORED.fullmatch(canon) or (canon == "lm_head.weight" and cfg.tie_embeddings):
            continue
        out.update(split_hf_tensor(np.asarray(t), layout[canon]))
    return out


def hf_arrays_from_gpt2(cfg: GPTConfig, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Our state_dict arrays → GPT-2 tensors by (prefixed) name."""
    return {name: join_hf_tensor(parts, arrays) for name, parts in hf_layout(cfg).items()}


# ---- folders --------------------------------------------------------------------------------
def load_hf_gpt2(path, dropout: float = 0.0) -> GPT:
    """A Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors``) → our ``GPT``.

    ``dropout``: the GPT's dropout for fine-tuning (GPT-2's own 0.1 is not copied; 0 makes
    the loaded model deterministic). Every problem is one error naming the file: missing
    file (FileNotFoundError), wrong model_type or unsupported field, truncated or malformed
    safetensors, missing, unexpected or misshapen tensors, NaN weights (ValueError).
    """
    cfg = read_hf_gpt2_config(path, dropout)
    model = GPT(cfg)
    params = {k: p.data for k, p in model.named_parameters()}
    for key, a in iter_hf_gpt2_arrays(path, cfg):
        params[key][...] = a  # placed, then dropped: one tensor in memory at a time
    return model


def read_hf_gpt2_config(path, dropout: float = 0.0) -> GPTConfig:
    """The ``GPTConfig`` of a GPT-2 folder (its ``config.json``; the weights file must exist)."""
    folder = _weights_file(path).parent
    return gpt2_config_from_hf(_read_json(folder / "config.json"), folder / "config.json", dropout)


def iter_hf_gpt2_arrays(path, cfg: GPTConfig):
    """Yield (our state_dict key, float32 array) for every weight of the folder's
    ``model.safetensors``, reading one GPT-2 tensor at a time (a fused c_attn yields its q,
    k, v parts); names and shapes are checked against ``cfg`` before anything is read."""
    st_path = _weights_file(path)
    layout = hf_layout(cfg)
    with SafetensorsReader(st_path) as f:
        for canon, name in _match_names(f.entries, layout, cfg, st_path).items():
            t = f.read(name)
            if not np.isfinite(t).all():
                raise ValueError(f"{st_path}: {name} holds NaN or infinite values")
            yield from split_hf_tensor(t, layout[canon])
            del t


def _weights_file(path) -> Path:
    """``path/model.safetensors``, or the error that says what the folder holds instead."""
    folder = _folder(path)
    st_path = folder / "model.safetensors"
    if not st_path.is_file():
        if (folder / "pytorch_model.bin").exists():
            raise ValueError(f"{folder / 'pytorch_model.bin'}: {PICKLE_HINT}")
        raise FileNotFoundError(f"{st_path}: no such file (a GPT-2 folder holds config.json and "
                                f"model.safetensors)")
    return st_path


def _match_names(entries: dict, layout: dict, cfg: GPTConfig, path: Path) -> dict[str, str]:
    """{GPT-2 name in ``layout``: name in the file}; every expected tensor present once, none
    unexpected, each of the shape the config gives."""
    found = {}
    for name in entries:
        canon = canonical_name(name)
        if IGNORED.fullmatch(canon) or (canon == "lm_head.weight" and cfg.tie_embeddings):
            continue
        if canon not in layout:
            raise ValueError(f"{path}: unexpected tensor {name!r} (not part of a GPT-2 language "
                             f"model with config.json's {cfg.n_layers} layers)")
        if canon in found:
            raise ValueError(f"{path}: tensor {canon!r} stored twice ({found[canon]!r}, {name!r})")
        found[canon] = name
    missing = [k for k in layout if k not in found]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    shapes = cfg.param_shapes()
    for canon, name in found.items():
        want, got = hf_shape(layout[canon], shapes), entries[name][1]
        if got != want:
            raise ValueError(f"{path}: {name} has shape {list(got)}; config.json's sizes "
                             f"(vocab_size {cfg.vocab_size}, n_positions {cfg.max_len}, n_embd "
                             f"{cfg.d_model}) give {list(want)}")
    return found


def save_hf_gpt2(model: GPT, path) -> Path:
    """Write ``model`` as a GPT-2 folder ``path`` (``config.json`` + ``model.safetensors``,
    float32) that ``transformers.GPT2LMHeadModel.from_pretrained(path)`` opens. Each file is
    written to a temporary file and renamed; the tensors are made and written one at a
    time. A config GPT-2 cannot express raises ValueError naming the field, before any file
    is written. Returns ``Path(path)``."""
    if not isinstance(model, GPT):
        raise TypeError(f"save_hf_gpt2 expects a scratchformer GPT, got {type(model).__name__}")
    cfg = model.config
    hf = hf_config_from_gpt2(cfg)
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    layout, shapes = hf_layout(cfg), cfg.param_shapes()
    arrays = {k: p.data for k, p in model.named_parameters()}
    specs = [(name, hf_shape(parts, shapes)) for name, parts in layout.items()]
    write_safetensors(folder / "model.safetensors", specs,
                      lambda name: join_hf_tensor(layout[name], arrays), {"format": "pt"})
    write_text_atomic(folder / "config.json", json.dumps(hf, indent=2) + "\n")
    return folder


def _folder(path) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder (expected a GPT-2 folder with "
                                f"config.json and model.safetensors)")
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected a GPT-2 folder with config.json and "
                         f"model.safetensors)")
    return folder


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a GPT-2 folder holds config.json and "
                                f"model.safetensors)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
