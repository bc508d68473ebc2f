"""Training: the spine every run shares (``spine``: ``RunConfig``, ``run``), one config and one
entry point per kind of run — toy tasks (``recipes``), the GPT (``lm``), translation
(``translation``), the PyTorch twin (``torch_run``) — the one loop (``trainer``),
optimizers and clipping (``optim``), learning-rate schedules (``schedules``), checkpoints
(``checkpoint``), run directories (``rundir``) and the progress display (``progress``).

    from scratchformer.training import TaskTrainConfig, train_task
    result = train_task(TaskTrainConfig(task="reverse", out="runs/reverse"))

Importing this package imports NumPy and the standard library only.
"""

from .lm import GPTTrainConfig, train_gpt
from .recipes import TaskTrainConfig, train_task
from .spine import RunConfig, RunResult
from .torch_run import TorchTrainConfig, train_torch
from .trainer import TrainConfig, Trainer, TrainingDiverged, TrainingInterrupted
from .translation import TranslationTrainConfig, train_translation

__all__ = ["RunConfig", "RunResult", "TaskTrainConfig", "train_task", "GPTTrainConfig",
           "train_gpt", "TranslationTrainConfig", "train_translation", "TorchTrainConfig",
           "train_torch", "TrainConfig", "Trainer", "TrainingDiverged", "TrainingInterrupted"]
