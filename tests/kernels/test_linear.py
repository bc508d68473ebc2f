"""kernels.linear: the fused linear forward and backward equal their plain formulas."""

import numpy as np
import pytest

from scratchformer.kernels import linear, pool, rows

from gradcheck import rel_error


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 1e-6)])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_in,n_out", [(7, 11), (13, 5)])  # weight gradient cut by out / by in
def test_linear_forward_backward_equal_plain(monkeypatch, dtype, tol, threads, bias, n_in, n_out):
    monkeypatch.setattr(pool, "MIN_FLOPS", 0)  # cut even these small arrays into parts
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((29, n_in)).astype(dtype)
    w = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if bias else None
    g = rng.standard_normal((29, n_out)).astype(dtype)
    dw0 = rng.standard_normal((n_out, n_in)).astype(dtype)  # gradients accumulate: start non-zero
    db0 = rng.standard_normal(n_out).astype(dtype)
    with pool.threads(threads):
        y = linear.forward(x, w, b)
        dw, db = dw0.copy(), db0.copy() if bias else None
        dx = linear.backward(x, g, w, dw, db)
    assert rel_error(y, x @ w.T + (b if bias else 0)) < tol
    assert rel_error(dx, g @ w) < tol
    assert rel_error(dw, dw0 + g.T @ x) < tol
    if bias:
        assert rel_error(db, db0 + g.sum(0)) < tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_gelu_equals_forward_then_gelu_bit_for_bit(monkeypatch, dtype, threads, bias):
    monkeypatch.setattr(pool, "MIN_FLOPS", 0)  # cut into parts
    monkeypatch.setattr(rows, "BLOCK_BYTES", 3 * 16 * np.dtype(dtype).itemsize)  # 3-row blocks
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((29, 7)).astype(dtype)
    w = rng.standard_normal((16, 7)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype) if bias else None
    with pool.threads(threads):
        h, a, d = linear.forward_gelu(x, w, b, with_grad=True)
        h_only, a_only, none = linear.forward_gelu(x, w, b, with_grad=False)
        want_h = linear.forward(x, w, b)
        want_a, want_d = rows.gelu_with_grad(want_h)
    for got, want in ((h, want_h), (a, want_a), (d, want_d), (h_only, want_h), (a_only, want_a)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    assert none is None
