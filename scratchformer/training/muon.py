"""Muon: momentum, then orthogonalise the update of each weight matrix (Newton–Schulz).

Muon (Keller Jordan et al., 2024, https://kellerjordan.github.io/posts/muon/) updates a
hidden layer's weight matrix W (m, n) with an orthogonalised momentum: the momentum
matrix U = P·S·Qᵀ (its SVD) is replaced by ≈ P·Qᵀ, every singular value pushed to ≈ 1, so
each direction of the update moves the weights by about the same amount. Five steps of
a quintic Newton–Schulz iteration (``newton_schulz``) do it with matrix products only.

- ``newton_schulz(G)``: the orthogonalisation, a pure function;
- ``Muon``: the optimizer, the parameters, defaults and update of ``torch.optim.Muon``;
- ``muon_groups(model)``: the usual split (Muon for the attention and feed-forward
  matrices, AdamW for embeddings, output head, LayerNorms and biases);
- ``MuonAdamW``: both halves driven as one optimizer (one ``lr``, one ``step()``, one flat
  state dict), as ``Trainer`` and checkpoints expect: ``TrainConfig(optimizer="muon")``.

Notation: W, g, B, U, O are (m, n); r = min(m, n), s = max(m, n).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..core.checks import check_bool, check_choice, check_int
from ..core.checks import check_real as _real
from ..kernels import pool
from .optim import AdamW, Optimizer

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)  # (a, b, c) of Keller Jordan's quintic iteration
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")  # None means "original", as in torch
HIDDEN_MODULES = ("self_attn", "cross_attn", "ffn")  # whose 2-D weights muon_groups gives Muon


# ---- the math ------------------------------------------------------------------------------
def newton_schulz(G: np.ndarray, coefficients=NS_COEFFICIENTS, steps: int = 5,
                  eps: float = 1e-7) -> np.ndarray:
    """≈ the orthogonal factor of G (m, n): with G = P·S·Qᵀ (SVD), returns ≈ P·S'·Qᵀ, S' ≈ I.

    Work in the wide orientation X (r, s) (transpose a tall G) so that X·Xᵀ is the small
    (r, r) Gram matrix, and scale so every singular value σ is at most 1::

        X₀ = G / max(‖G‖_F, eps)                    (‖G‖₂ ≤ ‖G‖_F, so σ ∈ [0, 1])
        A  = X·Xᵀ                                    (r, r)
        X  ← a·X + (b·A + c·A²)·X                   = a·X + b·(XXᵀ)X + c·(XXᵀ)²X

    Because XXᵀ = P·S²·Pᵀ, one step maps X = P·S·Qᵀ to P·p(S)·Qᵀ with the odd polynomial
    p(σ) = a·σ + b·σ³ + c·σ⁵, applied to each singular value alone (P and Q never change).
    (a, b, c) = (3.4445, −4.775, 2.0315) make p steep at 0 (a small σ grows ×3.44 a step)
    and keep p(σ) in a band around 1 once σ is large: after 5 steps every σ ≥ 0.002·‖G‖_F
    lies in [0.68, 1.21] — not exactly 1, which does not hurt training (docs/optim.md).
    Runs in G's dtype (torch casts to bfloat16 first, a GPU speed trick). ``steps`` = 0
    returns X₀. Returns a new (m, n) array (a stack (k, m, n): each matrix alone).
    """
    a, b, c = coefficients
    tall = G.shape[-2] > G.shape[-1]
    X = np.swapaxes(G, -1, -2) if tall else G  # (..., r, s)
    norm = np.sqrt((X * X).sum(axis=(-2, -1), keepdims=True))  # ‖X‖_F of each matrix
    X = X / np.maximum(norm, eps)
    for _ in range(steps):
        A = X @ np.swapaxes(X, -1, -2)      # (..., r, r)
        B = b * A + c * (A @ A)             # (..., r, r)
        X = a * X + B @ X                   # (..., r, s)
    return np.swapaxes(X, -1, -2) if tall else X  # (..., m, n)


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: tuple[int, ...]) -> float:
    """The learning rate Muon applies to an (A, B) matrix's orthogonalised update::

        "original" (or None): lr · √max(1, A/B)       Keller Jordan's: tall matrices get more
        "match_rms_adamw":    lr · 0.2·√max(A, B)     Moonshot's: update RMS 0.2, as AdamW's

    An orthogonal (A, B) matrix has RMS 1/√max(A, B), so "match_rms_adamw" gives every
    matrix an update of RMS 0.2·lr (Liu et al. 2025, "Muon is Scalable for LLM Training"),
    and Muon can reuse AdamW's learning rate and weight decay.
    """
    A, B = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, A / B))
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(A, B))
    else:
        raise ValueError(f"adjust_lr_fn must be one of {ADJUST_LR_FNS}, got {adjust_lr_fn!r}")
    return lr * ratio


def lerp(start: np.ndarray, end: np.ndarray, weight: float, out=None) -> np.ndarray:
    """start + weight·(end − start), in torch.lerp's order (for |weight| ≥ 0.5 it computes
    end − (end − start)·(1 − weight)), so the momentum matches torch's to the last bit."""
    d = np.subtract(end, start)
    if abs(weight) < 0.5:
        d *= weight
        return np.add(start, d, out=out)
    d *= 1.0 - weight
    return np.subtract(end, d, out=out)


