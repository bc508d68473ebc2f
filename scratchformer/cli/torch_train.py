"""``scratchformer torch-train``: train the PyTorch twin (``scratchformer.training.torch_run``:
``TorchTrainConfig``, ``train_torch``; the loop is ``scratchformer.torch_port.train``).

Importing this module does not import torch (the trainer is imported when the command
runs), so ``scratchformer --help`` works without torch installed. Under torchrun the same
command runs in every process: ``torchrun --nproc_per_node=4 -m scratchformer torch-train ...``.
"""

from __future__ import annotations

from ..data.tasks import TASKS
from .common import (Formatter, add_model_flags, add_optim_flags, add_run_flags,
                     config_from_args, flag, non_negative_int, path_arg, run_command)

HELP = "train the PyTorch twin (autograd, CUDA, torchrun/DDP) into a NumPy-readable run"

EPILOG = """\
examples:
  scratchformer torch-train --task reverse --device cpu --steps 2000 --out runs/torch-reverse
  scratchformer torch-train --corpus tiny --device cuda --d-model 256 --n-layers 6 --steps 5000
  scratchformer torch-train --out runs/torch-reverse --resume --steps 4000
  torchrun --nproc_per_node=4 -m scratchformer torch-train --task dates --device cuda
(--batch-size is the global batch, split over the processes; only rank 0 logs and saves)
"""


def register(subparsers):
    """Add ``torch-train`` to the main parser's subcommands; returns its parser."""
    from ..training.torch_run import TorchTrainConfig as C

    p = subparsers.add_parser("torch-train", help=HELP, epilog=EPILOG, formatter_class=Formatter,
                              description=HELP + ". The library call behind it: "
                              "scratchformer.training.train_torch(TorchTrainConfig(...)).")
    what = p.add_argument_group("what to train (one of --task, --corpus; not with --resume)")
    flag(what, C, "task", "a toy seq2seq task (encoder–decoder)", choices=tuple(TASKS))
    flag(what, C, "corpus", "char-level GPT corpus: 'tiny', 'all' (Shakespeare) or a text file",
         type=path_arg)
    flag(what, C, "device", "cpu (DDP backend gloo) or cuda (nccl; rank r uses GPU "
                            "LOCAL_RANK)", choices=("cpu", "cuda"))
    flag(what, C, "block_size", "GPT: characters per training sequence", type=non_negative_int)
    add_model_flags(p, C)
    add_optim_flags(p, C, schedule=False, optimizer=False)
    e = add_run_flags(p, C, "runs/torch", evaluation=False)
    flag(e, C, "eval_size", "held-out examples (task) / validation windows (GPT) scored at "
                            "the end", type=non_negative_int)
    for action in p._actions:
        if action.dest == "threads":
            action.help = "torch CPU threads per process (default: cores / local processes)"
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Entry point of ``scratchformer torch-train``: train, return an exit status."""
    from ..training.torch_run import TorchTrainConfig, train_torch

    result = run_command(train_torch, config_from_args(TorchTrainConfig, args))
    if isinstance(result, int):
        return result
    if result.out and not result.rank:
        print(f"checkpoint: {result.out}/checkpoint.safetensors")
    return 0
