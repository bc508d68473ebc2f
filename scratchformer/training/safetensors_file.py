"""One safetensors file on disk, the container of a checkpoint: written atomically with
SHA-256 checksums, read back checked. What the tensors and metadata *mean* is
``checkpoint.py``'s business; this module only moves bytes safely.

The layout (the safetensors format: the file opens with ``safetensors`` in NumPy,
PyTorch, JAX or Rust)::

    8 bytes     N, the header's length (little-endian u64)
    N bytes     a JSON header: {"__metadata__": {..., "sha256": "<64 hex digits>",
                                                 "header_sha256": "<64 hex digits>", ...},
                                "<name>": {"dtype": "F32", "shape": [...],
                                           "data_offsets": [begin, end]}, ...}
                padded with spaces to a multiple of 8 bytes
    the rest    every tensor's bytes, little-endian, back to back

Checksums, two strings in the metadata: ``sha256`` is the SHA-256 of the tensor bytes
(everything after the header, in file order), hashed as they are written;
``header_sha256`` is the SHA-256 of the header as canonical JSON
(``json.dumps(header, sort_keys=True, separators=(",", ":"))`` with the
``header_sha256`` entry left out), so the metadata is covered too. A single flipped bit
anywhere in the file then fails one check or the other (or the parsing). A file with
neither key (written before checksums existed, or by another program) is read unchecked.

Writing: a temporary file ``.<name>.<random>.tmp`` in the target's directory; the header
goes first with both digests as 64 zeros, then the tensors (hashed on the way), then the
header again with the real digests (the same length); flush, fsync, rename over the
target — a crash leaves the old file or the new one, never half of one. A failed write
raises an ``OSError`` naming the target, never the temporary file, which is removed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
import struct
import tempfile
from pathlib import Path

import numpy as np

MAX_HEADER = 64 << 20  # bytes of JSON header at most (a few KB in practice)
UNSEALED = "0" * 64  # the digests' placeholder while the tensors are being written
# safetensors dtype names of the dtypes a checkpoint may hold
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
          "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}
DTYPE_NAMES = {np.dtype(t): name for name, t in DTYPES.items()}


class CheckpointError(ValueError):
    """A file that is not a readable ScratchFormer checkpoint (the message says why)."""


# ---- write ------------------------------------------------------------------------------
def write_file(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str],
               durable: bool = True) -> None:
    """``tensors`` (numeric arrays, in this order) and ``metadata`` (str → str; ``sha256``
    and ``header_sha256`` are added) into the safetensors file ``path``, atomically.
    ``durable=False``: no fsync — still never half a file to a reader, but a power cut may
    lose it (for files rewritten often, like the attention snapshots)."""
    metadata = {**metadata, "sha256": UNSEALED, "header_sha256": UNSEALED}
    header, offset, chunks = {"__metadata__": metadata}, 0, []
    for name, a in tensors.items():
        a = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")  # keeps 0-d as 0-d
        header[name] = {"dtype": DTYPE_NAMES[np.dtype(a.dtype.type)], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        chunks.append(a.reshape(-1).view(np.uint8))  # the bytes as they go to disk
    head = _encode_header(header)
    tmp = None
    try:
        _check_target(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(head)) + head)
            data = hashlib.sha256()
            for chunk in chunks:
                data.update(chunk)
                f.write(chunk)
            metadata["sha256"] = data.hexdigest()
            metadata["header_sha256"] = header_digest(header)
            f.seek(8)
            f.write(_encode_header(header))  # the same length: only 64 zeros became digits
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp: 0600
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise _not_written(path, tmp, e) from None
    except BaseException:
        _remove(tmp)
        raise
    if durable:
        _fsync_directory(path.parent)


def _encode_header(header: dict) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return head + b" " * (-len(head) % 8)  # the data starts 8-byte aligned


def header_digest(header: dict) -> str:
    """SHA-256 (hex) of ``header`` as canonical JSON, its ``header_sha256`` entry left out."""
    metadata = {k: v for k, v in header["__metadata__"].items() if k != "header_sha256"}
    text = json.dumps({**header, "__metadata__": metadata}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_target(path: Path) -> None:
    """Refuse, before writing anything, a target that is there but is not a file, or a
    path through a regular file."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{parent} is not a directory", str(path))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # nothing there yet
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "a directory is in the way", str(path))
    if not stat.S_ISREG(st.st_mode):
        raise FileExistsError(errno.EEXIST, "something that is not a regular file (a FIFO, "
                              "socket or device) is in the way", str(path))


