"""Data-parallel training of the NumPy models on ``torch.distributed`` (gloo), launched by
``torchrun`` — the same ``Trainer``, one process per core or per machine.

    torchrun --nproc_per_node 2 my_training_script.py      # or --nnodes N for several machines

    dp = DataParallel()                                   # reads torchrun's RANK, WORLD_SIZE, ...
    trainer = Trainer(model, dp.shard(batch_fn), config, step_fn=dp.wrap(step_fn),
                      out_dir=out if dp.is_main else None, progress=dp.is_main)

One step, with W processes ("ranks") and n_r the non-ignored target tokens of rank r:

    batch       every rank draws the same *global* batch (same seed), keeps rows
                r·b .. (r+1)·b (b = B / W; a batch of any size B, such as translate-train's
                batches by length, is first padded to a multiple of W with rows whose
                targets are all ignored: see ``shard``)
    backward    rank r: g_r = ∇ (mean loss over its n_r tokens)       (the usual step_fn)
    all-reduce  one flat bucket [n_r·g_r …, n_r·loss_r, n_r], summed over the ranks
                (zero-copy: torch.from_numpy views the NumPy buffer)
    gradient    g = Σ_r n_r·g_r / N,   N = Σ_r n_r   — the gradient of the mean loss over the
                whole global batch, exactly as one process would compute it
    update      clip, optimizer step: the same numbers on every rank, so the replicas stay
                bit-identical without ever sending weights
    dropout     rank r draws its masks from its own stream: the model's generators jumped
                r·2¹²⁷ draws ahead before its first step (``split_streams``). Rank 0's
                stream is the one checkpoints store; a resumed rank r jumps again from it
                and lands exactly where it would have been.

Only this module imports torch, and only when a ``DataParallel`` is made; the rest of
ScratchFormer never needs it.
"""

from __future__ import annotations

import atexit
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
            # destroyed before the interpreter tears down: a process group left to the C++
            # destructors at exit can abort ("terminate called without an active exception",
            # seen on a rank that finished while rank 0 was still scoring)
            atexit.register(self.close)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self._bucket: np.ndarray | None = None
        self._split: set[int] = set()  # ids of the models whose dropout streams are split

    def shard(self, batch_fn: Callable, ignore_index: int | None = None) -> Callable:
        """``batch_fn`` whose arrays keep this rank's rows of the global batch (axis 0).

        A global batch whose B rows do not split evenly over the processes is an error,
        unless ``ignore_index`` (the criterion's) is given: then ``pad_rows`` first adds
        the W - B mod W rows it lacks, rows whose targets (the batch's last array) are all
        ``ignore_index``. They add nothing to the loss or the gradient, and every rank
        keeps the same shapes, so the dropout draws stay in step on every rank."""
        def local_batch(rng, step):
            batch = batch_fn(rng, step)  # the same global batch on every rank
            B = len(batch[0])
            missing = -B % self.world
            if missing and ignore_index is None:
                raise ValueError(f"the global batch of {B} sequences does not split evenly over "
                                 f"{self.world} processes; choose a batch size divisible by {self.world}")
            if missing:
                batch = pad_rows(batch, missing, ignore_index)
            b = (B + missing) // self.world
            return tuple(np.asarray(a)[self.rank * b:(self.rank + 1) * b] for a in batch)
        return local_batch

    def wrap(self, step_fn: Callable) -> Callable:
        """``step_fn`` followed by the all-reduce: every rank ends the step holding the
        gradient of the mean loss over the global batch; returns (global mean loss, N).

        A rank whose rows are all padding (a global batch with fewer rows than processes)
        still runs the forward and backward, against a zero loss, so that its dropout
        draws stay in step, and contributes n_r = 0."""
        def step(model, batch, crit):
            if id(model) not in self._split:  # first step (of a fresh or a resumed run)
                split_streams(model, self.rank)
                self._split.add(id(model))
            ignore = getattr(crit, "ignore_index", None)
            if ignore is not None and not np.any(np.asarray(batch[-1]) != ignore):
                step_fn(model, batch, _ZeroLoss())
                params = model.parameters()
                for p in params:
                    p.grad.fill(0)
                return self.all_reduce_gradients(params, 0.0, 0)
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


def split_streams(model, rank: int) -> None:
    """Jump every random generator of ``model`` (dropout's) ``rank``·2¹²⁷ draws ahead.

    Without it every rank would draw the same dropout masks on its rows (same seed, same
    shapes): two halves of the global batch dropped alike. The streams never overlap,
    and since a jump commutes with drawing, jumping rank 0's state at any step gives the
    state rank r has at that step: resuming from rank 0's checkpoint stays exact."""
    from .trainer import model_generators

    if rank:
        for g in model_generators(model):
            g.bit_generator.state = jumped_state(g.bit_generator.state, rank)


def jumped_state(state: dict, n: int) -> dict:
    """A PCG64 ``state`` jumped ``n``·2¹²⁷ draws ahead, its buffered half-draw included.

    ``random(dtype=float32)`` draws 32 bits at a time and keeps the other half of a 64-bit
    output (``uinteger``) for the next call; ``PCG64.jumped`` drops it. Here it is
    recomputed at the new position (the high half of the output just before it), so that
    jumping commutes with drawing exactly."""
    bg = np.random.PCG64()
    bg.state = state
    bg = bg.jumped(n)
    out = bg.state
    if state["has_uint32"]:
        bg.advance(-1 % 2 ** 128)  # one output back, then draw it again
        out = {**out, "has_uint32": 1, "uinteger": int(bg.random_raw()) >> 32}
    return out


def pad_rows(batch, k: int, ignore_index: int) -> tuple:
    """``batch`` (arrays with rows on axis 0, the target last) with ``k`` more rows: copies
    of its last row whose target is all ``ignore_index`` — real inputs, so the forward stays
    finite, and nothing to learn from them."""
    out = tuple(np.concatenate([a, np.repeat(a[-1:], k, axis=0)])
                for a in map(np.asarray, batch))
    out[-1][-k:] = ignore_index
    return out


class _ZeroLoss:
    """The criterion for a rank holding only padding rows: loss 0, gradient 0."""

    ignore_index = None

    def __call__(self, logits, targets) -> float:
        self._grad = np.zeros_like(logits)
        return 0.0

    def backward(self) -> np.ndarray:
        return self._grad
