"""Greedy decoding for the torch twin, with the NumPy ``greedy_decode`` contract.

    tokens = greedy_decode(model, src, max_len, bos_id=1, eos_id=2)   # (B, ≤max_len) int64 ndarray

Tokens exclude the BOS; each row ends at its EOS, later positions hold ``pad_id``; decoding
stops early once every row has finished. The target mask is causal only (a generated PAD is
an ordinary token), exactly as in ``scratchformer.models.decoding``, so both pick the same tokens.
The encoder runs once; each step re-runs the decoder over the prefix (no KV cache: the twin
favours plain code, the NumPy side has the cache).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.checks import check_int
from ..core.tokens import BOS, EOS
from ..models.sampling import check_logits
from .models import causal_mask, check_tokens


@torch.no_grad()
def greedy_decode(model, src, max_len: int, bos_id: int = BOS, eos_id: int = EOS) -> np.ndarray:
    """src (B, S) → generated tokens (B, ≤max_len) as a NumPy int64 array (argmax each step)."""
    check_int("max_len", max_len, 1)
    cfg = model.config
    if max_len > cfg.max_len:  # the last step feeds BOS + max_len - 1 tokens
        raise ValueError(f"max_len must be in [1, {cfg.max_len}] (the model's max_len), got {max_len}")
    was_training = model.training
    model.eval()
    try:
        src = check_tokens("src", src, cfg.src_vocab_size, cfg.max_len, model.device)
        src_mask = (src != cfg.pad_id)[:, None, None, :]  # (B, 1, 1, S)
        memory = model.encode(src, src_mask)  # (B, S, D)
        B = src.shape[0]
        ys = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1 + t)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            # causal mask only: a generated PAD is an ordinary token, as in NumPy's decoder
            logits = model.decode(memory, ys, src_mask, causal_mask(ys.shape[1], ys.device))[:, -1]
            if bool((torch.isnan(logits) | (logits == float("inf"))).any()):
                check_logits(logits.float().cpu().numpy())  # NonFiniteLogits, as NumPy's decoders
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, cfg.pad_id), nxt)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
        return ys[:, 1:].cpu().numpy()
    finally:
        model.train(was_training)
