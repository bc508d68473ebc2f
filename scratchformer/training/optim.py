"""Optimizers (SGD, Adam, AdamW) and gradient clipping; Muon is in ``muon.py``, the
learning-rate schedules are in ``schedules.py``.

An optimizer is a separate object over a list of ``Parameter``s: layers hold no
optimizer state. ``step()`` reads every ``p.grad`` and updates ``p.data`` **in place**
(other code keeps references to these arrays), keeping the parameter's dtype: every
scalar is a Python float, which NumPy 2 casts to the array's dtype, so float32 stays float32.

A training step (``sched`` is any schedule of ``scratchformer.training.schedules``; ``step`` counts
updates from 1)::

    for step in range(opt.step_count + 1, num_steps + 1):
        opt.zero_grad()
        loss = crit(model(x), y); model.backward(crit.backward())
        clip_grad_norm(model.parameters(), 1.0)
        opt.lr = sched(step)            # the schedule is a pure function of the step
        opt.step()

``opt.lr`` is a plain attribute: a schedule, a test or the user sets it between steps.
``state_dict()`` is a flat ``{str: ndarray}`` (scalars as 0-d arrays, the class name as a
string array), so a checkpoint stores it as tensors (no pickle);
``load_state_dict`` restores it exactly, and a resumed run continues bit for bit.

Speed: every element-wise operation writes into preallocated scratch (``out=``), and each
parameter is processed in blocks (``kernels.blocked``) so the 12 or so passes of an Adam
update run on data that is still in the CPU cache (optionally on several threads).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..kernels import blocked, pool
from ..core.checks import check_real as _real

def _param_list(params, who: str) -> list:
    """Materialize ``params`` (list or generator), check each item, drop repeats (tied weights)."""
    try:
        items = list(params)
    except TypeError:
        raise TypeError(f"{who}: params must be an iterable of Parameters, "
                        f"got {type(params).__name__}") from None
    out, seen = [], set()
    for i, p in enumerate(items):
        data = getattr(p, "data", None)
        if not isinstance(data, np.ndarray) or not hasattr(p, "grad"):
            raise TypeError(f"{who}: params[{i}] must be a Parameter (with .data and .grad), "
                            f"got {type(p).__name__}")
        if data.dtype.kind != "f":
            raise TypeError(f"{who}: params[{i}] must be floating point, got dtype {data.dtype}")
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


# ---- optimizers -----------------------------------------------------------------------
class Optimizer:
    """Base class: the parameter list, the step count, per-parameter state, state dicts.

    Subclasses name their hyper-parameters in ``_hyper`` and their per-parameter state
    arrays in ``_state_names()``, and implement ``_update`` for one block of one parameter.
    ``self.state[name][i]`` is the state array ``name`` of ``self.params[i]`` (same shape
    and dtype); in the state dict it is the key ``f"{name}.{i}"``.
    """

    _hyper: tuple[str, ...] = ("lr",)
    # NumPy releases the GIL inside element-wise loops, so the blocks of a large model
    # (>= blocked.PARALLEL_MIN elements) are cut into k parts shared among the worker
    # pool's threads (``kernels.pool``), with bit-identical results: k = ``opt.num_threads``
    # if set, else the pool's thread count.
    num_threads: int | None = None

    def __init__(self, params: Iterable, lr: float):
        self.params = _param_list(params, type(self).__name__)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: params is empty, expected at least one "
                             "Parameter (a generator that was already consumed?)")
        self.lr = _real("lr", lr, low=0.0)
        self.step_count = 0  # number of step() calls so far
        self.state: dict[str, list[np.ndarray]] = {}
        self._scratch: dict[tuple[np.dtype, int], np.ndarray] = {}  # per (dtype, worker)
        self._ensure_state()

    # -- subclass hooks
    def _state_names(self) -> tuple[str, ...]:
        return ()

    def _step_constants(self) -> tuple:
        return ()

    def _update(self, p, g, *bufs_tmp_consts) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    _n_tmp = 1  # scratch blocks _update needs

    # -- the loop every optimizer shares
    def _ensure_state(self) -> None:
        for name in self._state_names():
            if name not in self.state:
                self.state[name] = [np.zeros_like(p.data) for p in self.params]

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to zero (gradients accumulate between steps)."""
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        """Apply one update to every parameter, in place, using its current ``.grad``."""
        self._ensure_state()  # e.g. SGD momentum switched on after construction
        self.step_count += 1
        consts = self._step_constants()
        names = self._state_names()
        blocks = []  # [p, grad, *state] as matching 1-D views of at most blocked.BLOCK elements
        for i, p in enumerate(self.params):
            bufs = [self.state[name][i] for name in names]
            for a, what in [(p.grad, "grad"), *((b, n) for b, n in zip(bufs, names))]:
                if a.shape != p.data.shape:
                    raise ValueError(f"params[{i}].{what} has shape {a.shape}, expected "
                                     f"{p.data.shape} (was .data replaced after creating "
                                     "the optimizer?)")
            blocks.extend(blocked.blocks([p.data, p.grad, *bufs]))
        parts = blocked.split(blocks, self.num_threads or pool.num_threads())
        if len(parts) == 1:
            self._run(parts[0], 0, consts)
        else:  # blocks are independent: the result does not depend on the thread count
            pool.run_tasks([functools.partial(self._run, blocks, j, consts)  # part j: worker
                            for j, blocks in enumerate(parts)])  # j's own scratch buffers

    def _run(self, blocks: list, worker: int, consts: tuple) -> None:
        for block in blocks:
            n = block[0].size
            if block[0].ndim == 1 and n <= blocked.BLOCK:
                tmp = self._tmp(block[0].dtype, worker)[:, :n]
            else:  # a non-contiguous array, updated whole
                tmp = [np.empty(block[0].shape, block[0].dtype) for _ in range(self._n_tmp)]
            self._update(*block, *tmp, *consts)

    def _tmp(self, dtype: np.dtype, worker: int) -> np.ndarray:
        """Scratch ``(_n_tmp, blocked.BLOCK)`` of ``dtype`` for one worker, allocated once."""
        key = (dtype, worker)
        if key not in self._scratch:
            self._scratch[key] = np.empty((self._n_tmp, blocked.BLOCK), dtype)
        return self._scratch[key]

    # -- state dicts
    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat ``{str: ndarray}`` of copies: ``type`` (class name), ``step``, ``num_params``,
        the hyper-parameters and ``f"{state_name}.{i}"`` for every per-parameter array."""
        d = {"type": np.array(type(self).__name__),
             "step": np.array(self.step_count, dtype=np.int64),
             "num_params": np.array(len(self.params), dtype=np.int64)}
        for h in self._hyper:
            d[h] = self._hyper_array(h)
        for name in self._state_names():
            for i, a in enumerate(self.state[name]):
                d[f"{name}.{i}"] = a.copy()
        return d

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore ``state_dict()`` output exactly (step, hyper-parameters, state arrays).

        Everything is checked before anything changes: a different optimizer type, number
        of parameters or hyper-parameter out of range raises ``ValueError``, missing or
        unexpected keys ``KeyError``, a state array whose shape differs from its
        parameter's ``ValueError``. Arrays are copied in, cast to the parameter's dtype.
        """
        me = type(self).__name__
        for key in ("type", "step", "num_params"):
            if key not in state:
                raise KeyError(f"{me}.load_state_dict: missing key {key!r}")
        saved_type = str(np.asarray(state["type"]))
        if saved_type != me:
            raise ValueError(f"optimizer state is for {saved_type}, cannot load into {me}")
        n = int(np.asarray(state["num_params"]))
        if n != len(self.params):
            raise ValueError(f"{me}.load_state_dict: state has {n} parameters, "
                             f"this optimizer has {len(self.params)}")
        hyper = self.hyper_from_state(state)
        probe = type(self).__new__(type(self))  # validate hyper-parameters, learn state names
        probe.__dict__.update(hyper)
        self._check_hyper(hyper)
        names = probe._state_names()
        expected = {"type", "step", "num_params", *self._hyper,
                    *(f"{name}.{i}" for name in names for i in range(n))}
        missing = sorted(expected - set(state.keys()))
        unexpected = sorted(set(state.keys()) - expected)
        if missing or unexpected:
            raise KeyError(f"{me}.load_state_dict: missing keys {missing[:6]}, "
                           f"unexpected keys {unexpected[:6]}")
        for name in names:
            for i, p in enumerate(self.params):
                shape = np.shape(state[f"{name}.{i}"])
                if shape != p.data.shape:
                    raise ValueError(f"{me}.load_state_dict: {name}.{i} has shape {shape}, "
                                     f"expected {p.data.shape} (params[{i}])")
        step = int(np.asarray(state["step"]))
        if step < 0:
            raise ValueError(f"{me}.load_state_dict: step must be >= 0, got {step}")
        # all checks passed: now change self
        self.__dict__.update(hyper)
        self.step_count = step
        self.state = {name: [np.array(state[f"{name}.{i}"], dtype=p.data.dtype, copy=True)
                             for i, p in enumerate(self.params)] for name in names}

    def _check_hyper(self, h: dict) -> None:
        _real("lr", h["lr"], low=0.0)

    # -- hyper-parameters in a state dict: float64 arrays (subclasses encode other kinds)
    def _hyper_array(self, name: str) -> np.ndarray:
        return np.array(getattr(self, name), dtype=np.float64)

    @classmethod
    def _hyper_value(cls, name: str, v: np.ndarray):
        return tuple(float(x) for x in v) if v.ndim else float(v)

    @classmethod
    def hyper_from_state(cls, state: Mapping[str, np.ndarray]) -> dict:
        """``{name: value}`` of the hyper-parameters stored in ``state`` (a ``state_dict()``),
        decoded for the constructor; a missing one raises ``KeyError``."""
        for h in cls._hyper:
            if h not in state:
                raise KeyError(f"{cls.__name__}.load_state_dict: missing key {h!r}")
        return {h: cls._hyper_value(h, np.asarray(state[h])) for h in cls._hyper}

    @classmethod
    def for_model(cls, model, **hyper) -> Optimizer:
        """This optimizer over ``model.parameters()`` (``MuonAdamW`` splits them instead)."""
        return cls(model.parameters(), **hyper)

    def __repr__(self) -> str:
        hp = ", ".join(f"{h}={getattr(self, h)!r}" for h in self._hyper)
        return f"{type(self).__name__}({len(self.params)} params, {hp}, step={self.step_count})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay (as torch.optim.SGD)::

        g ← grad + weight_decay · p          (L2 penalty ½·wd·‖p‖² added to the loss)
        b ← momentum · b + g                 (momentum buffer, b₀ = 0, so b₁ = g₁)
        p ← p − lr · b                       (p ← p − lr · g when momentum = 0)

    State: ``momentum_buffer.{i}`` (only when momentum > 0).
    """

    _hyper = ("lr", "momentum", "weight_decay")

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        self.momentum = _real("momentum", momentum, 0.0, 1.0, high_open=True)
        self.weight_decay = _real("weight_decay", weight_decay, low=0.0)
        super().__init__(params, lr)

    def _check_hyper(self, h):
        super()._check_hyper(h)
        _real("momentum", h["momentum"], 0.0, 1.0, high_open=True)
        _real("weight_decay", h["weight_decay"], low=0.0)

    def _state_names(self):
        return ("momentum_buffer",) if self.momentum else ()

    def _step_constants(self):
        return float(self.lr), float(self.momentum), float(self.weight_decay)

    def _update(self, p, g, *rest):
        *buf, tmp, lr, mu, wd = rest
        if wd:  # g ← grad + wd·p   (in scratch: p.grad itself is left untouched)
            np.multiply(p, wd, out=tmp)
            g = np.add(tmp, g, out=tmp)
        if mu:  # b ← mu·b + g
            (b,) = buf
            b *= mu
            b += g
            g = b
        np.multiply(g, lr, out=tmp)  # p ← p − lr·g
        p -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with L2 weight decay added to the gradient (as torch.optim.Adam).

    With t the step number (from 1)::

        g  ← grad + weight_decay · p                  (L2; use AdamW for decoupled decay)
        m  ← β₁·m + (1 − β₁)·g                         (first moment)
        v  ← β₂·v + (1 − β₂)·g²                        (second moment)
        m̂ = m / (1 − β₁ᵗ),   v̂ = v / (1 − β₂ᵗ)          (bias correction: m, v start at 0)
        p  ← p − lr · m̂ / (√v̂ + ε)

    The last line is computed in the paper's cheaper but equal order (end of its section 2):
    ``p ← p − α_t · m / (√v + ε̂)`` with ``α_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)``, ``ε̂ = ε·√(1−β₂ᵗ)``.
    Defaults ``betas=(0.9, 0.98), eps=1e-9`` are those of "Attention Is All You Need".
    State: ``exp_avg.{i}`` (m) and ``exp_avg_sq.{i}`` (v), named as in PyTorch.
    """

    _hyper = ("lr", "betas", "eps", "weight_decay")
    _n_tmp = 2
    decoupled = False  # AdamW: weight decay applied to p directly, not through the gradient

    def __init__(self, params: Iterable, lr: float, betas: tuple[float, float] = (0.9, 0.98),
                 eps: float = 1e-9, weight_decay: float = 0.0):
        self._check_hyper({"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        super().__init__(params, lr)

    def _check_hyper(self, h):
        super()._check_hyper(h)
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        _real("betas[0]", betas[0], 0.0, 1.0, high_open=True)
        _real("betas[1]", betas[1], 0.0, 1.0, high_open=True)
        _real("eps", h["eps"], low=0.0, low_open=True)
        _real("weight_decay", h["weight_decay"], low=0.0)

    def _state_names(self):
        return ("exp_avg", "exp_avg_sq")

    def _step_constants(self):
        b1, b2 = self.betas
        t, lr = self.step_count, float(self.lr)
        bc1, bc2_sqrt = 1.0 - b1 ** t, math.sqrt(1.0 - b2 ** t)
        return b1, b2, lr * bc2_sqrt / bc1, self.eps * bc2_sqrt, lr, self.weight_decay

    def _update(self, p, g, m, v, tmp, tmp2, b1, b2, alpha_t, eps_hat, lr, wd):
        if wd and self.decoupled:  # AdamW: p ← p·(1 − lr·wd)
            p *= 1.0 - lr * wd
        elif wd:  # Adam, L2: g ← grad + wd·p   (in scratch: p.grad itself is left untouched)
            np.multiply(p, wd, out=tmp2)
            g = np.add(tmp2, g, out=tmp2)
        # m ← β₁·m + (1−β₁)·g, written as m += (1−β₁)·(g − m) (PyTorch's lerp)
        np.subtract(g, m, out=tmp)
        tmp *= 1.0 - b1
        m += tmp
        # v ← β₂·v + (1−β₂)·g²
        np.multiply(g, 1.0 - b2, out=tmp)
        tmp *= g
        v *= b2
        v += tmp
        # p ← p − α_t · m / (√v + ε̂)
        np.sqrt(v, out=tmp)
        tmp += eps_hat
        np.divide(m, tmp, out=tmp)
        tmp *= alpha_t
        p -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019; as torch.optim.AdamW)::

        p ← p − lr · weight_decay · p      (decay the weights directly, before the Adam step)
        then the Adam update of ``Adam`` with g = grad (no L2 term in the moments)

    Unlike L2 in Adam, the decay is not divided by √v̂, so every weight decays at the same rate.
    """

    decoupled = True

    def __init__(self, params: Iterable, lr: float, betas: tuple[float, float] = (0.9, 0.98),
                 eps: float = 1e-9, weight_decay: float = 0.01):
        super().__init__(params, lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ---- gradient clipping ------------------------------------------------------------------
def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    ``total = √(Σ_p Σ_i grad_pi²)``; when ``total > max_norm`` every grad is multiplied in
    place by ``max_norm / (total + 1e-6)`` (the 1e-6 as in torch.nn.utils.clip_grad_norm_).
    Returns ``total`` before clipping, as a float. A non-finite total (a NaN or inf in some
    grad) is returned as is and nothing is scaled (PyTorch would multiply by NaN): the
    caller sees it and can skip the step. ``params``: a Parameter or an iterable of them.
    ``max_norm`` may be ``inf`` to only measure the norm.
    """
    if hasattr(params, "grad") and hasattr(params, "data"):
        params = [params]
    params = _param_list(params, "clip_grad_norm")
    max_norm = _real("max_norm", max_norm, low=0.0, low_open=True, allow_inf=True)
    grads = [p.grad.reshape(-1) for p in params]  # views (copies only if non-contiguous)
    with np.errstate(over="ignore"):
        total = math.sqrt(sum(float(np.dot(g, g)) for g in grads))
    if math.isinf(total):  # float32 squares overflow above ~1.8e19: recount in float64
        total = math.sqrt(sum(float(np.dot(g64, g64)) for g64 in
                              (g.astype(np.float64) for g in grads)))
    if not math.isfinite(total):
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            np.multiply(p.grad, coef, out=p.grad)
    return total
