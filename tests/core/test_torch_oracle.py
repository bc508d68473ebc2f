"""PyTorch as an independent oracle for the NumPy model: same weights, same inputs, a
RANDOM upstream gradient (an all-ones one hides LayerNorm/softmax bugs), dropout 0,
float32. Forward within 1e-4 absolute; every parameter and input gradient within 1e-3
(the relative error of ``torch_reference.grad_errors``, floored at 1% of the largest
gradient norm for gradients that are zero in exact arithmetic).

    pytest tests/test_torch_oracle.py -s       # prints one line per check
    python tests/test_torch_oracle.py          # runs every check, prints a table
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

if __name__ == "__main__":  # run as a script: make the package importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

torch = pytest.importorskip("torch")
import torch_reference as R  # noqa: E402  (needs torch; lives next to this file)

import scratchformer as sf  # noqa: E402
from scratchformer.core import functional as SF  # noqa: E402

TF = torch.nn.functional
FWD_ATOL, GRAD_RTOL = 1e-4, 1e-3
D, H, DFF, B = 16, 4, 32, 3
RESULTS: dict[str, tuple[float, float, str]] = {}  # label → (fwd err, max grad err, worst)


def _check(label, fwd_pairs, ours, ref, fwd_atol=FWD_ATOL, grad_rtol=GRAD_RTOL):
    """Assert forward pairs within fwd_atol and gradients within grad_rtol; record both."""
    fwd = 0.0
    for a, b in fwd_pairs:
        b = R.tn(b) if torch.is_tensor(b) else np.asarray(b)
        assert a.shape == b.shape, f"{label}: shape {a.shape} vs torch {b.shape}"
        assert np.all(np.isfinite(a)), f"{label}: non-finite output"
        fwd = max(fwd, float(np.max(np.abs(a - b))))
    errs = R.grad_errors(ours, ref) if ours else {"-": 0.0}
    worst = max(errs, key=errs.get)
    RESULTS[label] = (fwd, errs[worst], worst)
    print(f"{label:<44} fwd {fwd:.1e}  grad {errs[worst]:.1e} ({worst})")
    assert fwd < fwd_atol, f"{label}: forward differs from torch by {fwd:.3g}"
    bad = {k: e for k, e in errs.items() if not e < grad_rtol}
    assert not bad, f"{label}: gradients differ from torch: {bad}"


def _rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


# ---- functional ----------------------------------------------------------------------------
def test_functional_forward_and_backward_match_torch():
    rng = np.random.default_rng(0)
    x, g = _rand(rng, 3, 5, 7, scale=3.0), _rand(rng, 3, 5, 7)
    xt = R.tt(x, grad=True)
    cases = {  # name: (ours forward, ours backward given g, torch function)
        "softmax": (lambda: SF.softmax(x), lambda y: SF.softmax_backward(y, g),
                    lambda t: TF.softmax(t, -1)),
        "softmax(axis=1)": (lambda: SF.softmax(x, axis=1), lambda y: SF.softmax_backward(y.swapaxes(1, -1), g.swapaxes(1, -1)).swapaxes(1, -1),
                            lambda t: TF.softmax(t, 1)),
        "log_softmax": (lambda: SF.log_softmax(x), lambda y: SF.log_softmax_backward(y, g),
                        lambda t: TF.log_softmax(t, -1)),
        "gelu": (lambda: SF.gelu(x), lambda y: SF.gelu_backward(x, g), R.gelu_tanh),
        "relu": (lambda: SF.relu(x), lambda y: SF.relu_backward(x, g), TF.relu),
    }
    for name, (fwd, bwd, ref) in cases.items():
        xt.grad = None
        yt = ref(xt)
        (yt * R.tt(g)).sum().backward()
        y = fwd()
        _check(f"functional {name}", [(y, yt)], {"x": bwd(y)}, {"x": R.tn(xt.grad)})


def test_gelu_matches_torch_for_large_inputs():
    x = np.array([-1e4, -100.0, -30.0, -8.0, 8.0, 30.0, 100.0, 1e4], dtype=np.float32)
    g = np.linspace(-1, 1, x.size).astype(np.float32)
    xt = R.tt(x, grad=True)
    (R.gelu_tanh(xt) * R.tt(g)).sum().backward()
    _check("functional gelu |x| up to 1e4", [(SF.gelu(x), R.gelu_tanh(xt))],
           {"x": SF.gelu_backward(x, g)}, {"x": R.tn(xt.grad)})


def test_attention_function_matches_sdpa():
    rng = np.random.default_rng(1)
    q, k, v = _rand(rng, B, H, 5, 4), _rand(rng, B, H, 6, 4), _rand(rng, B, H, 6, 4)
    mask = rng.random((B, 1, 5, 6)) < 0.7
    mask[..., 0] = True  # every query row keeps a key (torch gives NaN otherwise)
    g = _rand(rng, B, H, 5, 4)
    out, p = SF.attention(q, k, v, mask)
    qt, kt, vt = (R.tt(a, grad=True) for a in (q, k, v))
    ot = TF.scaled_dot_product_attention(qt, kt, vt, attn_mask=torch.from_numpy(mask))
    (ot * R.tt(g)).sum().backward()
    dq, dk, dv = SF.attention_backward(q, k, v, p, g)
    _check("functional attention vs sdpa", [(out, ot)], {"q": dq, "k": dk, "v": dv},
           {"q": R.tn(qt.grad), "k": R.tn(kt.grad), "v": R.tn(vt.grad)})


# ---- LayerNorm and loss ----------------------------------------------------------------------
@pytest.mark.parametrize("spread", [2.0, 3e-3])  # 3e-3: variance ~ eps, where eps's place shows
def test_layernorm_matches_torch(spread):
    rng = np.random.default_rng(2)
    ln = sf.LayerNorm(D)
    R.perturb_parameters(ln, rng)
    x, g = spread * (1.5 + _rand(rng, B, 5, D)), _rand(rng, B, 5, D)  # mean ≠ 0
    xt, wt, bt = R.tt(x, True), R.tt(ln.weight.data, True), R.tt(ln.bias.data, True)
    yt = TF.layer_norm(xt, (D,), wt, bt, ln.eps)
    (yt * R.tt(g)).sum().backward()
    y = ln(x)
    dx = ln.backward(g)
    _check(f"LayerNorm spread {spread:g}", [(y, yt)], {"x": dx, "weight": ln.weight.grad, "bias": ln.bias.grad},
           {"x": R.tn(xt.grad), "weight": R.tn(wt.grad), "bias": R.tn(bt.grad)})


@pytest.mark.parametrize("ignore_index,smoothing,scale", [
    (None, 0.0, 3.0), (0, 0.0, 3.0), (0, 0.1, 3.0), (None, 0.2, 3.0), (0, 0.1, 1e4)])
def test_cross_entropy_matches_torch(ignore_index, smoothing, scale):
    rng = np.random.default_rng(3)
    logits = _rand(rng, B, 6, 11, scale=scale)
    targets = rng.integers(0, 11, size=(B, 6))
    targets[:, -2:] = 0  # some padding positions
    crit = sf.CrossEntropyLoss(ignore_index=ignore_index, label_smoothing=smoothing)
    loss = crit(logits, targets)
    dlogits = crit.backward()
    lt = R.tt(logits, True)
    ref = TF.cross_entropy(lt.reshape(-1, 11), torch.from_numpy(targets).reshape(-1),
                           ignore_index=-100 if ignore_index is None else ignore_index,
                           label_smoothing=smoothing)
    ref.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    rel_loss = abs(loss - ref.item()) / max(abs(ref.item()), 1.0)  # scale-free for 1e4 logits
    _check(f"CrossEntropy ignore={ignore_index} ls={smoothing} |z|~{scale:g}",
           [(np.float32(rel_loss), np.float32(0.0))], {"logits": dlogits}, {"logits": R.tn(lt.grad)})


# ---- MultiHeadAttention ------------------------------------------------------------------------
def _mha_case(kind, rng):
    """(x, memory or None, NumPy mask, torch kwargs) for one attention setting."""
    Tq, Tk = 6, (4 if kind == "cross" else 6)
    x = _rand(rng, B, Tq, D)
    memory = _rand(rng, B, Tk, D) if kind == "cross" else None
    if kind in ("padding", "cross"):
        pad = R.key_padding([Tk, Tk - 2, Tk - 3], Tk)  # (B, Tk) True = pad
        return x, memory, ~pad[:, None, None, :], dict(key_padding_mask=torch.from_numpy(pad))
    if kind == "causal":
        return x, None, SF.causal_mask(Tq), dict(attn_mask=R.torch_causal(Tq))
    mask = rng.random((B, H, Tq, Tk)) < 0.6  # "per_head": a different mask for every head
    mask[..., 0] = True
    return x, None, mask, dict(attn_mask=torch.from_numpy(~mask.reshape(B * H, Tq, Tk)))


@pytest.mark.parametrize("kind", ["padding", "causal", "per_head", "cross"])
def test_multihead_attention_matches_torch(kind):
    rng = np.random.default_rng(4)
    mha = sf.MultiHeadAttention(D, H, rng=rng)
    R.perturb_parameters(mha, rng)
    ref = R.torch_mha(mha)
    x, memory, mask, kw = _mha_case(kind, rng)
    g = _rand(rng, *x.shape)
    out = mha(x, memory, mask=mask)
    xt = R.tt(x, True)
    mt = R.tt(memory, True) if memory is not None else xt
    ot, wt = ref(xt, mt, mt, need_weights=True, average_attn_weights=False, **kw)
    (ot * R.tt(g)).sum().backward()
    _, wavg = ref(xt, mt, mt, need_weights=True, **kw)
    grads = mha.backward(g)
    ours, theirs = R.numpy_grads(mha), R.torch_grads(mha, ref, D)
    if memory is None:
        ours["input.x"], theirs["input.x"] = grads, R.tn(xt.grad)
    else:
        ours["input.x"], ours["input.memory"] = grads
        theirs["input.x"], theirs["input.memory"] = R.tn(xt.grad), R.tn(mt.grad)
    assert mha.attn.shape == (B, H, x.shape[1], mt.shape[1])
    _check(f"MultiHeadAttention {kind}", [(out, ot), (mha.attn, wt), (mha.attn.mean(1), wavg)],
           ours, theirs)


# ---- Encoder / decoder layers ----------------------------------------------------------------
LAYER_CASES = [(False, "gelu"), (True, "gelu"), (False, "relu"), (True, "relu")]


@pytest.mark.parametrize("norm_first,activation", LAYER_CASES)
def test_encoder_layer_matches_torch(norm_first, activation):
    rng = np.random.default_rng(5)
    layer = sf.EncoderLayer(D, H, DFF, dropout=0.0, activation=activation,
                            norm_first=norm_first, rng=rng)
    R.perturb_parameters(layer, rng)
    ref = R.torch_encoder_layer(layer, D, H, DFF, activation, norm_first)
    T = 7
    pad = R.key_padding([T, 5, 3], T)
    x, g = _rand(rng, B, T, D), _rand(rng, B, T, D)
    y = layer(x, mask=~pad[:, None, None, :])
    xt = R.tt(x, True)
    yt = ref(xt, src_key_padding_mask=torch.from_numpy(pad))
    (yt * R.tt(g)).sum().backward()
    dx = layer.backward(g)
    ours, theirs = R.numpy_grads(layer), R.torch_grads(layer, ref, D)
    ours["input.x"], theirs["input.x"] = dx, R.tn(xt.grad)
    _check(f"EncoderLayer norm_first={norm_first} {activation}", [(y, yt)], ours, theirs)


@pytest.mark.parametrize("norm_first,activation", LAYER_CASES)
def test_decoder_layer_matches_torch(norm_first, activation):
    rng = np.random.default_rng(6)
    layer = sf.DecoderLayer(D, H, DFF, dropout=0.0, activation=activation,
                            norm_first=norm_first, rng=rng)
    R.perturb_parameters(layer, rng)
    ref = R.torch_decoder_layer(layer, D, H, DFF, activation, norm_first)
    T, S = 6, 7
    tpad, spad = R.key_padding([T, 4, 2], T), R.key_padding([5, S, 3], S)
    x, mem, g = _rand(rng, B, T, D), _rand(rng, B, S, D), _rand(rng, B, T, D)
    tgt_mask = ~tpad[:, None, None, :] & SF.causal_mask(T)
    y = layer(x, mem, tgt_mask, ~spad[:, None, None, :])
    xt, mt = R.tt(x, True), R.tt(mem, True)
    yt = ref(xt, mt, tgt_mask=R.torch_causal(T), tgt_key_padding_mask=torch.from_numpy(tpad),
             memory_key_padding_mask=torch.from_numpy(spad))
    (yt * R.tt(g)).sum().backward()
    dx, dmem = layer.backward(g)
    ours, theirs = R.numpy_grads(layer), R.torch_grads(layer, ref, D)
    ours["input.x"], ours["input.memory"] = dx, dmem
    theirs["input.x"], theirs["input.memory"] = R.tn(xt.grad), R.tn(mt.grad)
    _check(f"DecoderLayer norm_first={norm_first} {activation}", [(y, yt)], ours, theirs)


# ---- The full model ------------------------------------------------------------------------------
MODEL_CASES = {  # name: (TransformerConfig overrides, label smoothing)
    "post-LN": (dict(norm_first=False), 0.0),
    "pre-LN": (dict(norm_first=True), 0.0),
    "post-LN tied relu smoothing": (dict(tie_embeddings=True, activation="relu"), 0.1),
    "pre-LN tied smoothing": (dict(norm_first=True, tie_embeddings=True), 0.1),
    "pre-LN untied d32 smoothing": (dict(norm_first=True, d_model=32, n_heads=2), 0.1),
}


def _model(rng, **overrides):
    kw = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=D, n_heads=H, d_ff=DFF,
              n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_len=32, seed=7)
    if not overrides.get("tie_embeddings"):
        kw["tgt_vocab_size"] = 17
    kw.update(overrides)
    model = sf.Transformer(sf.TransformerConfig(**kw))
    R.perturb_parameters(model, rng)
    return model


def _padded_batch(rng, V_src, V_tgt, S=7, T=6):
    """src (B, S), tgt_in (B, T), tgt_out (B, T): random ids ≥ 3, PAD (0) after each length."""
    src = rng.integers(3, V_src, size=(B, S))
    tgt = rng.integers(3, V_tgt, size=(B, T + 1))
    src[R.key_padding([S, 4, 2], S)] = 0
    tgt[R.key_padding([T + 1, 5, 3], T + 1)] = 0
    tgt[:, 0] = 1  # BOS
    return src, tgt[:, :-1], tgt[:, 1:]


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_transformer_logits_and_all_gradients_match_torch(case, dtype=np.float32):
    overrides, smoothing = MODEL_CASES[case]
    rng = np.random.default_rng(8)
    model = _model(rng, **overrides).astype(dtype)
    cfg = model.config
    ref = R.reference_from_numpy(model).to(torch.float64 if dtype == np.float64 else torch.float32)
    src, tgt_in, tgt_out = _padded_batch(rng, cfg.src_vocab_size, cfg.tgt_vocab_size)
    Rg = _rand(rng, B, tgt_in.shape[1], cfg.tgt_vocab_size).astype(dtype)  # loss = CE + Σ logits·R

    logits = model(src, tgt_in)
    crit = sf.CrossEntropyLoss(ignore_index=cfg.pad_id, label_smoothing=smoothing)
    loss = crit(logits, tgt_out) + float((logits * Rg).sum())
    model.zero_grad()
    model.backward(crit.backward() + Rg)

    lt = ref(torch.from_numpy(src), torch.from_numpy(tgt_in))
    ce = TF.cross_entropy(lt.reshape(-1, cfg.tgt_vocab_size), torch.from_numpy(tgt_out).reshape(-1),
                          ignore_index=cfg.pad_id, label_smoothing=smoothing)
    loss_t = ce + (lt * R.tt(Rg)).sum()
    loss_t.backward()
    assert abs(loss - loss_t.item()) <= 1e-4 * max(1.0, abs(loss_t.item()))
    ours, theirs = R.numpy_grads(model), R.torch_grads(model, ref, cfg.d_model)
    if cfg.tie_embeddings:
        assert "tgt_embed.weight" not in ours and "generator.weight" not in ours
        assert ref.generator.weight is ref.src_embed.weight
    assert logits.dtype == dtype and all(g.dtype == dtype for g in ours.values())
    tol = dict(fwd_atol=1e-10, grad_rtol=1e-8) if dtype == np.float64 else {}
    _check(f"Transformer {case}{' float64' if dtype == np.float64 else ''}", [(logits, lt)],
           ours, theirs, **tol)


@pytest.mark.parametrize("case", ["post-LN tied relu smoothing", "pre-LN"])
def test_transformer_float64_matches_torch_to_1e_8(case):
    """float64 on both sides: tiny-constant bugs (eps outside the sqrt, a GELU constant off
    in the 4th digit) hide under float32 tolerances but not here."""
    test_transformer_logits_and_all_gradients_match_torch(case, dtype=np.float64)


def test_attention_maps_keys_shapes_and_values_match_torch():
    rng = np.random.default_rng(9)
    model = _model(rng, norm_first=True)
    ref = R.reference_from_numpy(model)
    src, tgt_in, _ = _padded_batch(rng, 13, 17)
    S, T = src.shape[1], tgt_in.shape[1]
    model(src, tgt_in)
    maps = model.attention_maps()
    expected = {}
    for i in range(2):
        expected[f"encoder.layers.{i}.self_attn"] = (B, H, S, S)
        expected[f"decoder.layers.{i}.self_attn"] = (B, H, T, T)
        expected[f"decoder.layers.{i}.cross_attn"] = (B, H, T, S)
    assert {k: v.shape for k, v in maps.items()} == expected
    torch_maps, handles = R.capture_attention(ref)
    with torch.no_grad():
        ref(torch.from_numpy(src), torch.from_numpy(tgt_in))
    for h in handles:
        h.remove()
    assert set(torch_maps) == set(expected)
    _check("attention_maps values", [(maps[k], torch_maps[k]) for k in expected], {}, {})


# ---- `python tests/test_torch_oracle.py`: every check, then a table ---------------------------
def _cases(fn):
    combos = [{}]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            names = [n.strip() for n in mark.args[0].split(",")]
            combos = [{**c, **dict(zip(names, v if len(names) > 1 else (v,)))}
                      for c in combos for v in mark.args[1]]
    return combos


if __name__ == "__main__":
    failed = []
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            for kwargs in _cases(fn):
                try:
                    fn(**kwargs)
                except AssertionError as e:
                    failed.append(f"{name}{kwargs}: {e}")
    print(f"\n{'check':<44} {'max |fwd|':>9} {'max grad rel':>12}  worst tensor")
    for label, (fwd, err, worst) in RESULTS.items():
        print(f"{label:<44} {fwd:9.1e} {err:12.1e}  {worst}")
    print("\n".join(["", "FAILED:"] + failed) if failed else "\nall checks passed")
    raise SystemExit(1 if failed else 0)
