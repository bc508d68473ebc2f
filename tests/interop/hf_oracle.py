"""transformers' GPT-2 as the oracle for scratchformer.interop: random weights, nothing
downloaded. Shared by test_hf_gpt2.py (a tiny config) and the slow GPT-2 small test.

``make_hf_folder`` builds ``GPT2LMHeadModel(GPT2Config(...))``, moves every LayerNorm weight
to 1 + 0.2·N(0,1), every bias to 0.1·N(0,1) and every matrix to N(0, σ²) with σ chosen so
the logits are O(1) (the init's 0.02 gives logits ≈ 0.1 whose ties hide mapping mistakes),
then ``save_pretrained``s it. ``compare_*`` return the measured figures so the tests can
print them.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import scratchformer as sf  # noqa: E402
from scratchformer.interop import gpt2_arrays_from_hf  # noqa: E402


def make_hf_model(seed: int = 0, matrix_std: float = 0.2, **config):
    """A GPT2LMHeadModel with perturbed random weights (eval mode, float32)."""
    torch.manual_seed(seed)
    config = {"bos_token_id": None, "eos_token_id": None, **config}
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(matrix_std * torch.randn(p.shape, generator=g))
    return model


def make_hf_folder(path, seed: int = 0, matrix_std: float = 0.2, **config):
    model = make_hf_model(seed, matrix_std, **config)
    model.save_pretrained(path)
    return model


def hf_logits(model, idx: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(idx)).logits.numpy()


def max_rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref| (the logits' scale), in float64."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def hf_greedy(model, prompt: np.ndarray, new: int) -> np.ndarray:
    """transformers' own greedy decoding (do_sample=False, its KV cache on)."""
    ids = torch.from_numpy(prompt)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                             min_new_tokens=new, do_sample=False, num_beams=1, pad_token_id=0)
    return out.numpy()


def compare_training_step(ours: sf.GPT, hf_model, idx: np.ndarray) -> tuple[float, float, dict]:
    """One training step's loss and gradients, ours (CrossEntropyLoss + backward) against
    autograd through ``hf_model(idx, labels=idx).loss`` (the next-token mean). Returns
    (|loss difference|, the loss, {our key: relative gradient error})."""
    import torch_reference as R

    targets = np.concatenate([idx[:, 1:], np.full((idx.shape[0], 1), -100)], axis=1)
    crit = sf.CrossEntropyLoss(ignore_index=-100)
    ours.zero_grad()
    loss = crit(ours(idx), targets)
    ours.backward(crit.backward())
    hf_model.zero_grad()
    t_idx = torch.from_numpy(idx)
    hf_loss = hf_model(t_idx, labels=t_idx).loss
    hf_loss.backward()
    hf_grads = {n: p.grad.numpy() for n, p in hf_model.named_parameters()}
    theirs = gpt2_arrays_from_hf(ours.config, hf_grads)
    mine = {k: p.grad for k, p in ours.named_parameters()}
    assert set(theirs) == set(mine), f"gradient names differ: {set(theirs) ^ set(mine)}"
    return abs(loss - hf_loss.item()), loss, R.grad_errors(mine, theirs)
