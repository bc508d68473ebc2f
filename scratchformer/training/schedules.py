"""Learning-rate schedules: pure functions ``step -> lr`` (step = the update about to be made,
counted from 1), set on the optimizer before each ``opt.step()``::

    opt.lr = sched(step); opt.step()

- ``ConstantLR(lr)``: the same lr at every step;
- ``NoamSchedule(d_model, warmup, factor)``: "Attention Is All You Need", section 5.3;
- ``WarmupCosine(max_lr, warmup, total_steps, min_lr)``: linear warm-up, then cosine decay.

A schedule holds no counter, so resuming a run needs only the optimizer's step count;
``state_dict()`` is the schedule's configuration, for checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..core.checks import check_int as _int
from ..core.checks import check_real as _real


class LRSchedule:
    """A pure function ``step -> lr`` (step = number of the update about to be made, from 1).

    Schedules hold no counter: the training loop passes the step (``opt.step_count + 1``
    before ``opt.step()``), so resuming needs only the optimizer's state. ``state_dict()``
    is the schedule's configuration (flat, with ``type``), for checkpoints.
    """

    _fields: tuple[str, ...] = ()

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        d = {"type": np.array(type(self).__name__)}
        for f in self._fields:
            d[f] = np.array(getattr(self, f))
        return d

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        me = type(self).__name__
        if str(np.asarray(state.get("type", ""))) != me:
            raise ValueError(f"schedule state is for {str(np.asarray(state.get('type', '?')))}, "
                             f"cannot load into {me}")
        missing = [f for f in self._fields if f not in state]
        if missing:
            raise KeyError(f"{me}.load_state_dict: missing keys {missing}")
        fresh = type(self)(**{f: np.asarray(state[f]).item() for f in self._fields})  # validates
        self.__dict__.update(fresh.__dict__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(
            f"{f}={getattr(self, f)!r}" for f in self._fields) + ")"


class ConstantLR(LRSchedule):
    """``lr(step) = lr`` for every step."""

    _fields = ("lr",)

    def __init__(self, lr: float):
        self.lr = _real("lr", lr, low=0.0)

    def __call__(self, step: int) -> float:
        _int("step", step, 0)
        return self.lr


class NoamSchedule(LRSchedule):
    """The schedule of "Attention Is All You Need" (section 5.3), step counted from 1::

        lr(step) = factor · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)

    Linear growth for ``warmup`` steps, peak ``factor·(d_model·warmup)^-0.5`` at
    ``step = warmup``, then decay ∝ 1/√step. ``lr(0) = 0`` (the formula's limit).
    """

    _fields = ("d_model", "warmup", "factor")

    def __init__(self, d_model: int, warmup: int, factor: float = 1.0):
        self.d_model = _int("d_model", d_model, 1)
        self.warmup = _int("warmup", warmup, 1)
        self.factor = _real("factor", factor, low=0.0, low_open=True)

    def __call__(self, step: int) -> float:
        step = _int("step", step, 0)
        if step == 0:
            return 0.0
        return self.factor * self.d_model ** -0.5 * min(step ** -0.5, step * self.warmup ** -1.5)


class WarmupCosine(LRSchedule):
    """Linear warm-up from 0 to ``max_lr`` over ``warmup`` steps, then cosine decay to ``min_lr``
    at ``total_steps``, constant ``min_lr`` after::

        lr(s) = max_lr · s / warmup                                  s < warmup
        lr(s) = min_lr + ½(max_lr − min_lr)(1 + cos(π·(s − warmup)/(total_steps − warmup)))
                                                                     warmup ≤ s < total_steps
        lr(s) = min_lr                                               s ≥ total_steps
    """

    _fields = ("max_lr", "warmup", "total_steps", "min_lr")

    def __init__(self, max_lr: float, warmup: int, total_steps: int, min_lr: float = 0.0):
        self.max_lr = _real("max_lr", max_lr, low=0.0)
        self.warmup = _int("warmup", warmup, 0)
        self.total_steps = _int("total_steps", total_steps, max(self.warmup, 1))
        self.min_lr = _real("min_lr", min_lr, 0.0, self.max_lr)

    def __call__(self, step: int) -> float:
        step = _int("step", step, 0)
        if step < self.warmup:
            return self.max_lr * step / self.warmup
        if step >= self.total_steps:
            return self.min_lr
        progress = (step - self.warmup) / (self.total_steps - self.warmup)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 → 0
        return self.min_lr + (self.max_lr - self.min_lr) * cosine