def _remove(tmp: str | None) -> None:
    if tmp is not None:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _not_written(path: Path, tmp: str | None, e: OSError) -> OSError:
    """``e`` retold about ``path``: the same errno (so the same OSError subclass), the
    reason, and the path the user gave, never a temporary file's name."""
    reason = e.strerror or str(e) or type(e).__name__
    if tmp:
        reason = reason.replace(tmp, str(path))
    other = Path(os.fsdecode(e.filename)) if isinstance(e.filename, (str, bytes)) else None
    if other is not None and other != path and not (  # e.g. a parent that is a regular file
            other.parent == path.parent and other.name.startswith(f".{path.name}.")):
        reason += f" ({other})"
    reason = f"checkpoint not written: {reason}"
    if e.errno is None:
        return OSError(f"{path}: {reason}")
    return OSError(e.errno, reason, str(path))


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); not possible everywhere."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ---- read -------------------------------------------------------------------------------
def open_regular(path: Path):
    """Open ``path`` for reading if it is a regular file: a FIFO or device is never opened."""
    st = os.stat(path)  # FileNotFoundError for a missing file
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise CheckpointError(f"{path}: {what}; a checkpoint is a .safetensors file")
    return open(path, "rb")


def unique_keys(pairs):
    """A ``json.loads`` ``object_pairs_hook``: a dict, or CheckpointError on a repeated key."""
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise CheckpointError(f"duplicate entries {dup[:5]}")
    return dict(pairs)


def read_header(path: Path, f, verify: bool = True) -> tuple[dict, dict]:
    """(tensor entries, metadata) from the header of the open file ``f``: a JSON object
    that fits the file, unique keys, offsets that tile the data exactly, and (``verify``)
    the header's own SHA-256 when it records one. ``f`` is left at the data's start."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path}: not a ScratchFormer checkpoint ({size} bytes: too short "
                              f"for a safetensors file)")
    n = struct.unpack("<Q", head)[0]
    if n > min(size - 8, MAX_HEADER):
        raise CheckpointError(f"{path}: not a ScratchFormer checkpoint (not a safetensors file: "
                              f"header length {n:,} does not fit a file of {size:,} bytes; first "
                              f"bytes {head!r})")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=unique_keys)
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable header ({e})") from None
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict):
        metadata = {}
    elif verify:
        _check_header_digest(path, header)
    header.pop("__metadata__", None)
    _check_offsets(path, header, size - 8 - n)
    return header, metadata


def corrupt(path: Path, what: str) -> CheckpointError:
    """The error for a file whose bytes are not the ones written."""
    return CheckpointError(f"{path}: checksum mismatch: the file is corrupt ({what}); "
                           f"load(path, allow_corrupt=True) opens it for inspection")


def _check_header_digest(path: Path, header: dict) -> None:
    metadata = header["__metadata__"]
    recorded = [metadata.get(k) for k in ("sha256", "header_sha256")]
    if recorded == [None, None]:
        return  # written before checksums existed
    if not all(isinstance(d, str) and len(d) == 64 and set(d) <= set("0123456789abcdef")
               for d in recorded):
        raise corrupt(path, "its metadata's sha256 and header_sha256 are not both 64 hex digits")
    if header_digest(header) != metadata["header_sha256"]:
        raise corrupt(path, "the header differs from the one its SHA-256 was computed on")


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


def read_tensors(path: Path, f, entries: dict, sha256: str | None) -> dict[str, np.ndarray]:
    """Every tensor, read in file order from ``f`` (at the data's start). The offsets tile
    the data, so this hashes exactly the data region: compared with ``sha256`` unless None."""
    start, digest, out = f.tell(), hashlib.sha256(), {}
    for name, e in sorted(entries.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = e["data_offsets"]
        f.seek(start + begin)
        raw = f.read(end - begin)
        digest.update(raw)
        a = np.frombuffer(raw, dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        out[name] = a.astype(a.dtype.newbyteorder("="), copy=True).reshape(e["shape"])
    if sha256 is not None and digest.hexdigest() != sha256:
        raise corrupt(path, f"its tensor bytes hash to {digest.hexdigest()[:16]}…, its header "
                            f"records {sha256[:16]}…")
    return out
