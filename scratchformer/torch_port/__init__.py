"""The PyTorch twin of ScratchFormer: the same models in ``torch.nn``, interchangeable weights.

    import scratchformer as sf
    from scratchformer.torch_port import TorchTransformer, TorchGPT, to_torch, to_numpy

    tm = to_torch(sf.Transformer(cfg))     # same config, same weights, same logits
    nm = to_numpy(tm)                      # and back

Training with autograd, on GPUs and under ``torchrun`` (DistributedDataParallel):
``scratchformer torch-train --task reverse --device cuda`` — see docs/torch_port.md.

This package is the only place in scratchformer that imports torch; ``import scratchformer``
never imports it.
"""

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"scratchformer.torch_port needs PyTorch: pip install torch==2.13.0 ({e})") from e

from .convert import to_numpy, to_torch
from .decoding import greedy_decode
from .models import TorchGPT, TorchTransformer

__all__ = ["TorchTransformer", "TorchGPT", "to_torch", "to_numpy", "greedy_decode"]
