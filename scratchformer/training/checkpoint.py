"""Checkpoints: one safetensors file — tensors and JSON metadata, never a pickle.

The file is the safetensors format (the same file opens with ``safetensors`` in NumPy,
PyTorch, JAX or Rust)::

    8 bytes     N, the header's length (little-endian u64)
    N bytes     a JSON header: {"__metadata__": {"format": "scratchformer-checkpoint",
                                                 "version": "2", "scratchformer": "<JSON>"},
                                "model/<key>": {"dtype": "F32", "shape": [...],
                                                "data_offsets": [begin, end]}, ...}
    the rest    every tensor's bytes, little-endian, back to back

Tensors: ``model/<key>`` (the state_dict; tied embeddings stored once), ``optim/<key>``
(the optimizer's flat state: moments, step, hyper-parameters) and ``state/<key>`` (NumPy
arrays passed as keyword state). The ``scratchformer`` metadata entry holds the model's
kind, config and dtype, the dropout RNG state, the optimizer's type and parameter names,
and the JSON keyword state (task options, vocabulary, trainer state, ...).

Writing is atomic: a temporary file ``.<name>.<random>.tmp`` in the target's directory,
flushed and fsync'd, then renamed over the target — a crash leaves the old checkpoint or
the new one, never half of one. Only float32 and float64 models are written, so whatever
``save`` writes, ``load`` reads.

Reading checks everything before it allocates anything but the header: a regular file
(never a FIFO or a directory), a header that fits the file, known and unique entries, the
config's sizes within bounds (``models/sizes.py``), each tensor's dtype and declared shape
against the config, offsets that tile the data exactly. Then it reads the tensors and
refuses NaN or infinite weights (``allow_nonfinite=True`` loads them for inspection).
Anything wrong raises ``CheckpointError`` (a ``ValueError``) naming the path and the
problem; a missing file raises ``FileNotFoundError``. An ``.npz`` checkpoint of the
format before this one is refused with the command that converts it
(``scratchformer convert-checkpoint OLD.npz``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import stat
import struct
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "scratchformer-checkpoint"
VERSION = "2"
SUFFIX = ".safetensors"
MAX_HEADER = 64 << 20  # bytes of JSON header at most (a few KB in practice)

# kind name → (module, model class, config class); imported only when needed
MODEL_KINDS = {
    "Transformer": ("scratchformer.models.transformer", "Transformer", "TransformerConfig"),
    "GPT": ("scratchformer.models.gpt", "GPT", "GPTConfig"),
}
# safetensors dtype names of the dtypes a checkpoint may hold
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
          "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(t): name for name, t in DTYPES.items()}


class CheckpointError(ValueError):
    """A file that is not a readable ScratchFormer checkpoint (the message says why)."""


# ---- save ------------------------------------------------------------------------------
def save(path, model, optimizer=None, **state) -> Path:
    """Write ``model`` (+ ``optimizer`` state, + user ``state``) to ``path`` atomically.

    ``state``: keyword values stored with the checkpoint and returned by ``load`` — JSON-able
    values (numbers, strings, bools, None, lists, dicts with str keys; NumPy scalars become
    numbers, tuples become lists) go into the metadata, numeric NumPy arrays into
    ``state/<key>``. Parent directories are created. Returns ``Path(path)``.
    """
    opt_meta, opt_state = None, None
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
        opt_meta = {"type": type(optimizer).__name__, "param_names": [names[id(p)] for p in params]}
        opt_state = optimizer.state_dict()
    return write(path, model, opt_meta, opt_state, state)


def write(path, model, opt_meta: dict | None, opt_state: dict | None, state: dict) -> Path:
    """``save`` from parts: the optimizer as its metadata (type, parameter names) and flat state."""
    path = Path(path)
    kind = _kind_of(model)
    if model.dtype not in (np.float32, np.float64):
        raise TypeError(f"save: model dtype {model.dtype}; checkpoints hold float32 or float64 "
                        f"models (model.astype(np.float32) first)")
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for key, value in (opt_state or {}).items():
        if key != "type":  # the class name goes into the metadata
            tensors[f"optim/{key}"] = _numeric(f"optimizer state {key!r}", value)
    json_state, array_names = {}, []
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            tensors[f"state/{key}"] = _numeric(f"state {key!r}", value)
            array_names.append(key)
            continue
        try:
            json.dumps(value, default=_json_default)
        except (TypeError, ValueError) as e:
            raise TypeError(f"save: state {key!r} must be JSON-serialisable or "
                            f"a numeric NumPy array, got {type(value).__name__} ({e})") from None
        json_state[key] = value
    rng = getattr(model, "rng", None)
    meta = {"model": {"kind": kind, "config": _config_dict(model.config), "dtype": str(model.dtype)},
            "rng": rng.bit_generator.state if rng is not None else None,
            "optimizer": opt_meta, "state": json_state, "state_arrays": array_names}
    metadata = {"format": FORMAT, "version": VERSION,
                "scratchformer": json.dumps(meta, default=_json_default)}
    write_safetensors(path, tensors, metadata)
    return path


def _kind_of(model) -> str:
    for kind, (module, cls_name, _) in MODEL_KINDS.items():
        if type(model).__name__ == cls_name and type(model).__module__ == module:
            return kind
    raise TypeError(f"save: model must be one of {sorted(MODEL_KINDS)}, "
                    f"got {type(model).__module__}.{type(model).__name__}")


def _config_dict(config) -> dict:
    return config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)


def _json_default(value):
    if isinstance(value, np.generic):  # np.float32(1.5), np.int64(3) → plain numbers
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _numeric(where: str, value) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype not in _NAMES:
        raise TypeError(f"save: {where} has dtype {value.dtype}; a checkpoint holds numeric and "
                        f"bool arrays only ({', '.join(sorted(_NAMES.values()))})")
    return value


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str],
                      durable: bool = True) -> None:
    """The safetensors bytes into a temp file next to ``path``, fsync, rename over ``path``
    (``durable=False``: no fsync — still never half a file to a reader, but a power cut may
    lose it; for files rewritten often, like attention snapshots)."""
    header, offset, arrays = {"__metadata__": metadata}, 0, []
    for name, a in tensors.items():
        a = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")  # keeps 0-d as 0-d
        header[name] = {"dtype": _NAMES[np.dtype(a.dtype.type)], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for a in arrays:
                f.write(a.tobytes())
            f.flush()
            if durable:
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
    if not durable:
        return
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
def load(path, allow_nonfinite: bool = False):
    """Read a checkpoint written by ``save`` → ``(model, optimizer_state, state)``.

    ``model``: rebuilt from the stored kind and config, weights loaded strictly, dtype as
    saved, dropout RNG restored (so training resumes bit for bit). ``optimizer_state``:
    the optimizer's flat ``state_dict`` (for ``optimizer.load_state_dict``, or
    ``optimizer_from_state``), or None. ``state``: the user's keyword state, JSON values
    and arrays together. NaN or infinite weights raise ``CheckpointError`` unless
    ``allow_nonfinite`` (to inspect a diverged run).
    """
    path = Path(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        entries, meta = _read_header(path, f, size)
        cfg, module = _check_entries(path, entries, meta)
        tensors = _read_tensors(path, f, entries, allow_nonfinite)
    model_meta = meta["model"]
    model = getattr(module, MODEL_KINDS[model_meta["kind"]][1])(cfg)
    if np.dtype(model_meta["dtype"]) != model.dtype:
        model.astype(model_meta["dtype"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    if meta.get("rng") is not None:
        try:  # set in place: every Dropout holds this very Generator
            model.rng.bit_generator.state = meta["rng"]
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: unusable dropout RNG state ({e})") from None
    optimizer_state = None
    if meta["optimizer"] is not None:
        optimizer_state = {k[6:]: v for k, v in tensors.items() if k.startswith("optim/")}
        optimizer_state["type"] = np.array(meta["optimizer"]["type"])
    state = dict(meta["state"])
    state.update({k[6:]: v for k, v in tensors.items() if k.startswith("state/")})
    return model, optimizer_state, state


def open_regular(path: Path):
    """Open ``path`` for reading if it is a regular file: a FIFO or device is never opened."""
    st = os.stat(path)  # FileNotFoundError for a missing file
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise CheckpointError(f"{path}: {what}; a checkpoint is a .safetensors file")
    return open(path, "rb")


def _unique(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise CheckpointError(f"duplicate entries {dup[:5]}")
    return dict(pairs)


def _read_header(path: Path, f, size: int) -> tuple[dict, dict]:
    """(tensor entries, scratchformer metadata) from the header, checked against ``size``."""
    head = f.read(8)
    if head[:4] == b"PK\x03\x04":
        raise CheckpointError(f"{path}: an .npz checkpoint (the format before safetensors); "
                              f"convert it once with: scratchformer convert-checkpoint {path}")
    if len(head) < 8:
        raise CheckpointError(f"{path}: not a ScratchFormer checkpoint ({size} bytes: too short "
                              f"for a safetensors file)")
    n = struct.unpack("<Q", head)[0]
    if n > min(size - 8, MAX_HEADER):
        raise CheckpointError(f"{path}: not a ScratchFormer checkpoint (not a safetensors file: "
                              f"header length {n:,} does not fit a file of {size:,} bytes; first "
                              f"bytes {head!r})")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_unique)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        metadata = header.pop("__metadata__", None)
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise CheckpointError(f"{path}: a safetensors file, but not a ScratchFormer checkpoint "
                                  f"(no {FORMAT!r} in its metadata)")
        if metadata.get("version") != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {metadata.get('version')!r}; "
                                  f"this ScratchFormer reads version {VERSION}")
        meta = json.loads(metadata.get("scratchformer", ""), object_pairs_hook=_unique)
    except CheckpointError as e:
        raise CheckpointError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable header ({e})") from None
    for key, typ in (("model", dict), ("state", dict), ("state_arrays", list)):
        if not isinstance(meta, dict) or not isinstance(meta.get(key), typ):
            raise CheckpointError(f"{path}: metadata field {key!r} missing or not a {typ.__name__}")
    _check_offsets(path, header, size - 8 - n)
    return header, meta


def _check_offsets(path: Path, entries: dict, data_len: int) -> None:
    """Each entry a known dtype and a shape whose bytes match its offsets; together they
    tile the data exactly (no gap, no overlap, nothing after)."""
    spans = []
    for name, e in entries.items():
        ok = (isinstance(e, dict) and set(e) == {"dtype", "shape", "data_offsets"}
              and e["dtype"] in DTYPES and isinstance(e["shape"], list)
              and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40
                      for d in e["shape"])
              and isinstance(e["data_offsets"], list) and len(e["data_offsets"]) == 2
              and all(isinstance(o, int) and not isinstance(o, bool) for o in e["data_offsets"]))
        if not ok:
            raise CheckpointError(f"{path}: malformed header entry {name!r}: {str(e)[:120]}")
        begin, end = e["data_offsets"]
        nbytes = math.prod(e["shape"]) * np.dtype(DTYPES[e["dtype"]]).itemsize
        if end - begin != nbytes:
            raise CheckpointError(f"{path}: {name}: {e['dtype']} {e['shape']} needs {nbytes:,} bytes, "
                                  f"offsets give {end - begin:,}")
        spans.append((begin, end, name))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise CheckpointError(f"{path}: {name}: data at {begin:,}, expected {pos:,} (a gap or "
                                  f"an overlap: corrupt or not written by ScratchFormer)")
        pos = end
    if pos != data_len:
        raise CheckpointError(f"{path}: the tensors take {pos:,} bytes but the file holds {data_len:,} "
                              f"(truncated or padded)")


def _check_entries(path: Path, entries: dict, meta: dict):
    """The config (validated: sizes, memory) and its module; every entry known and expected."""
    model_meta = meta["model"]
    kind = model_meta.get("kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{path}: unknown model kind {kind!r}, expected one of {sorted(MODEL_KINDS)}")
    module_name, _, cfg_name = MODEL_KINDS[kind]
    module = importlib.import_module(module_name)
    if not isinstance(model_meta.get("config"), dict):
        raise CheckpointError(f"{path}: model config missing or not a dict")
    try:
        cfg = getattr(module, cfg_name)(**model_meta["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid {cfg_name} in checkpoint: {e}") from None
    dtype = model_meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise CheckpointError(f"{path}: model dtype {dtype!r}, expected 'float32' or 'float64'")
    shapes = cfg.param_shapes()
    want = {f"model/{k}": (_NAMES[np.dtype(dtype)], list(s)) for k, s in shapes.items()}
    opt = meta.get("optimizer")
    if opt is not None:
        names = opt.get("param_names") if isinstance(opt, dict) else None
        if not (isinstance(names, list) and isinstance(opt.get("type"), str)
                and all(isinstance(n, str) and n in shapes for n in names)):
            raise CheckpointError(f"{path}: malformed optimizer metadata {str(opt)[:120]}")
    expected_state = {f"state/{k}" for k in meta["state_arrays"] if isinstance(k, str)}
    for name, e in entries.items():
        if name in want:
            if [e["dtype"], e["shape"]] != list(want[name]):
                raise CheckpointError(f"{path}: {name} is {e['dtype']} {e['shape']}; the config "
                                      f"says {want[name][0]} {want[name][1]}")
        elif name.startswith("optim/") and opt is not None:
            base, _, idx = name[6:].rpartition(".")
            if idx.isdigit():  # a per-parameter state array: the parameter's shape and dtype
                i = int(idx)
                if i >= len(opt["param_names"]) or e["shape"] != list(shapes[opt["param_names"][i]]):
                    raise CheckpointError(f"{path}: {name} {e['shape']} does not match its parameter")
            elif math.prod(e["shape"]) > 16:  # step, num_params, hyper-parameters: scalars
                raise CheckpointError(f"{path}: {name}: unexpected optimizer entry of shape {e['shape']}")
        elif name not in expected_state:
            raise CheckpointError(f"{path}: unexpected entry {name!r} (not in the model's config "
                                  f"or the checkpoint's metadata)")
    missing = sorted(set(want) - set(entries)) + sorted(expected_state - set(entries))
    if missing:
        raise CheckpointError(f"{path}: missing entries {missing[:5]}")
    return cfg, module


def _read_tensors(path: Path, f, entries: dict, allow_nonfinite: bool) -> dict[str, np.ndarray]:
    start = f.tell()
    out = {}
    for name, e in sorted(entries.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = e["data_offsets"]
        f.seek(start + begin)
        a = np.frombuffer(f.read(end - begin), dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        a = a.astype(a.dtype.newbyteorder("="), copy=True).reshape(e["shape"])
        if not allow_nonfinite and a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise CheckpointError(f"{path}: {name} holds {bad:,} NaN or infinite values (a diverged "
                                  f"run?); load(path, allow_nonfinite=True) opens it for inspection")
        out[name] = a
    return out


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
