"""kernels.attention: fused attention, chunk by chunk, and the dropout path equal the
plain formula; core.functional.attention's plain lines (where the kernel does not apply)
equal the kernel."""

import math

import numpy as np
import pytest

from scratchformer.core import functional as F
from scratchformer.kernels import attention as KA
from scratchformer.kernels import pool

from gradcheck import rel_error


def plain(q, k, v, mask, g, drop=1.0):
    """The formula written out whole: forward (out, p) and backward (dq, dk, dv)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = q @ k.swapaxes(-1, -2) * scale
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    m = np.max(s, -1, keepdims=True)
    m[~np.isfinite(m)] = 0.0
    e = np.exp(s - m)
    d = e.sum(-1, keepdims=True)
    d[d == 0] = 1.0
    p = e / d
    dp = (g @ v.swapaxes(-1, -2)) * drop
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    return (p * drop) @ v, p, ds @ k, ds.swapaxes(-1, -2) @ q, (p * drop).swapaxes(-1, -2) @ g


def masks(rng, B, H, Tq, Tk):
    pad = rng.random((B, 1, 1, Tk)) > 0.3
    pad[0] = False  # a batch element with every key masked: zeros, never NaN
    causal = np.tril(np.ones((Tq, Tk), bool))[None, None]
    return [None, pad, causal, pad & causal, causal[0, 0]]


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 1e-6)])
def test_fused_attention_equals_plain_formula(monkeypatch, dtype, tol):
    monkeypatch.setattr(KA, "CHUNK_BYTES", 64)  # many chunks even for these small arrays
    rng = np.random.default_rng(0)
    B, H, T, Dh = 5, 3, 6, 4
    qkv = rng.standard_normal((B, T, 3, H, Dh)).astype(dtype).transpose(2, 0, 3, 1, 4)  # strided views
    q, k, v = qkv
    g = rng.standard_normal((B, H, T, Dh)).astype(dtype)
    for mask in masks(rng, B, H, T, T):
        ref = plain(q, k, v, mask, g)
        results = []
        for threads in (1, 2, 3):
            with pool.threads(threads):
                out, p = KA.forward(q, k, v, mask, 1.0 / math.sqrt(Dh))
                dq, dk, dv = KA.backward(q, k, v, p, g, 1.0 / math.sqrt(Dh))
            for got, want in zip((out, p, dq, dk, dv), ref):
                assert got.dtype == dtype and np.all(np.isfinite(got))
                assert rel_error(got, want) < tol
            results.append((out, p, dq, dk, dv))
        for other in results[1:]:  # chunks and threads change nothing, bit for bit
            for a, b in zip(results[0], other):
                np.testing.assert_array_equal(a, b)
        if mask is not None and mask.shape[0] == B:
            assert not out[0].any() and not p[0].any()  # the fully masked element


def test_fusable():
    a = np.zeros((2, 3, 4, 5))
    assert KA.fusable(a, a, a) and KA.fusable(a, a, a, np.ones((4, 4), bool))
    assert not KA.fusable(a[:1], a, a)  # a batch axis that broadcasts
    assert not KA.fusable(a[0], a[0], a[0])  # 3-D


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 1e-6)])
def test_attention_with_dropout_mask_equals_plain_formula(dtype, tol):
    rng = np.random.default_rng(1)
    B, H, Tq, Tk, Dh = 4, 2, 5, 7, 3
    q = rng.standard_normal((B, H, Tq, Dh)).astype(dtype)
    k, v = (rng.standard_normal((B, H, Tk, Dh)).astype(dtype) for _ in range(2))
    g = rng.standard_normal((B, H, Tq, Dh)).astype(dtype)
    drop = ((rng.random((B, H, Tq, Tk)) >= 0.3) / 0.7).astype(dtype)  # a dropout's scaled mask
    for mask in masks(rng, B, H, Tq, Tk)[:2]:
        ref = plain(q, k, v, mask, g, drop)
        for threads in (1, 2):
            with pool.threads(threads):
                out, p = KA.forward(q, k, v, mask, 1.0 / math.sqrt(Dh), drop)
                grads = KA.backward(q, k, v, p, g, 1.0 / math.sqrt(Dh), drop)
            for got, want in zip((out, p, *grads), ref):
                assert got.dtype == dtype and rel_error(got, want) < tol


def test_functional_attention_plain_lines_equal_the_kernel():
    """3-D arrays (no head axis) take functional.attention's plain lines; the same numbers
    with a head axis of one take the kernel."""
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((3, n, 4)) for n in (5, 6, 6))
    g = rng.standard_normal((3, 5, 4))
    mask = rng.random((3, 5, 6)) > 0.3
    mask[1, 2] = False  # a fully masked row
    assert not KA.fusable(q, k, v, mask)
    out, p = F.attention(q, k, v, mask)
    grads = F.attention_backward(q, k, v, p, g)
    out4, p4 = F.attention(q[:, None], k[:, None], v[:, None], mask[:, None])
    grads4 = F.attention_backward(q[:, None], k[:, None], v[:, None], p4, g[:, None])
    for a, b in zip((out, p, *grads), (out4, p4, *grads4)):
        assert rel_error(a, b[:, 0]) < 1e-13
    assert not p[1, 2].any() and np.all(np.isfinite(out))
    bufs = [np.full_like(a, np.nan) for a in (out, *grads)]  # out= on the plain lines too
    F.attention(q, k, v, mask, out=bufs[0])
    F.attention_backward(q, k, v, p, g, out=tuple(bufs[1:]))
    for buf, want in zip(bufs, (out, *grads)):
        np.testing.assert_array_equal(buf, want)


@pytest.mark.parametrize("with_dropout", [False, True])
def test_attention_writes_into_strided_out_views(with_dropout):
    """``out=``: the kernels write into given arrays of any strides (the heads side by side,
    the projections' gradient buffer) the same numbers they would return."""
    rng = np.random.default_rng(3)
    B, H, T, Dh = 4, 2, 5, 3
    q, k, v, g = (rng.standard_normal((B, H, T, Dh)) for _ in range(4))
    drop = ((rng.random((B, H, T, T)) >= 0.3) / 0.7) if with_dropout else None
    mask = np.tril(np.ones((T, T), bool))
    for threads in (1, 2):
        with pool.threads(threads):
            want_out, p = KA.forward(q, k, v, mask, 0.5, drop)
            want = KA.backward(q, k, v, p, g, 0.5, drop)
            o_buf = np.full((B, T, H, Dh), np.nan)  # (B, T, H, Dh): heads side by side
            out, p2 = KA.forward(q, k, v, mask, 0.5, drop, out=o_buf.transpose(0, 2, 1, 3))
            g_buf = np.full((B, T, 3, H, Dh), np.nan)  # dq, dk, dv side by side
            views = tuple(g_buf.transpose(2, 0, 3, 1, 4))
            got = KA.backward(q, k, v, p, g, 0.5, drop, out=views)
        assert np.shares_memory(out, o_buf) and all(np.shares_memory(a, g_buf) for a in got)
        np.testing.assert_array_equal(o_buf.transpose(0, 2, 1, 3), want_out)
        np.testing.assert_array_equal(p2, p)
        for view, w in zip(views, want):
            np.testing.assert_array_equal(view, w)
