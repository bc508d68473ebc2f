"""Checkpoints: one ``.npz`` file, arrays only, never a pickle.

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

Writing is atomic: the archive goes to a temporary file in the target's directory, is
flushed and fsync'd, then ``os.replace``d over the target — a crash leaves either the old
checkpoint or the new one, never half of one. The file is written at exactly ``path``
(no ``.npz`` is appended, unlike ``np.savez``; ``.npz`` is the conventional suffix).

Reading uses ``np.load(..., allow_pickle=False)`` only. Anything that is not a checkpoint
of this format — truncated, corrupt, another program's ``.npz``, a pickle, an archive
holding an object array — raises ``CheckpointError`` (a ``ValueError``) naming the path
and what is wrong. A missing file raises ``FileNotFoundError``.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "scratchformer-checkpoint"
VERSION = 1
META_KEY = "__meta__"

# kind name → (module, model class, config class); imported only when needed, so a
# checkpoint module that is not written yet (or not importable) costs nothing until used
MODEL_KINDS = {
    "Transformer": ("scratchformer.models.transformer", "Transformer", "TransformerConfig"),
    "GPT": ("scratchformer.models.gpt", "GPT", "GPTConfig"),
}


class CheckpointError(ValueError):
    """A file that is not a readable ScratchFormer checkpoint (the message says why)."""


# ---- save ------------------------------------------------------------------------------
def _kind_of(model) -> str:
    for kind, (module, cls_name, _) in MODEL_KINDS.items():
        cls = type(model)
        if cls.__name__ == cls_name and cls.__module__ == module:
            return kind
    raise TypeError(f"save: model must be one of {sorted(MODEL_KINDS)}, "
                    f"got {type(model).__module__}.{type(model).__name__}")


def _config_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)


def _json_default(value):
    if isinstance(value, np.generic):  # np.float32(1.5), np.int64(3) → plain numbers
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _check_array(where: str, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.hasobject or value.dtype.kind == "V":
        raise TypeError(f"save: {where} has dtype {value.dtype}; only numeric, bool and string "
                        "arrays can be stored (objects would need pickle)")
    return value


def save(path, model, optimizer=None, **state) -> Path:
    """Write ``model`` (+ ``optimizer`` state, + user ``state``) to ``path`` atomically.

    ``state``: keyword values stored with the checkpoint and returned by ``load`` — JSON-able
    values (numbers, strings, bools, None, lists, dicts with str keys; NumPy scalars become
    numbers, tuples become lists) go into the metadata, NumPy arrays into ``state/<key>``.
    Parent directories are created. Returns ``Path(path)``.
    """
    path = Path(path)
    kind = _kind_of(model)
    arrays: dict[str, np.ndarray] = {}
    for key, value in model.state_dict().items():
        arrays[f"model/{key}"] = _check_array(f"model parameter {key!r}", value)

    opt_meta = None
    if optimizer is not None:
        names = {id(p): name for name, p in model.named_parameters()}
        params = getattr(optimizer, "params", None)
        if params is None or not hasattr(optimizer, "state_dict"):
            raise TypeError(f"save: optimizer must be a scratchformer optimizer (with .params and "
                            f".state_dict()), got {type(optimizer).__name__}")
        foreign = [i for i, p in enumerate(params) if id(p) not in names]
        if foreign:
            raise ValueError(f"save: optimizer params {foreign[:5]} are not parameters of the "
                             f"model being saved")
        opt_meta = {"type": type(optimizer).__name__,
                    "param_names": [names[id(p)] for p in params]}
        for key, value in optimizer.state_dict().items():
            arrays[f"optim/{key}"] = _check_array(f"optimizer state {key!r}", value)

    json_state, array_names = {}, []
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[f"state/{key}"] = _check_array(f"state {key!r}", value)
            array_names.append(key)
            continue
        try:
            json.dumps(value, default=_json_default)
        except (TypeError, ValueError) as e:
            raise TypeError(f"save: state {key!r} must be JSON-serialisable or a NumPy array, "
                            f"got {type(value).__name__} ({e})") from None
        json_state[key] = value

    rng = getattr(model, "rng", None)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"kind": kind, "config": _config_dict(model.config), "dtype": str(model.dtype)},
        "rng": rng.bit_generator.state if rng is not None else None,
        "optimizer": opt_meta,
        "state": json_state,
        "state_arrays": array_names,
    }
    text = json.dumps(meta, default=_json_default)
    arrays[META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    _atomic_write(path, arrays)
    return path


def _atomic_write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez into a temp file next to ``path``, fsync, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # a file object: np.savez appends no suffix
            f.flush()
            os.fsync(f.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable (POSIX); not possible everywhere
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ---- load ------------------------------------------------------------------------------
def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every entry of the archive, read eagerly with allow_pickle=False."""
    if not path.exists():
        raise FileNotFoundError(2, "checkpoint not found", str(path))
    with open(path, "rb") as f:
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


