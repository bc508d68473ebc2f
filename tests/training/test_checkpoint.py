"""Checkpoints: exact round trips (weights, dtype, optimizer, dropout RNG, user state),
bit-for-bit resume, atomic writes, and a clear CheckpointError for everything else."""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from scratchformer.training import checkpoint
from scratchformer.training.checkpoint import CheckpointError, load, optimizer_from_state, save
from scratchformer.core.loss import CrossEntropyLoss
from scratchformer.training.optim import SGD, AdamW
from scratchformer.models.transformer import Transformer, TransformerConfig

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
    keys = [k for k in np.load(path).files if k.startswith("model/")]
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

    def crash(f, **arrays):  # half an archive, then the process "dies"
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save(path, make_model(seed=2), step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]
    assert load(path)[2] == {"step": 1}

    def no_rename(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint.os, "replace", no_rename)
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
    with pytest.raises(ValueError, match="not parameters of the model"):
        save(tmp_path / "x.npz", model, AdamW(make_model().parameters(), lr=1e-3))
    with pytest.raises(TypeError, match="model must be one of"):
        save(tmp_path / "x.npz", object())
    assert not list(tmp_path.iterdir())


# ---- refusing what is not a checkpoint -----------------------------------------------------
@pytest.fixture
def good(tmp_path, make_model):
    model = make_model(seed=7)
    return save(tmp_path / "good.npz", model, AdamW(model.parameters(), lr=1e-3), step=5)


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
        load(tmp_path / "nope.npz")


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
                   "invalid TransformerConfig", "d_model")
    expect_refusal(edit("w.npz", lambda m, a: a.pop("model/generator.bias")),
                   "weights do not fit", "generator.bias")
    expect_refusal(edit("s.npz", lambda m, a: a.update({"model/generator.bias": np.ones(3)})),
                   "shape mismatch", "generator.bias")
    garbled = rewrite(good, tmp_path / "j.npz",
                      lambda a: a.update(__meta__=np.frombuffer(b"{not json", np.uint8)))
    expect_refusal(garbled, "unreadable __meta__")
