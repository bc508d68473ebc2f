"""The one-file Transformer (scratchformer/transformer_from_scratch_numpy.py) held equal to
the package, in float64: from the same weights, the same logits, loss and every gradient
(relative error ≤ 1e-10); its own central finite differences; greedy decoding and Adam equal
to the package's; a fully masked attention row gives zeros; ``import scratchformer`` does
not import it; and its copy-task training runs.

The package is used only through top-level names of ``import scratchformer as sf``.
"""

import ast
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

import scratchformer as sf
from scratchformer import transformer_from_scratch_numpy as ref

FILE = ref.__file__
GRAD_FLOOR = 1e-6  # every key_proj.bias gradient is 0 in exact arithmetic (softmax ignores a
# shift shared by all keys): both sides hold ~1e-17 rounding, compared against this floor


def rel(a, b, tiny=1e-300):
    """max|a − b| / max(max|b|, tiny)."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), tiny))


def make_config(norm_first=False, tie=False, activation="gelu", **kw):
    kw = dict(src_vocab_size=11, tgt_vocab_size=11, d_model=16, n_heads=4, d_ff=24,
              n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_len=16,
              activation=activation, norm_first=norm_first, tie_embeddings=tie, seed=3) | kw
    return sf.TransformerConfig(**kw)


def padded_batch(rng, V=11, B=3, S=7, T=6):
    """src with PAD inside and at the end of rows; tgt_in BOS-first with trailing PAD;
    tgt_out with PAD targets (ignored by the loss)."""
    src = rng.integers(3, V, (B, S))
    src[0, 5:] = 0
    src[1, 2] = 0
    tgt_in = rng.integers(3, V, (B, T))
    tgt_in[:, 0] = 1
    tgt_in[2, 4:] = 0
    tgt_in[1, 3] = 0
    tgt_out = rng.integers(2, V, (B, T))
    tgt_out[2, 3:] = 0
    return src, tgt_in, tgt_out


def package_grads(model, src, tgt_in, tgt_out):
    model.zero_grad()
    logits = model(src, tgt_in)
    crit = sf.CrossEntropyLoss(ignore_index=0)
    loss = crit(logits, tgt_out)
    dlogits = crit.backward()
    model.backward(dlogits)
    return logits, loss, dlogits, {n: p.grad for n, p in model.named_parameters()}


CASES = [(nf, tie, act) for nf in (False, True) for tie in (False, True)
         for act in ("gelu", "relu")]


@pytest.mark.parametrize("norm_first,tie,activation", CASES)
def test_logits_loss_and_every_gradient_equal_the_package(norm_first, tie, activation):
    cfg = make_config(norm_first, tie, activation)
    model = sf.Transformer(cfg).astype(np.float64)
    params = model.state_dict()
    src, tgt_in, tgt_out = padded_batch(np.random.default_rng(0))
    logits_pkg, loss_pkg, dlogits_pkg, grads_pkg = package_grads(model, src, tgt_in, tgt_out)

    logits, cache = ref.forward(params, src, tgt_in, dataclasses.asdict(cfg))
    loss, dlogits = ref.cross_entropy(logits, tgt_out, pad_id=0)
    grads = ref.backward(params, cache, dlogits)

    assert logits.dtype == np.float64 and rel(logits, logits_pkg) <= 1e-10
    assert abs(loss - loss_pkg) <= 1e-10 * abs(loss_pkg)
    assert rel(dlogits, dlogits_pkg) <= 1e-10
    assert set(grads) == set(params) == set(grads_pkg)
    worst = {k: rel(grads[k], grads_pkg[k], GRAD_FLOOR) for k in grads_pkg}
    assert max(worst.values()) <= 1e-10, sorted(worst.items(), key=lambda kv: -kv[1])[:3]


@pytest.mark.parametrize("norm_first,tie", [(False, False), (True, True)])
def test_init_params_draws_the_package_weights(norm_first, tie):
    cfg = make_config(norm_first, tie)
    params = ref.init_params(dataclasses.asdict(cfg), seed=cfg.seed)
    expected = sf.Transformer(cfg).state_dict()
    assert list(params) == list(expected)
    for k in expected:
        assert params[k].dtype == np.float32 and np.array_equal(params[k], expected[k]), k


def test_cross_entropy_equals_the_package_loss():
    rng = np.random.default_rng(1)
    logits = 5 * rng.standard_normal((4, 5, 9))
    targets = rng.integers(0, 9, (4, 5))
    targets[0, 0] = 0
    crit = sf.CrossEntropyLoss(ignore_index=0)
    loss_pkg = crit(logits, targets)
    loss, dlogits = ref.cross_entropy(logits, targets, pad_id=0)
    assert abs(loss - loss_pkg) <= 1e-12 * abs(loss_pkg)
    assert rel(dlogits, crit.backward()) <= 1e-12
    assert np.all(dlogits[targets == 0] == 0)
    with pytest.raises(ValueError, match="PAD"):
        ref.cross_entropy(logits, np.zeros((4, 5), dtype=int))


@pytest.mark.parametrize("norm_first,tie,activation",
                         [(False, False, "gelu"), (True, True, "relu")])
def test_backward_equals_central_finite_differences(norm_first, tie, activation):
    """Every key, 3 random entries each, of L = Σ W ⊙ logits with a random W (dlogits = W)."""
    cfg = dataclasses.asdict(make_config(norm_first, tie, activation, d_model=8, n_heads=2,
                                         d_ff=12, n_encoder_layers=1, n_decoder_layers=1))
    rng = np.random.default_rng(2)
    params = {k: v.astype(np.float64) for k, v in ref.init_params(cfg, seed=5).items()}
    for k in params:  # LayerNorm weights off 1, biases off 0: every term counts
        params[k] += 0.1 * rng.standard_normal(params[k].shape)
    src, tgt_in, _ = padded_batch(rng, S=6, T=5)
    W = rng.standard_normal((3, 5, cfg["tgt_vocab_size"]))

    def loss_of(p):
        return float((ref.forward(p, src, tgt_in, cfg)[0] * W).sum())

    _, cache = ref.forward(params, src, tgt_in, cfg)
    grads = ref.backward(params, cache, W)
    scale = max(np.abs(g).max() for g in grads.values())
    h, worst = 1e-5, 0.0
    for k, p in params.items():
        fd, an = [], []
        for idx in zip(*(rng.integers(0, n, 3) for n in p.shape)):
            old = p[idx]
            p[idx] = old + h
            up = loss_of(params)
            p[idx] = old - h
            down = loss_of(params)
            p[idx] = old
            fd.append((up - down) / (2 * h))
            an.append(grads[k][idx])
        fd, an = np.array(fd), np.array(an)
        worst = max(worst, rel(an, fd, 1e-3 * scale) if np.abs(fd).max() else np.abs(an).max())
    assert worst <= 1e-6


def test_greedy_decode_equals_the_package():
    cfg = make_config(True, False, max_len=24, seed=7)
    model = sf.Transformer(cfg).astype(np.float64)
    params = model.state_dict()
    params["generator.bias"][2] = 0.8  # EOS likely enough that rows end at different steps
    model.load_state_dict(params)
    src = np.random.default_rng(3).integers(3, 11, (8, 6))
    src[0, 3:] = 0
    out = ref.greedy_decode(params, src, dataclasses.asdict(cfg), max_len=20)
    expected = sf.greedy_decode(model, src, 20)
    assert out.dtype.kind == "i" and np.array_equal(out, expected)
    ended = (out == 2).any(axis=1)
    assert ended.any() and len({int(np.argmax(r == 2)) for r in out[ended]}) > 1  # a real test


def test_adam_step_equals_package_adam():
    model = sf.Transformer(make_config(tie=True)).astype(np.float64)
    params = model.state_dict()
    opt = sf.Adam(model.parameters(), lr=1e-2)
    rng, state = np.random.default_rng(4), {}
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for name, p in model.named_parameters():
            p.grad[...] = grads[name]
        opt.step()
        ref.adam_step(params, grads, state, lr=1e-2)
    assert state["t"] == 3
    for name, p in model.named_parameters():
        assert rel(params[name], p.data) <= 1e-12, name


def test_a_query_with_no_allowed_key_gives_zeros_not_nan():
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 2, 3, 4)) for _ in range(3))
    mask = np.ones((2, 1, 3, 3), dtype=bool)
    mask[1, 0, 2] = False  # batch 1, query 2: every key masked
    o, p = ref.attention(q, k, v, mask)
    assert np.all(o[1, :, 2] == 0) and np.all(p[1, :, 2] == 0) and np.isfinite(o).all()
    dq, dk, dv = ref.attention_backward(rng.standard_normal(o.shape), q, k, v, p)
    assert np.all(dq[1, :, 2] == 0) and all(np.isfinite(d).all() for d in (dq, dk, dv))
    # the whole model: an all-PAD source row and a PAD-first target row, still as the package
    cfg = make_config(True, True)
    model = sf.Transformer(cfg).astype(np.float64)
    src, tgt_in, _ = padded_batch(rng)
    src[2] = 0
    tgt_in[0, 0] = 0
    logits, _ = ref.forward(model.state_dict(), src, tgt_in, dataclasses.asdict(cfg))
    assert np.isfinite(logits).all() and rel(logits, model(src, tgt_in)) <= 1e-10


def test_float32_params_compute_in_float32_and_bad_tokens_are_named():
    cfg = dataclasses.asdict(make_config())
    params = ref.init_params(cfg)
    src, tgt_in, tgt_out = padded_batch(np.random.default_rng(6))
    logits, cache = ref.forward(params, src, tgt_in, cfg)
    grads = ref.backward(params, cache, ref.cross_entropy(logits, tgt_out)[1])
    assert logits.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    src[0, 0] = 11
    with pytest.raises(ValueError, match="token id 11 in src out of range"):
        ref.forward(params, src, tgt_in, cfg)


def test_the_file_stands_alone():
    imported = set()
    for node in ast.walk(ast.parse(open(FILE, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    assert imported <= {"__future__", "dataclasses", "math", "time", "numpy"}, imported
    code = ("import sys, scratchformer; "
            "print('scratchformer.transformer_from_scratch_numpy' in sys.modules)")
    root = os.path.dirname(os.path.dirname(FILE))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": root}, check=True)
    assert out.stdout.strip() == "False"


def test_copy_task_training_runs_and_learns():
    lines = []
    result = ref.train_copy(steps=30, warmup=10, eval_every=30, n_held_out=50, log=lines.append)
    assert result["steps"] == 30 and 0.0 <= result["accuracy"] <= 1.0
    assert len(lines) == 1 and "held-out exact match" in lines[0]
    assert result["losses"][-1] < 0.8 * result["losses"][0]
    assert len(result["examples"]) == 3
