"""GPT-2 small (124 M parameters: transformers' default GPT2Config) against transformers, with
random weights (nothing downloaded): the tiny suite's checks at real scale.

Marked slow (minutes on 2 cores, about 4 GB): ``pytest tests/interop/test_hf_gpt2_small.py
-s`` prints the figures.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import hf_oracle as O  # noqa: E402

from scratchformer.interop import load_hf_gpt2, save_hf_gpt2  # noqa: E402

pytestmark = pytest.mark.slow
REL_TOL, GRAD_TOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(transformers' GPT-2 small, its folder, ours loaded from it). Matrices keep the
    init's N(0, 0.02²) — logits are then O(1) at D = 768; LayerNorms and biases perturbed."""
    folder = tmp_path_factory.mktemp("gpt2-small")
    hf = O.make_hf_folder(folder, seed=0, matrix_std=0.02)
    t = time.perf_counter()
    ours = load_hf_gpt2(folder)
    print(f"\nGPT-2 small: {ours.num_parameters():,} parameters, loaded in {time.perf_counter() - t:.1f} s")
    return hf, folder, ours


def _idx(seed, B, T):
    return np.random.default_rng(seed).integers(0, 50257, (B, T))


def test_small_logits_equal_transformers(small):
    hf, _, ours = small
    idx = _idx(0, 2, 64)
    want = O.hf_logits(hf, idx)
    err = O.max_rel_error(ours(idx), want)
    print(f"\nGPT-2 small: max relative logit error {err:.2e} (logits up to {np.abs(want).max():.2f})")
    assert err <= REL_TOL


def test_small_greedy_generation_gives_transformers_tokens(small):
    hf, _, ours = small
    prompt = _idx(1, 1, 8)
    want = O.hf_greedy(hf, prompt, 50)
    np.testing.assert_array_equal(ours.generate(prompt, 50, top_k=1), want)
    np.testing.assert_array_equal(ours.generate(prompt, 50, top_k=1, use_cache=False), want)


def test_small_training_step_gradients_equal_transformers_autograd(small):
    hf, _, ours = small
    dloss, loss, errs = O.compare_training_step(ours, hf, _idx(2, 1, 32))
    worst = max(errs, key=errs.get)
    print(f"\nGPT-2 small: loss {loss:.4f}, |Δloss| {dloss:.1e}, worst gradient {worst} {errs[worst]:.1e}")
    assert dloss < 1e-5 * max(1.0, loss)
    assert errs[worst] < GRAD_TOL


def test_small_export_opens_in_transformers_with_the_same_logits(small, tmp_path):
    _, _, ours = small
    save_hf_gpt2(ours, tmp_path)
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = _idx(3, 1, 64)
    err = O.max_rel_error(O.hf_logits(back, idx), ours(idx))
    print(f"\nGPT-2 small exported: max relative logit error {err:.2e}")
    assert err <= REL_TOL