# ---- hyper-parameters: checks and their state-dict encoding --------------------------------
def _muon_hyper(h: Mapping) -> dict:
    """Muon's hyper-parameters checked (checks.py) and normalised (floats, bool, int, tuple)."""
    coefs = h["ns_coefficients"]
    if not isinstance(coefs, (tuple, list, np.ndarray)) or len(coefs) != 3:
        raise ValueError(f"ns_coefficients must be three numbers (a, b, c), got {coefs!r}")
    return {"lr": _real("lr", h["lr"], low=0.0),
            "weight_decay": _real("weight_decay", h["weight_decay"], low=0.0),
            "momentum": _real("momentum", h["momentum"], 0.0, 1.0, high_open=True),
            "nesterov": check_bool("nesterov", h["nesterov"]),
            "ns_coefficients": tuple(_real(f"ns_coefficients[{k}]", x)
                                     for k, x in enumerate(coefs)),
            "eps": _real("eps", h["eps"], low=0.0, low_open=True),
            "ns_steps": check_int("ns_steps", h["ns_steps"], 0, 99),
            "adjust_lr_fn": check_choice("adjust_lr_fn", h["adjust_lr_fn"], ADJUST_LR_FNS)}


SETTINGS = ("nesterov", "ns_steps", "adjust_lr_fn")  # stored as 0-d int64, not float64


def _encode(name: str, value) -> np.ndarray:
    """A setting as a 0-d int64: nesterov 0/1, ns_steps, adjust_lr_fn's index in ADJUST_LR_FNS."""
    return np.array(ADJUST_LR_FNS.index(value) if name == "adjust_lr_fn" else int(value), np.int64)


def _decode(name: str, v: np.ndarray):
    code = int(v)
    if name == "ns_steps":
        return code
    choices = ADJUST_LR_FNS if name == "adjust_lr_fn" else (False, True)
    if not 0 <= code < len(choices):
        raise ValueError(f"state dict: {name} code {code} is not one of 0..{len(choices) - 1} "
                         f"(for {choices})")
    return choices[code]


class _Settings:
    """Mixin for Muon and MuonAdamW: SETTINGS go into the state dict as int64, not float64."""

    def _hyper_array(self, name):
        if name in SETTINGS:
            return _encode(name, getattr(self, name))
        return super()._hyper_array(name)

    @classmethod
    def _hyper_value(cls, name, v):
        return _decode(name, v) if name in SETTINGS else super()._hyper_value(name, v)


