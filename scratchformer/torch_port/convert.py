"""NumPy ⇄ torch conversion. The state_dict keys are the same on both sides, so a
conversion is: build the other model from the same config, copy every array by name.

    tm = to_torch(np_model)            # TorchTransformer / TorchGPT, same logits (float32, 1e-4)
    nm = to_numpy(tm)                  # Transformer / GPT
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..models.gpt import GPT
from ..models.transformer import Transformer
from .models import TorchGPT, TorchTransformer


def _copy_config(cfg):
    return dataclasses.replace(cfg)


def to_torch(np_model, device=None, dtype=torch.float32):
    """NumPy ``Transformer`` / ``GPT`` → ``TorchTransformer`` / ``TorchGPT`` with its weights.

    The config is copied; the result is in the NumPy model's train/eval mode, on ``device``
    (default CPU), in ``dtype`` (default float32, whatever the NumPy dtype).
    """
    if isinstance(np_model, Transformer):
        tm = TorchTransformer(_copy_config(np_model.config), init_from_numpy=False)
    elif isinstance(np_model, GPT):
        tm = TorchGPT(_copy_config(np_model.config), init_from_numpy=False)
    else:
        raise TypeError(f"to_torch expects a scratchformer Transformer or GPT, got {type(np_model).__name__}")
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in np_model.state_dict().items()}
    tm.load_state_dict(state, strict=True)
    tm.train(np_model.training)
    return tm.to(device=device, dtype=dtype)


def _unwrap(model):
    """The model inside a DistributedDataParallel / DataParallel / torch.compile wrapper."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def to_numpy(torch_model, dtype=np.float32):
    """``TorchTransformer`` / ``TorchGPT`` (possibly DDP-wrapped, on any device) → NumPy
    ``Transformer`` / ``GPT`` with the same config, weights and train/eval mode."""
    tm = _unwrap(torch_model)
    if isinstance(tm, TorchTransformer):
        nm = Transformer(_copy_config(tm.config))
    elif isinstance(tm, TorchGPT):
        nm = GPT(_copy_config(tm.config))
    else:
        raise TypeError(f"to_numpy expects a TorchTransformer or TorchGPT, got {type(torch_model).__name__}")
    if np.dtype(dtype) != nm.dtype:
        nm.astype(dtype)
    state = {k: v.detach().to("cpu", torch.float64).numpy().astype(dtype)
             for k, v in tm.state_dict().items()}
    nm.load_state_dict(state, strict=True)
    nm.train(tm.training)
    return nm
