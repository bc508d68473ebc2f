"""The PyTorch twin of ScratchFormer: the same models in ``torch.nn``, interchangeable weights.

    import scratchformer as sf
    from scratchformer.torch_port import TorchTransformer, TorchGPT, to_torch, to_numpy

    tm = to_torch(sf.Transformer(cfg))     # same config, same weights, same logits
    nm = to_numpy(tm)                      # and back

Training with autograd, on GPUs and under ``torchrun`` (DistributedDataParallel):
``scratchformer torch-train --task reverse --device cuda`` — see docs/torch_port.md.

This package is the only place in scratchformer that imports torch, and it does so lazily:
the names below are loaded on first use (PEP 562), so the main command line can import
``scratchformer.torch_port.cli`` to register ``torch-train`` without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TorchTransformer": "models", "TorchGPT": "models",
    "to_torch": "convert", "to_numpy": "convert",
    "greedy_decode": "decoding",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # cache: later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
