"""The PyTorch twin: same keys, same logits both ways, same gradients, same greedy tokens,
and a model trained in torch that NumPy decodes token for token."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import scratchformer as sf  # noqa: E402
from scratchformer.models.gpt import GPT, GPTConfig  # noqa: E402
from scratchformer.torch_port import TorchGPT, TorchTransformer, to_numpy, to_torch  # noqa: E402
from scratchformer.torch_port import greedy_decode as torch_greedy  # noqa: E402

V = 17
GPT2_LIKE = dict(positions="learned", scale_embeddings=False)  # GPT-2's embedding


def _tcfg(norm_first=False, tie=False, **kw):
    return sf.TransformerConfig(src_vocab_size=V, tgt_vocab_size=V, d_model=32, n_heads=4, d_ff=48,
                                n_encoder_layers=2, n_decoder_layers=2, dropout=0.1, max_len=24,
                                norm_first=norm_first, tie_embeddings=tie, **kw)


def _gcfg(norm_first=True, tie=True, **kw):
    return GPTConfig(**{**dict(vocab_size=V, d_model=32, n_heads=4, d_ff=48, n_layers=2, max_len=12,
                               dropout=0.1, norm_first=norm_first, tie_embeddings=tie), **kw})


def _perturbed(model, seed=0):
    """Move every parameter off its init (LayerNorm weight 1 and zero biases hide bugs)."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data += (0.2 * rng.standard_normal(p.shape)).astype(p.data.dtype)
    return model.eval()


def _batch(seed=1, B=4, S=9, T=7):
    rng = np.random.default_rng(seed)
    src, tgt = rng.integers(3, V, (B, S)), rng.integers(1, V, (B, T))
    src[0, 5:] = 0  # padding in the source ...
    tgt[1, 4:] = 0  # ... and in the target
    return src, tgt


def _np(t):
    return t.detach().cpu().numpy()


# ---- keys and conversion ------------------------------------------------------------------
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("tie", [False, True])
def test_transformer_state_dict_keys_and_shapes_equal_numpy(norm_first, tie):
    nm, tm = sf.Transformer(_tcfg(norm_first, tie)), TorchTransformer(_tcfg(norm_first, tie))
    ns, ts = nm.state_dict(), tm.state_dict()
    assert list(ts) == list(ns)
    assert {k: tuple(v.shape) for k, v in ts.items()} == {k: v.shape for k, v in ns.items()}
    assert ("decoder.norm.weight" in ts) == norm_first
    assert ("tgt_embed.weight" in ts) == ("generator.weight" in ts) == (not tie)
    assert "generator.bias" in ts


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("kw", [{}, GPT2_LIKE], ids=["sinusoidal", "learned"])
def test_gpt_state_dict_keys_and_shapes_equal_numpy(norm_first, tie, kw):
    ns = GPT(_gcfg(norm_first, tie, **kw)).state_dict()
    ts = TorchGPT(_gcfg(norm_first, tie, **kw)).state_dict()
    assert list(ts) == list(ns)
    assert {k: tuple(v.shape) for k, v in ts.items()} == {k: v.shape for k, v in ns.items()}
    assert ("lm_head.weight" in ts) == (not tie) and ("norm.weight" in ts) == norm_first
    assert ("pos_embed.weight" in ts) == bool(kw)


def test_twin_starts_from_the_numpy_initial_weights():
    for nm, tm in ((sf.Transformer(_tcfg(seed=3)), TorchTransformer(_tcfg(seed=3))),
                   (GPT(_gcfg(seed=3)), TorchGPT(_gcfg(seed=3))),
                   (GPT(_gcfg(seed=3, **GPT2_LIKE)), TorchGPT(_gcfg(seed=3, **GPT2_LIKE)))):
        for k, v in nm.state_dict().items():
            np.testing.assert_array_equal(_np(tm.state_dict()[k]), v, err_msg=k)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("tie", [False, True])
