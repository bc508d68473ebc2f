"""The checks every model config shares: sizes within documented bounds, and a model that
fits in memory.

Bounds (``SIZE_LIMITS``; far above anything that trains on a CPU, low enough that a typo
or a hostile checkpoint cannot ask for terabytes): vocabularies ≤ 16,777,216, d_model ≤
65,536, heads ≤ 1,024, d_ff ≤ 262,144, layers 1 … 1,024 (0 layers is an error: a stack
with no layer has nothing to train), max_len ≤ 1,048,576.

``check_fits_memory`` counts the parameters from the shapes alone (no array is made) and
refuses a model whose weights and gradients (float32, ``Parameter`` keeps both) would need
more memory than the machine has, with the estimate in the message.
"""

from __future__ import annotations

import math
import os

from ..core.checks import check_choice, check_int, check_real

SIZE_LIMITS = {"vocab_size": 1 << 24, "d_model": 1 << 16, "n_heads": 1024, "d_ff": 1 << 18,
               "layers": 1024, "max_len": 1 << 20}


def _limit(name: str) -> int:
    if "vocab" in name:
        return SIZE_LIMITS["vocab_size"]
    return SIZE_LIMITS["layers"] if "layers" in name else SIZE_LIMITS[name]


def validate_sizes(cfg, sizes: tuple[str, ...]) -> None:
    """Every field in ``sizes`` an int in [1, its bound]; then heads, dropout, activation,
    eps and seed. Errors are ValueErrors naming the field (``config_field``)."""
    for name in sizes:
        setattr(cfg, name, config_field(check_int, name, getattr(cfg, name), 1, _limit(name)))
    if cfg.d_model % cfg.n_heads:
        raise ValueError(f"d_model ({cfg.d_model}) must be divisible by n_heads ({cfg.n_heads})")
    if cfg.d_model % 2:
        raise ValueError(f"d_model must be even for sinusoidal positions, got {cfg.d_model}")
    config_field(check_real, "dropout", cfg.dropout, 0.0, 1.0, high_open=True)
    config_field(check_choice, "activation", cfg.activation, ("gelu", "relu"))
    config_field(check_real, "layer_norm_eps", cfg.layer_norm_eps, 0.0, low_open=True)
    cfg.seed = config_field(check_int, "seed", cfg.seed, 0)


def config_field(check, name: str, value, *args, **kwargs):
    """``check(name, value, ...)`` from ``core.checks``, every failure a ValueError naming the
    field (a config's one error type, a wrong type included)."""
    try:
        return check(name, value, *args, **kwargs)
    except TypeError as e:
        raise ValueError(str(e)) from None


def num_parameters(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes.values())


def physical_memory() -> int | None:
    """Bytes of RAM on this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_memory(cfg, shapes: dict[str, tuple[int, ...]]) -> None:
    """ValueError when the weights and gradients of a model of ``shapes`` would not fit in RAM."""
    n = num_parameters(shapes)
    need, have = 2 * 4 * n, physical_memory()  # float32 weights + gradients
    if have is not None and need > have:
        raise ValueError(f"{type(cfg).__name__}: {n:,} parameters need about {need / 2**30:,.1f} GiB "
                         f"for float32 weights and gradients (4 × that to train with Adam); this "
                         f"machine has {have / 2**30:,.1f} GiB")


def check_batch_fits(cfg, batch: int, length: int) -> None:
    """ValueError when one training step on ``batch`` sequences of ``length`` tokens would
    keep more activations for its backward than half this machine's memory (an estimate from
    the config: per token and layer about 14·D + 3·F floats and 4·H·length attention
    weights, plus 3·V for the logits; float32). No array is made."""
    D, F, H = cfg.d_model, cfg.d_ff, cfg.n_heads
    if hasattr(cfg, "n_layers"):  # GPT
        layers, V = cfg.n_layers, cfg.vocab_size
    else:  # encoder-decoder: a decoder layer attends twice
        layers, V = cfg.n_encoder_layers + 2 * cfg.n_decoder_layers, cfg.tgt_vocab_size
    need = 4 * batch * length * (layers * (14 * D + 3 * F + 4 * H * length) + 3 * V)
    have = physical_memory()
    if have is not None and 2 * need > have:  # half the memory: room for temporaries
        raise ValueError(f"a batch of {batch:,} sequences of up to {length:,} tokens needs about "
                         f"{need / 2**30:,.1f} GiB of activations for one training step (and as "
                         f"much again for temporaries); this machine has {have / 2**30:,.1f} GiB: "
                         f"use a smaller batch")
