"""The checkpoint format before safetensors (version 1: one ``.npz`` archive), read only to
convert it: ``scratchformer convert-checkpoint OLD.npz [NEW.safetensors]``.

Layout of the archive (every entry a plain numeric or string array)::

    __meta__            uint8 bytes of a UTF-8 JSON object:
                          {"format": "scratchformer-checkpoint", "version": 1,
                           "model": {"kind": "Transformer" | "GPT", "config": {...},
                                     "dtype": "float32"},
                           "rng": model.rng.bit_generator.state      (dropout stream),
                           "optimizer": null | {"type": "AdamW", "param_names": [...]},
                           "state": {JSON-able user state: step, task options, vocab, ...},
                           "state_arrays": [names of the state/<key> entries]}
    model/<key>         the model's state_dict (tied embeddings stored once)
    optim/<key>         the optimizer's flat state_dict (``exp_avg.0``, ``step``, ...)
    state/<key>         NumPy arrays passed to ``save`` as keyword state

Reading uses ``np.load(..., allow_pickle=False)`` only. Anything that is not a checkpoint
of this format — truncated, corrupt, another program's ``.npz``, a pickle, an archive
holding an object array — raises ``CheckpointError`` (a ``ValueError``) naming the path
and what is wrong. A missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import importlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .checkpoint import MODEL_KINDS, SUFFIX, CheckpointError, write
from .safetensors_file import open_regular

FORMAT = "scratchformer-checkpoint"
VERSION = 1
META_KEY = "__meta__"


# ---- load ------------------------------------------------------------------------------
def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every entry of the archive, read eagerly with allow_pickle=False."""
    with open_regular(path) as f:
        head = f.read(6)
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}"):
        raise CheckpointError(f"{path}: looks like a pickle file; ScratchFormer checkpoints are "
                              ".npz archives and are never unpickled")
    if head == b"\x93NUMPY":
        raise CheckpointError(f"{path}: a single .npy array, not a ScratchFormer checkpoint")
    if head[:4] != b"PK\x03\x04":
        raise CheckpointError(f"{path}: not a ScratchFormer checkpoint (not an .npz archive; "
                              f"first bytes {head!r})")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    value = npz[key]
                except ValueError as e:
                    if "allow_pickle" in str(e):
                        raise CheckpointError(f"{path}: entry {key!r} is a pickled object array; "
                                              "refusing to unpickle it") from None
                    raise
                if not isinstance(value, np.ndarray):  # a zip member that is not a .npy
                    raise CheckpointError(f"{path}: entry {key!r} is not a NumPy array: not a "
                                          "ScratchFormer checkpoint")
                arrays[key] = value
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, io.UnsupportedOperation,
            NotImplementedError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint "
                              f"({type(e).__name__}: {e})") from e
    return arrays


def _read_meta(path: Path, arrays: dict) -> dict:
    if META_KEY not in arrays:
        raise CheckpointError(f"{path}: an .npz without {META_KEY!r}: not a ScratchFormer "
                              f"checkpoint (entries: {sorted(arrays)[:5]})")
    raw = arrays.pop(META_KEY)
    try:
        if raw.dtype == np.uint8 and raw.ndim == 1:
            text = raw.tobytes().decode("utf-8")
        elif raw.dtype.kind == "U" and raw.ndim == 0:
            text = str(raw)
        else:
            raise ValueError(f"expected uint8 bytes, got {raw.dtype} {raw.shape}")
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable {META_KEY} ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: format {got!r} is not {FORMAT!r}: not a ScratchFormer "
                              "checkpoint")
    version = meta.get("version")
    if version != VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r}, this ScratchFormer "
                              f"reads version {VERSION} only")
    for key, typ in (("model", dict), ("state", dict), ("state_arrays", list)):
        if not isinstance(meta.get(key), typ):
            raise CheckpointError(f"{path}: metadata field {key!r} missing or not a {typ.__name__}")
    return meta


def convert(src, dst=None) -> Path:
    """Rewrite the version-1 ``.npz`` checkpoint ``src`` as a safetensors checkpoint ``dst``
    (default: ``src`` with the suffix ``.safetensors``): the same model, optimizer state,
    dropout RNG and keyword state. Returns the new path."""
    src = Path(src)
    dst = Path(dst) if dst is not None else src.with_suffix(SUFFIX)
    if dst.resolve() == src.resolve():
        raise ValueError(f"convert: the output {dst} would overwrite the input")
    arrays = _read_arrays(src)
    meta = _read_meta(src, arrays)
    kind = meta["model"].get("kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{src}: unknown model kind {kind!r}")
    module_name, cls_name, cfg_name = MODEL_KINDS[kind]
    module = importlib.import_module(module_name)
    try:
        model = getattr(module, cls_name)(getattr(module, cfg_name)(**meta["model"]["config"]))
        model.astype(meta["model"].get("dtype", "float32"))
        model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{src}: cannot rebuild its model: {e}") from None
    if meta.get("rng") is not None:
        model.rng.bit_generator.state = meta["rng"]
    opt_state = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")} or None
    state = dict(meta["state"])
    state.update({k[6:]: v for k, v in arrays.items() if k.startswith("state/")})
    return write(dst, model, meta.get("optimizer"), opt_state, state)
