"""kernels.linear: the fused linear forward and backward equal their plain formulas."""

import numpy as np
import pytest

from scratchformer.kernels import linear, pool

from gradcheck import rel_error


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-13), (np.float32, 1e-6)])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward_equal_plain(monkeypatch, dtype, tol, threads, bias):
    monkeypatch.setattr(pool, "MIN_FLOPS", 0)  # cut even these small arrays into parts
    rng = np.random.default_rng(threads)
    x = rng.standard_normal((29, 7)).astype(dtype)
    w = rng.standard_normal((11, 7)).astype(dtype)
    b = rng.standard_normal(11).astype(dtype) if bias else None
    g = rng.standard_normal((29, 11)).astype(dtype)
    dw0 = rng.standard_normal((11, 7)).astype(dtype)  # gradients accumulate: start non-zero
    db0 = rng.standard_normal(11).astype(dtype)
    with pool.threads(threads):
        y = linear.forward(x, w, b)
        dw, db = dw0.copy(), db0.copy() if bias else None
        dx = linear.backward(x, g, w, dw, db)
    assert rel_error(y, x @ w.T + (b if bias else 0)) < tol
    assert rel_error(dx, g @ w) < tol
    assert rel_error(dw, dw0 + g.T @ x) < tol
    if bias:
        assert rel_error(db, db0 + g.sum(0)) < tol
