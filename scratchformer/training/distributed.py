"""Data-parallel training of the NumPy models on ``torch.distributed`` (gloo), launched by
``torchrun`` — the same ``Trainer``, one process per core or per machine.

    torchrun --nproc_per_node 2 my_training_script.py      # or --nnodes N for several machines

    dp = DataParallel()                                   # reads torchrun's RANK, WORLD_SIZE, ...
    trainer = Trainer(model, dp.shard(batch_fn), config, step_fn=dp.wrap(step_fn),
                      out_dir=out if dp.is_main else None, progress=dp.is_main)

One step, with W processes ("ranks") and n_r the non-ignored target tokens of rank r:

    batch       every rank draws the same *global* batch (same seed), keeps rows
                r·b .. (r+1)·b (b = B / W)
    backward    rank r: g_r = ∇ (mean loss over its n_r tokens)       (the usual step_fn)
    all-reduce  one flat bucket [n_r·g_r …, n_r·loss_r, n_r], summed over the ranks
                (zero-copy: torch.from_numpy views the NumPy buffer)
    gradient    g = Σ_r n_r·g_r / N,   N = Σ_r n_r   — the gradient of the mean loss over the
                whole global batch, exactly as one process would compute it
    update      clip, optimizer step: the same numbers on every rank, so the replicas stay
                bit-identical without ever sending weights

Only this module imports torch, and only when a ``DataParallel`` is made; the rest of
ScratchFormer never needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np


def world_size() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class DataParallel:
    """This process's place in a torchrun job, and the two wrappers that make a Trainer
    data-parallel (``shard`` for the batches, ``wrap`` for the step)."""

    def __init__(self, backend: str = "gloo"):
        try:
            import torch
            import torch.distributed as dist
        except ImportError as e:
            raise ImportError(f"data-parallel training needs PyTorch's torch.distributed: "
                              f"pip install torch==2.13.0 ({e})") from None
        self._torch, self._dist = torch, dist
        if not dist.is_initialized():
            dist.init_process_group(backend)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self._bucket: np.ndarray | None = None

    def shard(self, batch_fn: Callable) -> Callable:
        """``batch_fn`` whose arrays keep this rank's rows of the global batch (axis 0)."""
        def local_batch(rng, step):
            batch = batch_fn(rng, step)  # the same global batch on every rank
            B = len(batch[0])
            if B % self.world:
                raise ValueError(f"the global batch of {B} sequences does not split evenly over "
                                 f"{self.world} processes; choose a batch size divisible by {self.world}")
            b = B // self.world
            return tuple(np.asarray(a)[self.rank * b:(self.rank + 1) * b] for a in batch)
        return local_batch

    def wrap(self, step_fn: Callable) -> Callable:
        """``step_fn`` followed by the all-reduce: every rank ends the step holding the
        gradient of the mean loss over the global batch; returns (global mean loss, N)."""
        def step(model, batch, crit):
            loss, n = step_fn(model, batch, crit)
            return self.all_reduce_gradients(model.parameters(), loss, n)
        return step

    def all_reduce_gradients(self, params, loss: float, n_tokens: int) -> tuple[float, int]:
        """In place: p.grad ← Σ_r n_r·grad_r / N over the ranks; returns (Σ n_r·loss_r / N, N)."""
        size = sum(p.grad.size for p in params)
        dtype = params[0].grad.dtype
        if self._bucket is None or self._bucket.size != size + 2 or self._bucket.dtype != dtype:
            self._bucket = np.empty(size + 2, dtype=dtype)  # allocated once, reused every step
        flat, o = self._bucket, 0
        for p in params:  # n_r · g_r into one flat bucket
            np.multiply(p.grad.reshape(-1), n_tokens, out=flat[o:o + p.grad.size])
            o += p.grad.size
        flat[-2], flat[-1] = loss * n_tokens, n_tokens
        self._dist.all_reduce(self._torch.from_numpy(flat))  # sum over the ranks, zero-copy
        N = flat[-1]
        o = 0
        for p in params:
            np.divide(flat[o:o + p.grad.size], N, out=p.grad.reshape(-1))
            o += p.grad.size
        return float(flat[-2] / N), int(N)

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()
