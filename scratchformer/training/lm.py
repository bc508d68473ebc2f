"""The glue that trains the character-level GPT with the project's one loop (``Trainer``).

- ``corpus_ids(corpus)``: the tokenizer and the whole text as compact ids (uint8 when the
  vocabulary fits, else uint16/uint32), read in chunks: a 200 MB file takes ~200 MB;
- ``random_blocks(data, block, batch)``: the batches, random contiguous blocks of the text;
- ``LMEvaluator`` (train/val loss on fixed blocks) and ``full_loss`` (a whole split);
- ``train_gpt(corpus, out_dir, ...)``: data, model, AdamW + warm-up/cosine, checkpoints, resume;
- ``load_gpt(path)`` and ``sample_text(...)``: a trained model and its tokenizer, and text.

    out = train_gpt("tiny", "runs/gpt", steps=2000)          # nanoGPT's CPU recipe
    print(sample_text(out["model"], out["tokenizer"], "ROMEO:", 200))

Notation: B batch, T block (context length), V vocabulary (characters).
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..core.loss import CrossEntropyLoss
from ..data.chartok import CharTokenizer
from ..data.shakespeare import iter_corpus_file, load_corpus
from ..models.gpt import GPT, GPTConfig
from ..models.sizes import check_batch_fits
from .checkpoint import load
from .rundir import check_input_file, open_run
from .trainer import TrainConfig, Trainer, lm_step, trainer_state


def compact_dtype(vocab_size: int):
    """The smallest unsigned integer dtype that holds ids 0 .. vocab_size - 1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocabulary of {vocab_size} characters is too large")


def corpus_ids(corpus="tiny", text: str | None = None, tokenizer: CharTokenizer | None = None,
               chunk_chars: int = 1 << 22):
    """``(tokenizer, ids)``: the corpus (``load_corpus`` names, a file path, or ``text``)
    as one 1-D array of ids in ``compact_dtype(V)``.

    A file is read twice in chunks of ``chunk_chars`` characters (first its character
    set, then the ids), so the peak memory is the ids (1 byte a character for V <= 256)
    plus one chunk, never the text as a str plus int64 ids. ``tokenizer``: encode with
    this one (e.g. a checkpoint's) after checking the corpus has exactly its characters.
    """
    if text is not None or str(corpus) in ("tiny", "all"):
        text = load_corpus(corpus) if text is None else text
        chunks = lambda: (text,)  # noqa: E731
    else:
        path = os.fspath(corpus)
        chunks = lambda: iter_corpus_file(path, chunk_chars)  # noqa: E731
    chars, n = set(), 0
    for chunk in chunks():
        chars.update(chunk)
        n += len(chunk)
    if n == 0:
        raise ValueError("the corpus is empty")
    found = CharTokenizer(sorted(chars))
    if tokenizer is not None and tokenizer != found:
        raise ValueError(f"the corpus {corpus!r} has a different character set than the "
                         f"checkpoint's tokenizer ({found.vocab_size} vs {tokenizer.vocab_size} "
                         f"characters)")
    tokenizer = tokenizer or found
    ids = np.empty(n, dtype=compact_dtype(tokenizer.vocab_size))
    pos = 0
    for chunk in chunks():
        ids[pos:pos + len(chunk)] = tokenizer.encode(chunk)
        pos += len(chunk)
    return tokenizer, ids


def split_ids(ids, train_fraction: float = 0.9):
    """(train, val) views of ``ids``: the first ``train_fraction`` and the rest (no copy),
    as ``train_val_split`` cuts the text."""
    n = int(len(ids) * train_fraction)
    if n == 0 or n == len(ids):
        raise ValueError(f"text of {len(ids)} characters is too short to split at "
                         f"train_fraction={train_fraction}")
    return ids[:n], ids[n:]


def load_gpt(path):
    """(GPT, CharTokenizer) from a checkpoint written by ``gpt train``."""

    model, _, state = load(path)
    if not isinstance(model, GPT):
        raise ValueError(f"{path} holds a {type(model).__name__}, expected a GPT checkpoint")
    if "tokenizer" not in state:
        raise ValueError(f"{path} has no 'tokenizer' in its state: not written by 'gpt train'")
    return model, CharTokenizer.from_json(state["tokenizer"])


def sample_text(model, tokenizer, prompt: str, tokens: int, temperature: float = 0.8,
                top_k: int | None = 40, seed: int | None = None, use_cache: bool = True) -> str:
    """The prompt followed by ``tokens`` generated characters."""
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