def test_transformer_logits_equal_after_to_torch_and_to_numpy(norm_first, tie):
    nm = _perturbed(sf.Transformer(_tcfg(norm_first, tie)))
    src, tgt = _batch()
    want = nm(src, tgt)  # (B, T, V)
    tm = to_torch(nm)
    assert tm.config == nm.config and tm.config is not nm.config and not tm.training
    np.testing.assert_allclose(_np(tm(src, tgt)), want, rtol=0, atol=1e-4)
    memory = tm.encode(src)
    np.testing.assert_allclose(_np(memory), nm.encode(src), rtol=0, atol=1e-4)
    np.testing.assert_allclose(_np(tm.decode(memory, tgt, sf.padding_mask(src))), want, rtol=0, atol=1e-4)

    # the other direction: change the torch weights, convert back, compare
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.1 * torch.randn_like(p))
    back = to_numpy(tm)
    assert isinstance(back, sf.Transformer) and back.config == tm.config
    assert list(back.state_dict()) == list(nm.state_dict())
    np.testing.assert_allclose(back(src, tgt), _np(tm(src, tgt)), rtol=0, atol=1e-4)
    assert np.abs(back(src, tgt) - want).max() > 1e-2  # the new weights did come back


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("kw", [{}, GPT2_LIKE, dict(positions="learned")],
                         ids=["sinusoidal-scaled", "learned-unscaled", "learned-scaled"])
def test_gpt_logits_equal_after_to_torch_and_to_numpy(norm_first, tie, kw):
    nm = _perturbed(GPT(_gcfg(norm_first, tie, **kw)))
    idx = np.random.default_rng(2).integers(0, V, (3, 12))
    tm = to_torch(nm)
    assert isinstance(tm, TorchGPT)
    np.testing.assert_allclose(_np(tm(idx)), nm(idx), rtol=0, atol=1e-4)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.1 * torch.randn_like(p))
    back = to_numpy(tm)
    assert isinstance(back, GPT) and list(back.state_dict()) == list(nm.state_dict())
    np.testing.assert_allclose(back(idx), _np(tm(idx)), rtol=0, atol=1e-4)


def test_explicit_masks_and_fully_masked_rows_match_numpy_without_nan():
    nm = _perturbed(sf.Transformer(_tcfg(norm_first=True)))
    tm = to_torch(nm)
    src, tgt = _batch()
    src_mask = sf.padding_mask(src)
    src_mask[2] = False  # row 2 may attend to no source position at all
    tgt_mask = sf.causal_mask(tgt.shape[1]) & sf.padding_mask(tgt)
    tgt_mask = np.broadcast_to(tgt_mask, (4, 1, 7, 7)).copy()
    tgt_mask[3, :, 1] = False  # one fully masked query row in self-attention
    want = nm(src, tgt, src_mask, tgt_mask)
    got = _np(tm(src, tgt, torch.from_numpy(src_mask), tgt_mask))  # tensor or array masks
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_autograd_gradients_equal_numpy_backward():
    nm = _perturbed(sf.Transformer(_tcfg(norm_first=False, tie=True)))
    tm = to_torch(nm)
    src, tgt = _batch()
    target = np.roll(tgt, -1, axis=1)
    crit = sf.CrossEntropyLoss(ignore_index=0)
    loss = crit(nm(src, tgt), target)
    nm.zero_grad()
    nm.backward(crit.backward())
    tloss = torch.nn.functional.cross_entropy(tm(src, tgt).flatten(0, 1),
                                              torch.from_numpy(target).flatten(), ignore_index=0)
    tloss.backward()
    assert abs(tloss.item() - loss) < 1e-5
    tgrads = dict(tm.named_parameters())
    scale = max(np.abs(p.grad).max() for p in nm.parameters())
    for name, p in nm.named_parameters():
        np.testing.assert_allclose(_np(tgrads[name].grad), p.grad, rtol=0, atol=1e-4 * scale, err_msg=name)


