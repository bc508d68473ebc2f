"""Muon: equal to torch.optim.Muon step for step (float64, its Newton–Schulz cast to bfloat16
patched out), the Newton–Schulz iteration's singular values, the Muon/AdamW split of our
models, MuonAdamW through checkpoints and a bit-exact Trainer resume, and the errors."""

import inspect

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.core.module import Parameter
from scratchformer.training.checkpoint import load, optimizer_from_state, save
from scratchformer.training.muon import (Muon, MuonAdamW, adjusted_lr, is_hidden_matrix,
                                         muon_groups, newton_schulz)
from scratchformer.training.trainer import TrainConfig, Trainer, lm_step

SHAPES = [(20, 7), (7, 20), (12, 12), (300, 250)]  # tall, wide, square, bigger than a block
CONFIGS = [
    dict(lr=0.02),
    dict(lr=0.02, nesterov=False),
    dict(lr=0.05, weight_decay=0.0),
    dict(lr=0.01, weight_decay=0.3, adjust_lr_fn="original"),
    dict(lr=1e-3, adjust_lr_fn="match_rms_adamw"),
    dict(lr=1e-3, adjust_lr_fn="match_rms_adamw", nesterov=False, weight_decay=0.05),
    dict(lr=0.02, momentum=0.3, ns_steps=3, eps=1e-5),  # torch.lerp's other branch
    dict(lr=0.02, momentum=0.0, ns_coefficients=(2.0, -1.5, 0.5)),
]
TOL = 1e-10  # max |ours − torch's| over 10 steps, float64


