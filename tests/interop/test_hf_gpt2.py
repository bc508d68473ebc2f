"""Hugging Face GPT-2 in and out, against transformers itself (random weights, nothing
downloaded): logits, greedy tokens (KV cache on and off), one training step's gradients,
export → from_pretrained, key spellings and dtypes, every refusal, and the memory rule.

    pytest tests/interop/test_hf_gpt2.py -s      # prints the measured figures
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import hf_oracle as O  # noqa: E402  (next to this file)

import scratchformer as sf  # noqa: E402
from scratchformer.interop import (gpt2_arrays_from_hf, gpt2_config_from_hf,  # noqa: E402
                                   hf_arrays_from_gpt2, load_hf_gpt2, save_hf_gpt2)

TINY = dict(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4)
REL_TOL = 1e-4  # float32 logits, relative to their scale
GRAD_TOL = 1e-3  # torch_reference.grad_errors, as the project's torch oracle tests


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(transformers model, its saved folder, our GPT loaded from that folder)."""
    folder = tmp_path_factory.mktemp("gpt2-tiny")
    hf = O.make_hf_folder(folder, seed=0, **TINY)
    return hf, folder, load_hf_gpt2(folder)


def _idx(seed=0, B=3, T=40, V=TINY["vocab_size"]):
    return np.random.default_rng(seed).integers(0, V, (B, T))


# ---- the model ------------------------------------------------------------------------------
def test_loaded_config_is_gpt2(tiny):
    cfg = tiny[2].config
    assert (cfg.positions, cfg.scale_embeddings, cfg.norm_first, cfg.activation, cfg.tie_embeddings) == \
        ("learned", False, True, "gelu", True)
    assert (cfg.vocab_size, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.max_len, cfg.d_ff) == (97, 32, 4, 2, 64, 128)


def test_logits_equal_transformers(tiny):
    hf, _, ours = tiny
    idx = _idx()
    want = O.hf_logits(hf, idx)
    assert np.abs(want).max() > 1.0  # weights scaled so logits are O(1): no near-ties
    err = O.max_rel_error(ours(idx), want)
    print(f"\ntiny GPT-2: max relative logit error {err:.2e}")
    assert err <= REL_TOL


def test_greedy_generation_gives_transformers_tokens_with_and_without_cache(tiny):
    hf, _, ours = tiny
    prompt = _idx(1, B=2, T=8)
    want = O.hf_greedy(hf, prompt, 50)  # 58 tokens ≤ n_positions 64
    assert want.shape == (2, 58) and len(np.unique(want[:, 8:])) > 5
    np.testing.assert_array_equal(ours.generate(prompt, 50, top_k=1), want)
    np.testing.assert_array_equal(ours.generate(prompt, 50, top_k=1, use_cache=False), want)


def test_one_training_step_gradients_equal_transformers_autograd(tmp_path):
    hf = O.make_hf_folder(tmp_path, seed=3, **TINY)  # own copy: backward leaves .grad behind
    ours = load_hf_gpt2(tmp_path)
    dloss, loss, errs = O.compare_training_step(ours, hf, _idx(2, B=2, T=24))
    worst = max(errs, key=errs.get)
    print(f"\ntiny GPT-2: loss {loss:.4f}, |Δloss| {dloss:.1e}, worst gradient {worst} {errs[worst]:.1e}")
    assert len(errs) == len(dict(ours.named_parameters())) == 2 + 2 * 16 + 2  # embeddings, 16 per block, final norm
    assert dloss < 1e-5 * max(1.0, loss)
    assert errs[worst] < GRAD_TOL, f"{worst}: relative error {errs[worst]:.2e}"


def test_export_opens_in_transformers_with_the_same_logits(tiny, tmp_path):
    _, _, ours = tiny
    save_hf_gpt2(ours, tmp_path / "out")
    back = __import__("transformers").GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    idx = _idx(4)
    err = O.max_rel_error(O.hf_logits(back, idx), ours(idx))
    print(f"\ntiny GPT-2 exported: max relative logit error {err:.2e}")
    assert err <= REL_TOL
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors"]
    again = load_hf_gpt2(tmp_path / "out")  # and back into ours, bit for bit
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("kw", [dict(), dict(d_ff=48, activation="relu", tie_embeddings=False)],
                         ids=["gpt2", "n_inner-relu-untied"])