@pytest.mark.parametrize("kw", [{}, GPT2_LIKE], ids=["sinusoidal-scaled", "learned-unscaled"])
def test_gpt_autograd_gradients_equal_numpy_backward(kw):
    nm = _perturbed(GPT(_gcfg(dropout=0.0, **kw)))
    tm = to_torch(nm)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, V, (3, 12))
    g = rng.standard_normal((3, 12, V)).astype(np.float32)  # a random upstream gradient
    logits = nm(idx)
    nm.zero_grad()
    nm.backward(g)
    (tm(idx) * torch.from_numpy(g)).sum().backward()
    tgrads = dict(tm.named_parameters())
    assert set(tgrads) == {n for n, _ in nm.named_parameters()}
    scale = max(np.abs(p.grad).max() for p in nm.parameters())
    for name, p in nm.named_parameters():
        np.testing.assert_allclose(_np(tgrads[name].grad), p.grad, rtol=0, atol=1e-4 * scale, err_msg=name)
    np.testing.assert_allclose(_np(tm(idx)), logits, rtol=0, atol=1e-4)


# ---- decoding --------------------------------------------------------------------------------
def test_torch_greedy_decode_gives_numpy_greedy_tokens():
    nm = _perturbed(sf.Transformer(_tcfg()), seed=5)
    src, _ = _batch(seed=4, B=6)
    want = sf.greedy_decode(nm, src, max_len=10)
    got = torch_greedy(to_torch(nm), src, max_len=10)
    assert got.dtype == np.int64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_torch_greedy_decode_refuses_nan_logits_as_numpy_does():
    """A NaN output weight: both greedy decoders raise the same NonFiniteLogits."""
    from scratchformer.models.sampling import NonFiniteLogits

    nm = _perturbed(sf.Transformer(_tcfg()), seed=5)
    nm.generator.weight.data[3, 0] = np.nan
    src, _ = _batch(seed=4, B=6)
    with pytest.raises(NonFiniteLogits) as numpy_error:
        sf.greedy_decode(nm, src, max_len=10)
    with pytest.raises(NonFiniteLogits) as torch_error:
        torch_greedy(to_torch(nm), src, max_len=10)
    assert str(torch_error.value) == str(numpy_error.value)


@pytest.mark.parametrize("kw", [{}, GPT2_LIKE], ids=["sinusoidal", "learned"])
def test_torch_gpt_greedy_generate_matches_numpy_past_max_len(kw):
    nm = _perturbed(GPT(_gcfg(**kw)), seed=6)
    prompt = np.random.default_rng(0).integers(0, V, (2, 5))
    want = nm.generate(prompt, 20, top_k=1)  # 25 tokens > max_len 12: the window restarts
    np.testing.assert_array_equal(_np(to_torch(nm).generate(prompt, 20, top_k=1)), want)


def test_torch_trained_checkpoint_decodes_identically_in_numpy(tmp_path):
    from scratchformer.training.checkpoint import load
    from scratchformer.cli import main
    from scratchformer.data.taskbase import pad_batch
    from scratchformer.data.tasks import get_task

    run = tmp_path / "copy"
    rc = main(["torch-train", "--task", "copy", "--steps", "60", "--batch-size", "32", "--d-model", "32",
               "--n-heads", "2", "--d-ff", "64", "--n-layers", "1", "--lr", "5e-3", "--warmup", "10",
               "--threads", "1", "--eval-size", "0", "--no-progress", "--out", str(run)])
    assert rc == 0
    model, opt_state, state = load(run / "checkpoint.safetensors")  # NumPy only from here on
    assert isinstance(model, sf.Transformer)
    assert set(opt_state) >= {"step", "exp_avg.0", "exp_avg_sq.0"}  # AdamW's, to resume
    assert state["trained_with"] == "torch" and state["task"]["name"] == "copy"
    task = get_task(state["task"]["name"], **state["task"]["options"])
    src, _, tgt_out = pad_batch(task.held_out()[:64])
    numpy_tokens = sf.greedy_decode(model, src, max_len=tgt_out.shape[1])
    torch_tokens = torch_greedy(to_torch(model), src, max_len=tgt_out.shape[1])
    np.testing.assert_array_equal(numpy_tokens, torch_tokens)
    # 60 steps learn something: the first token is usually right (untrained: 1 in 13)
    assert (numpy_tokens[:, 0] == tgt_out[:, 0]).mean() > 0.5