def random_blocks(data, block: int, batch: int):
    """``batch_fn(rng, step) -> (x, y)`` for ``Trainer``: ``batch`` random
    contiguous blocks of ``data`` (1-D token ids), x (B, T) and y = x shifted by one (B, T).
    ``data`` may be a compact dtype (uint8/uint16): only the batch is cast to int64."""
    data = np.asarray(data)
    n_starts = len(data) - block  # a start i needs tokens i .. i + block (inclusive)
    if n_starts < 1:
        raise ValueError(f"text of {len(data)} tokens is too short for block {block} "
                         f"(needs at least {block + 1})")
    offsets = np.arange(block)

    def batch_fn(rng, step):
        ix = rng.integers(0, n_starts, batch)[:, None] + offsets  # (B, T) positions
        return data[ix].astype(np.int64), data[ix + 1].astype(np.int64)

    return batch_fn


class LMEvaluator:
    """``evaluator(model) -> {"train_loss", "val_loss"}``: mean cross-entropy (nats per
    character) on fixed random blocks of each split, drawn once from ``seed`` so every
    evaluation scores the same text. ``full_loss`` scores a whole split instead."""

    def __init__(self, splits: dict, block: int, batch_size: int = 12, n_batches: int = 20,
                 seed: int = 1234):
        rng = np.random.default_rng(seed)
        self.batches = {name: [random_blocks(data, block, batch_size)(rng, 0) for _ in range(n_batches)]
                        for name, data in splits.items()}

    def __call__(self, model) -> dict:
        crit = CrossEntropyLoss()
        with model.eval_mode():
            return {f"{name}_loss": float(sum(crit(model(x), y) for x, y in batches) / len(batches))
                    for name, batches in self.batches.items()}


def full_loss(model, data, block: int, batch_size: int = 64) -> float:
    """Mean next-character cross-entropy over ``data`` cut into consecutive non-overlapping
    blocks (each block's context starts at its first character): the whole split, no sampling."""
    data = np.asarray(data)
    n = (len(data) - 1) // block
    if n < 1:
        raise ValueError(f"text of {len(data)} tokens is shorter than one block of {block} + 1")
    x_all = data[: n * block].reshape(n, block)  # (n, T)
    y_all = data[1: n * block + 1].reshape(n, block)
    crit, total = CrossEntropyLoss(), 0.0
    with model.eval_mode():
        for i in range(0, n, batch_size):
            x = x_all[i:i + batch_size].astype(np.int64)  # (b, T): the split stays compact
            y = y_all[i:i + batch_size].astype(np.int64)
            total += crit(model(x), y) * x.size
    return total / x_all.size


def train_gpt(corpus: str = "tiny", out_dir=None, *, n_layers: int = 4, n_heads: int = 4,
              d_model: int = 128, d_ff: int | None = None, block: int = 64, dropout: float = 0.0,
              tie_embeddings: bool = True, seed: int = 0, steps: int | None = None, batch: int = 12,
              lr: float = 1e-3, min_lr: float = 1e-4, warmup: int = 100, beta2: float = 0.99,
              weight_decay: float = 0.1, clip: float = 1.0, eval_every: int = 250,
              eval_batches: int = 20, checkpoint_every: int = 500, resume: bool = False,
              until: int | None = None, progress=True, threads: int | None = None,
              text: str | None = None, force: bool = False, parallel=None) -> dict:
    """Train a character-level GPT with ``Trainer`` (the project's one loop).

    Data: ``load_corpus(corpus)`` (or ``text``), a CharTokenizer over all of it, the first
    90% for training and the last 10% for validation; each step draws ``batch`` random
    contiguous blocks of ``block`` + 1 characters. AdamW (β = (0.9, beta2), eps 1e-8),
    linear warm-up then cosine from ``lr`` to ``min_lr`` at ``steps``, clipping at ``clip``.
    The defaults are nanoGPT's CPU recipe. Checkpoints (``out_dir/checkpoint.safetensors``) hold the
    tokenizer as JSON (``state["tokenizer"]``); ``resume`` continues one bit for bit (with
    the checkpoint's model and training configuration; the size arguments are ignored).
    ``steps``: the run's total length (default 2000; on resume the checkpoint's, and a
    given ``steps`` extends it up to that many in all, stretching the cosine decay).
    ``until``: stop after that many steps (the schedule still spans ``steps``).

    With an ``out_dir`` the run holds its lock (``rundir.open_run``) for the whole call: a
    new run refuses a directory holding another run unless ``force``, the directory is
    checked writable before any work, and a second trainer on it is refused.

    ``parallel``: a ``training.distributed.DataParallel`` (under torchrun) — every process
    trains on its share of each global batch of ``batch`` blocks; only rank 0 holds the run
    directory, writes checkpoints and metrics and shows progress.

    Returns {"model", "tokenizer", "result" (TrainResult), "val_loss" (whole validation
    split; None on a helper rank, which evaluates nothing), "wall_s" (the whole call, data
    loading and final evaluation included), "rank"}.
    """
    t0 = time.perf_counter()
    if parallel is not None and not parallel.is_main:  # reads the run, never writes it
        return _train_gpt(**locals())
    if out_dir is None:
        if resume:
            raise ValueError("resume needs an out_dir holding checkpoint.safetensors")
        return _train_gpt(**locals())
    with open_run(out_dir, resume=resume, force=force):
        return _train_gpt(**locals())