def _build_model(path: Path, model_meta: dict):
    kind = model_meta.get("kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{path}: unknown model kind {kind!r}, expected one of "
                              f"{sorted(MODEL_KINDS)}")
    module_name, cls_name, cfg_name = MODEL_KINDS[kind]
    module = importlib.import_module(module_name)  # lazy: gpt is imported only for GPTs
    config = model_meta.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: model config missing or not a dict")
    try:
        cfg = getattr(module, cfg_name)(**config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid {cfg_name} in checkpoint: {e}") from None
    model = getattr(module, cls_name)(cfg)
    dtype = model_meta.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise CheckpointError(f"{path}: model dtype {dtype!r}, expected 'float32' or 'float64'")
    if np.dtype(dtype) != model.dtype:
        model.astype(dtype)
    return model


def _split(arrays: dict, prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def load(path):
    """Read a checkpoint written by ``save`` → ``(model, optimizer_state, state)``.

    ``model``: rebuilt from the stored kind and config, weights loaded strictly, dtype as
    saved, dropout RNG restored (so training resumes bit for bit). ``optimizer_state``:
    the optimizer's flat ``state_dict`` (for ``optimizer.load_state_dict``, or
    ``optimizer_from_state``), or None. ``state``: the user's keyword state, JSON values
    and arrays together.
    """
    path = Path(path)
    arrays = _read_arrays(path)
    meta = _read_meta(path, arrays)
    model = _build_model(path, meta["model"])

    weights = _split(arrays, "model/")
    for key, value in weights.items():
        if value.dtype.kind != "f":
            raise CheckpointError(f"{path}: model/{key} has dtype {value.dtype}, expected floats")
    try:
        model.load_state_dict(weights, strict=True)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise CheckpointError(f"{path}: weights do not fit the stored "
                              f"{meta['model']['kind']} config: {msg}") from None

    rng_state = meta.get("rng")
    if rng_state is not None and getattr(model, "rng", None) is not None:
        try:  # set in place: every Dropout holds this very Generator
            model.rng.bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: unusable dropout RNG state ({e})") from None

    optim = _split(arrays, "optim/")
    if meta.get("optimizer") is not None and not optim:
        raise CheckpointError(f"{path}: metadata names an optimizer but no optim/ arrays are stored")
    optimizer_state = optim or None

    state = dict(meta["state"])
    stored = _split(arrays, "state/")
    if sorted(stored) != sorted(meta["state_arrays"]):
        raise CheckpointError(f"{path}: state arrays {sorted(stored)} do not match the metadata "
                              f"{sorted(meta['state_arrays'])}")
    state.update(stored)
    return model, optimizer_state, state


def optimizer_from_state(model, optimizer_state):
    """A new optimizer of the saved type and hyper-parameters over ``model.parameters()``,
    its state (moments, step count) restored: the usual way to resume after ``load``.

    Assumes the saved optimizer was built over ``model.parameters()`` in that order (the
    checkpoint's metadata records the names it did use); otherwise ``load_state_dict``
    raises on the parameter count or a shape.
    """
    from . import optim

    if optimizer_state is None:
        raise ValueError("optimizer_from_state: optimizer_state is None (the checkpoint holds "
                         "no optimizer)")
    name = str(np.asarray(optimizer_state.get("type")))
    cls = getattr(optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
        raise ValueError(f"optimizer_from_state: unknown optimizer type {name!r}")
    hyper = {}
    for h in cls._hyper:
        v = np.asarray(optimizer_state[h])
        hyper[h] = tuple(float(x) for x in v) if v.ndim else float(v)
    opt = cls(model.parameters(), **hyper)
    opt.load_state_dict(optimizer_state)
    return opt
