"""Checkpoints: exact round trips (weights, dtype, optimizer, dropout RNG, user state),
bit-for-bit resume, atomic writes, the safetensors format itself, and a clear
CheckpointError for everything else — also under fuzzing. Checksums and failed writes:
test_safetensors_file.py."""

import hashlib
import json
import os
import struct

import numpy as np
import pytest

from scratchformer.training import safetensors_file
from scratchformer.training.checkpoint import CheckpointError, load, optimizer_from_state, save
from scratchformer.core.loss import CrossEntropyLoss
from scratchformer.training.optim import SGD, AdamW
from scratchformer.models.transformer import Transformer

import on_disk
from on_disk import read_header

V = 11


@pytest.fixture(scope="module")
def make_model(make_transformer):
    """``make_model(dropout=0.0, tie=False, seed=0)``: a 1+2-layer model over V tokens."""
    def make(dropout=0.0, tie=False, seed=0):
        return make_transformer(V, n_decoder_layers=2, dropout=dropout, tie_embeddings=tie, seed=seed)
    return make


def batch(seed=0, B=8, T=6):
    rng = np.random.default_rng(seed)
    src, tgt = rng.integers(1, V, (B, T)), rng.integers(1, V, (B, T))
    return src, tgt, rng.integers(1, V, (B, T))


def train_steps(model, opt, n, seed=0):
    """n steps of AdamW on fixed batches; returns the losses (dropout draws from model.rng)."""
    crit, losses = CrossEntropyLoss(), []
    model.train()
    for i in range(n):
        src, tgt, out = batch(seed + i)
        opt.zero_grad()
        losses.append(crit(model(src, tgt), out))
        model.backward(crit.backward())
        opt.step()
    return losses


def logits(model):
    model.eval()
    src, tgt, _ = batch(99)
    return model(src, tgt)


# ---- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_gives_the_same_logits_and_config(make_model, tmp_path, tie):
    model = make_model(tie=tie, seed=3)
    path = save(tmp_path / "m.npz", model)
    loaded, opt_state, state = load(path)
    assert type(loaded) is Transformer and loaded.config == model.config
    assert opt_state is None and state == {}
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(logits(loaded), logits(model))
    keys = [k for k in read_header(path) if k.startswith("model/")]
    assert sorted(keys) == sorted(f"model/{k}" for k in model.state_dict())
    assert ("model/tgt_embed.weight" in keys) is (not tie)  # tied weights stored once
    if tie:
        assert loaded.generator.weight is loaded.src_embed.weight


def test_float64_model_stays_float64(make_model, tmp_path):
    model = make_model(seed=1).astype(np.float64)
    loaded, _, _ = load(save(tmp_path / "m64.npz", model))
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(logits(loaded), logits(model))


def test_optimizer_state_round_trip(make_model, tmp_path):
    model = make_model(seed=2)
    opt = AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.95), weight_decay=0.1)
    train_steps(model, opt, 3)
    loaded, opt_state, _ = load(save(tmp_path / "c.npz", model, opt))
    saved = opt.state_dict()
    assert sorted(opt_state) == sorted(saved)
    for k in saved:
        np.testing.assert_array_equal(opt_state[k], saved[k])
    again = AdamW(loaded.parameters(), lr=1.0)  # the usual resume: build, then load
    again.load_state_dict(opt_state)
    assert again.step_count == 3 and again.betas == (0.8, 0.95)
    rebuilt = optimizer_from_state(loaded, opt_state)
    assert type(rebuilt) is AdamW and rebuilt.weight_decay == 0.1
    for k, v in rebuilt.state_dict().items():
        np.testing.assert_array_equal(v, saved[k])


def test_user_state_round_trip_json_and_arrays(make_model, tmp_path):
    vocab = {"tokens": ["<pad>", "<bos>", "<eos>", "a", "é"]}
    path = save(tmp_path / "s.npz", make_model(), step=np.int64(42), task={"name": "copy"},
                vocab=vocab, lr=np.float32(0.5), history=(1.5, 2.0), mask=np.eye(3, dtype=bool))
    _, _, state = load(path)
    assert state["step"] == 42 and isinstance(state["step"], int)
    assert state["task"] == {"name": "copy"} and state["vocab"] == vocab
    assert state["lr"] == 0.5 and state["history"] == [1.5, 2.0]  # tuples come back as lists
    assert state["mask"].dtype == bool and (state["mask"] == np.eye(3)).all()


