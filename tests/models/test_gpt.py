"""GPT: gradients (finite differences, torch oracle), causality, the KV cache, the keys —
for sinusoidal positions with √D-scaled embeddings (the default) and for GPT-2's learned
positions with unscaled embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from scratchformer.models.gpt import GPT, GPTConfig, context_start
from scratchformer.models.sampling import sample_next

from gradcheck import check_params

V, D, H, DFF, L, MAXLEN = 11, 8, 2, 16, 2, 16


@pytest.fixture(scope="module")
def small(make_gpt):
    """``small(**cfg)``: the module's GPT (V 11, D 8, 2 layers, max_len 16, seed 3)."""
    return lambda **cfg: make_gpt(**{"vocab": V, "d_model": D, "n_heads": H, "d_ff": DFF,
                                     "n_layers": L, "max_len": MAXLEN, "seed": 3, **cfg})


def perturb(model, rng) -> None:
    """Move LayerNorm weights and biases off 1 / 0, which would hide missing terms."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data[...] = 0.1 * rng.standard_normal(p.shape)
        elif p.data.ndim == 1:
            p.data[...] = 1.0 + 0.2 * rng.standard_normal(p.shape)


def tokens(rng, B=2, T=7):
    return rng.integers(0, V, (B, T))


# ---- gradients ---------------------------------------------------------------------------
GPT2_LIKE = dict(positions="learned", scale_embeddings=False)


@pytest.mark.parametrize("kw", [dict(), dict(tie_embeddings=False, norm_first=False, activation="relu"),
                                GPT2_LIKE,
                                dict(positions="learned", tie_embeddings=False, norm_first=False)],
                         ids=["preLN-tied-gelu", "postLN-untied-relu", "gpt2-learned-unscaled",
                              "postLN-untied-learned-scaled"])
def test_gpt_backward_matches_finite_differences(small, kw):
    rng = np.random.default_rng(0)
    model = small(**kw).astype(np.float64)
    perturb(model, rng)
    idx = tokens(rng)
    R = rng.standard_normal((2, 7, V))  # random upstream gradient: loss = Σ logits · R
    model.zero_grad()
    model(idx)
    model.backward(R)
    analytic = {n: p.grad.copy() for n, p in model.named_parameters()}
    errors = check_params(lambda: float(np.sum(model(idx) * R)), list(model.named_parameters()),
                          analytic, rng, k=24)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: relative error {errors[worst]:.2e}"


@pytest.mark.parametrize("kw", [dict(), GPT2_LIKE], ids=["sinusoidal-scaled", "learned-unscaled"])
def test_gpt_matches_torch_encoder_layers_with_causal_mask(kw):
    torch = pytest.importorskip("torch")
    import torch_reference as R

    nn = torch.nn
    cfg = GPTConfig(vocab_size=V, d_model=16, n_heads=4, d_ff=32, n_layers=2, max_len=MAXLEN, seed=1,
                    **kw)
    learned, scale = cfg.positions == "learned", cfg.d_model ** 0.5 if cfg.scale_embeddings else 1.0
    model = GPT(cfg)
    rng = np.random.default_rng(1)
    R.perturb_parameters(model, rng)

    class RefGPT(nn.Module):  # stock torch modules, named so torch_slot finds every key
        def __init__(self):
            super().__init__()
            self.tok_embed = nn.Embedding(V, cfg.d_model)
            if learned:
                self.pos_embed = nn.Embedding(cfg.max_len, cfg.d_model)
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, dropout=0.0,
                                           activation=R.gelu_tanh, batch_first=True, norm_first=True)
                for _ in range(cfg.n_layers))
            self.norm = nn.LayerNorm(cfg.d_model)
            self.register_buffer("pe", R.sinusoid_table(cfg.max_len, cfg.d_model))

        def forward(self, idx):
            T = idx.shape[1]
            pos = self.pos_embed(torch.arange(T)) if learned else self.pe[:T]
            x = self.tok_embed(idx) * scale + pos
            for block in self.blocks:
                x = block(x, src_mask=R.torch_causal(T), is_causal=True)
            return self.norm(x) @ self.tok_embed.weight.T  # tied lm_head, no bias

    ref = RefGPT()
    R.copy_into_torch(model, ref, cfg.d_model)
    idx = tokens(rng, B=3, T=9)
    g = rng.standard_normal((3, 9, V)).astype(np.float32)
    logits = model(idx)
    model.zero_grad()
    model.backward(g)
    ref_logits = ref(torch.from_numpy(idx))
    ref_logits.backward(torch.from_numpy(g))
    assert np.max(np.abs(logits - R.tn(ref_logits))) < 1e-4
    errs = R.grad_errors(R.numpy_grads(model), R.torch_grads(model, ref, cfg.d_model))
    worst = max(errs, key=errs.get)
    assert errs[worst] < 1e-3, f"{worst}: {errs[worst]:.2e}"


# ---- causality and the cache -----------------------------------------------------------
def test_future_tokens_never_change_past_logits(small):
    rng = np.random.default_rng(2)
    model = small()
    idx = tokens(rng, T=12)
    base = model(idx)
    for t in (0, 5, 10):
        changed = idx.copy()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1 + rng.integers(0, V - 1, changed[:, t + 1:].shape)) % V
        out = model(changed)
        np.testing.assert_array_equal(out[:, : t + 1], base[:, : t + 1])
        assert not np.allclose(out[:, t + 1:], base[:, t + 1:])


@pytest.mark.parametrize("kw", [dict(), GPT2_LIKE], ids=["sinusoidal", "learned"])
@pytest.mark.parametrize("prompt_len,new", [(3, 10), (5, 60), (40, 30)],
                         ids=["short", "past-max-len", "prompt-longer-than-max-len"])
def test_cached_and_uncached_greedy_generation_give_identical_tokens(small, prompt_len, new, kw):
    rng = np.random.default_rng(4)
    model = small(seed=5, **kw)
    perturb(model, rng)
    idx = tokens(rng, B=3, T=prompt_len)
    cached = model.generate(idx, new, top_k=1)
    uncached = model.generate(idx, new, top_k=1, use_cache=False)
    assert cached.shape == (3, prompt_len + new)
    np.testing.assert_array_equal(cached[:, :prompt_len], idx)
    np.testing.assert_array_equal(cached, uncached)
    assert len(np.unique(cached[:, prompt_len:])) > 1  # not a degenerate constant run


def test_cached_and_uncached_sampling_agree_given_the_same_rng(small):
    model = small(seed=6).astype(np.float64)
    idx = tokens(np.random.default_rng(6), B=2, T=4)
    a = model.generate(idx, 40, temperature=0.9, top_k=5, rng=np.random.default_rng(7))
    b = model.generate(idx, 40, temperature=0.9, top_k=5, use_cache=False, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    c = model.generate(idx, 40, temperature=0.9, top_k=5, rng=np.random.default_rng(8))
    assert not np.array_equal(a, c)


def test_cached_step_equals_last_row_of_full_forward(small):
    rng = np.random.default_rng(9)
    model = small().eval()
    idx = tokens(rng, B=2, T=10)
    full = model(idx)  # (B, T, V)
    caches = model.init_cache()
    h = model._hidden(idx[:, :6], caches, 0)
    np.testing.assert_allclose(model.lm_head(h), full[:, :6], atol=1e-5)
    for t in range(6, 10):
        step = model.lm_head(model._hidden(idx[:, t:t + 1], caches, t))
        np.testing.assert_allclose(step[:, 0], full[:, t], atol=1e-5)


def test_each_cached_step_processes_one_position_and_refills_at_max_len(small):
    model = small(max_len=8)
    seen = []
    attn = model.blocks[0].self_attn
    forward = attn.forward
    attn.forward = lambda x, *a, **k: (seen.append(x.shape[1]), forward(x, *a, **k))[1]
    model.generate(np.zeros((1, 3), dtype=np.int64), 12, top_k=1)
    # token 3: prefill 0..2; tokens 4..8 one position each (window 0..7 is then full);
    # token 9 overflows → refill with the last 4 (tokens 5..8); tokens 10..13 one each;
    # token 14 overflows again → refill with tokens 10..13.
    assert seen == [3, 1, 1, 1, 1, 1, 4, 1, 1, 1, 1, 4]


def test_context_window_rule():
    assert context_start(5, 0, 8) == 0
    assert context_start(8, 0, 8) == 0
    assert context_start(9, 0, 8) == 5  # overflow: keep the last max_len // 2 = 4
    assert context_start(12, 5, 8) == 5
    assert context_start(14, 5, 8) == 10
    assert context_start(3, 0, 1) == 2  # max_len 1: the last token only


# ---- parameters, config, validation -----------------------------------------------------
def test_tied_model_has_no_lm_head_key_and_shares_the_embedding(small):
    tied, untied = small(), small(tie_embeddings=False)
    assert tied.lm_head.weight is tied.tok_embed.weight
    keys = list(tied.state_dict())
    assert not any(k.startswith("lm_head") for k in keys)
    assert keys[0] == "tok_embed.weight" and "norm.weight" in keys
    assert "blocks.1.self_attn.q_proj.weight" in keys and "blocks.0.ffn.linear2.bias" in keys
    assert {"blocks.0.norm1.weight", "blocks.0.norm2.bias"} <= set(keys)
    extra = set(untied.state_dict()) - set(keys)
    assert extra == {"lm_head.weight"}  # no lm_head bias, ever
    assert tied.num_parameters() == untied.num_parameters() - V * D
    assert not any(k.startswith("norm.") for k in small(norm_first=False).state_dict())


def test_state_dict_round_trip_gives_the_same_logits(small):
    a, b = small(seed=1), small(seed=2)
    idx = tokens(np.random.default_rng(0))
    assert not np.allclose(a(idx), b(idx))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(idx), b(idx))
    assert GPTConfig(**a.config.to_dict()) == a.config


def test_learned_positions_are_a_parameter_and_scale_embeddings_changes_the_input(small):
    sinus, learned, unscaled = small(), small(positions="learned"), small(**GPT2_LIKE)
    keys = list(learned.state_dict())
    assert keys[:2] == ["tok_embed.weight", "pos_embed.weight"]
    assert set(keys) - set(sinus.state_dict()) == {"pos_embed.weight"}
    assert learned.state_dict()["pos_embed.weight"].shape == (MAXLEN, D)
    for m in (sinus, learned, unscaled):
        assert m.config.param_shapes() == {k: v.shape for k, v in m.state_dict().items()}
    # unscaled: the block input is tok_embed[idx] + P exactly (no √D)
    idx = tokens(np.random.default_rng(1))
    want = unscaled.tok_embed.weight.data[idx] + unscaled.pos_embed.weight.data[:idx.shape[1]]
    np.testing.assert_array_equal(unscaled._embed(idx), want)
    unscaled.pos_embed.weight.data[3] += 1.0  # position 3 moves logits from position 3 on only
    before = small(**GPT2_LIKE)(idx)
    after = unscaled(idx)
    np.testing.assert_array_equal(after[:, :3], before[:, :3])
    assert not np.allclose(after[:, 3:], before[:, 3:])


def test_learned_positions_gradient_sums_over_the_batch(small):
    model = small(**GPT2_LIKE).astype(np.float64)
    idx = tokens(np.random.default_rng(2), B=3, T=5)
    R = np.random.default_rng(3).standard_normal((3, 5, V))
    grads = []
    for rows in ([0, 1, 2], [0], [1], [2]):
        model.zero_grad()
        model(idx[rows])
        model.backward(R[rows])
        grads.append(model.pos_embed.weight.grad.copy())
    np.testing.assert_allclose(grads[0], grads[1] + grads[2] + grads[3], rtol=1e-12, atol=1e-12)
    assert not grads[0][5:].any() and np.abs(grads[0][:5]).min() > 0  # rows past T untouched


def test_checkpoint_round_trip_keeps_positions_and_scale(small, tmp_path):
    from scratchformer.training.checkpoint import load, save

    model = small(**GPT2_LIKE)
    perturb(model, np.random.default_rng(5))
    save(tmp_path / "gpt2like.safetensors", model)
    back, _, _ = load(tmp_path / "gpt2like.safetensors")
    assert back.config == model.config and back.config.positions == "learned"
    assert back.config.scale_embeddings is False
    idx = tokens(np.random.default_rng(6))
    np.testing.assert_array_equal(back(idx), model(idx))


def test_checkpoint_written_before_the_new_fields_loads_with_their_defaults(small, tmp_path):
    import json
    import struct

    from scratchformer.training.checkpoint import load, save

    model = small()
    path = save(tmp_path / "old.safetensors", model)
    raw = path.read_bytes()  # drop positions / scale_embeddings from the stored config
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = json.loads(header["__metadata__"]["scratchformer"])
    del meta["model"]["config"]["positions"], meta["model"]["config"]["scale_embeddings"]
    header["__metadata__"]["scratchformer"] = json.dumps(meta)
    for digest in ("sha256", "header_sha256"):  # an old file carries no checksums either
        del header["__metadata__"][digest]
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n:])
    back, _, _ = load(path)
    assert back.config.positions == "sinusoidal" and back.config.scale_embeddings is True
    idx = tokens(np.random.default_rng(7))
    np.testing.assert_array_equal(back(idx), model(idx))


def test_same_seed_same_weights(small):
    np.testing.assert_array_equal(small(seed=4).state_dict()["blocks.1.ffn.linear1.weight"],
                                  small(seed=4).state_dict()["blocks.1.ffn.linear1.weight"])


@pytest.mark.parametrize("field,value", [("d_model", 9), ("n_heads", 3), ("vocab_size", 0),
                                         ("dropout", 1.0), ("activation", "tanh"),
                                         ("n_layers", -1), ("tie_embeddings", "yes"),
                                         ("positions", "rope"), ("scale_embeddings", "no")])
def test_invalid_config_raises_naming_the_field(field, value):
    cfg = dict(vocab_size=V, d_model=D, n_heads=H, d_ff=DFF, n_layers=L, max_len=MAXLEN)
    with pytest.raises(ValueError, match=field):
        GPTConfig(**{**cfg, field: value})


def test_bad_inputs_raise_clear_errors(small):
    model = small()
    with pytest.raises(ValueError, match="token id 11 out of range for vocab_size 11"):
        model(np.array([[1, 11]]))
    with pytest.raises(TypeError, match="integer"):
        model(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="exceeds max_len 16"):
        model(np.zeros((1, 17), dtype=np.int64))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(np.zeros(3, dtype=np.int64))
    idx = np.zeros((1, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(idx, 3, top_k=0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(idx, 3, temperature=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(idx, -1)
    with pytest.raises(TypeError, match="rng"):
        model.generate(idx, 3, rng="seed")
    with pytest.raises(RuntimeError, match="forward"):
        small().backward(np.zeros((1, 2, V)))


def test_generate_restores_training_mode_and_dropout_off_while_sampling(small):
    model = small(dropout=0.5)
    idx = np.ones((2, 3), dtype=np.int64)
    a = model.generate(idx, 10, top_k=1)
    assert model.training
    np.testing.assert_array_equal(a, model.generate(idx, 10, top_k=1))  # no dropout noise


def test_top_k_sampling_only_draws_from_the_k_largest_logits():
    logits = np.tile(np.arange(10, dtype=np.float32), (2000, 1))  # row-wise: 9 is the largest
    draws = sample_next(logits, temperature=5.0, top_k=3, rng=np.random.default_rng(0))
    assert set(np.unique(draws)) == {7, 8, 9}
    assert (sample_next(logits, top_k=1) == 9).all()
    assert (sample_next(logits, temperature=0) == 9).all()


# ---- training through scratchformer.training.trainer, checkpoints, the CLI --------------------------
FIXTURE = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
You are all resolved rather to die than to famish?

All:
Resolved. resolved.

First Citizen:
First, you know Caius Marcius is chief enemy to the people.

All:
We know't, we know't.
""" * 4