def test_a_model_built_here_exports_to_transformers(tmp_path, kw):
    base = dict(vocab_size=61, d_model=24, n_heads=3, d_ff=96, n_layers=2, max_len=20, positions="learned",
                scale_embeddings=False, layer_norm_eps=1e-6, seed=4)
    cfg = sf.GPTConfig(**{**base, **kw})
    ours = sf.GPT(cfg)
    rng = np.random.default_rng(5)
    for name, p in ours.named_parameters():  # off the 1 / 0 init
        p.data += (0.2 * rng.standard_normal(p.shape)).astype(np.float32)
    save_hf_gpt2(ours, tmp_path)
    hf_cfg = json.loads((tmp_path / "config.json").read_text())
    assert hf_cfg["n_inner"] == (None if cfg.d_ff == 4 * cfg.d_model else cfg.d_ff)
    assert gpt2_config_from_hf(hf_cfg) == sf.GPTConfig(**{**cfg.to_dict(), "seed": 0})
    back = __import__("transformers").GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = _idx(6, T=20, V=61)
    assert O.max_rel_error(O.hf_logits(back, idx), ours(idx)) <= REL_TOL


# ---- file variants --------------------------------------------------------------------------
def _hf_tensors(hf):
    return {n: t.detach().clone() for n, t in hf.state_dict().items() if n != "lm_head.weight"}


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_hub_spelling_buffers_and_half_precision_files_load(tiny, tmp_path, dtype):
    """The Hub's original gpt2 file: no ``transformer.`` prefix, ``attn.bias`` buffers kept;
    tensors stored F16 or BF16 are widened exactly."""
    from safetensors.torch import save_file

    hf, folder, ours = tiny
    tdtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    tensors = {n.removeprefix("transformer."): t.to(tdtype) for n, t in _hf_tensors(hf).items()}
    for i in range(TINY["n_layer"]):
        tensors[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    got = load_hf_gpt2(tmp_path)
    want = {k: v.float().numpy() for k, v in tensors.items() if "attn.bias" not in k and "masked" not in k}
    for k, v in gpt2_arrays_from_hf(got.config, want).items():
        np.testing.assert_array_equal(got.state_dict()[k], v, err_msg=k)  # exact widening
    if dtype == "F32":
        np.testing.assert_array_equal(got(_idx()), ours(_idx()))


def test_a_separate_lm_head_copy_of_tied_weights_is_ignored(tiny, tmp_path):
    from safetensors.torch import save_file

    hf, folder, ours = tiny
    tensors = _hf_tensors(hf)
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    np.testing.assert_array_equal(load_hf_gpt2(tmp_path)(_idx()), ours(_idx()))


def test_array_mappings_are_inverse(tiny):
    ours = tiny[2]
    state = ours.state_dict()
    hf = hf_arrays_from_gpt2(ours.config, state)
    assert hf["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)
    back = gpt2_arrays_from_hf(ours.config, hf)
    assert set(back) == set(state)
    for k in state:
        np.testing.assert_array_equal(back[k], state[k], err_msg=k)


# ---- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("norm_first", False), ("positions", "sinusoidal"),
                                         ("scale_embeddings", True)])