@pytest.fixture
def torch64(monkeypatch):
    """torch, its Muon's Newton–Schulz patched to keep the input's dtype (float64) instead of
    casting to bfloat16: the source's one cast is replaced, every other line stays torch's."""
    torch = pytest.importorskip("torch")
    import torch.optim._muon as tm

    src = inspect.getsource(tm._zeropower_via_newtonschulz)
    assert src.count("grad.bfloat16()") == 1, "torch changed its Newton–Schulz: update this patch"
    namespace = dict(vars(tm))
    exec(compile(src.replace("grad.bfloat16()", "grad.clone()"), tm.__file__, "exec"), namespace)
    monkeypatch.setattr(tm, "_zeropower_via_newtonschulz", namespace["_zeropower_via_newtonschulz"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


def lr_at(step):  # a warm-up then decay, so lr changes every step
    return min(step / 4, 1.0) * 0.9 ** step


def max_diff(params, tparams):
    return max(float(np.max(np.abs(p.data - t.detach().numpy()))) for p, t in zip(params, tparams))


def test_the_patched_torch_newton_schulz_runs_in_float64(torch64):
    import torch.optim._muon as tm

    g = np.random.default_rng(0).standard_normal((9, 5))
    out = tm._zeropower_via_newtonschulz(torch64.from_numpy(g), (3.4445, -4.775, 2.0315), 5, 1e-7)
    assert out.dtype == torch64.float64
    np.testing.assert_allclose(newton_schulz(g), out.numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("kw", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_muon_matches_torch_step_for_step(kw, torch64):
    rng = np.random.default_rng(0)
    params = [Parameter(rng.standard_normal(s)) for s in SHAPES]
    tparams = [torch64.nn.Parameter(torch64.from_numpy(p.data.copy())) for p in params]
    opt, topt = Muon(params, **kw), torch64.optim.Muon(tparams, **kw)
    for step in range(1, 11):
        for p, tp in zip(params, tparams):
            g = rng.standard_normal(p.data.shape) * 0.1
            p.grad[...] = g
            tp.grad = torch64.from_numpy(g.copy())
        opt.lr = topt.param_groups[0]["lr"] = kw["lr"] * lr_at(step)
        opt.step()
        topt.step()
        assert max_diff(params, tparams) <= TOL, step
    for i, tp in enumerate(tparams):
        np.testing.assert_allclose(opt.state["momentum_buffer"][i],
                                   topt.state[tp]["momentum_buffer"].numpy(), rtol=0, atol=TOL)


def gpt_batch(rng, n=4, t=10, vocab=11):
    x = rng.integers(0, vocab, (n, t + 1))
    return x[:, :-1], x[:, 1:]


@pytest.mark.parametrize("tie", [True, False])
def test_muon_adamw_on_a_gpt_matches_torch_muon_and_adamw(make_gpt, torch64, tie):
    model = make_gpt(tie_embeddings=tie).astype(np.float64)
    kw = dict(lr=0.02, adamw_lr_ratio=0.1, weight_decay=0.1, betas=(0.9, 0.95),
              adamw_eps=1e-8, adamw_weight_decay=0.05)
    opt = MuonAdamW.for_model(model, **kw)
    muon, adamw = muon_groups(model)
    t_muon = [torch64.nn.Parameter(torch64.from_numpy(p.data.copy())) for p in muon]
    t_adamw = [torch64.nn.Parameter(torch64.from_numpy(p.data.copy())) for p in adamw]
    topt_m = torch64.optim.Muon(t_muon, lr=kw["lr"], weight_decay=kw["weight_decay"])
    topt_a = torch64.optim.AdamW(t_adamw, lr=kw["lr"] * 0.1, betas=(0.9, 0.95), eps=1e-8,
                                 weight_decay=0.05)
    crit, rng = sf.CrossEntropyLoss(), np.random.default_rng(1)
    for step in range(1, 11):
        x, y = gpt_batch(rng)
        opt.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())  # real gradients of the GPT (ours feed both sides)
        for p, tp in zip(muon + adamw, t_muon + t_adamw):
            tp.grad = torch64.from_numpy(p.grad.copy())
        opt.lr = kw["lr"] * lr_at(step)
        topt_m.param_groups[0]["lr"] = opt.lr
        topt_a.param_groups[0]["lr"] = opt.lr * 0.1
        opt.step()
        topt_m.step()
        topt_a.step()
        assert max_diff(muon, t_muon) <= TOL, step
        assert max_diff(adamw, t_adamw) <= TOL, step


# ---- the math ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(40, 12), (12, 40), (16, 16)])
def test_newton_schulz_pushes_every_singular_value_into_a_band_around_one(shape):
    rng = np.random.default_rng(3)
    P, _ = np.linalg.qr(rng.standard_normal((shape[0], min(shape))))
    Q, _ = np.linalg.qr(rng.standard_normal((shape[1], min(shape))))
    s = np.geomspace(1.0, 0.01, min(shape))  # condition number 100
    G = P * s @ Q.T  # (m, n) with singular values s
    O = newton_schulz(G)
    assert O.shape == shape
    sv = np.linalg.svd(O, compute_uv=False)
    assert sv.min() > 0.68 and sv.max() < 1.21, sv  # every σ ≥ 0.002·‖G‖_F ends in this band
    # the singular vectors do not change: O = P·diag(p(s))·Qᵀ
    np.testing.assert_allclose(P.T @ O @ Q, np.diag(np.diag(P.T @ O @ Q)), atol=1e-10)


def test_a_convergent_polynomial_gives_the_orthogonal_factor():
    rng = np.random.default_rng(4)
    G = rng.standard_normal((15, 6))
    P, _, Qt = np.linalg.svd(G, full_matrices=False)
    O = newton_schulz(G, coefficients=(1.5, -0.5, 0.0), steps=60)  # classic cubic iteration
    np.testing.assert_allclose(O, P @ Qt, atol=1e-9)


def test_newton_schulz_keeps_float32_and_maps_zero_to_zero():
    G = np.random.default_rng(5).standard_normal((8, 3)).astype(np.float32)
    assert newton_schulz(G).dtype == np.float32
    assert not newton_schulz(np.zeros((4, 6))).any()


def test_adjusted_lr_by_hand():
    assert adjusted_lr(0.1, None, (20, 5)) == pytest.approx(0.1 * 2.0)
    assert adjusted_lr(0.1, "original", (5, 20)) == pytest.approx(0.1)
    assert adjusted_lr(0.1, "match_rms_adamw", (5, 100)) == pytest.approx(0.1 * 0.2 * 10.0)


def test_float32_parameters_stay_float32():
    p = Parameter(np.random.default_rng(6).standard_normal((6, 4)).astype(np.float32))
    p.grad[...] = 1.0
    opt = Muon([p], lr=0.1)
    opt.step()
    assert p.data.dtype == np.float32 and opt.state["momentum_buffer"][0].dtype == np.float32


# ---- the split --------------------------------------------------------------------------------
def expected_muon_names(model):
    hidden = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight",
              "linear1.weight", "linear2.weight")
    return {n for n, _ in model.named_parameters() if n.endswith(hidden)}


@pytest.mark.parametrize("tie", [True, False])
def test_muon_groups_split_gpt_and_transformer_by_name(make_gpt, make_transformer, tie):
    for model in (make_gpt(tie_embeddings=tie), make_transformer(tie_embeddings=tie)):
        named = dict(model.named_parameters())
        muon, adamw = muon_groups(model)
        names = {n for n, p in named.items() if any(p is q for q in muon)}
        assert names == expected_muon_names(model)
        assert len(muon) + len(adamw) == len(named)
        assert all(p.data.ndim == 2 for p in muon)
        assert not any(is_hidden_matrix(n, named[n]) for n in named if n not in names)
        assert any(n.endswith("embed.weight") for n in named if n not in names)


# ---- checkpoints and the Trainer --------------------------------------------------------------
def train_steps(model, opt, n, seed=0):
    crit, rng = sf.CrossEntropyLoss(), np.random.default_rng(seed)
    for _ in range(n):
        x, y = gpt_batch(rng)
        opt.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())
        opt.step()


def test_muon_adamw_state_round_trips_through_a_checkpoint(make_gpt, tmp_path):
    model = make_gpt()
    opt = MuonAdamW.for_model(model, lr=0.03, adamw_lr_ratio=0.2, nesterov=False, ns_steps=4,
                              adjust_lr_fn="match_rms_adamw", betas=(0.8, 0.9))
    train_steps(model, opt, 3)
    loaded, opt_state, _ = load(save(tmp_path / "c.safetensors", model, opt))
    saved = opt.state_dict()
    assert sorted(opt_state) == sorted(saved)
    for k in saved:
        np.testing.assert_array_equal(opt_state[k], saved[k])
    rebuilt = optimizer_from_state(loaded, opt_state)
    assert type(rebuilt) is MuonAdamW and rebuilt.step_count == 3
    settings = (rebuilt.nesterov, rebuilt.ns_steps, rebuilt.adjust_lr_fn)
    assert settings == (False, 4, "match_rms_adamw")
    again = MuonAdamW.for_model(loaded, lr=1.0)  # the usual resume: build, then load
    again.load_state_dict(opt_state)
    for other in (rebuilt, again):
        for k, v in other.state_dict().items():
            np.testing.assert_array_equal(v, saved[k])
    train_steps(model, opt, 2, seed=9)  # and they go on identically
    train_steps(loaded, again, 2, seed=9)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, loaded.state_dict()[k])


