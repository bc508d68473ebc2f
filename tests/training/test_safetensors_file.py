"""The safetensors container (training/safetensors_file.py) under damage: SHA-256 checksums
of the tensor bytes and of the header make a flipped bit anywhere a clear CheckpointError
("checksum mismatch: the file is corrupt") unless ``allow_corrupt=True``; files from before
checksums still load; and a save that fails (a directory or FIFO in the way, a read-only
directory, a full disk) raises an OSError naming the user's path, never the temp file,
which is removed."""

import errno
import hashlib
import json
import os
import struct

import numpy as np
import pytest

from scratchformer.training import safetensors_file
from scratchformer.training.checkpoint import CheckpointError, load, save
from scratchformer.training.optim import AdamW

from on_disk import expect_refusal, read_header


@pytest.fixture(scope="module")
def make_model(make_transformer):
    return lambda seed=0: make_transformer(11, n_decoder_layers=2, seed=seed)


@pytest.fixture
def good(tmp_path, make_model):
    model = make_model(seed=7)
    return save(tmp_path / "good.safetensors", model, AdamW(model.parameters(), lr=1e-3),
                step=5, ids=np.arange(3))


# ---- a save that fails names the target ----------------------------------------------------
def expect_not_written(path, error, errno_):
    """A failed save: the OSError names ``path`` (the user's), never the temp file."""
    msg = str(error)
    assert isinstance(error, OSError) and error.errno == errno_, repr(error)
    assert error.filename == str(path) and str(path) in msg and "checkpoint not written" in msg
    assert ".tmp" not in msg and "\n" not in msg, msg


def test_a_directory_or_fifo_at_the_target_is_refused_before_writing(make_model, tmp_path):
    (tmp_path / "ck.safetensors").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        save(tmp_path / "ck.safetensors", make_model())
    expect_not_written(tmp_path / "ck.safetensors", info.value, errno.EISDIR)
    assert "a directory is in the way" in str(info.value)
    os.mkfifo(tmp_path / "pipe.safetensors")
    with pytest.raises(FileExistsError) as info:
        save(tmp_path / "pipe.safetensors", make_model())
    expect_not_written(tmp_path / "pipe.safetensors", info.value, errno.EEXIST)
    assert sorted(os.listdir(tmp_path)) == ["ck.safetensors", "pipe.safetensors"]  # no temp file
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError) as info:  # a path through a regular file
        save(tmp_path / "file" / "sub" / "ck.safetensors", make_model())
    expect_not_written(tmp_path / "file" / "sub" / "ck.safetensors", info.value, errno.ENOTDIR)
    assert f"{tmp_path / 'file'} is not a directory" in str(info.value)


def test_a_read_only_directory_names_the_target_not_the_temp_file(make_model, tmp_path, monkeypatch):
    path = tmp_path / "ck.safetensors"

    def read_only(dir, prefix, suffix):  # what mkstemp raises there (as root chmod would not)
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}x1y2{suffix}"))

    monkeypatch.setattr(safetensors_file.tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError) as info:
        save(path, make_model())
    expect_not_written(path, info.value, errno.EACCES)
    assert not os.listdir(tmp_path)


class FullDisk:
    """A file object whose disk fills up after ``room`` bytes (ENOSPC, no file name: as the
    kernel reports it)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        n = memoryview(data).nbytes
        if n > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_keeps_the_old_checkpoint_and_names_the_target(make_model, tmp_path, monkeypatch):
    path = tmp_path / "ck.safetensors"
    save(path, make_model(seed=1), step=1)
    before = path.read_bytes()
    real = os.fdopen
    monkeypatch.setattr(safetensors_file.os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode), 3000))
    with pytest.raises(OSError) as info:
        save(path, make_model(seed=2), step=2)
    expect_not_written(path, info.value, errno.ENOSPC)
    assert "No space left on device" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.safetensors"]


# ---- checksums ---------------------------------------------------------------------------
def data_start(path) -> int:
    return 8 + struct.unpack("<Q", open(path, "rb").read(8))[0]


def flip(src, dst, byte, bit):
    """A copy of ``src`` with one bit flipped at byte offset ``byte``."""
    data = bytearray(src.read_bytes())
    data[byte] ^= 1 << bit
    dst.write_bytes(bytes(data))
    return dst


def with_metadata(src, dst, edit):
    """A copy of ``src`` whose header's metadata went through ``edit``, data unchanged."""
    header = read_header(src)
    edit(header["__metadata__"])
    head = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(head)) + head + src.read_bytes()[data_start(src):])
    return dst