def test_resume_continues_bit_for_bit(make_model, tmp_path):
    """Dropout masks come from model.rng: with its state saved, a resumed run repeats
    the uninterrupted one exactly."""
    model = make_model(dropout=0.3, seed=4)
    opt = AdamW(model.parameters(), lr=1e-2)
    train_steps(model, opt, 2)
    path = save(tmp_path / "r.npz", model, opt, step=2)
    rng_state = model.rng.bit_generator.state
    straight = train_steps(model, opt, 3, seed=2)

    loaded, opt_state, state = load(path)
    assert loaded.rng.bit_generator.state == rng_state
    opt2 = AdamW(loaded.parameters(), lr=1e-2)
    opt2.load_state_dict(opt_state)
    resumed = train_steps(loaded, opt2, 3, seed=state["step"])
    assert resumed == straight
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)


def test_gpt_round_trip(tmp_path):
    gpt = pytest.importorskip("scratchformer.models.gpt")
    model = gpt.GPT(gpt.GPTConfig(vocab_size=V, d_model=16, n_heads=2, d_ff=32, n_layers=2,
                                  max_len=16, dropout=0.1, seed=5))
    model.rng.random(7)  # move the dropout stream off its seed
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.step()
    loaded, opt_state, _ = load(save(tmp_path / "g.npz", model, opt))
    assert type(loaded) is gpt.GPT and loaded.config == model.config
    assert loaded.rng.bit_generator.state == model.rng.bit_generator.state
    model.eval(), loaded.eval()
    idx = np.random.default_rng(0).integers(0, V, (2, 7))
    np.testing.assert_array_equal(loaded(idx), model(idx))
    SGD(loaded.parameters(), lr=0.1, momentum=0.9).load_state_dict(opt_state)


# ---- paths and atomic writes ---------------------------------------------------------------
def test_path_is_used_exactly_and_parents_are_created(make_model, tmp_path):
    model = make_model()
    target = tmp_path / "a" / "b" / "ckpt"  # no suffix: none is appended
    assert save(target, model) == target
    assert os.listdir(target.parent) == ["ckpt"]
    assert load(str(target))[0].config == model.config


