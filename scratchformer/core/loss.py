"""Cross-entropy over a vocabulary, with padding ignored and optional label smoothing.

Notation: N positions (B·T flattened), V vocabulary, logp = log_softmax(logits).
With smoothing ε the target distribution is q = (1 - ε)·onehot(y) + ε/V, and

    loss = (1/n) Σ_valid  -Σ_v q_v · logp_v          (n = number of non-ignored positions)
    dlogits = (softmax(logits) - q) / n   on valid positions, 0 on ignored ones.

This is exactly ``torch.nn.functional.cross_entropy(..., ignore_index, label_smoothing)``.
"""

from __future__ import annotations

import numpy as np

from ..kernels.rows import rowsum
from .checks import check_real


class CrossEntropyLoss:
    """``loss = crit(logits, targets)`` (mean over non-ignored positions); ``crit.backward()``
    returns dL/dlogits with the logits' shape. Stable for logits of any magnitude."""

    def __init__(self, ignore_index: int | None = None, label_smoothing: float = 0.0):
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
        self.ignore_index = ignore_index
        self._saved = None

    def __call__(self, logits: np.ndarray, targets: np.ndarray) -> float:
        return self.forward(logits, targets)

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        logits, y, valid, n = self._check(logits, targets)  # (N, V), (N,), (N,), count
        V = logits.shape[-1]
        shifted = logits - logits.max(axis=-1, keepdims=True)  # (N, V)
        e = np.exp(shifted)  # (N, V), kept: softmax = e / Z for the backward
        Z = rowsum(e)  # (N, 1)
        log_z = np.log(Z)
        y_safe = np.where(valid, y, 0)
        nll = log_z[:, 0] - shifted[np.arange(y.size), y_safe]  # -log p_y     (N,)
        eps = self.label_smoothing
        per_pos = (1.0 - eps) * nll
        if eps > 0:  # -mean_v log p_v = log Z - mean_v shifted_v
            per_pos = per_pos + eps * (log_z[:, 0] - rowsum(shifted)[:, 0] / V)
        loss = float(per_pos[valid].sum() / n)
        self._saved = (e, Z, y_safe, valid, n, np.shape(targets) + (V,))
        return loss

    def _check(self, logits, targets):
        """(logits (N, V), targets (N,), valid (N,) bool, n valid) or an error saying what is wrong."""
        logits, targets = np.asarray(logits), np.asarray(targets)
        if logits.dtype.kind != "f":
            raise TypeError(f"logits must be a float array, got dtype {logits.dtype}")
        if targets.dtype.kind not in "iu":
            raise TypeError(f"targets must be an integer array, got dtype {targets.dtype}")
        if logits.shape[:-1] != targets.shape:
            raise ValueError(f"logits shape {logits.shape} does not match targets shape "
                             f"{targets.shape} (expected logits (..., V) with targets (...))")
        V = logits.shape[-1]
        y = targets.reshape(-1)  # (N,)
        valid = np.ones_like(y, dtype=bool) if self.ignore_index is None else y != self.ignore_index
        bad = valid & ((y < 0) | (y >= V))
        if bad.any():
            raise ValueError(f"target id {y[bad][0]} out of range for {V} classes")
        n = int(valid.sum())
        if n == 0:
            raise ValueError("every target is ignore_index: the mean loss is undefined")
        return logits.reshape(-1, V), y, valid, n

    def backward(self) -> np.ndarray:
        """dL/dlogits = (softmax - q) / n on valid positions, zero elsewhere."""
        if self._saved is None:
            raise RuntimeError("backward() needs a preceding loss computation")
        e, Z, y, valid, n, shape = self._saved
        V = shape[-1]
        g = e / Z  # softmax (N, V)
        g[np.arange(y.size), y] -= 1.0 - self.label_smoothing
        if self.label_smoothing > 0:
            g -= self.label_smoothing / V
        g *= valid[:, None] * (1.0 / n)
        return g.reshape(shape)
