"""Bad configs and bad inputs raise clear errors; masks behave; both dtypes run."""

import re
import sys

import numpy as np
import pytest

import scratchformer as sf


TINY = dict(n_heads=4, max_len=10)  # with make_transformer's defaults: V 13, D 16, 1+1 layers


@pytest.fixture(scope="module")
def tiny(make_transformer):
    """``tiny(**cfg)``: the module's 13-token model, max_len 10."""
    return lambda **cfg: make_transformer(**{**TINY, **cfg})


SRC = np.array([[3, 4, 5], [6, 7, 0]])
TGT = np.array([[1, 3, 4, 5], [1, 6, 7, 0]])


def test_import_pulls_in_no_heavy_libraries():
    import subprocess
    code = "import sys, scratchformer, scratchformer.data; print(sorted({'torch','matplotlib','tqdm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- masks -----------------------------------------------------------------------------
def test_fully_masked_row_gives_zeros():
    for dtype in (np.float32, np.float64):
        mha = sf.MultiHeadAttention(16, 4).astype(dtype)
        x = np.random.default_rng(0).standard_normal((2, 3, 16)).astype(dtype)
        mask = np.ones((2, 1, 3, 3), dtype=bool)
        mask[1, 0, 2] = False  # query 2 of row 1 may attend nowhere
        out = mha(x, mask=mask)
        assert np.all(np.isfinite(out)) and out.dtype == dtype
        assert np.all(mha.attn[1, :, 2] == 0)
        assert np.allclose(mha.attn[0].sum(-1), 1)
        dx = mha.backward(np.ones_like(out))
        assert np.all(np.isfinite(dx))


def test_all_padding_source_row_gives_finite_logits(tiny):
    model = tiny()
    logits = model(np.array([[3, 4, 5], [0, 0, 0]]), TGT)
    assert np.all(np.isfinite(logits))


def test_masks_have_documented_shapes_and_combine():
    pm = sf.padding_mask(np.array([[3, 0], [4, 5]]))
    cm = sf.causal_mask(2)
    assert pm.shape == (2, 1, 1, 2) and cm.shape == (1, 1, 2, 2)
    assert (pm & cm).shape == (2, 1, 2, 2)
    assert cm[0, 0].tolist() == [[True, False], [True, True]]


def test_float32_and_float64_both_run(tiny):
    for dtype in (np.float32, np.float64):
        model = tiny().astype(dtype)
        logits = model(SRC, TGT)
        assert logits.dtype == dtype
        crit = sf.CrossEntropyLoss(ignore_index=0)
        crit(logits, TGT)
        model.backward(crit.backward())
        assert all(p.grad.dtype == dtype for p in model.parameters())


# ---- configs ---------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,words", [
    ("d_model", 30, "divisible by n_heads"),
    ("d_model", 0, "d_model"),
    ("n_heads", -1, "n_heads"),
    ("d_ff", 0, "d_ff"),
    ("src_vocab_size", 0, "src_vocab_size"),
    ("tgt_vocab_size", 2.5, "tgt_vocab_size"),
    ("n_encoder_layers", -1, "n_encoder_layers"),
    ("max_len", 0, "max_len"),
    ("dropout", 1.0, "dropout"),
    ("activation", "swish", "activation"),
    ("layer_norm_eps", 0.0, "layer_norm_eps"),
    ("pad_id", 13, "pad_id"),
    ("tie_embeddings", True, "tie_embeddings"),
])
def test_bad_config_raises_naming_the_field(field, value, words):
    kw = {field: value}
    if field == "tie_embeddings":
        kw["tgt_vocab_size"] = 14
    base = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=16, d_ff=32, **TINY)
    with pytest.raises(ValueError, match=re.escape(words)):
        sf.TransformerConfig(**{**base, **kw})


# ---- inputs ----------------------------------------------------------------------------
def test_negative_token_id_is_caught_not_wrapped(tiny):
    with pytest.raises(ValueError, match=r"token id -1 out of range for vocab_size 13 \(src\[0, 1\]\)"):
        tiny()(np.array([[3, -1, 4]]), TGT[:1])


def test_token_id_too_large_names_the_argument(tiny):
    with pytest.raises(ValueError, match=r"token id 13 out of range for vocab_size 13 \(tgt"):
        tiny()(SRC, np.array([[1, 13, 4, 5], [1, 3, 3, 3]]))


def test_float_tokens_are_rejected(tiny):
    with pytest.raises(TypeError, match="src must be an integer array.*float64"):
        tiny()(SRC.astype(float), TGT)


def test_one_dimensional_tokens_are_rejected(tiny):
    with pytest.raises(ValueError, match=r"tgt must have shape \(B, T\), got shape \(4,\)"):
        tiny()(SRC, TGT[0])


def test_batch_sizes_must_agree(tiny):
    with pytest.raises(ValueError, match="batch sizes differ: 2 vs 1"):
        tiny()(SRC, TGT[:1])


