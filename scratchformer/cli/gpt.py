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
from .common import (CLIError, DefaultsFormatter, Formatter, Parser, add_model_flags,
                     add_optim_flags, add_run_flags, config_from_args, describe, flag, non_negative_float,
                     non_negative_int, path_arg, positive_int, run_command,
                     user_errors)


def register(subparsers) -> None:
    """Add ``gpt`` with its ``train``, ``sample`` and ``export-hf`` subcommands."""
    gpt = subparsers.add_parser(
        "gpt", help="GPT (decoder-only): train on Shakespeare or any text, fine-tune GPT-2, "
                    "sample, export",
        formatter_class=Formatter,
        description="Train a character-level GPT on Shakespeare (or any UTF-8 text), or "
                    "fine-tune real GPT-2 weights (--init-from), sample from either, and write "
                    "a run back as a Hugging Face GPT-2 folder.")
    sub = gpt.add_subparsers(dest="gpt_command", metavar="{train,sample,export-hf}",
                             parser_class=Parser)
    sub.required = True
    _add_train(sub)
    _add_sample(sub)
    _add_export(sub)


def _add_train(sub) -> None:
    from ..training.lm import GPTTrainConfig as C

    t = sub.add_parser("train", help="train a GPT on a corpus, with checkpoints and resume",
                       formatter_class=Formatter,
                       description="Random contiguous blocks of the corpus (first 90 percent train, "
                                   "last 10 percent validation), linear warm-up + cosine decay, "
                                   "gradient clipping. Defaults: nanoGPT's CPU quick-start model "
                                   "with the speedrun's recipe — Muon, 600 steps, a validation "
                                   "estimate every 50 steps, a stop at --target-loss (README: "
                                   "under half nanoGPT's wall time). nanoGPT's own recipe: "
                                   "--optimizer adamw --lr 1e-3 --warmup 100 --steps 2000 "
                                   "--eval-every 250 --target-loss 0. The library call behind it: "
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
    flag(t, C, "init_from", "fine-tune GPT-2 from a Hugging Face folder (config.json, "
                            "model.safetensors, tokenizer.json): its model and tokenizer",
         type=path_arg, metavar="DIR")
    flag(t, C, "block_size", "context length in tokens (characters) = the model's max_len; "
                             "with --init-from the training context", type=positive_int)
    g = add_model_flags(t, C)
    flag(g, C, "positions", "position encoding: a fixed sinusoidal table, or learned "
                            "(pos_embed.weight, as GPT-2)", choices=["sinusoidal", "learned"])
    g.add_argument("--scale-embeddings", dest="scale_embeddings", default=None,
                   action=argparse.BooleanOptionalAction,
                   help="multiply token embeddings by √d_model (default: on; GPT-2: off)")
    add_optim_flags(t, C, schedule=False)
    e = add_run_flags(t, C, "runs/gpt")
    flag(e, C, "eval_batches", "batches of each split per loss estimate, 0 = no estimate",
         type=non_negative_int)
    e.add_argument("--eval-train", dest="eval_train", default=None,
                   action=argparse.BooleanOptionalAction,
                   help="also estimate the training split's loss at each evaluation "
                        "(default: off: the training loss is logged every step anyway)")
    flag(e, C, "target_loss", "stop as soon as the validation loss estimate is at or below "
                              "this, 0 = never", type=non_negative_float,
         default_text="1.88 — nanoGPT's quick-start result — on --corpus tiny, never elsewhere")
    e.add_argument("--sample-tokens", type=non_negative_int, default=200,
                   help="characters sampled and printed at the end, 0 = none (default: 200)")
    t.set_defaults(func=train_command)


def _add_sample(sub) -> None:
    s = sub.add_parser("sample", help="generate text from a trained GPT checkpoint",
                       formatter_class=DefaultsFormatter)
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=path_arg, help="a checkpoint written by 'gpt train'")
    src.add_argument("--hf", type=path_arg, metavar="DIR",
                     help="a Hugging Face GPT-2 folder (config.json, model.safetensors, "
                          "tokenizer.json)")
    s.add_argument("--prompt", default="\n", help="text to continue (every character must be in the vocabulary)")
    s.add_argument("--tokens", type=non_negative_int, default=500, help="characters to generate")
    s.add_argument("--temperature", type=non_negative_float, default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=non_negative_int, default=40, help="sample among the k likeliest (0 = all)")
    s.add_argument("--seed", type=non_negative_int, default=None, help="sampling seed (default: the model's)")
    s.add_argument("--no-cache", action="store_true", help="recompute the context every step (slow)")
    s.set_defaults(func=sample_command)