def test_failed_write_keeps_the_old_checkpoint_and_leaves_no_temp_file(make_model, tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    save(path, make_model(seed=1), step=1)
    before = path.read_bytes()

    def crash(*args, **kwargs):  # the process "dies" before the temp file is complete
        raise OSError("disk full")

    monkeypatch.setattr(safetensors_file.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save(path, make_model(seed=2), step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]
    assert load(path)[2] == {"step": 1}

    def no_rename(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(safetensors_file.os, "replace", no_rename)
    with pytest.raises(KeyboardInterrupt):
        save(path, make_model(seed=2), step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]


def test_save_rejects_what_cannot_be_stored_without_pickle(make_model, tmp_path):
    model = make_model()
    with pytest.raises(TypeError, match="state 'fn' must be JSON-serialisable"):
        save(tmp_path / "x.npz", model, fn=print)
    with pytest.raises(TypeError, match="state 'objs' has dtype object"):
        save(tmp_path / "x.npz", model, objs=np.array([{}, None], dtype=object))
    with pytest.raises(TypeError, match="state 'names' has dtype <U1"):
        save(tmp_path / "x.npz", model, names=np.array(["a", "b"]))
    with pytest.raises(TypeError, match="model dtype float16"):
        save(tmp_path / "x.npz", make_model().astype(np.float16))
    with pytest.raises(ValueError, match="not parameters of the model"):
        save(tmp_path / "x.npz", model, AdamW(make_model().parameters(), lr=1e-3))
    with pytest.raises(TypeError, match="model must be one of"):
        save(tmp_path / "x.npz", object())
    assert not list(tmp_path.iterdir())




# ---- the file is safetensors -----------------------------------------------------------------
def test_the_file_opens_with_the_safetensors_library(make_model, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    model = make_model(seed=2)
    opt = AdamW(model.parameters(), lr=1e-3)
    train_steps(model, opt, 1)
    path = save(tmp_path / "m.safetensors", model, opt, step=1, mask=np.arange(4))
    tensors = safetensors_numpy.load_file(str(path))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(tensors[f"model/{k}"], v)
    np.testing.assert_array_equal(tensors["optim/exp_avg.0"], opt.state["exp_avg"][0])
    np.testing.assert_array_equal(tensors["state/mask"], np.arange(4))


# ---- refusing what is not a checkpoint -----------------------------------------------------
@pytest.fixture
def good(tmp_path, make_model):
    model = make_model(seed=7)
    opt = AdamW(model.parameters(), lr=1e-3)
    train_steps(model, opt, 1)
    return save(tmp_path / "good.safetensors", model, opt, step=5, ids=np.arange(3))


def expect_refusal(path, *patterns):
    info = on_disk.expect_refusal(path, *patterns)
    assert isinstance(info.value, ValueError)


def rewrite(src, dst, change):
    """Re-encode ``src`` after ``change(header, meta, blobs)`` edits the parsed parts; offsets
    are recomputed unless the change sets ``header["_keep_offsets"]``. The checksums are
    those of the new bytes: a well-formed file that lies."""
    data = open(src, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = json.loads(header["__metadata__"]["scratchformer"])
    body = data[8 + n:]
    blobs = {k: body[e["data_offsets"][0]:e["data_offsets"][1]]
             for k, e in header.items() if k != "__metadata__"}
    change(header, meta, blobs)
    header["__metadata__"]["scratchformer"] = json.dumps(meta)
    if not header.pop("_keep_offsets", False):
        off = 0
        for k in blobs:
            header[k]["data_offsets"] = [off, off + len(blobs[k])]
            off += len(blobs[k])
    metadata = header["__metadata__"]  # from the format's description, not the module's code
    metadata["sha256"] = hashlib.sha256(b"".join(blobs.values())).hexdigest()
    del metadata["header_sha256"]
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    metadata["header_sha256"] = hashlib.sha256(canonical).hexdigest()
    head = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs.values()))
    return dst


def test_missing_file_raises_file_not_found_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load(tmp_path / "nope.safetensors")


def test_directory_and_fifo_are_refused_without_opening(tmp_path):
    expect_refusal(tmp_path, "a directory")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)  # opening a FIFO for reading would block forever
    expect_refusal(fifo, "not a regular file")


def test_truncated_empty_and_random_files_are_refused(good, tmp_path):
    data = good.read_bytes()
    for n in (0, 5, 8, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"trunc{n}.safetensors"
        bad.write_bytes(data[:n])
        expect_refusal(bad)
    rnd = tmp_path / "random.safetensors"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    expect_refusal(rnd, "not a ScratchFormer checkpoint", "not a safetensors file")


def test_old_npz_checkpoint_names_the_conversion_command(tmp_path):
    old = tmp_path / "old.npz"
    np.savez(old, x=np.ones(2))
    expect_refusal(old, "scratchformer convert-checkpoint")


def test_foreign_safetensors_file_is_refused(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "foreign.safetensors"
    safetensors_numpy.save_file({"w": np.ones((2, 2), np.float32)}, str(path))
    expect_refusal(path, "not a ScratchFormer checkpoint")


def test_header_lies_are_refused_before_reading_the_data(good, tmp_path):
    def edit(name, change):
        return rewrite(good, tmp_path / name, change)

    expect_refusal(edit("ver.st", lambda h, m, b: h["__metadata__"].update(version="9")), "version '9'")
    expect_refusal(edit("kind.st", lambda h, m, b: m["model"].update(kind="LSTM")), "'LSTM'")
    expect_refusal(edit("cfg.st", lambda h, m, b: m["model"]["config"].update(d_model=15)),
                   "invalid TransformerConfig")
    expect_refusal(edit("zero.st", lambda h, m, b: m["model"]["config"].update(n_decoder_layers=0)),
                   "n_decoder_layers")
    expect_refusal(edit("huge.st", lambda h, m, b: m["model"]["config"].update(
        d_model=65536, d_ff=262144, n_heads=8)), "GiB")
    expect_refusal(edit("f16.st", lambda h, m, b: m["model"].update(dtype="float16")), "'float16'")

    def shape(h, m, b):
        h["model/generator.bias"]["shape"] = [5]
        b["model/generator.bias"] = b["model/generator.bias"][:20]
    expect_refusal(edit("shape.st", shape), "model/generator.bias", "the config says")

    def dtype(h, m, b):
        h["model/generator.bias"]["dtype"] = "F64"
        b["model/generator.bias"] += b["model/generator.bias"]
    expect_refusal(edit("dtype.st", dtype), "F64")
    expect_refusal(edit("missing.st", lambda h, m, b: (h.pop("model/generator.bias"),
                                                       b.pop("model/generator.bias"))), "missing")

    def extra(h, m, b):
        h["model/evil.weight"] = {"dtype": "F32", "shape": [1]}
        b["model/evil.weight"] = b"\0" * 4
    expect_refusal(edit("extra.st", extra), "unexpected entry 'model/evil.weight'")

    def gap(h, m, b):
        h["_keep_offsets"] = True
        e = h["model/generator.bias"]
        e["data_offsets"] = [e["data_offsets"][0] + 4, e["data_offsets"][1] + 4]
    expect_refusal(edit("gap.st", gap), "model/generator.bias")


def test_duplicate_entries_in_the_header_are_refused(good, tmp_path):
    data = good.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    head = data[8:8 + n].decode().rstrip()
    entry = json.loads(head)["model/generator.bias"]  # repeated at the end, same offsets
    dup = (head[:-1] + ',"model/generator.bias":' + json.dumps(entry) + "}").encode()
    bad = tmp_path / "dup.safetensors"
    bad.write_bytes(struct.pack("<Q", len(dup)) + dup + data[8 + n:])
    expect_refusal(bad, "duplicate entries")


def test_non_finite_weights_are_refused_unless_asked_for(good, tmp_path):
    def poison(h, m, b):
        w = np.frombuffer(b["model/generator.bias"], np.float32).copy()
        w[2] = np.nan
        b["model/generator.bias"] = w.tobytes()
    bad = rewrite(good, tmp_path / "nan.safetensors", poison)
    expect_refusal(bad, "model/generator.bias holds 1 NaN or infinite", "allow_nonfinite=True")
    model, _, _ = load(bad, allow_nonfinite=True)
    assert np.isnan(model.generator.bias.data[2])


# ---- fuzzing: a clean CheckpointError or a valid model, nothing else -------------------------
hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


def _load_or_refuse(path):
    try:
        model, _, _ = load(path)
    except CheckpointError as e:
        assert str(path) in str(e)
        return None
    return model


@hypothesis.settings(max_examples=60, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(data=st.data())
def test_fuzzed_files_give_a_clean_error_or_a_valid_model(good, tmp_path, data):
    raw = good.read_bytes()
    kind = data.draw(st.sampled_from(["random", "truncate", "mutate", "header"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=512))
    elif kind == "truncate":
        blob = raw[:data.draw(st.integers(0, len(raw)))]
    elif kind == "mutate":
        blob = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            blob[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        blob = bytes(blob)
    else:  # a random JSON header, with a plausible length prefix
        header = data.draw(st.recursive(
            st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=20))
        head = json.dumps({"__metadata__": {"format": "scratchformer-checkpoint", "version": "2"},
                           "x": header}).encode()
        blob = struct.pack("<Q", len(head)) + head + data.draw(st.binary(max_size=64))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(blob)
    model = _load_or_refuse(path)
    if model is not None:  # survived: then it is a model whose weights are all finite
        assert all(np.isfinite(p.data).all() for p in model.parameters())