# ---- the optimizer ---------------------------------------------------------------------------
class Muon(_Settings, Optimizer):
    """Muon for 2-D parameters: the parameters, defaults and update of ``torch.optim.Muon``.

    With g = p.grad and W = p.data, both (m, n), each ``step()``::

        B ← μ·B + (1 − μ)·g                 momentum, an average (torch: B.lerp_(g, 1 − μ))
        U = μ·B + (1 − μ)·g  if nesterov    (torch: g.lerp(B, μ)), else U = B
        O = newton_schulz(U, ns_coefficients, ns_steps, eps)      ≈ orthogonal, (m, n)
        W ← W·(1 − lr·weight_decay)         decoupled weight decay, with the plain lr
        W ← W − adjusted_lr(lr, adjust_lr_fn, (m, n))·O

    (torch's docstring writes the momentum as B ← μB + g; its code, followed here, takes
    the average above.) The Newton–Schulz iteration runs in W's dtype, torch's in bfloat16.
    Every parameter must be 2-D (``ValueError`` otherwise): use ``muon_groups`` to give
    embeddings, the output head, LayerNorms and biases to AdamW, or ``MuonAdamW``.
    ``momentum`` must be in [0, 1) (torch accepts any μ ≥ 0), ``eps`` > 0, ``ns_steps`` in
    [0, 99], ``adjust_lr_fn`` one of None, "original", "match_rms_adamw".

    State: ``momentum_buffer.{i}`` (B). In the state dict ``nesterov``, ``ns_steps`` and
    ``adjust_lr_fn`` are 0-d int64 (0/1; the step count; 0 None, 1 "original",
    2 "match_rms_adamw"), the other hyper-parameters float64.
    """

    _hyper = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps",
              "ns_steps", "adjust_lr_fn")

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None):
        hyper = _muon_hyper(dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                 nesterov=nesterov, ns_coefficients=ns_coefficients, eps=eps,
                                 ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn))
        self.__dict__.update({k: v for k, v in hyper.items() if k != "lr"})
        super().__init__(params, hyper["lr"])
        for i, p in enumerate(self.params):
            if p.data.ndim != 2:
                raise ValueError(f"Muon: params[{i}] has shape {p.data.shape}; Muon updates 2-D "
                                 f"matrices only (give embeddings, biases and LayerNorms to AdamW: "
                                 f"see muon_groups and MuonAdamW)")

    def _check_hyper(self, h):
        _muon_hyper(h)

    def _state_names(self):
        return ("momentum_buffer",)

    def step(self) -> None:
        """Apply one Muon update to every matrix, in place, using its current ``.grad``."""
        self._ensure_state()
        self.step_count += 1
        lr, mu = float(self.lr), self.momentum
        updates = []
        for i, p in enumerate(self.params):
            W, g, B = p.data, p.grad, self.state["momentum_buffer"][i]  # (m, n) each
            for a, what in ((g, "grad"), (B, "momentum_buffer")):
                if a.shape != W.shape:
                    raise ValueError(f"params[{i}].{what} has shape {a.shape}, expected {W.shape} "
                                     "(was .data replaced after creating the optimizer?)")
            lerp(B, g, 1.0 - mu, out=B)                  # B ← μ·B + (1 − μ)·g
            updates.append(lerp(g, B, mu) if self.nesterov else B)  # μ·B + (1 − μ)·g, or B
        for idx, O in self._orthogonalised(updates):
            W = self.params[idx].data
            W *= 1.0 - lr * self.weight_decay            # decoupled weight decay
            O *= -adjusted_lr(lr, self.adjust_lr_fn, W.shape)
            W += O                                       # W ← W − lr'·O

    def _orthogonalised(self, updates: list):
        """(index, newton_schulz(U)) for each U: the matrices are independent, so the worker
        pool (``kernels.pool``, when on) shares them among its threads."""
        out = [None] * len(updates)

        def some(lo, hi):
            for i in range(lo, hi):
                out[i] = newton_schulz(updates[i], self.ns_coefficients, self.ns_steps, self.eps)

        pool.run(some, len(updates))
        return enumerate(out)


# ---- the usual split, and both halves as one optimizer ---------------------------------------
def is_hidden_matrix(name: str, p) -> bool:
    """True for a 2-D ``*.weight`` inside an attention or feed-forward block (the
    ``HIDDEN_MODULES`` names in its dotted path): q/k/v/out projections, linear1, linear2."""
    return (p.data.ndim == 2 and name.endswith(".weight")
            and any(part in HIDDEN_MODULES for part in name.split(".")[:-1]))