def _add_export(sub) -> None:
    x = sub.add_parser("export-hf", help="write a trained GPT as a Hugging Face GPT-2 folder",
                       formatter_class=Formatter,
                       description="Write RUN/checkpoint.safetensors as DIR/config.json + "
                                   "DIR/model.safetensors (+ tokenizer.json for a run fine-tuned "
                                   "from GPT-2), which transformers.GPT2LMHeadModel."
                                   "from_pretrained(DIR) opens. Only a model GPT-2 can express "
                                   "(pre-LN, GELU, tied, learned positions, no √D scaling) is "
                                   "written; any other is refused naming the setting.",
                       epilog="example:\n  scratchformer gpt export-hf runs/gpt2-tuned gpt2-tuned")
    x.add_argument("run", metavar="RUN", type=path_arg, help="a run directory of 'gpt train'")
    x.add_argument("dir", metavar="DIR", type=path_arg, help="the folder to write")
    x.add_argument("--force", action="store_true", help="write into a DIR that holds files")
    x.set_defaults(func=export_command)


# ---- sample ---------------------------------------------------------------------------------
def sample_command(args) -> int:
    # one-token steps are tiny matmuls: a second thread only adds overhead (bench_gpt)
    with pool.threads(1):
        return _sample(args)


def _sample(args) -> int:
    import time

    from ..training.lm import load_gpt, sample_text
    from ..training.rundir import check_input_file

    try:
        if args.hf:
            from ..interop import load_hf_gpt2, load_hf_tokenizer

            model = load_hf_gpt2(args.hf)
            tok = load_hf_tokenizer(args.hf, model.config.vocab_size)
        else:
            model, tok = load_gpt(check_input_file(args.checkpoint, "checkpoint"))
        t0 = time.perf_counter()
        text = sample_text(model, tok, args.prompt, args.tokens, args.temperature, args.top_k,
                           args.seed, not args.no_cache)
        seconds = time.perf_counter() - t0
    except (*user_errors(), ImportError) as e:
        raise CLIError(describe(e)) from None
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    print(f"{args.tokens} tokens in {seconds:.1f} s ({args.tokens / max(seconds, 1e-9):.1f} "
          f"tokens/s)", file=sys.stderr)
    return 0


def _encodes(tokenizer, text: str) -> bool:
    try:
        return len(tokenizer.encode(text)) > 0
    except ValueError:
        return False


# ---- export-hf -----------------------------------------------------------------------------
def export_command(args) -> int:
    from ..interop import save_hf_gpt2
    from ..training.checkpoint import load
    from ..training.lm import GPT
    from ..training.rundir import check_input_file

    ckpt = os.path.join(args.run, "checkpoint.safetensors")
    if os.path.isdir(args.dir) and os.listdir(args.dir) and not args.force:
        raise CLIError(f"{args.dir} holds files: pass --force to write into it, or choose "
                       f"another DIR")
    try:
        model, _, state = load(check_input_file(ckpt, "checkpoint"))
        if not isinstance(model, GPT):
            raise CLIError(f"{ckpt} holds a {type(model).__name__}, not a GPT")
        save_hf_gpt2(model, args.dir)
    except user_errors() as e:
        raise CLIError(describe(e)) from None
    if "hf_tokenizer" in state:
        with open(os.path.join(args.dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(state["hf_tokenizer"])
    print(f"wrote {args.dir}/config.json and model.safetensors"
          f"{' and tokenizer.json' if 'hf_tokenizer' in state else ''}")
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
        prompt = "\n" if _encodes(tok, "\n") else tok.decode([0])  # a corpus may lack "\n"
        with pool.threads(1):
            print(sample_text(result.model, tok, prompt, args.sample_tokens, 0.8, 40, seed=0))
    return 0
