"""A small safetensors reader and writer in NumPy: one tensor at a time, never the whole file.

The format (the same one our checkpoints use, see ``training/checkpoint.py``)::

    8 bytes     N, the header's length (little-endian u64)
    N bytes     JSON: {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [...],
                                                        "data_offsets": [begin, end]}, ...}
    the rest    the tensors' bytes, little-endian, offsets relative to the end of the header

``SafetensorsReader`` checks the header against the file's size when it opens (a truncated
file is refused before any tensor is read) and ``read(name)`` reads one tensor straight into
a fresh array, converted to float32 (F16 and BF16 widened exactly), so a caller that places
each tensor and drops it holds one tensor at a time — loading a model never needs a second
copy of its weights. ``write_safetensors`` streams tensors produced one at a time into a
temporary file and renames it over the target (a crash leaves the old file or the new one).

Errors are ``ValueError``s that start with the file's path; a missing file is a
``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

MAX_HEADER = 100 << 20  # bytes of JSON header at most (GPT-2 small's is 15 KB)
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8,
            "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
FLOATS = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}  # stored as → read as


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) → float32: the 16 bits are float32's upper half."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class SafetensorsReader:
    """``with SafetensorsReader(path) as f: f.read(name)``; ``f.entries``: {name: (dtype,
    shape, begin, end)} from the header, checked against the file; ``f.metadata``."""

    def __init__(self, path):
        self.path = Path(path)
        st = os.stat(self.path)  # FileNotFoundError names the path
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{self.path}: not a regular file")
        self._f = open(self.path, "rb")
        try:
            self.entries, self.metadata, self._data = self._read_header(st.st_size)
        except BaseException:
            self._f.close()
            raise

    def _fail(self, why: str) -> ValueError:
        return ValueError(f"{self.path}: {why}")

    def _read_header(self, size: int):
        head = self._f.read(8)
        if len(head) < 8:
            raise self._fail(f"not a safetensors file ({size} bytes: too short)")
        n = struct.unpack("<Q", head)[0]
        if n > min(size - 8, MAX_HEADER):
            raise self._fail(f"not a safetensors file, or truncated: header length {n:,} does not "
                             f"fit a file of {size:,} bytes")
        try:
            header = json.loads(self._f.read(n).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
        except (ValueError, UnicodeDecodeError) as e:
            raise self._fail(f"unreadable safetensors header ({e})") from None
        metadata = header.pop("__metadata__", None) or {}
        data_len, entries = size - 8 - n, {}
        for name, e in header.items():
            entries[name] = self._check_entry(name, e, data_len)
        return entries, metadata, 8 + n

    def _check_entry(self, name: str, e, data_len: int):
        ok = (isinstance(e, dict) and e.get("dtype") in ITEMSIZE and isinstance(e.get("shape"), list)
              and all(type(d) is int and 0 <= d < 2 ** 40 for d in e["shape"])
              and isinstance(e.get("data_offsets"), list) and len(e["data_offsets"]) == 2
              and all(type(o) is int and o >= 0 for o in e["data_offsets"]))
        if not ok:
            raise self._fail(f"malformed header entry {name!r}: {str(e)[:120]}")
        begin, end = e["data_offsets"]
        nbytes = math.prod(e["shape"]) * ITEMSIZE[e["dtype"]]
        if end - begin != nbytes:
            raise self._fail(f"{name}: {e['dtype']} {e['shape']} needs {nbytes:,} bytes, its offsets "
                             f"give {end - begin:,}")
        if end > data_len:
            raise self._fail(f"truncated: {name} ends at byte {end:,} of the data, the file holds "
                             f"{data_len:,}")
        return e["dtype"], tuple(e["shape"]), begin, end

    def read(self, name: str, dtype=np.float32) -> np.ndarray:
        """Tensor ``name`` as a new ``dtype`` array (a floating tensor: F64, F32, F16 or BF16)."""
        kind, shape, begin, end = self.entries[name]
        if kind not in FLOATS:
            raise self._fail(f"{name} is {kind}; expected a floating tensor (F32, F16, BF16, F64)")
        raw = np.empty(shape, dtype=np.dtype(FLOATS[kind]))
        self._f.seek(self._data + begin)
        got = self._f.readinto(memoryview(raw.reshape(-1).view(np.uint8))) if raw.size else 0
        if got != end - begin:
            raise self._fail(f"truncated: {name} has {got:,} of its {end - begin:,} bytes")
        if kind == "BF16":
            raw = bf16_to_float32(raw)
        return raw.astype(dtype, copy=False)  # F32 into float32: the array itself, no copy

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_safetensors(path, specs: list[tuple[str, tuple[int, ...]]],
                      produce: Callable[[str], np.ndarray], metadata: dict[str, str]) -> Path:
    """Write float32 tensors ``specs`` [(name, shape)] to ``path``, atomically.

    ``produce(name)`` is called once per tensor, in order, and its array is written and
    dropped before the next is made: one tensor in memory at a time. Temporary file in the
    target's folder, fsync, rename.
    """
    path = Path(path)
    header, offset = {"__metadata__": metadata}, 0
    for name, shape in specs:
        nbytes = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    with _atomic(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, shape in specs:
            a = np.ascontiguousarray(produce(name), dtype="<f4")
            if a.shape != tuple(shape):
                raise ValueError(f"{name}: produced shape {a.shape}, declared {tuple(shape)}")
            f.write(memoryview(a.reshape(-1).view(np.uint8)))
    return path


def write_text_atomic(path, text: str) -> Path:
    """``text`` into ``path`` through a temporary file and a rename."""
    path = Path(path)
    with _atomic(path, "w") as f:
        f.write(text)
    return path


@contextlib.contextmanager
def _atomic(path: Path, mode: str):
    """A file opened in ``mode`` on a temporary name next to ``path``: flushed, fsync'd and
    renamed over ``path`` when the block ends, removed if it raises (never half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