def muon_groups(model) -> tuple[list, list]:
    """``(muon_params, adamw_params)`` of any of our models, by ``is_hidden_matrix`` on the
    names of ``model.named_parameters()`` (in that order): the hidden layers' matrices for
    Muon; embeddings, the output head (tied or not), LayerNorms and biases for AdamW."""
    muon, adamw = [], []
    for name, p in model.named_parameters():
        (muon if is_hidden_matrix(name, p) else adamw).append(p)
    return muon, adamw


class MuonAdamW(_Settings, Optimizer):
    """Muon for ``muon_params`` at ``lr``, AdamW for ``adamw_params`` at ``lr·adamw_lr_ratio``:
    one optimizer object (``opt.lr``, ``step()``, ``zero_grad()``, one flat state dict).

    The AdamW half follows the Muon half's learning rate at a fixed ratio, so one schedule
    (``opt.lr = sched(step)``) drives both. ``opt.muon`` and ``opt.adamw`` are the two halves
    (a ``Muon`` and an ``AdamW``); each ``step()`` first copies this object's hyper-parameters
    into them, so ``opt.adamw_lr_ratio = 0.1`` between steps takes effect. ``weight_decay``
    is Muon's (times lr), ``adamw_weight_decay`` AdamW's (times lr·adamw_lr_ratio).

        opt = MuonAdamW.for_model(model, lr=0.02)      # muon_groups(model) split

    ``params`` is ``muon_params + adamw_params``. State dict: ``type`` "MuonAdamW", ``step``,
    ``num_params``, ``num_muon`` (n), the hyper-parameters (as ``Muon``'s; AdamW's as
    ``betas``, ``adamw_eps``, ``adamw_weight_decay``), ``momentum_buffer.{i}`` for i < n
    and ``exp_avg.{i}``, ``exp_avg_sq.{i}`` for i ≥ n (indices into ``params``).
    """

    _hyper = ("lr", "adamw_lr_ratio", *Muon._hyper[1:], "betas", "adamw_eps", "adamw_weight_decay")

    def __init__(self, muon_params: Iterable, adamw_params: Iterable, lr: float,
                 adamw_lr_ratio: float = 0.05, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None,
                 betas: tuple[float, float] = (0.9, 0.98), adamw_eps: float = 1e-9,
                 adamw_weight_decay: float = 0.01):
        hyper = {k: v for k, v in locals().items() if k in self._hyper}  # the arguments above
        hyper.update(self._check_hyper(hyper))
        muon_params, adamw_params = list(muon_params), list(adamw_params)
        for what, ps in (("muon_params", muon_params), ("adamw_params", adamw_params)):
            if not ps:
                raise ValueError(f"MuonAdamW: {what} is empty, expected at least one Parameter")
        shared = {id(p) for p in muon_params} & {id(p) for p in adamw_params}
        if shared:
            raise ValueError(f"MuonAdamW: {len(shared)} parameter(s) in both muon_params and "
                             "adamw_params; each parameter belongs to one half")
        self.muon = Muon(muon_params, **{h: hyper[h] for h in Muon._hyper})
        self.adamw = AdamW(adamw_params, lr * hyper["adamw_lr_ratio"], betas=hyper["betas"],
                           eps=hyper["adamw_eps"], weight_decay=hyper["adamw_weight_decay"])
        self.__dict__.update({k: v for k, v in hyper.items() if k != "lr"})
        super().__init__(self.muon.params + self.adamw.params, hyper["lr"])

    @classmethod
    def for_model(cls, model, **hyper) -> MuonAdamW:
        """``MuonAdamW(*muon_groups(model), **hyper)``: the usual split of any of our models."""
        return cls(*muon_groups(model), **hyper)

    def _check_hyper(self, h) -> dict:
        betas = h["betas"]
        if not isinstance(betas, (tuple, list, np.ndarray)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        return {**_muon_hyper(h),
                "adamw_lr_ratio": _real("adamw_lr_ratio", h["adamw_lr_ratio"], low=0.0),
                "betas": tuple(_real(f"betas[{k}]", b, 0.0, 1.0, high_open=True)
                               for k, b in enumerate(betas)),
                "adamw_eps": _real("adamw_eps", h["adamw_eps"], low=0.0, low_open=True),
                "adamw_weight_decay": _real("adamw_weight_decay", h["adamw_weight_decay"], low=0.0)}

    def _sync(self) -> None:
        """Copy this object's hyper-parameters into the two halves (before each step)."""
        for h in Muon._hyper:
            setattr(self.muon, h, getattr(self, h))
        a = self.adamw
        a.lr, a.betas, a.eps = self.lr * self.adamw_lr_ratio, self.betas, self.adamw_eps
        a.weight_decay, a.num_threads = self.adamw_weight_decay, self.num_threads

    def step(self) -> None:
        """One Muon step of the hidden matrices and one AdamW step of the rest."""
        self._sync()
        self.step_count += 1
        self.muon.step()
        self.adamw.step()

    # -- state dicts: the halves' dicts, AdamW's indices shifted past Muon's parameters
    def state_dict(self) -> dict[str, np.ndarray]:
        """See the class docstring; ``load_state_dict`` restores it exactly."""
        n = len(self.muon.params)
        d = {"type": np.array(type(self).__name__),
             "step": np.array(self.step_count, dtype=np.int64),
             "num_params": np.array(len(self.params), dtype=np.int64),
             "num_muon": np.array(n, dtype=np.int64)}
        d.update({h: self._hyper_array(h) for h in self._hyper})
        for shift, half in ((0, self.muon), (n, self.adamw)):
            for name in half._state_names():
                for i, a in enumerate(half.state[name]):
                    d[f"{name}.{shift + i}"] = a.copy()
        return d

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore ``state_dict()`` output exactly; everything is checked before anything
        changes (errors as ``Optimizer.load_state_dict``'s)."""
        me, n, total = type(self).__name__, len(self.muon.params), len(self.params)
        for key in ("type", "step", "num_params", "num_muon"):
            if key not in state:
                raise KeyError(f"{me}.load_state_dict: missing key {key!r}")
        if str(np.asarray(state["type"])) != me:
            raise ValueError(f"optimizer state is for {np.asarray(state['type'])}, cannot load "
                             f"into {me}")
        counts = int(np.asarray(state["num_params"])), int(np.asarray(state["num_muon"]))
        if counts != (total, n):
            raise ValueError(f"{me}.load_state_dict: state has {counts[0]} parameters ({counts[1]} "
                             f"for Muon), this optimizer has {total} ({n} for Muon)")
        hyper = self._check_hyper(self.hyper_from_state(state))
        per_param = [f"momentum_buffer.{i}" for i in range(n)] + \
                    [f"{s}.{i}" for s in ("exp_avg", "exp_avg_sq") for i in range(n, total)]
        expected = {"type", "step", "num_params", "num_muon", *self._hyper, *per_param}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise KeyError(f"{me}.load_state_dict: missing keys {missing[:6]}, "
                           f"unexpected keys {unexpected[:6]}")
        for key in per_param:
            shape, want = np.shape(state[key]), self.params[int(key.rpartition(".")[2])].data.shape
            if shape != want:
                raise ValueError(f"{me}.load_state_dict: {key} has shape {shape}, expected {want}")
        step = int(np.asarray(state["step"]))
        if step < 0:
            raise ValueError(f"{me}.load_state_dict: step must be >= 0, got {step}")
        # all checks passed: now change self
        self.__dict__.update(hyper)
        self.step_count = self.muon.step_count = self.adamw.step_count = step
        self._sync()
        for shift, half in ((0, self.muon), (n, self.adamw)):
            half.state = {s: [np.array(state[f"{s}.{shift + i}"], dtype=p.data.dtype, copy=True)
                              for i, p in enumerate(half.params)] for s in half._state_names()}