TINY = dict(n_layers=1, n_heads=2, d_model=16, d_ff=32, block_size=16, batch_size=8, lr=1e-2,
            min_lr_ratio=0.1, warmup=5, eval_batches=2, eval_every=20, checkpoint_every=0,
            progress=False, seed=3, optimizer="adamw", eval_train=True)


def test_gpt_training_smoke_loss_falls_and_checkpoint_samples(tmp_path, capsys):
    import argparse

    from scratchformer.cli import gpt as cli_gpt
    from scratchformer.training import GPTTrainConfig, train_gpt
    from scratchformer.training import lm as gpt_lm

    out = train_gpt(GPTTrainConfig(text=FIXTURE, out=str(tmp_path), steps=200, **TINY))
    history = [r for r in out.trainer.history if r["kind"] == "eval"]
    assert len(history) == 10 and history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    tok = out.extras["tokenizer"]
    assert out.extras["val_loss"] < 0.5 * np.log(tok.vocab_size)  # uniform: ln V

    parser = argparse.ArgumentParser()
    cli_gpt.register(parser.add_subparsers())
    args = parser.parse_args(["gpt", "sample", "--checkpoint", str(tmp_path / "checkpoint.safetensors"),
                              "--prompt", "All:", "--tokens", "30", "--seed", "1"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("All:") and len(text.rstrip("\n")) >= 34
    model, tok2 = gpt_lm.load_gpt(tmp_path / "checkpoint.safetensors")
    assert tok2 == tok and model.config == out.model.config
    with pytest.raises(ValueError, match="prompt: .*'Z'"):
        gpt_lm.sample_text(model, tok2, "Zebra", 5)


def test_gpt_training_resumed_run_equals_uninterrupted_run(tmp_path, interrupt_at):
    from scratchformer.training import GPTTrainConfig, TrainingInterrupted, train_gpt

    full = train_gpt(GPTTrainConfig(text=FIXTURE, out=str(tmp_path / "a"), steps=30, **TINY))
    with interrupt_at(12), pytest.raises(TrainingInterrupted):  # Ctrl-C in step 12
        train_gpt(GPTTrainConfig(text=FIXTURE, out=str(tmp_path / "b"), steps=30, **TINY))
    # the text itself is not stored: a run trained on text= is resumed with it
    resumed = train_gpt(GPTTrainConfig(text=FIXTURE, out=str(tmp_path / "b"), resume=True))
    assert resumed.step == 30
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_random_blocks_are_contiguous_and_shifted_by_one():
    from scratchformer.training.lm import random_blocks

    data = np.arange(100)
    x, y = random_blocks(data, 7, 5)(np.random.default_rng(0), 1)
    assert x.shape == y.shape == (5, 7)
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)  # contiguous
    np.testing.assert_array_equal(y, x + 1)
    with pytest.raises(ValueError, match="too short for block 100"):
        random_blocks(data, 100, 2)