def test_plain_muon_state_round_trips_through_a_checkpoint(make_gpt, tmp_path):
    model = make_gpt()
    opt = Muon(muon_groups(model)[0], lr=0.02, adjust_lr_fn="original")
    opt.step()
    _, opt_state, _ = load(save(tmp_path / "m.safetensors", model, opt))
    again = Muon(muon_groups(model)[0])
    again.load_state_dict(opt_state)
    assert again.adjust_lr_fn == "original" and again.lr == 0.02 and again.step_count == 1
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[k], v)


def make_lm_trainer(make_gpt, out_dir=None, steps=12):
    model = make_gpt(vocab=8, dropout=0.1)  # dropout on: its RNG must be restored too

    def batch_fn(rng, step):  # a cyclic sequence: next token = current + 1 (mod 8)
        seq = (rng.integers(0, 8, size=(8, 1)) + np.arange(11)) % 8
        return seq[:, :-1], seq[:, 1:]

    config = TrainConfig(steps=steps, batch_size=8, lr=0.02, warmup=3, optimizer="muon",
                         weight_decay=0.1, eval_every=0, log_every=1)
    return Trainer(model, batch_fn, config, step_fn=lm_step, progress=False, out_dir=out_dir)


def test_trainer_with_muon_resumes_bit_for_bit(make_gpt, tmp_path):
    n = 6
    full = make_lm_trainer(make_gpt, steps=2 * n)
    assert type(full.optimizer) is MuonAdamW
    full.fit()
    first = make_lm_trainer(make_gpt, tmp_path / "a", steps=2 * n)
    first.fit(until=n)
    resumed = make_lm_trainer(make_gpt, tmp_path / "b", steps=2 * n)
    resumed.model.load_state_dict(make_gpt(vocab=8, seed=7).state_dict())  # scramble
    resumed.resume(tmp_path / "a" / "checkpoint.safetensors")
    resumed.fit()
    for k, v in full.model.state_dict().items():
        assert np.array_equal(v, resumed.model.state_dict()[k]), k
    o_full, o_res = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for k in o_full:
        assert np.array_equal(o_full[k], o_res[k]), k
    loss_full = [r["loss"] for r in full.history if r["kind"] == "train"]
    loss_res = [r["loss"] for r in first.history + resumed.history if r["kind"] == "train"]
    assert loss_full == loss_res and loss_full[-1] < loss_full[0]


