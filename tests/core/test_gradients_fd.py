"""Every hand-written backward against finite differences, float64, random upstream gradients."""

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.core import functional as F

from gradcheck import TOL, check_params, module_check, numeric_grad, rel_error



def rng_(seed=0):
    return np.random.default_rng(seed)


# ---- functional --------------------------------------------------------------------------
@pytest.mark.parametrize("fn,bwd", [
    (F.softmax, lambda x, y, g: F.softmax_backward(y, g)),
    (F.log_softmax, lambda x, y, g: F.log_softmax_backward(y, g)),
    (F.gelu, lambda x, y, g: F.gelu_backward(x, g)),
    (F.relu, lambda x, y, g: F.relu_backward(x, g)),
])
def test_functional_backward_matches_finite_differences(fn, bwd):
    x = rng_().standard_normal((3, 4, 7)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep ReLU away from its kink
    g = rng_(1).standard_normal(x.shape)
    analytic = bwd(x, fn(x.copy()), g)
    numeric = numeric_grad(lambda: float(np.sum(fn(x.copy()) * g)), x)
    assert rel_error(analytic, numeric) < TOL


def test_attention_backward_matches_finite_differences():
    r = rng_()
    q, k, v = (r.standard_normal((2, 3, n, 4)) for n in (5, 6, 6))
    mask = r.random((2, 1, 5, 6)) > 0.3
    mask[0, 0, 2] = False  # a fully masked row
    g = r.standard_normal((2, 3, 5, 4))
    out, p = F.attention(q, k, v, mask)
    grads = F.attention_backward(q, k, v, p, g)
    for x, dx in zip((q, k, v), grads):
        numeric = numeric_grad(lambda: float(np.sum(F.attention(q, k, v, mask)[0] * g)), x)
        assert rel_error(dx, numeric) < TOL


# ---- layers --------------------------------------------------------------------------------
def test_linear_backward_matches_finite_differences():
    m = sf.Linear(5, 3, rng=rng_())
    m.bias.data[:] = rng_(3).standard_normal(3)
    module_check(m, m, [rng_(2).standard_normal((2, 4, 5))])


def test_embedding_backward_matches_finite_differences():
    m = sf.Embedding(7, 4, rng=rng_())
    ids = np.array([[1, 2, 2, 6], [0, 1, 6, 6]])  # repeated ids must sum
    m.astype(np.float64)
    out = m(ids)
    R = rng_(1).standard_normal(out.shape)
    m.backward(R)
    numeric = numeric_grad(lambda: float(np.sum(m(ids) * R)), m.weight.data)
    assert rel_error(m.weight.grad, numeric) < TOL


def test_layernorm_backward_matches_finite_differences():
    m = sf.LayerNorm(6)
    m.weight.data[:] = rng_(4).standard_normal(6)
    m.bias.data[:] = rng_(5).standard_normal(6)
    module_check(m, m, [rng_(2).standard_normal((2, 3, 6)) * 3 + 1])


def test_positional_encoding_backward_is_identity():
    m = sf.PositionalEncoding(8, 20)
    module_check(m, lambda x: m(x, start=3), [rng_().standard_normal((2, 5, 8))])


def test_dropout_backward_matches_finite_differences():
    m = sf.Dropout(0.4, rng=rng_())
    gen = m._gen
    state = gen.bit_generator.state

    def run(x):
        gen.bit_generator.state = state  # the same mask on every call
        return m(x)

    module_check(m, run, [rng_(2).standard_normal((3, 5))])


@pytest.mark.parametrize("training", [True, False])  # eval: act'(h) computed in backward
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_feedforward_backward_matches_finite_differences(activation, training):
    m = sf.FeedForward(6, 10, activation, rng=rng_())
    m.train(training)
    module_check(m, m, [rng_(2).standard_normal((2, 3, 6))])


def test_attention_with_dropout_backward_matches_finite_differences():
    """Dropout on the attention weights: the kernel's three-pass path, the same mask each call."""
    m = sf.MultiHeadAttention(8, 2, dropout=0.3, rng=rng_())
    gen = m.attn_dropout._gen
    state = gen.bit_generator.state
    mask = sf.causal_mask(5)

    def run(x):
        gen.bit_generator.state = state
        return m(x, mask=mask)

    module_check(m, run, [rng_(2).standard_normal((3, 5, 8))])
    assert m.attn_dropout.mask is not None and (m.attn_dropout.mask == 0).any()


def test_self_attention_backward_matches_finite_differences():
    m = sf.MultiHeadAttention(8, 2, rng=rng_())
    for p in m.parameters():
        p.data[:] = rng_(7).standard_normal(p.data.shape) * 0.5  # non-zero biases
    mask = sf.padding_mask(np.array([[3, 4, 5, 0], [3, 4, 0, 0]])) & sf.causal_mask(4)
    module_check(m, lambda x: m(x, mask=mask), [rng_(2).standard_normal((2, 4, 8))])


def test_cross_attention_backward_matches_finite_differences():
    m = sf.MultiHeadAttention(8, 4, rng=rng_())
    for p in m.parameters():
        p.data[:] = rng_(7).standard_normal(p.data.shape) * 0.5
    mask = sf.padding_mask(np.array([[3, 4, 5, 0, 0], [0, 0, 0, 0, 0]]))  # row 2: nothing to attend
    errs = module_check(m, lambda x, mem: m(x, mem, mask=mask),
                        [rng_(2).standard_normal((2, 3, 8)), rng_(3).standard_normal((2, 5, 8))])
    assert errs["input1"] < TOL


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_backward_matches_finite_differences(norm_first):
    m = sf.EncoderLayer(8, 2, 12, dropout=0.0, norm_first=norm_first, rng=rng_())
    mask = sf.padding_mask(np.array([[3, 4, 5, 0], [3, 4, 4, 4]]))
    module_check(m, lambda x: m(x, mask), [rng_(2).standard_normal((2, 4, 8))])


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_backward_matches_finite_differences(norm_first):
    m = sf.DecoderLayer(8, 2, 12, dropout=0.0, norm_first=norm_first, rng=rng_())
    tgt_mask = sf.causal_mask(3)
    mem_mask = sf.padding_mask(np.array([[3, 4, 5, 0], [3, 4, 0, 0]]))
    module_check(m, lambda x, mem: m(x, mem, tgt_mask, mem_mask),
                 [rng_(2).standard_normal((2, 3, 8)), rng_(3).standard_normal((2, 4, 8))])


# ---- the whole model ------------------------------------------------------------------------
CONFIGS = {
    "post_ln": dict(),
    "pre_ln": dict(norm_first=True),
    "tied": dict(tie_embeddings=True),
    "pre_ln_tied_relu": dict(norm_first=True, tie_embeddings=True, activation="relu"),
    "dropout": dict(dropout=0.2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_full_model_backward_matches_finite_differences(name):
    cfg = sf.TransformerConfig(11, 11, d_model=8, n_heads=2, d_ff=12, n_encoder_layers=2,
                               n_decoder_layers=2, dropout=0.0, max_len=16, seed=3)
    cfg = sf.TransformerConfig(**{**cfg.to_dict(), **CONFIGS[name]})
    model = sf.Transformer(cfg).astype(np.float64)
    r = rng_(5)
    src = np.array([[4, 5, 6, 7, 8], [9, 3, 4, 0, 0]])  # padded
    tgt_in = np.array([[1, 4, 5, 6], [1, 9, 0, 0]])
    tgt_out = np.array([[4, 5, 6, 2], [9, 2, 0, 0]])
    crit = sf.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    R = r.standard_normal((2, 4, 11)) * 0.1
    state = model.rng.bit_generator.state

    def loss():  # label-smoothed CE plus a random linear term: a random upstream gradient
        model.rng.bit_generator.state = state  # same dropout masks on every call
        logits = model(src, tgt_in)
        return crit(logits, tgt_out) + float(np.sum(logits * R))

    model.zero_grad()
    loss()
    model.backward(crit.backward() + R)
    analytic = {n: p.grad.copy() for n, p in model.named_parameters()}
    errors = check_params(loss, list(model.named_parameters()), analytic, r, k=24)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst}: {errors[worst]:.2e}"
    if cfg.tie_embeddings:
        assert "tgt_embed.weight" not in analytic and "generator.weight" not in analytic


def test_loss_backward_matches_finite_differences():
    r = rng_()
    logits = r.standard_normal((3, 4, 6)) * 3
    targets = r.integers(0, 6, (3, 4))
    targets[0, :2] = 0
    crit = sf.CrossEntropyLoss(ignore_index=0, label_smoothing=0.2)
    crit(logits, targets)
    numeric = numeric_grad(lambda: crit(logits, targets), logits)
    crit(logits, targets)
    assert rel_error(crit.backward(), numeric) < TOL
