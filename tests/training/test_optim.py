"""Optimizers, gradient clipping and schedules: hand-computed values, exact resume, and
trajectories that equal PyTorch's for the same random gradients."""

import math
import re

import numpy as np
import pytest

from scratchformer.core.module import Parameter
from scratchformer.training.schedules import ConstantLR, NoamSchedule, WarmupCosine
from scratchformer.training.optim import (SGD, Adam, AdamW,
                                 clip_grad_norm)

# one parameter larger than the optimizer's block size (65536) so blocking is exercised
SHAPES = [(300, 250), (7, 5), (5,), (1,)]

CONFIGS = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    (AdamW, dict(lr=0.01)),
    (AdamW, dict(lr=0.02, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.3)),
]
CONFIG_IDS = [f"{c.__name__}-{i}" for i, (c, _) in enumerate(CONFIGS)]


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def grad_sequence(n_steps, dtype, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(n_steps)]


def run(opt, params, grads, lrs=None):
    for k, gs in enumerate(grads):
        opt.zero_grad()
        for p, g in zip(params, gs):
            p.grad += g
        if lrs is not None:
            opt.lr = lrs[k]
        opt.step()


# ---- hand-computed updates ---------------------------------------------------------------
def test_sgd_momentum_and_weight_decay_match_hand_computation():
    p = Parameter(np.array([1.0, -2.0]))
    opt = SGD([p], lr=0.1, momentum=0.5, weight_decay=0.2)
    p.grad[...] = [1.0, 1.0]
    opt.step()  # g = grad + 0.2 p = [1.2, 0.6]; b = g; p -= 0.1 b
    np.testing.assert_allclose(p.data, [0.88, -2.06], rtol=0, atol=1e-15)
    opt.step()  # g = [1.176, 0.588]; b = 0.5 [1.2, 0.6] + g = [1.776, 0.888]
    np.testing.assert_allclose(p.data, [0.88 - 0.1776, -2.06 - 0.0888], rtol=0, atol=1e-15)


def test_adam_first_step_moves_each_weight_by_lr_times_sign_of_grad():
    # step 1: m̂ = g and v̂ = g², so the update is lr·g/(|g| + eps) ≈ lr·sign(g)
    p = Parameter(np.zeros(4))
    opt = Adam([p], lr=0.01, eps=1e-12)
    g = np.array([3.0, -0.5, 1e-3, -200.0])
    p.grad[...] = g
    opt.step()
    np.testing.assert_allclose(p.data, -0.01 * g / (np.abs(g) + 1e-12), rtol=1e-14)
    np.testing.assert_allclose(p.data, [-0.01, 0.01, -0.01, 0.01], rtol=1e-8)


def test_adamw_decays_weights_independently_of_the_gradient():
    p = Parameter(np.array([2.0, -4.0]))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad[...] = [1.0, -1.0]
    opt.step()  # p ← p(1 − 0.05), then p −= 0.1·sign(g)
    np.testing.assert_allclose(p.data, [2.0 * 0.95 - 0.1, -4.0 * 0.95 + 0.1], rtol=1e-8)


@pytest.mark.parametrize("cls,kw", CONFIGS, ids=CONFIG_IDS)
def test_step_updates_data_in_place_and_float32_stays_float32(cls, kw):
    params = make_params(np.float32)
    arrays = [p.data for p in params]
    grads_before = [p.grad for p in params]
    opt = cls(params, **kw)
    run(opt, params, grad_sequence(3, np.float32))
    for p, a, g in zip(params, arrays, grads_before):
        assert p.data is a and p.grad is g
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32
    for arrays in opt.state.values():
        assert all(a.dtype == np.float32 for a in arrays)
    assert all(v.dtype == np.float32 for k, v in opt.state_dict().items() if "." in k)
    assert not np.allclose(params[0].data, make_params(np.float32)[0].data)


@pytest.mark.parametrize("cls,kw", CONFIGS, ids=CONFIG_IDS)
def test_threaded_step_is_bit_identical_to_one_thread(cls, kw, monkeypatch):
    from scratchformer.kernels import blocked, pool
    monkeypatch.setattr(blocked, "PARALLEL_MIN", 1)  # thread even these small parameters
    grads = grad_sequence(4, np.float32)
    results = []
    for threads in (1, 2, 3):
        params = make_params(np.float32)
        opt = cls(params, **kw)
        opt.num_threads = threads
        with pool.threads(threads):  # the parts really run on that many threads
            run(opt, params, grads)
        results.append([p.data for p in params])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_weight_decay_does_not_modify_grad():
    p = Parameter(np.ones(3))
    for opt in (SGD([p], lr=0.1, weight_decay=0.5), Adam([p], lr=0.1, weight_decay=0.5)):
        p.grad[...] = [1.0, 2.0, 3.0]
        opt.step()
        np.testing.assert_array_equal(p.grad, [1.0, 2.0, 3.0])