# ---- errors ----------------------------------------------------------------------------
def test_muon_refuses_a_parameter_that_is_not_a_matrix():
    with pytest.raises(ValueError, match=r"params\[1\] has shape \(4,\).*2-D"):
        Muon([Parameter(np.zeros((3, 4))), Parameter(np.zeros(4))])


@pytest.mark.parametrize("kw,error", [
    (dict(lr=-1.0), ValueError), (dict(weight_decay=-0.1), ValueError),
    (dict(momentum=1.0), ValueError), (dict(momentum=-0.5), ValueError),
    (dict(nesterov=1), ValueError), (dict(ns_coefficients=(1.0, 2.0)), ValueError),
    (dict(ns_coefficients=(1.0, 2.0, float("nan"))), ValueError), (dict(eps=0.0), ValueError),
    (dict(ns_steps=100), ValueError), (dict(ns_steps=2.5), TypeError),
    (dict(adjust_lr_fn="rms"), ValueError), (dict(lr="fast"), TypeError),
])
def test_bad_hyper_parameters_name_the_parameter(kw, error):
    name = next(iter(kw))
    with pytest.raises(error, match=name):
        Muon([Parameter(np.zeros((3, 4)))], **kw)


def test_muon_adamw_refuses_bad_groups_and_hyper_parameters(make_gpt):
    muon, adamw = muon_groups(make_gpt())
    with pytest.raises(ValueError, match="adamw_params is empty"):
        MuonAdamW(muon, [], lr=0.02)
    with pytest.raises(ValueError, match="both muon_params and adamw_params"):
        MuonAdamW(muon, adamw + muon[:1], lr=0.02)
    with pytest.raises(ValueError, match="2-D"):
        MuonAdamW(adamw, muon, lr=0.02)
    for kw in (dict(adamw_lr_ratio=-1.0), dict(betas=(0.9,)), dict(adamw_eps=0.0),
               dict(adamw_weight_decay=-1.0), dict(momentum=2.0)):
        with pytest.raises(ValueError, match=next(iter(kw))):
            MuonAdamW(muon, adamw, lr=0.02, **kw)


def test_muon_adamw_load_state_dict_checks_before_changing_anything(make_gpt):
    model = make_gpt()
    opt = MuonAdamW.for_model(model, lr=0.02)
    train_steps(model, opt, 1)
    good = opt.state_dict()
    other = MuonAdamW.for_model(make_gpt(n_layers=1), lr=0.02)
    with pytest.raises(ValueError, match="parameters"):
        other.load_state_dict(good)
    with pytest.raises(KeyError, match="exp_avg.20"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "exp_avg.20"})
    with pytest.raises(ValueError, match="nesterov"):
        opt.load_state_dict({**good, "nesterov": np.array(3), "step": np.array(7)})
    with pytest.raises(ValueError, match="cannot load into MuonAdamW"):
        opt.load_state_dict({**good, "type": np.array("AdamW")})
    assert opt.step_count == 1  # unchanged by the refused loads
    assert TrainConfig(optimizer="muon").optimizer == "muon"
