"""Attention snapshots on disk: what ``TrainingMonitor`` leaves in a run directory.

Two files, both replaced atomically (temporary file, then rename) each time a snapshot
is added, so a reader (``scratchformer report --serve``) never sees half of one:

    snapshots.safetensors   one tensor per (step, attention module): ``attn/{step}/{module}``,
                            float16 (H, Tq, Tk), each row a softmax over the keys
    snapshots.json          the index: {"version": 1, "steps": [...], "outputs": [...],
                            "modules": {module: {"query": axis, "key": axis, "causal": bool}},
                            "tokens": {axis: [labels]}, "input_text", "target_text", "kind"}

``steps`` lists only snapshots whose tensors are in the safetensors file (it is written
first). Not fsync'd (they are rewritten at every snapshot; a power cut may lose the latest). The tensor file is plain safetensors — written by the checkpoint module's atomic
writer and readable by any safetensors library — and read back here by a small reader
that checks every offset against the file before reading.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path

import numpy as np


from .safetensors_file import DTYPES, write_file

TENSORS, INDEX = "snapshots.safetensors", "snapshots.json"
FORMAT = "scratchformer-attention-snapshots"


def tensor_name(step: int, module: str) -> str:
    """The safetensors key of one snapshot: ``attn/{step}/{module}``."""
    return f"attn/{step}/{module}"


def write_snapshots(run_dir, index: dict, maps: dict[int, dict[str, np.ndarray]]) -> None:
    """Write ``maps`` ({step: {module: (H, Tq, Tk)}}) as float16, then ``index`` as JSON."""
    run_dir = Path(run_dir)
    tensors = {tensor_name(s, m): np.asarray(a, dtype=np.float16)
               for s in sorted(maps) for m, a in maps[s].items()}
    write_file(run_dir / TENSORS, tensors, {"format": FORMAT, "version": "1"},
               durable=False)  # rewritten at every snapshot: no fsync
    atomic_write_text(run_dir / INDEX, json.dumps(index, ensure_ascii=False))


def atomic_write_text(path, text: str) -> None:
    """``text`` (UTF-8) into ``path`` via a temporary file and a rename: a reader sees the
    old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_snapshots(run_dir) -> dict | None:
    """The index of ``run_dir``'s snapshots with ``maps`` = {step: {module: float32 (H, Tq, Tk)}}
    added, or None when the run has none. Steps in the index without tensors are dropped
    (with their outputs)."""
    run_dir = Path(run_dir)
    if not (run_dir / INDEX).is_file() or not (run_dir / TENSORS).is_file():
        return None
    with open(run_dir / INDEX, encoding="utf-8") as f:
        index = json.load(f)
    tensors = read_safetensors(run_dir / TENSORS)
    steps, outputs, maps = [], [], {}
    for step, out in zip(index.get("steps", []), index.get("outputs", [])):
        got = {m: tensors[tensor_name(step, m)].astype(np.float32)
               for m in index["modules"] if tensor_name(step, m) in tensors}
        if len(got) == len(index["modules"]):
            steps.append(step)
            outputs.append(out)
            maps[step] = got
    return {**index, "steps": steps, "outputs": outputs, "maps": maps}


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, checked: the header fits the file and each
    tensor's bytes match its dtype, shape and offsets. ValueError names the problem."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= size - 8:
            raise ValueError(f"{path}: not a safetensors file (header length {n} in {size} bytes)")
        header = json.loads(f.read(n).decode("utf-8"))
        header.pop("__metadata__", None)
        data = f.read()
    out = {}
    for name, e in header.items():
        dtype = np.dtype(DTYPES.get(e.get("dtype"), np.void)).newbyteorder("<")
        begin, end = e["data_offsets"]
        if dtype.kind == "V" or not 0 <= begin <= end <= len(data) \
                or end - begin != math.prod(e["shape"]) * dtype.itemsize:
            raise ValueError(f"{path}: malformed entry {name!r}: {str(e)[:100]}")
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(e["shape"])
    return out
