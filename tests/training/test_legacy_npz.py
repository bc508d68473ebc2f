"""Checkpoints of the format before safetensors (``.npz``, version 1): converted exactly by
``scratchformer convert-checkpoint``, and read without ever unpickling — anything that is
not such a checkpoint is a clear CheckpointError."""

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scratchformer.cli import main
from scratchformer.training.checkpoint import CheckpointError
from scratchformer.training.checkpoint import load as sf_load
from scratchformer.training.legacy_npz import convert
from scratchformer.training.optim import AdamW


def save_v1(path, model, optimizer=None, **state):
    """A checkpoint exactly as ScratchFormer wrote them before safetensors (format version 1)."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt_meta = None
    if optimizer is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        opt_meta = {"type": type(optimizer).__name__, "param_names": [names[id(p)] for p in optimizer.params]}
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    meta = {"format": "scratchformer-checkpoint", "version": 1,
            "model": {"kind": type(model).__name__, "config": model.config.to_dict(),
                      "dtype": str(model.dtype)},
            "rng": model.rng.bit_generator.state, "optimizer": opt_meta,
            "state": state, "state_arrays": []}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.fixture
def good(tmp_path, make_transformer):
    model = make_transformer(11, n_decoder_layers=2, seed=7)
    return save_v1(tmp_path / "good.npz", model, AdamW(model.parameters(), lr=1e-3), step=5)


def load(path):
    """Read an old checkpoint the only way left: converting it (then load the new file)."""
    return sf_load(convert(path, Path(str(path) + ".safetensors")))


def test_conversion_keeps_model_optimizer_rng_and_state(good, tmp_path):
    new = convert(good)
    assert new == good.with_suffix(".safetensors")
    model, opt_state, state = sf_load(new)
    with np.load(good) as z:
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v, z[f"model/{k}"])
        np.testing.assert_array_equal(opt_state["exp_avg.0"], z["optim/exp_avg.0"])
    assert state == {"step": 5} and str(opt_state["type"]) == "AdamW"
    AdamW(model.parameters(), lr=1e-3).load_state_dict(opt_state)
    data = new.read_bytes()  # the new file carries the checksums of any new checkpoint
    n = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8:8 + n])["__metadata__"]
    assert metadata["sha256"] == hashlib.sha256(data[8 + n:]).hexdigest()


def test_convert_command_writes_the_new_file_and_load_points_to_it(good, capsys):
    with pytest.raises(CheckpointError, match="scratchformer convert-checkpoint"):
        sf_load(good)
    assert main(["convert-checkpoint", str(good)]) == 0
    assert "good.safetensors" in capsys.readouterr().out
    assert main(["convert-checkpoint", str(good), str(good)]) == 2  # never over its input


def rewrite(src, dst, change):
    """Copy an archive entry by entry, letting ``change(dict)`` edit the arrays."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(dst, **arrays)
    return dst


def meta_of(arrays):
    return json.loads(arrays["__meta__"].tobytes().decode())


def set_meta(arrays, meta):
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)


def expect_refusal(path, *patterns):
    with pytest.raises(CheckpointError) as info:
        load(path)
    msg = str(info.value)
    assert str(path) in msg
    for p in patterns:
        assert p in msg, msg
    assert isinstance(info.value, ValueError)


def test_missing_file_raises_file_not_found_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        convert(tmp_path / "nope.npz")


def test_truncated_checkpoint_is_refused(good, tmp_path):
    data = good.read_bytes()
    for n in (10, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"trunc{n}.npz"
        bad.write_bytes(data[:n])
        expect_refusal(bad, "corrupt or truncated")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    expect_refusal(empty, "not an .npz archive")


def test_corrupted_bytes_are_refused(good, tmp_path):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:  # flip bytes inside one weight array's data
        info = z.getinfo("model/decoder.layers.1.ffn.linear1.weight.npy")
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[at:at + 8] = bytes(255 - b for b in data[at:at + 8])
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    expect_refusal(bad, "corrupt or truncated", "CRC")


def test_random_file_is_refused(tmp_path):
    bad = tmp_path / "random.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    expect_refusal(bad, "not an .npz archive")
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3))
    expect_refusal(npy, "single .npy array")


def test_foreign_npz_is_refused(tmp_path):
    bad = tmp_path / "foreign.npz"
    np.savez(bad, weights=np.ones(3))
    expect_refusal(bad, "without '__meta__'", "not a ScratchFormer checkpoint")
    zf = tmp_path / "plain.zip"
    with zipfile.ZipFile(zf, "w") as z:
        z.writestr("readme.txt", "hello")
    expect_refusal(zf, "not a NumPy array")


def test_pickled_content_is_refused_and_never_unpickled(good, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("pickle.loads must never run")
    objarr = rewrite(good, tmp_path / "objects.npz",
                     lambda a: a.update({"state/evil": np.array([{"x": 1}], dtype=object)}))
    pkl = tmp_path / "pickled.npz"
    pkl.write_bytes(pickle.dumps({"model/x": np.ones(2)}))
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    expect_refusal(objarr, "'state/evil' is a pickled object array")
    expect_refusal(pkl, "looks like a pickle file")


def test_wrong_format_version_kind_or_weights_are_refused(good, tmp_path):
    def edit(name, fn):
        def change(a):
            meta = meta_of(a)
            fn(meta, a)
            set_meta(a, meta)
        return rewrite(good, tmp_path / name, change)

    expect_refusal(edit("v.npz", lambda m, a: m.update(version=99)),
                   "format version 99", "reads version 1")
    expect_refusal(edit("f.npz", lambda m, a: m.update(format="other")), "'other'")
    expect_refusal(edit("k.npz", lambda m, a: m["model"].update(kind="LSTM")),
                   "unknown model kind 'LSTM'")
    expect_refusal(edit("c.npz", lambda m, a: m["model"]["config"].update(d_model=15)),
                   "cannot rebuild its model", "d_model")
    expect_refusal(edit("w.npz", lambda m, a: a.pop("model/generator.bias")),
                   "cannot rebuild its model", "generator.bias")
    expect_refusal(edit("s.npz", lambda m, a: a.update({"model/generator.bias": np.ones(3)})),
                   "cannot rebuild its model", "shape mismatch", "generator.bias")
    garbled = rewrite(good, tmp_path / "j.npz",
                      lambda a: a.update(__meta__=np.frombuffer(b"{not json", np.uint8)))
    expect_refusal(garbled, "unreadable __meta__")