def test_non_contiguous_data_is_still_updated_in_place():
    p = Parameter(np.zeros((3, 4)))
    p.data = np.zeros((4, 3)).T  # a transposed view: not C-contiguous
    p.grad = np.ones((3, 4))
    view = p.data
    SGD([p], lr=0.5).step()
    assert p.data is view
    np.testing.assert_array_equal(view, -0.5)


def test_zero_grad_and_generator_params_and_tied_params_counted_once():
    params = make_params(np.float64)
    for p in params:
        p.grad += 1.0
    opt = SGD((p for p in params + params[:2]), lr=0.1)  # a generator, with repeats
    assert len(opt.params) == len(params)
    opt.zero_grad()
    assert all(not p.grad.any() for p in params)


# ---- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw,field", [
    (SGD, dict(lr=-0.1), "lr"),
    (SGD, dict(lr=float("nan")), "lr"),
    (SGD, dict(lr=0.1, momentum=-0.5), "momentum"),
    (SGD, dict(lr=0.1, momentum=1.0), "momentum"),
    (SGD, dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (Adam, dict(lr=-1.0), "lr"),
    (Adam, dict(lr=1e-3, betas=(1.0, 0.98)), "betas[0]"),
    (Adam, dict(lr=1e-3, betas=(0.9, -0.1)), "betas[1]"),
    (Adam, dict(lr=1e-3, betas=(0.9,)), "betas"),
    (Adam, dict(lr=1e-3, eps=0.0), "eps"),
    (Adam, dict(lr=1e-3, weight_decay=-0.1), "weight_decay"),
    (AdamW, dict(lr=1e-3, eps=-1e-8), "eps"),
    (AdamW, dict(lr=float("inf")), "lr"),
])
def test_bad_hyperparameters_raise_value_error_naming_the_field(cls, kw, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        cls(make_params(np.float32), **kw)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_empty_or_wrong_params_raise(cls):
    with pytest.raises(ValueError, match="params is empty"):
        cls([], lr=0.1)
    with pytest.raises(ValueError, match="params is empty"):
        cls(iter([]), lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        cls([Parameter(np.zeros(2)), np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match="lr must be a real number"):
        cls(make_params(np.float32), lr="0.1")


# ---- state dicts ------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_through_npz_continues_bit_identical(cls, kw, tmp_path):
    grads = grad_sequence(10, np.float32)
    lrs = [kw["lr"] * (1 + 0.1 * k) for k in range(10)]  # as if a schedule set opt.lr
    params_a = make_params(np.float32)
    opt_a = cls(params_a, **kw)
    run(opt_a, params_a, grads[:5], lrs[:5])

    np.savez(tmp_path / "ckpt.npz", **opt_a.state_dict(),
             **{f"param.{i}": p.data for i, p in enumerate(params_a)})
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as f:
        saved = dict(f)
    params_b = make_params(np.float32, seed=99)
    for i, p in enumerate(params_b):
        p.data[...] = saved.pop(f"param.{i}")
    defaults = {k: v for k, v in kw.items() if k == "lr"}  # hyper-parameters come from the state
    opt_b = cls(params_b, **defaults)
    opt_b.load_state_dict(saved)
    assert opt_b.step_count == 5 and opt_b.lr == opt_a.lr

    run(opt_a, params_a, grads[5:], lrs[5:])
    run(opt_b, params_b, grads[5:], lrs[5:])
    for pa, pb in zip(params_a, params_b):
        np.testing.assert_array_equal(pa.data, pb.data)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_state_dict_is_flat_arrays_and_a_copy():
    params = make_params(np.float32)
    opt = Adam(params, lr=1e-3)
    run(opt, params, grad_sequence(2, np.float32))
    sd = opt.state_dict()
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in sd.items())
    assert sd["type"].shape == () and str(sd["type"]) == "Adam"
    assert int(sd["step"]) == 2 and sd["lr"].shape == ()
    assert {f"exp_avg.{i}" for i in range(len(SHAPES))} <= sd.keys()
    before = sd["exp_avg.0"].copy()
    run(opt, params, grad_sequence(1, np.float32, seed=5))
    np.testing.assert_array_equal(sd["exp_avg.0"], before)


def test_load_state_dict_rejects_a_dict_that_does_not_fit_and_changes_nothing():
    params = make_params(np.float32)
    adam = Adam(params, lr=1e-3)
    run(adam, params, grad_sequence(2, np.float32))
    good = adam.state_dict()
    target = Adam(make_params(np.float32), lr=1e-3)

    with pytest.raises(ValueError, match="optimizer state is for SGD, cannot load into Adam"):
        target.load_state_dict(SGD(make_params(np.float32), lr=0.1).state_dict())
    with pytest.raises(ValueError, match="state has 3 parameters, this optimizer has 4"):
        target.load_state_dict(Adam(make_params(np.float32)[:3], lr=1e-3).state_dict())
    bad_shape = dict(good, **{"exp_avg_sq.1": np.zeros((5, 7), np.float32)})
    with pytest.raises(ValueError, match=r"exp_avg_sq.1 has shape \(5, 7\), expected \(7, 5\)"):
        target.load_state_dict(bad_shape)
    missing = {k: v for k, v in good.items() if k != "exp_avg.2"}
    with pytest.raises(KeyError, match="exp_avg.2"):
        target.load_state_dict(missing)
    with pytest.raises(KeyError, match="unexpected keys"):
        target.load_state_dict(dict(good, extra=np.zeros(1)))
    with pytest.raises(ValueError, match="betas"):
        target.load_state_dict(dict(good, betas=np.array([1.5, 0.9])))
    assert target.step_count == 0  # nothing was half-loaded
    assert not any(a.any() for a in target.state["exp_avg"])


def test_sgd_state_follows_loaded_momentum():
    params = make_params(np.float64)
    src = SGD(params, lr=0.1, momentum=0.9)
    run(src, params, grad_sequence(1, np.float64))
    dst = SGD(make_params(np.float64), lr=0.1)  # momentum 0: no buffers yet
    dst.load_state_dict(src.state_dict())
    assert dst.momentum == 0.9
    np.testing.assert_array_equal(dst.state["momentum_buffer"][0], src.state["momentum_buffer"][0])


# ---- gradient clipping ------------------------------------------------------------------
def test_clip_grad_norm_scales_only_above_max_norm():
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros((1, 1)))
    p.grad[...] = [3.0, 0.0]
    q.grad[...] = 4.0  # global norm 5
    assert clip_grad_norm([p, q], 10.0) == 5.0
    np.testing.assert_array_equal(p.grad, [3.0, 0.0])
    total = clip_grad_norm([p, q], 1.0)
    assert isinstance(total, float) and total == 5.0
    np.testing.assert_allclose(p.grad, [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(q.grad, [[0.8]], rtol=1e-6)
    assert math.isclose(clip_grad_norm([p, q], math.inf), 1.0, rel_tol=1e-6)  # measure only
    np.testing.assert_allclose(p.grad, [0.6, 0.0], rtol=1e-6)
    assert math.isclose(clip_grad_norm(p, 0.3), 0.6, rel_tol=1e-6)  # a single Parameter
    np.testing.assert_allclose(p.grad, [0.3, 0.0], rtol=1e-5)


def test_clip_grad_norm_returns_non_finite_norm_without_scaling():
    p = Parameter(np.zeros(3, np.float32))
    p.grad[...] = [1.0, np.nan, 2.0]
    assert math.isnan(clip_grad_norm([p], 1.0))
    np.testing.assert_array_equal(p.grad, np.array([1.0, np.nan, 2.0], np.float32))
    p.grad[...] = [1.0, np.inf, 2.0]
    assert clip_grad_norm([p], 1.0) == math.inf
    assert p.grad[0] == 1.0


def test_clip_grad_norm_float32_large_grads_do_not_overflow():
    p = Parameter(np.zeros(4, np.float32))
    p.grad[...] = 1e20  # squares overflow float32
    total = clip_grad_norm([p], 1.0)
    assert math.isclose(total, 2e20, rel_tol=1e-6)
    assert p.grad.dtype == np.float32
    np.testing.assert_allclose(p.grad, 0.5, rtol=1e-5)


def test_clip_grad_norm_bad_max_norm_raises():
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_norm"):
            clip_grad_norm(make_params(np.float32), bad)


# ---- schedules --------------------------------------------------------------------------
def test_noam_schedule_values_at_known_steps():
    # d_model^-0.5 = 0.25, warmup^-1.5 = 1/8, warmup^-0.5 = 1/2
    s = NoamSchedule(d_model=16, warmup=4)
    assert s(0) == 0.0
    assert s(1) == pytest.approx(0.25 * 1 / 8)
    assert s(2) == pytest.approx(0.25 * 2 / 8)
    assert s(4) == pytest.approx(0.125)  # the peak, factor·(d_model·warmup)^-0.5
    assert s(16) == pytest.approx(0.0625)
    assert s(64) == pytest.approx(0.03125)
    assert NoamSchedule(16, 4, factor=2.0)(64) == pytest.approx(0.0625)
    paper = NoamSchedule(d_model=512, warmup=4000)
    assert paper(4000) == pytest.approx(1 / math.sqrt(512 * 4000))
    assert max(paper(k) for k in range(1, 10000, 37)) <= paper(4000)


def test_warmup_cosine_values_at_known_steps():
    s = WarmupCosine(max_lr=1.0, warmup=10, total_steps=110, min_lr=0.1)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(35) == pytest.approx(0.1 + 0.45 * (1 + math.sqrt(0.5)))  # progress 1/4
    assert s(60) == pytest.approx(0.55)  # halfway down
    assert s(110) == pytest.approx(0.1)
    assert s(10_000) == pytest.approx(0.1)
    no_warmup = WarmupCosine(max_lr=2.0, warmup=0, total_steps=4)
    assert [no_warmup(k) for k in range(5)] == pytest.approx([2.0, 1.0 + 2 ** -0.5, 1.0,
                                                              1.0 - 2 ** -0.5, 0.0])


def test_constant_lr_and_schedule_state_dict_round_trip():
    assert ConstantLR(3e-4)(0) == ConstantLR(3e-4)(12345) == 3e-4
    for s, fresh in [(NoamSchedule(64, 100, factor=2.0), NoamSchedule(8, 1)),
                     (WarmupCosine(1e-3, 10, 50, 1e-5), WarmupCosine(1.0, 0, 1)),
                     (ConstantLR(0.5), ConstantLR(0.1))]:
        fresh.load_state_dict(s.state_dict())
        assert [fresh(k) for k in range(0, 200, 7)] == [s(k) for k in range(0, 200, 7)]
    with pytest.raises(ValueError, match="schedule state is for NoamSchedule"):
        ConstantLR(0.1).load_state_dict(NoamSchedule(8, 1).state_dict())


@pytest.mark.parametrize("make,field", [
    (lambda: NoamSchedule(0, 10), "d_model"),
    (lambda: NoamSchedule(16, 0), "warmup"),
    (lambda: NoamSchedule(16, 10, factor=0.0), "factor"),
    (lambda: WarmupCosine(-1.0, 10, 100), "max_lr"),
    (lambda: WarmupCosine(1.0, 10, 5), "total_steps"),
    (lambda: WarmupCosine(1.0, 10, 100, min_lr=2.0), "min_lr"),
    (lambda: ConstantLR(-1.0), "lr"),
    (lambda: NoamSchedule(16, 10)(-1), "step"),
])
def test_bad_schedule_arguments_raise_value_error_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


# ---- the same trajectories in PyTorch -----------------------------------------------------
TORCH_TOL = {np.float64: dict(rtol=0, atol=1e-10), np.float32: dict(rtol=1e-6, atol=1e-6)}


@pytest.fixture
def torch1():
    """torch with one intra-op thread (these tensors are small; on a busy 2-core machine the
    default thread pool makes each optimizer step ~100x slower), restored afterwards."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_torch(cls, kw, dtype, torch1):
    torch = torch1
    torch_cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam,
                 "AdamW": torch.optim.AdamW}[cls.__name__]
    n_steps = 10
    grads = grad_sequence(n_steps, dtype)
    lrs = [kw["lr"] * (1 + 0.2 * math.sin(k)) for k in range(n_steps)]  # a changing lr
    params = make_params(dtype)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.data.copy())) for p in params]
    opt = cls(params, **kw)
    if cls is not SGD:  # torch's defaults differ (betas=(0.9, 0.999), eps=1e-8): pass ours
        kw = {"betas": opt.betas, "eps": opt.eps, "weight_decay": opt.weight_decay, **kw}
    topt = torch_cls(tparams, **kw)
    for k in range(n_steps):
        for p, tp, g in zip(params, tparams, grads[k]):
            p.grad[...] = g
            tp.grad = torch.from_numpy(g.copy())
        opt.lr = lrs[k]
        topt.param_groups[0]["lr"] = lrs[k]
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            assert p.data.dtype == dtype
            np.testing.assert_allclose(p.data, tp.detach().numpy(), **TORCH_TOL[dtype],
                                       err_msg=f"step {k + 1}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("max_norm", [1e6, 50.0, 0.5])
def test_clip_grad_norm_matches_torch(max_norm, dtype, torch1):
    torch = torch1
    params = make_params(dtype)
    grads = grad_sequence(1, dtype)[0]
    tparams = []
    for p, g in zip(params, grads):
        p.grad[...] = g
        tp = torch.nn.Parameter(torch.from_numpy(p.data.copy()))
        tp.grad = torch.from_numpy(g.copy())
        tparams.append(tp)
    total = clip_grad_norm(params, max_norm)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    tol = TORCH_TOL[dtype]
    assert total == pytest.approx(float(ttotal), rel=max(tol["rtol"], 1e-12))
    for p, tp in zip(params, tparams):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), **tol)
