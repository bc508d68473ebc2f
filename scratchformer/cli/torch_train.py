"""``scratchformer torch-train``: train the PyTorch twin (``scratchformer.torch_port.train``).

Importing this module does not import torch (the trainer is imported when the command
runs), so ``scratchformer --help`` works without torch installed. Under torchrun the same
command runs in every process: ``torchrun --nproc_per_node=4 -m scratchformer torch-train ...``.
"""

from __future__ import annotations

import argparse

from ..data.tasks import TASKS
from .common import (CLIError, describe, non_negative_float, non_negative_int, path_arg,
                     positive_float, positive_int, probability, threads, user_errors)


def _out_path(text: str) -> str:
    """--out: a path, or '' for no checkpoint."""
    return text if text == "" else path_arg(text)

HELP = "train the PyTorch twin (autograd, CUDA, torchrun/DDP); saves a NumPy .safetensors checkpoint"

EPILOG = """\
examples:
  scratchformer torch-train --task reverse --device cpu --steps 2000
  scratchformer torch-train --corpus tiny --device cuda --d-model 256 --layers 6 --steps 5000
  torchrun --nproc_per_node=4 -m scratchformer torch-train --task dates --device cuda
(--batch-size is the global batch, split over the processes; only rank 0 logs and saves)
"""

def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The torch-train options."""
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", choices=tuple(TASKS), help="a toy seq2seq task (encoder–decoder)")
    what.add_argument("--corpus", type=path_arg, help="char-level GPT corpus: 'tiny', 'all' (Shakespeare) or a text file")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cpu (DDP backend gloo) or cuda (nccl; rank r uses GPU LOCAL_RANK)")
    p.add_argument("--steps", type=positive_int, default=2000, help="optimizer updates")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="GLOBAL batch (sequences per step over all ranks); divisible by the world size")
    p.add_argument("--block-size", type=positive_int, default=128, help="GPT: characters per training sequence")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=non_negative_float, default=None, help="final learning rate [lr/10]")
    p.add_argument("--warmup", type=non_negative_int, default=100, help="linear warm-up steps")
    p.add_argument("--clip", type=non_negative_float, default=1.0, help="max global grad norm (0: no clipping)")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.01)
    p.add_argument("--d-model", type=positive_int, default=64)
    p.add_argument("--n-heads", type=positive_int, default=4)
    p.add_argument("--d-ff", type=positive_int, default=256)
    p.add_argument("--layers", type=positive_int, default=2, help="encoder and decoder layers (GPT: blocks)")
    p.add_argument("--dropout", type=probability, default=0.0)
    p.add_argument("--activation", default="gelu", choices=("gelu", "relu"))
    p.add_argument("--norm-first", action=argparse.BooleanOptionalAction, default=None,
                   help="pre-LN (default: post-LN for tasks, pre-LN for GPT)")
    p.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, default=None,
                   help="tie embeddings and output layer (default: off for tasks, on for GPT)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="weights (via the NumPy init) and data")
    p.add_argument("--out", default=None, type=_out_path,
                   help="checkpoint path [runs/torch-<task|gpt>.safetensors]; '' to skip. An existing "
                        "file is refused unless --force")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--log-every", type=positive_int, default=100)
    p.add_argument("--eval-size", type=non_negative_int, default=200, help="held-out examples / val batches at the end")
    p.add_argument("--threads", type=threads, default=None,
                   help="torch CPU threads per process [cores / local processes]")
    p.add_argument("--quiet", action="store_true", help="no per-step log lines")
    return p


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``torch-train`` to the main parser's subcommands; returns its parser."""
    p = subparsers.add_parser("torch-train", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Entry point of ``scratchformer torch-train``: train, return an exit status."""
    try:
        from ..torch_port.train import run as train_run
    except ImportError as e:
        raise CLIError(f"torch-train needs PyTorch: pip install torch==2.13.0 ({e})") from None
    from ..training.trainer import TrainingDiverged

    try:
        return train_run(args)
    except TrainingDiverged as e:  # as 'train': exit status 1, nothing saved
        import sys

        print(f"scratchformer: error: {e}", file=sys.stderr)
        return 1
    except user_errors() as e:
        raise CLIError(describe(e)) from None
