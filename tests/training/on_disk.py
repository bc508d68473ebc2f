"""What the checkpoint and run-directory tests read back from disk, written once: a
safetensors header parsed by hand (independent of ``safetensors_file``), the one-line
refusal ``load`` must give, and a snapshot of a directory tree."""

import json
import os
import stat
import struct
from pathlib import Path

import pytest

from scratchformer.training.checkpoint import CheckpointError, load


def read_header(path) -> dict:
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n])


def expect_refusal(path, *patterns):
    """``load(path)`` raises a CheckpointError of one line that names ``path`` and holds
    every pattern; returns pytest's ExceptionInfo."""
    with pytest.raises(CheckpointError) as info:
        load(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for p in patterns:
        assert p in msg, msg
    return info


def snapshot(root) -> dict:
    """Every path under ``root`` → its bytes, or its kind for what is not a regular file."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            mode = os.lstat(p).st_mode
            out[os.path.relpath(p, root)] = (Path(p).read_bytes() if stat.S_ISREG(mode)
                                             else stat.S_IFMT(mode))
    return out
