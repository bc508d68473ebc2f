"""Parameter and Module: the two small classes every layer is built from.

A ``Parameter`` is an array plus the gradient that ``backward`` accumulates into it.
A ``Module`` owns parameters and child modules (found by walking its attributes, in the
order they were assigned), runs ``forward`` when called, and ``backward(grad_out)``
walks the same computation in reverse using what ``forward`` cached.

Gradients *accumulate* (``p.grad += ...``), exactly as in PyTorch: call ``zero_grad()``
(or the optimizer's) before each backward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class Parameter:
    """A trainable array ``.data`` and its gradient ``.grad`` (same shape and dtype).

    Optimizers update ``.data`` in place; ``backward`` adds into ``.grad``.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: parameters, children, state dicts, train/eval mode.

    Subclasses implement ``forward(...)`` (caching what the gradient needs) and
    ``backward(grad_out) -> grad_in``, which also adds into every parameter's ``.grad``.
    """

    training: bool = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    # ---- parameters and children -------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module) and not name.startswith("_"):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, Parameter)``; a parameter shared by several modules
        (tied embeddings) is yielded once, under the first name that reaches it."""
        seen: set[int] = set()
        for name, p in self._all_named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_named_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter) and not name.startswith("_"):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._all_named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted_name, module)`` for this module ("") and every descendant."""
        yield prefix.rstrip("."), self
        for name, child in self.named_children():
            yield from child.named_modules(prefix + name + ".")

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    # ---- modes and dtype ----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    @contextmanager
    def eval_mode(self):
        """``with model.eval_mode(): ...`` runs the body with every module in eval mode (no
        dropout) and restores each module's own mode afterwards, even on an error."""
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            yield self
        finally:
            for m, mode in modes:
                m.training = mode

    def astype(self, dtype) -> Module:
        """Convert every parameter and floating buffer in place (float32 ⇄ float64)."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            for name, value in vars(m).items():
                if isinstance(value, Parameter):
                    value.data = value.data.astype(dtype)
                    value.grad = np.zeros_like(value.data)
                elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    setattr(m, name, value.astype(dtype))
        return self

    @property
    def dtype(self) -> np.dtype:
        params = self.parameters()
        return params[0].data.dtype if params else np.dtype(np.float32)

    # ---- state dicts --------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``{dotted_name: copy of the array}``, the same keys as the PyTorch twin."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters (in place, keeping this module's dtype).

        ``strict``: missing or unexpected keys raise ``KeyError``; a shape mismatch always
        raises ``ValueError``.
        """
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: "
                f"missing keys {missing[:10]}{'...' if len(missing) > 10 else ''}, "
                f"unexpected keys {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}"
            )
        for name, p in params.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != p.data.shape:
                raise ValueError(
                    f"shape mismatch for {name!r}: expected {p.data.shape}, got {value.shape}"
                )
            p.data[...] = value

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for name, child in self.named_children():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + ")" if len(lines) > 1 else f"{type(self).__name__}()"


class ModuleList(Module):
    """An indexable list of modules, named ``0, 1, ...`` in state dicts."""

    def __init__(self, modules=()):
        self._items: list[Module] = []
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._items)), module)
        self._items.append(module)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for i, m in enumerate(self._items):
            yield str(i), m

    def __getitem__(self, i: int) -> Module:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items)