def test_torch_trained_gpt_checkpoint_generates_identically_in_numpy(tmp_path):
    from scratchformer.training.checkpoint import load
    from scratchformer.cli import main
    from scratchformer.data.chartok import CharTokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question.\n" * 40, encoding="utf-8")
    run = tmp_path / "gpt"
    rc = main(["torch-train", "--corpus", str(corpus), "--steps", "30", "--batch-size", "8", "--block-size", "16",
               "--d-model", "32", "--n-heads", "2", "--d-ff", "64", "--n-layers", "1", "--lr", "1e-2",
               "--warmup", "5", "--threads", "1", "--eval-size", "20", "--no-progress", "--out", str(run)])
    assert rc == 0
    model, _, state = load(run / "checkpoint.safetensors")
    assert isinstance(model, GPT) and model.config.max_len == 16 and model.config.tie_embeddings
    tok = CharTokenizer.from_json(state["tokenizer"])
    prompt = tok.encode("to be")[None]  # (1, 5)
    want = model.generate(prompt, 30, top_k=1)  # past max_len 16: the window restarts
    np.testing.assert_array_equal(_np(to_torch(model).generate(prompt, 30, top_k=1)), want)
    assert tok.decode(want[0]).startswith("to be")


# ---- errors and layering ----------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors():
    tm = TorchTransformer(_tcfg())
    src, tgt = _batch()
    with pytest.raises(ValueError, match=f"token id {V} out of range for vocab_size {V} \\(tgt\\)"):
        tm(src, np.full_like(tgt, V))
    with pytest.raises(TypeError, match="src must be an integer array"):
        tm(src.astype(np.float32), tgt)
    with pytest.raises(ValueError, match="src must have shape \\(B, T\\)"):
        tm(src[0], tgt)
    with pytest.raises(TypeError, match="attention mask must be boolean"):
        tm(src, tgt, src_mask=sf.padding_mask(src).astype(np.int64))
    with pytest.raises(ValueError, match="batch sizes differ: 4 vs 3"):
        tm(src, tgt[:3])
    with pytest.raises(TypeError, match="to_torch expects a scratchformer Transformer or GPT"):
        to_torch(object())
    with pytest.raises(TypeError, match="to_numpy expects a TorchTransformer or TorchGPT"):
        to_numpy(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="cfg must be a TransformerConfig"):
        TorchTransformer(_gcfg())


def test_tied_state_dict_round_trips_through_load_state_dict():
    a, b = TorchTransformer(_tcfg(tie=True, seed=1)), TorchTransformer(_tcfg(tie=True, seed=2))
    b.load_state_dict(a.state_dict())  # no tgt_embed / generator weight keys: restored by alias
    assert b.generator.weight is b.src_embed.weight is b.tgt_embed.weight
    torch.testing.assert_close(b.generator.weight, a.src_embed.weight)


def test_importing_scratchformer_and_the_torch_train_command_does_not_import_torch():
    code = ("import sys, scratchformer, scratchformer.cli.torch_train\n"
            "import scratchformer.cli as c; c.build_parser()\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_registers_torch_train_with_its_options():
    from scratchformer.cli import build_parser

    args = build_parser().parse_args(["torch-train", "--task", "dates", "--device", "cpu", "--steps", "5"])
    assert args.task == "dates" and args.steps == 5 and args.func.__module__ == "scratchformer.cli.torch_train"
