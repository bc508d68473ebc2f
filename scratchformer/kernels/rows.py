"""Row kernels: element-wise chains run block by block over the rows of an array.

Why this exists: a chain of NumPy calls such as GELU's ``t = x*x; t *= c; t += 1; ...``
streams the whole array through memory once per call. For the (B·T, d_ff) activations
of a Transformer (megabytes each) that memory traffic, not arithmetic, is the cost.
``map_rows`` instead runs the *whole chain* on one block of rows at a time, small
enough (~256 KB an array) to stay in the CPU's L2 cache, so memory is touched about once.

The core calls the array-in, array-out functions (``masked_softmax``, ``softmax_backward``,
``gelu``, ``gelu_with_grad``, ``layernorm``, ``layernorm_backward``, ``cross_entropy``,
``cross_entropy_backward``): each allocates its
outputs and runs its ``*_rows`` kernel over the rows. Each computes the formula of the
function in ``core.functional`` (or the layer in ``core.layers``) that calls it;
``tests/kernels`` hold every kernel equal to that plain formula. Exactness: a kernel only ever combines numbers within one row, so a
row's result does not depend on the blocking.

Threads: when the worker pool is on (``pool.threads``), its workers take blocks too
(NumPy releases the GIL inside its ufunc loops); the blocks depend only on the arrays'
shapes, so one thread and several give bit-identical results.

Notation: N rows, n the last axis.
"""

from __future__ import annotations

import math

import numpy as np

from . import pool

BLOCK_BYTES = 256 * 1024  # rows per block: about this many bytes of the first array
_MIN_BYTES = 1024 * 1024  # smaller first arrays: one call on the calling thread

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715