def test_configs_gpt2_cannot_express_are_refused_naming_the_field(tmp_path, field, value):
    kw = {"positions": "learned", "scale_embeddings": False, field: value}
    model = sf.GPT(sf.GPTConfig(vocab_size=11, d_model=8, n_heads=2, d_ff=32, n_layers=1, max_len=8, **kw))
    with pytest.raises(ValueError, match=f"{field}={value!r} cannot be written as GPT-2"):
        save_hf_gpt2(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    with pytest.raises(TypeError, match="expects a scratchformer GPT"):
        save_hf_gpt2(object(), tmp_path / "x")


def _copy_folder(src, dst, config=None):
    dst.mkdir(exist_ok=True)
    (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    cfg = json.loads((src / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, **(config or {})}))
    return dst


@pytest.mark.parametrize("change,match", [
    (dict(model_type="gpt_neo"), "config.json: model_type 'gpt_neo'; load_hf_gpt2 reads GPT-2"),
    (dict(activation_function="gelu"), "config.json: activation_function='gelu' is not supported"),
    (dict(scale_attn_by_inverse_layer_idx=True), "config.json: scale_attn_by_inverse_layer_idx=True"),
    (dict(n_head=5), r"config.json: d_model \(32\) must be divisible by n_heads \(5\)"),
    (dict(vocab_size=100), r"model.safetensors: transformer.wte.weight has shape \[97, 32\]; .* give \[100, 32\]"),
    (dict(n_layer=3), r"model.safetensors: missing tensors \['transformer.h.2"),
    (dict(n_layer=1), "model.safetensors: unexpected tensor 'transformer.h.1"),
    (dict(n_inner=64), r"model.safetensors: transformer.h.0.mlp.c_fc.bias has shape \[128\]"),
])
def test_bad_configs_are_one_clear_error_naming_the_file(tiny, tmp_path, change, match):
    folder = _copy_folder(tiny[1], tmp_path / "bad", change)
    with pytest.raises(ValueError, match=match):
        load_hf_gpt2(folder)


def test_missing_files_pickles_and_broken_safetensors_are_refused(tiny, tmp_path):
    src = tiny[1]
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        load_hf_gpt2(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty/model.safetensors: no such file"):
        load_hf_gpt2(empty)
    (empty / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    with pytest.raises(ValueError, match="pytorch_model.bin: a pickle.*save_pretrained"):
        load_hf_gpt2(empty)
    no_cfg = _copy_folder(src, tmp_path / "nocfg")
    (no_cfg / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="nocfg/config.json: no such file"):
        load_hf_gpt2(no_cfg)
    (no_cfg / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="nocfg/config.json: not valid JSON"):
        load_hf_gpt2(no_cfg)
    raw = (src / "model.safetensors").read_bytes()
    cut = _copy_folder(src, tmp_path / "cut")
    (cut / "model.safetensors").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="cut/model.safetensors: truncated: .* ends at byte"):
        load_hf_gpt2(cut)
    (cut / "model.safetensors").write_bytes(raw[:50])
    with pytest.raises(ValueError, match="cut/model.safetensors: not a safetensors file, or truncated"):
        load_hf_gpt2(cut)
    with pytest.raises(ValueError, match="not a folder"):
        load_hf_gpt2(cut / "model.safetensors")


def test_non_finite_weights_are_refused(tiny, tmp_path):
    from safetensors.torch import save_file

    hf, folder, _ = tiny
    tensors = _hf_tensors(hf)
    tensors["transformer.h.1.mlp.c_fc.bias"][3] = float("nan")
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ValueError, match="model.safetensors: transformer.h.1.mlp.c_fc.bias holds NaN"):
        load_hf_gpt2(tmp_path)


# ---- memory and layering ----------------------------------------------------------------------
def test_loading_holds_one_copy_of_the_weights_plus_one_tensor(tmp_path):
    """Peak traced memory while loading: the model (weights + gradients, 2·W bytes), one
    tensor at a time on top (its float64 initialisation, its read: each ≤ 1/40 of W here)
    and Python's objects — under 2.5·W, where a second copy of the weights would need 3·W."""
    O.make_hf_folder(tmp_path, seed=1, vocab_size=64, n_positions=32, n_embd=64, n_layer=12, n_head=2)
    load_hf_gpt2(tmp_path)  # first call: lazy imports and caches out of the measurement
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model = load_hf_gpt2(tmp_path)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    W = 4 * model.num_parameters()  # float32 bytes
    print(f"\nload peak {peak / 1e3:.0f} kB = {peak / W:.2f} × the {W / 1e3:.0f} kB of weights")
    assert 2 * W < peak < 2.5 * W


def test_importing_interop_imports_numpy_and_the_standard_library_only():
    code = ("import sys, scratchformer.interop\n"
            "heavy = {'torch', 'tokenizers', 'transformers', 'safetensors'} & "
            "{m.split('.')[0] for m in sys.modules}\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