def _train_gpt(*, corpus, out_dir, n_layers, n_heads, d_model, d_ff, block, dropout,
               tie_embeddings, seed, steps, batch, lr, min_lr, warmup, beta2, weight_decay, clip,
               eval_every, eval_batches, checkpoint_every, resume, until, progress, threads,
               text, force, parallel, t0) -> dict:
    ckpt = None if out_dir is None else os.path.join(os.fspath(out_dir), "checkpoint.safetensors")
    if resume:
        if not os.path.lexists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        model, _, state = load(check_input_file(ckpt, "checkpoint"))
        if "tokenizer" not in state or "block" not in state:
            raise ValueError(f"{ckpt}: not a 'gpt train' checkpoint (no tokenizer/block stored)")
        tokenizer = CharTokenizer.from_json(state["tokenizer"])
        ts = trainer_state(state, ckpt)
        cfg = dict(ts["train_config"])
        if steps is not None:  # --resume --steps N: up to N steps in all, as in 'train'
            if steps < int(ts["step"]):
                raise ValueError(f"--steps {steps} is before the checkpoint's step {ts['step']}: "
                                 f"with --resume, --steps N means 'up to N steps in all'")
            cfg["steps"] = steps
        tcfg = TrainConfig.from_dict(cfg)
        block = int(state["block"])
        tokenizer, ids = corpus_ids(corpus, text, tokenizer)
    else:
        tokenizer, ids = corpus_ids(corpus, text)
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, d_model=d_model, n_heads=n_heads,
                              d_ff=d_ff or 4 * d_model, n_layers=n_layers, max_len=block,
                              dropout=dropout, tie_embeddings=tie_embeddings, seed=seed))
        tcfg = TrainConfig(steps=2000 if steps is None else steps, batch_size=batch, lr=lr,
                           warmup=warmup, schedule="cosine",
                           min_lr_ratio=min_lr / lr, optimizer="adamw", betas=(0.9, beta2),
                           eps=1e-8, weight_decay=weight_decay, clip_norm=clip, seed=seed,
                           eval_every=eval_every, checkpoint_every=checkpoint_every, log_every=10)
    check_batch_fits(model.config, tcfg.batch_size, block)  # before any work: fail early
    train_ids, val_ids = split_ids(ids)  # views: the text is held once, compactly
    for name, part in (("training", train_ids), ("validation", val_ids)):
        if len(part) < block + 1:
            raise ValueError(f"the {name} split has {len(part)} characters, too few for "
                             f"--block {block} (needs at least {block + 1})")
    # a data-parallel helper rank trains only: no decision depends on its evaluation
    main = parallel is None or parallel.is_main
    evaluator = LMEvaluator({"train": train_ids, "val": val_ids}, block, tcfg.batch_size,
                            eval_batches) if eval_batches and main else None
    batch_fn, step_fn = random_blocks(train_ids, block, tcfg.batch_size), None
    if parallel is not None:
        batch_fn, step_fn = parallel.shard(batch_fn), parallel.wrap(lm_step)
    trainer = Trainer(model, batch_fn, tcfg, step_fn=step_fn, evaluate=evaluator,
                      out_dir=out_dir if main else None, progress=progress if main else False,
                      extra_state={"tokenizer": tokenizer.to_json(), "block": block,
                                   "corpus": str(corpus)},
                      threads=threads)
    if resume:
        trainer.resume(ckpt)
    result = trainer.fit(until)
    val = full_loss(model, val_ids, block) if main else None
    return {"model": model, "tokenizer": tokenizer, "result": result, "val_loss": val,
            "wall_s": time.perf_counter() - t0, "rank": 0 if parallel is None else parallel.rank}
