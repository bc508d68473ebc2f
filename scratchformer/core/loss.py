"""Cross-entropy over a vocabulary, with padding ignored and optional label smoothing.

Notation: N positions (B·T flattened), V vocabulary, logp = log_softmax(logits).
With smoothing ε the target distribution is q = (1 - ε)·onehot(y) + ε/V, and

    loss = (1/n) Σ_valid  -Σ_v q_v · logp_v          (n = number of non-ignored positions)
    dlogits = (softmax(logits) - q) / n   on valid positions, 0 on ignored ones.

This is exactly ``torch.nn.functional.cross_entropy(..., ignore_index, label_smoothing)``.
"""

from __future__ import annotations

import numpy as np

from ..kernels import rows
from .checks import check_real


class CrossEntropyLoss:
    """``loss = crit(logits, targets)`` (mean over non-ignored positions); ``crit.backward()``
    returns dL/dlogits with the logits' shape. Stable for logits of any magnitude."""

    def __init__(self, ignore_index: int | None = None, label_smoothing: float = 0.0):
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
        self.ignore_index = ignore_index
        self._saved = self._grad = None

    def __call__(self, logits: np.ndarray, targets: np.ndarray) -> float:
        return self.forward(logits, targets)

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        logits, y, valid, n = self._check(logits, targets)  # (N, V), (N,), (N,), count
        V = logits.shape[-1]
        y_safe = np.where(valid, y, 0)
        # e = exp(logits - max) (N, V), kept: softmax = e / Z for the backward; per row
        # Z = Σ e, the target's shifted logit and Σ shifted (kernels.rows.cross_entropy)
        e, stats = rows.cross_entropy(logits, y_safe)
        Z, shifted_y, shifted_sum = stats.T
        log_z = np.log(Z)
        nll = log_z - shifted_y  # -log p_y     (N,)
        eps = self.label_smoothing
        per_pos = (1.0 - eps) * nll
        if eps > 0:  # -mean_v log p_v = log Z - mean_v shifted_v
            per_pos = per_pos + eps * (log_z - shifted_sum / V)
        loss = float(per_pos[valid].sum() / n)
        self._saved = (e, Z, y_safe, valid, n, np.shape(targets) + (V,))
        self._grad = None
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
        """dL/dlogits = (softmax - q) / n on valid positions, zero elsewhere.

        Written over the forward's e (no new (N, V) array): calling it again before the next
        forward returns the same array."""
        if self._saved is None:
            raise RuntimeError("backward() needs a preceding loss computation")
        if self._grad is None:
            e, Z, y, valid, n, shape = self._saved
            scale = valid * (1.0 / n)  # (N,): 1/n on counted positions, 0 on ignored ones
            g = rows.cross_entropy_backward(e, y, scale, Z, self.label_smoothing, out=e)
            self._grad = g.reshape(shape)
        return self._grad
