"""Every tuned kernel equals the plain formula it stands for (float64: to rounding; float32:
within 1e-6 relative), and blocking or threads never change a result."""

import math

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.kernels import blocked, pool, qkv
from scratchformer.kernels import rows as K

from gradcheck import rel_error


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def plain_gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def plain_gelu_grad(x):
    z = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    dz = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x ** 2)
    return 0.5 * (1 + np.tanh(z)) + 0.5 * x * (1 - np.tanh(z) ** 2) * dz


def plain_masked_softmax(s, mask):
    s = np.where(mask, s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    d = e.sum(-1, keepdims=True)
    return e / np.where(d == 0, 1.0, d)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_rowsum_and_colsum_equal_sum(rng, dtype, tol):
    x = rng.standard_normal((37, 19)).astype(dtype)
    assert rel_error(K.rowsum(x), x.sum(-1, keepdims=True)) < tol
    assert rel_error(K.colsum(x), x.sum(0)) < tol
    x3 = rng.standard_normal((4, 5, 6)).astype(dtype)
    assert K.rowsum(x3).shape == (4, 5, 1)
    assert rel_error(K.rowsum(x3), x3.sum(-1, keepdims=True)) < tol


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_masked_softmax_rows_equals_plain_formula_and_zeroes_fully_masked_rows(rng, dtype, tol):
    s = (3 * rng.standard_normal((6, 9))).astype(dtype)
    mask = rng.random((6, 9)) < 0.6
    mask[2] = False  # a query that may attend to nothing
    got = s.copy()
    K.masked_softmax_rows(got, mask)
    assert rel_error(got, plain_masked_softmax(s, mask)) < tol
    assert np.all(got[2] == 0) and np.all(np.isfinite(got))


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_masked_softmax_rows_into_out_equals_plain_formula_with_every_fallback(rng, dtype, tol):
    """out=: rows shifted by their first score; rows where that overflows (a max 200 above
    it), whose first key is masked, or that are fully masked take the exact path."""
    s = (3 * rng.standard_normal((2, 3, 5, 9))).astype(dtype)
    mask = rng.random((2, 3, 5, 9)) < 0.7
    mask[..., 0] = True
    mask[0, 1, 2] = False  # fully masked
    mask[1, 0, 3, 0] = False  # the first key masked
    s[1, 2, 4, 5] = s[1, 2, 4, 0] + 200.0  # exp overflows under the first-key shift
    mask[1, 2, 4, 5] = True
    kept, out = s.copy(), np.full_like(s, np.nan)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # handled row by row
        K.masked_softmax_rows(kept, mask, out=out)
    assert rel_error(out, plain_masked_softmax(s, mask)) < tol
    assert np.all(out[0, 1, 2] == 0) and np.all(np.isfinite(out))
    assert out[1, 2, 4, 5] == pytest.approx(1.0)
    np.testing.assert_array_equal(kept, np.where(mask, s, -np.inf))  # the scores, masked


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_softmax_backward_rows_equals_plain_formula(rng, dtype, tol):
    s = sf.core.functional.softmax(rng.standard_normal((8, 11))).astype(dtype)
    g = rng.standard_normal((8, 11)).astype(dtype)
    dx = np.empty_like(s)
    K.softmax_backward_rows(s, g, dx)
    assert rel_error(dx, s * (g - (g * s).sum(-1, keepdims=True))) < tol


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_gelu_rows_equals_plain_formula_and_its_derivative(rng, dtype, tol):
    x = (3 * rng.standard_normal((7, 13))).astype(dtype)
    y, dydx = np.empty_like(x), np.empty_like(x)
    K.gelu_rows(x, y, dydx)
    x64 = x.astype(np.float64)
    assert rel_error(y, plain_gelu(x64)) < tol
    assert rel_error(dydx, plain_gelu_grad(x64)) < tol


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_layernorm_rows_and_backward_equal_plain_formulas(rng, dtype, tol):
    N, D, eps = 9, 16, 1e-5
    x = (2 + 3 * rng.standard_normal((N, D))).astype(dtype)
    w, b = rng.standard_normal(D).astype(dtype), rng.standard_normal(D).astype(dtype)
    g = rng.standard_normal((N, D)).astype(dtype)
    y, xhat, rstd = np.empty_like(x), np.empty_like(x), np.empty((N, 1), dtype)
    K.layernorm_rows(x, w, b, eps, y, xhat, rstd)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    xhat_ref = (x64 - mean) / np.sqrt(var + eps)
    assert rel_error(y, xhat_ref * w + b) < tol
    dx, gxhat = np.empty_like(x), np.empty_like(x)
    K.layernorm_backward_rows(g, xhat, rstd, w, dx, gxhat)
    ghat = g * w
    dx_ref = (ghat - ghat.mean(-1, keepdims=True)
              - xhat_ref * (ghat * xhat_ref).mean(-1, keepdims=True)) / np.sqrt(var + eps)
    assert rel_error(dx, dx_ref) < tol
    assert rel_error(gxhat, g * xhat_ref) < tol


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_array_kernels_equal_plain_formulas(rng, dtype, tol):
    """The array-in, array-out entry points the core calls (rows.layernorm, gelu, ...),
    on arrays big enough to be cut into blocks and shared among threads."""
    N, D, eps = 2100, 160, 1e-5  # ~1.3 MB in float32: several blocks
    x = (2 + 3 * rng.standard_normal((N, D))).astype(dtype)
    w, b = rng.standard_normal(D).astype(dtype), rng.standard_normal(D).astype(dtype)
    g = rng.standard_normal((N, D)).astype(dtype)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    xhat = (x64 - mean) / np.sqrt(var + eps)
    ghat = g64 * w
    for threads in (1, 2):
        with pool.threads(threads):
            y, xh, rstd = K.layernorm(x, w, b, eps)
            dx, dw, db = K.layernorm_backward(g, xh, rstd, w)
            gy, gd = K.gelu_with_grad(x)
            s = K.masked_softmax(x.reshape(30, 70, D).copy(), None)
            sb = K.softmax_backward(s, g.reshape(30, 70, D))
        assert y.dtype == dx.dtype == gy.dtype == s.dtype == dtype
        assert rel_error(y, xhat * w + b) < tol and rel_error(xh, xhat) < tol
        assert rel_error(rstd, 1 / np.sqrt(var + eps)) < tol
        assert rel_error(dx, (ghat - ghat.mean(-1, keepdims=True)
                              - xhat * (ghat * xhat).mean(-1, keepdims=True)) / np.sqrt(var + eps)) < tol
        assert rel_error(dw, (g64 * xhat).sum(0)) < tol and rel_error(db, g64.sum(0)) < tol
        assert rel_error(gy, plain_gelu(x64)) < tol and rel_error(gd, plain_gelu_grad(x64)) < tol
        np.testing.assert_array_equal(K.gelu(x), gy)
        s_ref = plain_masked_softmax(x64.reshape(30, 70, D), np.ones(D, bool))
        assert rel_error(s, s_ref) < tol
        g3 = g64.reshape(30, 70, D)
        assert rel_error(sb, s_ref * (g3 - (g3 * s_ref).sum(-1, keepdims=True))) < tol


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_kernels_equal_plain_formulas(rng, dtype, tol, eps):
    """rows.cross_entropy / cross_entropy_backward (the loss's kernels) against the plain
    log-softmax formulas, on logits big enough to be cut into blocks and shared among
    threads, with ignored rows (scale 0); one thread and two give identical bits."""
    N, V = 700, 1000  # 2.8 MB in float32: several blocks
    x = (5 * rng.standard_normal((N, V))).astype(dtype)
    y = rng.integers(0, V, N)
    scale = np.where(rng.random(N) < 0.2, 0.0, 1.0 / N)
    x64 = x.astype(np.float64)
    shifted = x64 - x64.max(-1, keepdims=True)
    z = np.exp(shifted).sum(-1)
    q = np.full((N, V), eps / V)
    q[np.arange(N), y] += 1 - eps
    results = []
    for threads in (1, 2):
        with pool.threads(threads):
            e, stats = K.cross_entropy(x, y)
            g = K.cross_entropy_backward(e.copy(), y, scale, stats[:, 0], eps)
            results.append((e, stats, g))
        assert e.dtype == g.dtype == dtype
        assert rel_error(e, np.exp(shifted)) < tol and rel_error(stats[:, 0], z) < tol
        assert rel_error(stats[:, 1], shifted[np.arange(N), y]) < tol
        assert rel_error(stats[:, 2], shifted.sum(-1)) < tol
        assert rel_error(g, (np.exp(shifted) / z[:, None] - q) * scale[:, None]) < tol
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_map_rows_blocked_and_threaded_equal_one_call(rng):
    x = rng.standard_normal((3000, 257)).astype(np.float32)  # ~3 MB: split into blocks
    whole_y, whole_d = np.empty_like(x), np.empty_like(x)
    K.gelu_rows(x, whole_y, whole_d)  # one call, no blocks
    for threads in (1, 2, 3):
        with pool.threads(threads):
            y, d = np.empty_like(x), np.empty_like(x)
            K.map_rows(K.gelu_rows, x, y, d)
        np.testing.assert_array_equal(y, whole_y)
        np.testing.assert_array_equal(d, whole_d)


def test_fused_projections_equal_separate_linears(rng):
    """qkv.project / project_backward on stacked weight arrays == three separate Linears."""
    B, T, D, H = 2, 5, 12, 3
    projs = [sf.Linear(D, D, rng=rng, dtype=np.float64) for _ in range(3)]
    for p in projs:
        p.bias.data[:] = rng.standard_normal(D)
    x = rng.standard_normal((B, T, D))
    x2 = x.reshape(B * T, D)
    w = np.concatenate([p.weight.data for p in projs])  # w_qkv (3D, D)
    b = np.concatenate([p.bias.data for p in projs])
    heads = qkv.project(x2, w, b, B, T, H)  # (3, B, H, T, Dh)
    for h, p in zip(heads, projs):
        want = p(x).reshape(B, T, H, D // H).transpose(0, 2, 1, 3)
        assert rel_error(h, want) < 1e-14
    # backward: one stacked matmul == each Linear's own backward
    grads = [rng.standard_normal((B, H, T, D // H)) for _ in range(3)]
    dy, views = qkv.head_buffer(B, T, 3, H, D // H, np.float64)
    for view, g in zip(views, grads):
        view[...] = g
    for i, g in enumerate(grads):  # projection i's gradient is columns i·D:(i+1)·D, heads in order
        np.testing.assert_array_equal(dy[:, i * D:(i + 1) * D], g.transpose(0, 2, 1, 3).reshape(B * T, D))
    dx, dw, db = qkv.project_backward(x2, w, dy)
    dx_ref = 0
    for i, (p, g) in enumerate(zip(projs, grads)):
        p.zero_grad()
        p(x)
        dx_ref = dx_ref + p.backward(g.transpose(0, 2, 1, 3).reshape(B, T, D))
        assert rel_error(dw[i * D:(i + 1) * D], p.weight.grad) < 1e-14
        assert rel_error(db[i * D:(i + 1) * D], p.bias.grad) < 1e-14
    assert rel_error(dx.reshape(B, T, D), dx_ref) < 1e-14


def test_stacked_projections_add_each_slice_onto_its_own_linear(rng):
    """core.attention.StackedProjections: the layer-side half of the fused projections."""
    from scratchformer.core.attention import StackedProjections

    B, T, D, H = 2, 4, 8, 2
    projs = [sf.Linear(D, D, rng=rng, dtype=np.float64) for _ in range(2)]
    x2 = rng.standard_normal((B * T, D))
    stacked = StackedProjections(x2, *projs)
    k, v = stacked.heads(B, T, H)
    grads = (rng.standard_normal(k.shape), rng.standard_normal(v.shape))
    for p in projs:
        p.weight.grad[:] = 1.0  # gradients accumulate: the slices are added, not assigned
    dy, views = stacked.grad_buffer(B, T, H)
    for view, g in zip(views, grads):
        view[...] = g
    dx2 = stacked.backward(dy)
    want_dx = 0
    for p, g in zip(projs, grads):
        g2 = g.transpose(0, 2, 1, 3).reshape(B * T, D)
        assert rel_error(p.weight.grad, 1.0 + g2.T @ x2) < 1e-14
        assert rel_error(p.bias.grad, g2.sum(0)) < 1e-14
        want_dx = want_dx + g2 @ p.weight.data
    assert rel_error(dx2, want_dx) < 1e-14


def test_optimizer_blocks_cover_every_element_once_in_order():
    a = np.arange(3 * blocked.BLOCK + 5, dtype=np.float32)
    b = -a
    parts = blocked.blocks([a, b])
    assert [len(p[0]) for p in parts] == [blocked.BLOCK] * 3 + [5]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), a)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), b)
    assert all(np.shares_memory(p[0], a) for p in parts)  # views: updates land in place
    runs = blocked.split(parts * 8, 2)
    assert sum(len(r) for r in runs) == 32 and len(runs) == 2
