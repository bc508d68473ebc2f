"""Finite-difference gradient checking in float64, shared by the gradient tests.

central difference:  dL/dθ_i ≈ (L(θ + h·e_i) - L(θ - h·e_i)) / 2h,   error O(h²).

Relative error of a whole tensor against a reference, the one formula of the whole suite
(finite differences here, PyTorch in torch_reference.py, kernels in tests/kernels):
``rel_error(a, ref) = ‖a - ref‖ / max(‖ref‖, floor)``. The floor handles gradients that are
zero in exact arithmetic (a key projection's bias: softmax ignores a per-row shift), where
both sides are rounding noise: it is set from the scale of the largest gradient in the
same check, never from the tensor itself.
"""

from __future__ import annotations

import numpy as np

H = 1e-6
TOL = 1e-6  # the largest relative error a float64 gradient check accepts


def numeric_grad(loss_fn, arr: np.ndarray, idx=None, h: float = H) -> np.ndarray:
    """∂loss/∂arr by central differences, at the flat indices ``idx`` (all when None)."""
    flat = arr.reshape(-1)
    idx = range(flat.size) if idx is None else idx
    out = np.zeros(flat.size)
    for i in idx:
        old = flat[i]
        flat[i] = old + h
        lp = loss_fn()
        flat[i] = old - h
        lm = loss_fn()
        flat[i] = old
        out[i] = (lp - lm) / (2 * h)
    return out.reshape(arr.shape)


def rel_error(a: np.ndarray, ref: np.ndarray, floor: float = 1e-12) -> float:
    """‖a - ref‖ / max(‖ref‖, floor), in float64."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), floor))


def sample_indices(size: int, k: int, rng: np.random.Generator):
    return range(size) if size <= k else rng.choice(size, k, replace=False)


def check_params(loss_fn, named_params, analytic: dict, rng, k: int = 64, floor_frac=1e-2):
    """Compare analytic gradients with finite differences for every named parameter,
    on up to k sampled entries each. Returns {name: relative error}."""
    numeric, chosen = {}, {}
    for name, p in named_params:
        idx = list(sample_indices(p.data.size, k, rng))
        chosen[name] = idx
        numeric[name] = numeric_grad(loss_fn, p.data, idx).reshape(-1)[idx]
    if not numeric:
        return {}
    scale = max(np.linalg.norm(v) for v in numeric.values())
    return {name: rel_error(analytic[name].reshape(-1)[chosen[name]], numeric[name],
                            floor=floor_frac * scale) for name in numeric}


def module_check(module, make_out, inputs, seed=0):
    """Loss = Σ out · R with random R; check input and parameter gradients of ``module``.

    ``make_out(*inputs)`` runs the forward; ``module.backward(R)`` must return the
    gradient(s) of the inputs, in order.
    """
    r = np.random.default_rng(seed + 1)
    module.astype(np.float64)
    module.zero_grad()
    out = make_out(*inputs)
    R = r.standard_normal(out.shape)
    grads = module.backward(R)
    grads = grads if isinstance(grads, tuple) else (grads,)
    analytic = {n: p.grad.copy() for n, p in module.named_parameters()}

    def loss():
        return float(np.sum(make_out(*inputs) * R))

    errors = {}
    for i, (x, dx) in enumerate(zip(inputs, grads)):
        errors[f"input{i}"] = rel_error(dx, numeric_grad(loss, x))
    errors.update(check_params(loss, list(module.named_parameters()), analytic, r))
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOL, f"{worst}: relative error {errors[worst]:.2e} ({errors})"
    return errors
