"""``scratchformer gpt train|sample``: the character-level GPT from the command line. The
library behind it is ``scratchformer.training.lm`` (``GPTTrainConfig``, ``train_gpt``,
``sample_text``).

    scratchformer gpt train --corpus tiny --out runs/gpt          # nanoGPT's CPU recipe
    scratchformer gpt train --out runs/gpt --resume --steps 4000  # continue it
    scratchformer gpt sample --checkpoint runs/gpt/checkpoint.safetensors --prompt "ROMEO:" \\
        --tokens 500 --temperature 0.8 --top-k 40

``register(subparsers)`` adds the ``gpt`` command; the model and the training code load
when a subcommand runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..kernels import pool
from .common import (CLIError, Formatter, Parser, add_model_flags, add_optim_flags,
                     add_run_flags, config_from_args, describe, flag, non_negative_float,
                     non_negative_int, path_arg, positive_float, positive_int, run_command,
                     user_errors)


class SampleFormatter(argparse.ArgumentDefaultsHelpFormatter, Formatter):
    """``gpt sample``'s flags have plain argparse defaults: show them once."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def register(subparsers) -> None:
    """Add ``gpt`` with its ``train`` and ``sample`` subcommands to ``subparsers``."""
    from ..training.lm import GPTTrainConfig as C

    gpt = subparsers.add_parser(
        "gpt", help="character-level GPT (decoder-only) on Shakespeare: train, sample",
        formatter_class=Formatter,
        description="Train a character-level GPT on Shakespeare (or any UTF-8 text) and sample from it.")
    sub = gpt.add_subparsers(dest="gpt_command", metavar="{train,sample}", parser_class=Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a GPT on a corpus, with checkpoints and resume",
                       formatter_class=Formatter,
                       description="Random contiguous blocks of the corpus (first 90 percent train, "
                                   "last 10 percent validation), AdamW, linear warm-up + cosine "
                                   "decay, gradient clipping. Defaults: nanoGPT's CPU quick-start "
                                   "recipe. The library call behind it: "
                                   "scratchformer.training.train_gpt(GPTTrainConfig(...)). Under "
                                   "torchrun (torchrun --standalone --nproc_per_node N -m "
                                   "scratchformer gpt train ...) it trains data-parallel; process "
                                   "0 alone writes OUT.",
                       epilog="examples:\n  scratchformer gpt train --corpus tiny --out runs/gpt\n"
                              "  scratchformer gpt train --out runs/gpt --resume --steps 4000\n"
                              "  scratchformer gpt train --corpus my.txt --block-size 128 "
                              "--target-loss 1.5 --out runs/mine")
    flag(t, C, "corpus", "'tiny' (9 plays, ~1.1M chars), 'all' (38 plays) or the path of a "
                         "UTF-8 text file", type=path_arg)
    flag(t, C, "block_size", "context length in characters = the model's max_len",
         type=positive_int)
    add_model_flags(t, C)
    add_optim_flags(t, C, schedule=False)
    e = add_run_flags(t, C, "runs/gpt")
    flag(e, C, "eval_batches", "batches of each split per loss estimate, 0 = no estimate",
         type=non_negative_int)
    flag(e, C, "target_loss", "stop as soon as the validation loss estimate is at or below "
                              "this", type=positive_float)
    e.add_argument("--sample-tokens", type=non_negative_int, default=200,
                   help="characters sampled and printed at the end, 0 = none (default: 200)")
    t.set_defaults(func=train_command)

    s = sub.add_parser("sample", help="generate text from a trained GPT checkpoint",
                       formatter_class=SampleFormatter)
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
    # one-token steps are tiny matmuls: a second thread only adds overhead (bench_gpt)
    with pool.threads(1):
        return _sample(args)


def _sample(args) -> int:
    from ..training.lm import load_gpt, sample_text
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
    from ..training.lm import GPTTrainConfig, sample_text, train_gpt

    cfg = config_from_args(GPTTrainConfig, args)
    result = run_command(train_gpt, cfg)
    if isinstance(result, int):
        return result
    if result.rank:  # a data-parallel helper rank: rank 0 reports
        return 0
    reached = result.extras["reached"]
    if reached is not None:
        print(f"reached val loss {reached['val_loss']:.4f} <= {cfg.target_loss:g} at step "
              f"{reached['step']} after {reached['time_s']:.1f} s")
    elif cfg.target_loss is not None:
        print(f"did not reach val loss {cfg.target_loss:g} in {result.step} steps")
    print(f"{result.model.num_parameters():,} parameters; {result.step} steps in "
          f"{result.train_time_s:.1f} s ({1000 * result.train_time_s / max(result.step, 1):.0f} "
          f"ms/step incl. evaluation); wall {result.wall_s:.1f} s")
    print(f"val loss (whole split) {result.extras['val_loss']:.4f}")
    print(f"checkpoint: {os.path.join(result.out, 'checkpoint.safetensors')}")
    if args.sample_tokens:
        print("-" * 40)
        tok = result.extras["tokenizer"]
        prompt = "\n" if "\n" in tok.stoi else tok.chars[0]  # a corpus may have no newline
        with pool.threads(1):
            print(sample_text(result.model, tok, prompt, args.sample_tokens, 0.8, 40, seed=0))
    return 0