def map_rows(kernel, *args) -> None:
    """Call ``kernel(*blocks)`` on matching row blocks (axis 0) of the array arguments.

    An argument is split when it is an ndarray with as many rows as the first argument;
    anything else (a scalar, None, an array with one row that broadcasts) is passed
    whole. The kernel writes its results into output arrays among the arguments; it
    must treat its rows independently (see the module docstring).
    """
    first = args[0]
    n = first.shape[0]
    if first.nbytes < _MIN_BYTES or n < 2:
        kernel(*args)
        return
    split = [isinstance(a, np.ndarray) and a.ndim and a.shape[0] == n for a in args]

    def block(lo, hi):
        kernel(*[a[lo:hi] if s else a for a, s in zip(args, split)])

    # blocks of ~BLOCK_BYTES of the first array, taken in turn by the pool's threads
    pool.run(block, n, -(-first.nbytes // BLOCK_BYTES))


def as_rows(a: np.ndarray) -> np.ndarray:
    """A view of ``a`` as (rows, last axis), for ``map_rows`` (a must be contiguous)."""
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


# ---- reductions as BLAS calls ------------------------------------------------------------
def rowsum(x: np.ndarray) -> np.ndarray:
    """``x.sum(-1, keepdims=True)``: (..., n) → (..., 1), as x @ ones(n).

    A matrix-vector product with a vector of ones: BLAS is several times faster than
    ``x.sum(-1)`` for the (rows, n) arrays of a Transformer.
    """
    n = x.shape[-1]
    return (x.reshape(-1, n) @ np.ones(n, dtype=x.dtype)).reshape(*x.shape[:-1], 1)


def colsum(x: np.ndarray) -> np.ndarray:
    """``x.sum(0)`` of a 2-D (N, n) array → (n,), as ones(N) @ x (a BLAS call)."""
    return np.ones(x.shape[0], dtype=x.dtype) @ x


# ---- softmax --------------------------------------------------------------------------------
def masked_softmax_rows(s: np.ndarray, mask: np.ndarray | None, out: np.ndarray | None = None) -> None:
    """s ← softmax of s over the entries where mask is True, on a block of scores: in place,
    or, given ``out``, into ``out`` (s then keeps the scores, masked entries set to -inf).

    Masked entries become -inf (exp gives 0); a fully masked row has its max taken as 0
    and its sum as 1, so it comes out all zeros, never NaN.

    In place, each row is shifted by its own max before exp. Into ``out``, by its score
    for the first key instead: a row max over 64 entries is a reduction per short row that
    costs as much as the exp ((12, 4, 64, 64) scores: 432 → 250 µs); the same softmax,
    rounded a little differently, and still from the row's own scores only (a causal row
    never sees a later key, bit for bit). That score is at most the row's max, so the
    largest exp is ≥ 1: nothing underflows; a row whose exp-sum is not finite (a max more
    than ~88 above its first score in float32, or a first key that is masked; a fully
    masked row too) is recomputed from the kept scores with its own max.
    """
    if mask is not None:
        np.copyto(s, -np.inf, where=~mask)  # masked entries: -inf
    if out is not None:
        _softmax_first_key_shift(s, out)
        return
    m = np.fmax.reduce(s, axis=-1, keepdims=True)  # row max (fmax: faster than max)
    m[~np.isfinite(m)] = 0.0  # fully masked row: nothing to subtract
    s -= m
    np.exp(s, out=s)  # exp(-inf) = 0 for masked entries
    d = np.einsum("...i->...", s)[..., None]  # row sum (einsum: faster than sum)
    d[d == 0] = 1.0  # fully masked row: 0 / 1 = 0
    s /= d


def _softmax_first_key_shift(s: np.ndarray, out: np.ndarray) -> None:
    """out ← softmax(s) over the last axis, each row shifted by its first entry (s: the
    scores, masked entries -inf; left unchanged). See ``masked_softmax_rows``."""
    with np.errstate(over="ignore", invalid="ignore"):  # caught below, row by row
        np.subtract(s, s[..., :1], out=out)  # a masked first key: -inf - -inf = nan
        np.exp(out, out=out)
        d = np.einsum("...i->...", out)[..., None]  # row sums, ≥ 1 when finite
    bad = ~np.isfinite(d[..., 0])
    if bad.any():  # rare: exact, each such row with its own max, from the kept scores
        rows = s[bad]  # (n, Tk), a copy
        masked_softmax_rows(rows, None)
        out[bad] = rows
        d[bad] = 1.0
    out /= d


def softmax_backward_rows(s: np.ndarray, g: np.ndarray, dx: np.ndarray) -> None:
    """dx = s·(g - Σ g·s) on a block of rows; dx may be g."""
    c = np.einsum("...i,...i->...", g, s)[..., None]  # Σ g·s      (rows, 1)
    np.subtract(g, c, out=dx)
    dx *= s


def masked_softmax(s: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``masked_softmax_rows`` over blocks of s's first axis (the batch), in place; returns s.

    s: scores (..., n); mask broadcastable to s. A mask with one row on that axis (or fewer
    dimensions) is shared by every block.
    """
    if s.ndim < 2 or (mask is not None and mask.ndim > s.ndim):
        masked_softmax_rows(s, mask)
    else:
        if mask is not None and mask.ndim < s.ndim:
            mask = mask.reshape((1,) * (s.ndim - mask.ndim) + mask.shape)
        map_rows(masked_softmax_rows, s, mask)
    return s


def softmax_backward(s: np.ndarray, g: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dx = s·(g - Σ g·s) over the last axis, by blocks of rows; ``out`` may be g itself."""
    if out is None:
        out = np.empty(np.broadcast_shapes(s.shape, g.shape), np.result_type(s, g))
    map_rows(softmax_backward_rows, as_rows(s), as_rows(g), as_rows(out))
    return out


# ---- GELU ------------------------------------------------------------------------------------
def gelu_rows(x: np.ndarray, y: np.ndarray, dydx: np.ndarray | None) -> None:
    """y = gelu(x) and, unless dydx is None, dydx = gelu'(x), for a block of rows.

    gelu(x) = 0.5·x·(1 + tanh z),  z = √(2/π)(x + 0.044715x³);
    gelu'(x) = 0.5(1 + tanh z) + 0.5·x·(1 - tanh² z)·z',  z' = √(2/π)(1 + 3·0.044715x²).

    Computed through the identity 0.5(1 + tanh z) = σ(2z) = 1 / (1 + e^(-2z)): one exp
    instead of a tanh, which NumPy did not vectorise on the machine this was written on
    (there one exp cost half a tanh). Where it does (AVX-512, NumPy 2.4.6 on Zen 4) the
    tanh form is the faster one, by 12 % on a 256×256 block (95 vs 109 µs); GELU is about 1 %
    of a training step, so the form stays. With s = σ(2z) the two lines above read
    gelu = x·s,  gelu' = s + x·s·(1 - s)·2z'.
    """
    x2 = x * x  # x²
    t = x2 * (-2.0 * SQRT_2_OVER_PI * GELU_C)
    t -= 2.0 * SQRT_2_OVER_PI
    t *= x  # -2z
    with np.errstate(over="ignore"):  # x < -9 or so: e^(-2z) = inf, s = 0 as it should be
        np.exp(t, out=t)
    t += 1.0
    np.divide(1.0, t, out=t)  # s = σ(2z)
    np.multiply(x, t, out=y)  # gelu = x·s
    if dydx is None:
        return
    x2 *= 6.0 * SQRT_2_OVER_PI * GELU_C
    x2 += 2.0 * SQRT_2_OVER_PI  # 2z'
    x2 *= y  # x·s·2z'
    np.subtract(1.0, t, out=dydx)  # 1 - s
    dydx *= x2
    dydx += t  # s + x·s·(1 - s)·2z'


def gelu(x: np.ndarray) -> np.ndarray:
    """gelu(x), by blocks of rows (``gelu_rows``); integer input gives float64."""
    y = _empty_float(x)
    map_rows(gelu_rows, as_rows(x), as_rows(y), None)
    return y


def gelu_with_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gelu(x), gelu'(x)), by blocks of rows, from the same intermediates (``gelu_rows``)."""
    y, dydx = _empty_float(x), _empty_float(x)
    map_rows(gelu_rows, as_rows(x), as_rows(y), as_rows(dydx))
    return y, dydx


def _empty_float(x: np.ndarray) -> np.ndarray:
    """A C-contiguous output buffer shaped like x, in x's float dtype (float64 for ints)."""
    return np.empty(x.shape, x.dtype if x.dtype.kind == "f" else np.float64)


# ---- LayerNorm -------------------------------------------------------------------------------
def layernorm_rows(x, weight, bias, eps, y, xhat, rstd) -> None:
    """LayerNorm forward on a block of rows (N, n): fills y, x̂ and rstd (N, 1).

    x̂ = (x - mean)·rstd,  rstd = 1/√(var + eps),  y = x̂·weight + bias.
    """
    inv_d = 1.0 / x.shape[-1]
    mean = np.einsum("nd->n", x)[:, None] * inv_d  # (N, 1); einsum sums faster than .sum
    np.subtract(x, mean, out=xhat)  # x - mean
    var = np.einsum("nd,nd->n", xhat, xhat)[:, None] * inv_d  # (N, 1)
    var += eps
    np.sqrt(var, out=var)
    np.divide(1.0, var, out=rstd)  # 1/√(var + eps)
    xhat *= rstd  # x̂
    np.multiply(xhat, weight, out=y)
    y += bias  # x̂·weight + bias


def layernorm_backward_rows(g, xhat, rstd, weight, dx, gxhat) -> None:
    """LayerNorm backward on a block of rows: dx, and g·x̂ for the weight's gradient.

    With ĝ = g·weight: dx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)).
    """
    inv_d = 1.0 / g.shape[-1]
    np.multiply(g, xhat, out=gxhat)  # g·x̂
    np.multiply(g, weight, out=dx)  # ĝ = g·weight
    mean_ghat = np.einsum("nd->n", dx)[:, None] * inv_d  # mean(ĝ)        (N, 1)
    mean_ghat_xhat = np.einsum("nd,d->n", gxhat, weight)[:, None] * inv_d  # mean(ĝ·x̂)
    dx -= mean_ghat
    dx -= xhat * mean_ghat_xhat
    dx *= rstd  # rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂))


def layernorm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float):
    """LayerNorm of the rows of x (N, n) → (y, x̂, rstd): y and x̂ (N, n), rstd (N, 1),
    by blocks of rows (``layernorm_rows``)."""
    y, xhat = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
    rstd = np.empty((x.shape[0], 1), x.dtype)
    map_rows(layernorm_rows, x, weight, bias, eps, y, xhat, rstd)
    return y, xhat, rstd


def layernorm_backward(g: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, weight: np.ndarray):
    """Backward of ``layernorm`` for g (N, n) → (dx (N, n), dweight = Σ_rows g·x̂,
    dbias = Σ_rows g), by blocks of rows (``layernorm_backward_rows``) and BLAS sums."""
    dx, gxhat = np.empty_like(xhat), np.empty_like(xhat)
    map_rows(layernorm_backward_rows, g, xhat, rstd, weight, dx, gxhat)
    return dx, colsum(gxhat), colsum(g)


# ---- cross-entropy ---------------------------------------------------------------------------
def cross_entropy_rows(x, y, e, stats) -> None:
    """Cross-entropy's forward on a block of logits x (N, V) with targets y (N,).

    Fills e = exp(x - max) (N, V), kept for the backward, and per row (stats, (N, 3)):
    Z = Σ_v e_v, the shifted logit of the target x_y - max, and Σ_v (x_v - max).
    """
    m = np.fmax.reduce(x, axis=-1, keepdims=True)  # row max
    np.subtract(x, m, out=e)  # shifted logits
    stats[:, 1] = e[np.arange(e.shape[0]), y]
    stats[:, 2] = np.einsum("nv->n", e)
    np.exp(e, out=e)
    stats[:, 0] = np.einsum("nv->n", e)


def cross_entropy_backward_rows(e, y, scale, z, eps, g) -> None:
    """dlogits = (e / Z - q)·scale on a block of rows, written into g (which may be e):
    q = (1 - eps)·onehot(y) + eps / V, scale (N,) = 1/n on counted rows and 0 on ignored ones."""
    r = (scale / z)[:, None]  # (N, 1)
    np.multiply(e, r.astype(e.dtype, copy=False), out=g)  # softmax · scale
    rows = np.arange(g.shape[0])
    g[rows, y] -= ((1.0 - eps) * scale).astype(g.dtype, copy=False)
    if eps > 0:
        g -= (eps / g.shape[1] * scale)[:, None].astype(g.dtype, copy=False)


def cross_entropy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e, stats) of ``cross_entropy_rows`` for logits x (N, V) and targets y (N,), by blocks
    of rows; stats (N, 3) in float64: Z, x_y - max, Σ_v (x_v - max)."""
    e = np.empty(x.shape, x.dtype)
    stats = np.empty((x.shape[0], 3), np.float64)
    map_rows(cross_entropy_rows, x, y, e, stats)
    return e, stats


def cross_entropy_backward(e: np.ndarray, y: np.ndarray, scale: np.ndarray, z: np.ndarray,
                           eps: float, out: np.ndarray | None = None) -> np.ndarray:
    """dlogits (N, V) from ``cross_entropy``'s e and Z (``cross_entropy_backward_rows``), by
    blocks of rows; ``out`` may be e itself (no new (N, V) array)."""
    out = np.empty_like(e) if out is None else out
    map_rows(cross_entropy_backward_rows, e, y, scale, z, eps, out)
    return out