def expect_corrupt(path):
    expect_refusal(path, "checksum mismatch: the file is corrupt", "allow_corrupt=True")


def test_the_checksums_in_the_metadata_are_sha256_of_the_bytes(good):
    data = good.read_bytes()
    header = read_header(good)
    metadata = header["__metadata__"]
    assert metadata["sha256"] == hashlib.sha256(data[data_start(good):]).hexdigest()
    del metadata["header_sha256"]
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    assert read_header(good)["__metadata__"]["header_sha256"] == hashlib.sha256(canonical).hexdigest()


def test_a_flipped_mantissa_bit_is_a_checksum_error(good, tmp_path):
    entry = read_header(good)["model/generator.weight"]
    byte = data_start(good) + entry["data_offsets"][0] + 4 * 5  # element 5, little-endian:
    bad = flip(good, tmp_path / "flip.safetensors", byte, 0)    # bit 0 is the mantissa's last
    expect_corrupt(bad)
    original, _, _ = load(good)
    model, _, _ = load(bad, allow_corrupt=True)  # the escape hatch: open it to look
    w, w0 = model.generator.weight.data.ravel(), original.generator.weight.data.ravel()
    assert w[5] == np.nextafter(w0[5], np.inf if w[5] > w0[5] else -np.inf)  # one ulp away
    np.testing.assert_array_equal(np.delete(w, 5), np.delete(w0, 5))


def test_a_flipped_bit_deep_in_a_big_tensor_is_a_checksum_error(tmp_path):
    gpt = pytest.importorskip("scratchformer.models.gpt")
    model = gpt.GPT(gpt.GPTConfig(vocab_size=8192, d_model=64, n_heads=2, d_ff=64, n_layers=1,
                                  max_len=8))  # tok_embed: 2 MiB
    path = save(tmp_path / "big.safetensors", model)
    begin, end = read_header(path)["model/tok_embed.weight"]["data_offsets"]
    assert end - begin == 8192 * 64 * 4
    byte = data_start(path) + (begin + end) // 2 + 1
    bad = flip(path, tmp_path / "big-flip.safetensors", byte, 3)
    expect_corrupt(bad)
    assert load(bad, allow_corrupt=True)[0].config == model.config


def test_a_flipped_bit_in_the_config_is_a_checksum_error(good, tmp_path):
    data = good.read_bytes()
    byte = data.index(b'\\"seed\\": 7') + len(b'\\"seed\\": ')  # "7" -> "6": still a valid config
    expect_corrupt(flip(good, tmp_path / "seed.safetensors", byte, 0))
    assert load(tmp_path / "seed.safetensors", allow_corrupt=True)[0].config.seed == 6


def test_a_single_flipped_bit_anywhere_is_refused(good, tmp_path):
    """Seeded positions over the whole file: length prefix, header, padding and data."""
    size = good.stat().st_size
    rng = np.random.default_rng(0)
    positions = [0, 7, 8, data_start(good) - 1, data_start(good), size - 1,
                 *rng.integers(0, size, 60)]
    for i, byte in enumerate(positions):
        bad = flip(good, tmp_path / f"flip{i}.safetensors", int(byte), int(rng.integers(0, 8)))
        with pytest.raises(CheckpointError) as info:
            load(bad)
        assert str(bad) in str(info.value)


def test_a_checkpoint_from_before_checksums_still_loads(good, tmp_path):
    old = with_metadata(good, tmp_path / "old.safetensors",
                        lambda md: (md.pop("sha256"), md.pop("header_sha256")))
    model, _, state = load(old)
    assert state["step"] == 5
    np.testing.assert_array_equal(model.generator.bias.data, load(good)[0].generator.bias.data)
    flipped = flip(old, tmp_path / "old-flipped.safetensors", good.stat().st_size - 1, 0)
    load(flipped)  # as documented: nothing to check it against


@pytest.mark.parametrize("edit", [
    lambda md: md.pop("header_sha256"),           # a flip in a key's name: as if missing
    lambda md: md.pop("sha256"),
    lambda md: md.update(sha256="not 64 hex digits"),
])
def test_a_checksum_entry_that_is_damaged_is_refused(good, tmp_path, edit):
    expect_corrupt(with_metadata(good, tmp_path / "digests.safetensors", edit))