def test_length_beyond_max_len_is_rejected(tiny):
    with pytest.raises(ValueError, match="src length 11 exceeds max_len 10"):
        tiny()(np.full((1, 11), 3), TGT[:1])


def test_empty_sequence_is_rejected(tiny):
    with pytest.raises(ValueError, match="must be non-empty"):
        tiny()(np.zeros((2, 0), dtype=int), TGT)


def test_non_boolean_mask_is_rejected(tiny):
    with pytest.raises(TypeError, match="mask must be boolean"):
        tiny()(SRC, TGT, src_mask=np.ones((2, 1, 1, 3)))


def test_mask_of_wrong_shape_is_rejected(tiny):
    with pytest.raises(ValueError, match="does not broadcast"):
        tiny()(SRC, TGT, src_mask=np.ones((2, 1, 1, 5), dtype=bool))


def test_backward_without_forward_is_rejected(tiny):
    with pytest.raises(RuntimeError, match="preceding"):
        tiny().backward(np.zeros((2, 4, 13), dtype=np.float32))


def test_loss_rejects_mismatched_shapes_and_all_ignored():
    crit = sf.CrossEntropyLoss(ignore_index=0)
    with pytest.raises(ValueError, match="does not match targets shape"):
        crit(np.zeros((2, 3, 5), np.float32), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="every target is ignore_index"):
        crit(np.zeros((2, 3, 5), np.float32), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="target id 7 out of range for 5 classes"):
        crit(np.zeros((1, 1, 5), np.float32), np.array([[7]]))


def test_load_state_dict_reports_missing_unexpected_and_shape(tiny):
    model = tiny()
    sd = model.state_dict()
    sd.pop("generator.bias")
    sd["extra.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match="missing keys \\['generator.bias'\\].*unexpected keys \\['extra.weight'\\]"):
        model.load_state_dict(sd)
    sd = model.state_dict()
    sd["generator.bias"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="shape mismatch for 'generator.bias': expected \\(13,\\), got \\(5,\\)"):
        model.load_state_dict(sd)


def test_same_seed_gives_same_weights_and_other_seed_differs(tiny):
    a, b, c = (tiny(seed=s) for s in (1, 1, 2))
    for k, v in a.state_dict().items():
        assert np.array_equal(v, b.state_dict()[k])
    assert not np.array_equal(a.state_dict()["src_embed.weight"], c.state_dict()["src_embed.weight"])


def test_state_dict_keys_follow_the_contract(tiny):
    keys = set(tiny(norm_first=True, tie_embeddings=True).state_dict())
    assert "src_embed.weight" in keys and "tgt_embed.weight" not in keys and "generator.weight" not in keys
    assert {"generator.bias", "encoder.norm.weight", "decoder.norm.bias",
            "decoder.layers.0.cross_attn.k_proj.weight", "decoder.layers.0.norm3.bias",
            "encoder.layers.0.ffn.linear2.weight"} <= keys
    post = set(tiny().state_dict())
    assert "encoder.norm.weight" not in post and "tgt_embed.weight" in post and "generator.weight" in post


def test_cached_decode_step_equals_full_decode(tiny):
    model = tiny(n_decoder_layers=2).eval()
    mem = model.encode(SRC)
    full = model.decode(mem, TGT[:, :3], sf.padding_mask(SRC))
    cache = model.init_cache()
    first = model.decode_step(mem, TGT[:, :2], cache, sf.padding_mask(SRC))  # a 2-token prefill
    nxt = model.decode_step(mem, TGT[:, 2:3], cache, sf.padding_mask(SRC))
    np.testing.assert_allclose(np.concatenate([first, nxt], 1), full, atol=1e-5)


def test_torch_style_query_key_value_call_gets_a_clear_error():
    mha = sf.MultiHeadAttention(8, 2)
    x = np.ones((1, 2, 8), np.float32)
    with pytest.raises(TypeError, match=r"mha\(x, memory=None, mask=None\)"):
        mha(x, x, x)


def test_a_batch_too_large_for_memory_is_refused_before_any_array(monkeypatch, make_transformer, make_gpt):
    from scratchformer.models import sizes

    monkeypatch.setattr(sizes, "physical_memory", lambda: 2**30)  # a 1 GiB machine
    for model in (make_transformer(), make_gpt()):
        sizes.check_batch_fits(model.config, 64, 16)  # ~ MBs: fine
        with pytest.raises(ValueError, match=r"batch of 10,000,000 sequences .* GiB .* smaller batch"):
            sizes.check_batch_fits(model.config, 10_000_000, 16)


@pytest.mark.parametrize("argv", [["train", "--task", "copy", "--batch-size", "1000000000"],
                                  ["gpt", "train", "--batch-size", "1000000000"]])
def test_cli_refuses_a_batch_that_cannot_fit(tmp_path, capsys, argv):
    from scratchformer.cli import main

    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 50)
    extra = ["--corpus", str(text)] if argv[0] == "gpt" else []
    assert main([*argv, *extra, "--steps", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GiB of activations" in err[0]
