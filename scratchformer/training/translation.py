"""The translation run: ``TranslationTrainConfig`` and ``train_translation``, what
``scratchformer translate-train`` runs.

    result = train_translation(TranslationTrainConfig(corpus="bible-en-es", out="runs/translate"))
    result = train_translation(TranslationTrainConfig(pairs="my.tsv", steps=600, out="runs/mine"))
    result.extras["test"]        # BLEU / chrF on the test split, greedy and beam, and baselines

Data: the KJV → Reina-Valera 1909 Bible split by book (``corpus="bible-en-es"``), or your
own ``source<TAB>target`` file (``pairs``, split ``val_frac`` / ``test_frac`` at random by
``seed``); ``reverse`` translates target → source. A joint BPE vocabulary of ``vocab_size``
symbols learned on the training split; training pairs longer than ``max_len`` tokens are
dropped; batches of similar length hold at most ``max_tokens`` padded tokens
(B · max(S, T) ≤ max_tokens — a token budget, so B varies with the length). A pre-LN
encoder–decoder with one tied embedding; Adam, warm-up + cosine, label smoothing.
Every ``eval_every`` steps: validation loss and greedy BLEU/chrF on ``eval_decode`` pairs;
at the end: the test split with each beam of ``test_beams`` (``()``: skip) next to the copy
and word-dictionary baselines, written to ``OUT/results.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

from ..core.checks import check_int, check_real
from ..models.transformer import Transformer, TransformerConfig
from .spine import Kind, RunConfig, RunResult, require, run, run_dir
from .trainer import Trainer, seq2seq_step

CORPORA = ("bible-en-es",)
BIBLE_STEPS = 4000  # the documented recipe (docs/translation.md)


@dataclass(kw_only=True)
class TranslationTrainConfig(RunConfig):
    """A translation run (see the module docstring). ``steps=None``: the Bible recipe's
    4,000 steps for ``corpus``; for ``pairs``, 30 passes over the training pairs, within
    [100, 4000] (a 90-pair file does not need the Bible's recipe). The defaults are the
    recipe measured in docs/translation.md: a small model without dropout, small batches,
    many steps, the learning rate cosine-decayed to 0."""

    corpus: str | None = None
    pairs: str | None = None
    reverse: bool = False
    val_frac: float = 0.05
    test_frac: float = 0.05
    vocab_size: int = 4000
    max_len: int = 64
    max_tokens: int = 1024
    eval_decode: int = 100
    test_beams: tuple = (1, 5)
    test_limit: int | None = None
    d_model: int = 192
    n_heads: int = 4
    d_ff: int | None = 768
    n_layers: int = 2
    n_encoder_layers: int | None = None
    n_decoder_layers: int | None = None
    dropout: float = 0.0
    tie_embeddings: bool = True
    steps: int | None = None
    lr: float = 3e-3
    warmup: int = 200
    min_lr_ratio: float = 0.0
    label_smoothing: float = 0.1
    eval_every: int = 2000
    checkpoint_every: int = 1000

    RESUMABLE = (*RunConfig.RESUMABLE, "test_beams", "test_limit")

    def __post_init__(self):
        self._chosen = self.given()
        if (self.corpus is None) == (self.pairs is None) and not (
                self.resume and self.corpus is None):  # resumed: the checkpoint's data
            raise ValueError("give one of corpus='bible-en-es' or pairs=FILE (a "
                             "source<TAB>target file), not both and not neither")
        if self.corpus is not None and self.corpus not in CORPORA:
            raise ValueError(f"corpus must be one of {', '.join(CORPORA)}, got {self.corpus!r}")
        self.test_beams = tuple(check_int("test_beams", b, 1) for b in self.test_beams)
        if self.steps is None and self.corpus is not None:
            self.steps = BIBLE_STEPS
        elif self.steps is None:
            self.steps = 1  # a placeholder until the pairs are counted (``steps_for``)
            self._steps_from_data = True
        super().__post_init__()
        for name in ("vocab_size", "max_len", "max_tokens"):
            check_int(name, getattr(self, name), 1)
        check_int("eval_decode", self.eval_decode, 0)
        for name in ("val_frac", "test_frac"):
            check_real(name, getattr(self, name), 0.0, 1.0, high_open=True)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["test_beams"] = list(self.test_beams)
        if self.pairs is not None:
            d["pairs"] = os.path.abspath(self.pairs)
        return d

    def model_config(self, vocab_size: int) -> TransformerConfig:
        return TransformerConfig(
            src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, d_model=self.d_model,
            n_heads=self.n_heads, d_ff=self.ff_width,
            n_encoder_layers=self.n_encoder_layers or self.n_layers,
            n_decoder_layers=self.n_decoder_layers or self.n_layers, dropout=self.dropout,
            max_len=max(256, self.max_len), activation=self.activation,
            norm_first=self.norm == "pre", tie_embeddings=self.tie_embeddings, seed=self.seed,
            pad_id=0)

    def split_info(self) -> dict:
        """What ``translation.data.run_splits`` needs to rebuild this run's splits."""
        return {"corpus": self.corpus,
                "pairs_path": os.path.abspath(self.pairs) if self.pairs else None,
                "reverse": self.reverse, "val_frac": self.val_frac, "test_frac": self.test_frac,
                "seed": self.seed}


@dataclass
class _Job:
    trainer: Trainer
    tokenizer: object
    train: list
    val: list
    test: list
    log: object


class _TranslationKind(Kind):
    name = "translate-train"

    def needs(self, cfg) -> None:
        super().needs(cfg)
        if cfg.test_beams or cfg.eval_decode:
            require("sacrebleu", why="BLEU/chrF (test_beams, eval_decode)")

    def build(self, cfg: TranslationTrainConfig, parallel, state) -> _Job:
        from ..translation.bpe import BPETokenizer
        from ..translation.data import encode_pairs, run_splits
        from ..translation.pipeline import TranslationBatches, TranslationEvaluator

        out = run_dir(cfg, parallel)
        log = _log if (out is not None or parallel is None) and cfg.progress is not False \
            else (lambda msg: None)
        t0 = time.perf_counter()
        train, val, test = run_splits(cfg.split_info())
        _check_splits(cfg, train, val, test)
        log(f"pairs: train {len(train)}, validation {len(val)}, test {len(test)} "
            f"({time.perf_counter() - t0:.1f}s)")
        if state is not None:
            tok = BPETokenizer.from_dict(state["tokenizer"])
        else:
            t1 = time.perf_counter()
            tok = BPETokenizer.train([s for s, _ in train] + [t for _, t in train], cfg.vocab_size)
            log(f"BPE: {len(tok)} symbols learned in {time.perf_counter() - t1:.1f}s")
        for beam in cfg.test_beams:
            if beam > len(tok):
                raise ValueError(f"test_beams={beam} is larger than the vocabulary ({len(tok)})")
        srcs, tgts = encode_pairs(tok, train, max_len=cfg.max_len)
        log(f"training pairs within max_len={cfg.max_len}: {len(srcs)} of {len(train)}")
        if not srcs:
            raise ValueError(f"no training pair is within max_len={cfg.max_len} tokens")
        batches = TranslationBatches(srcs, tgts, cfg.max_tokens, seed=cfg.seed)
        if getattr(cfg, "_steps_from_data", False):
            cfg.steps = min(max(30 * batches.n_batches, 100), BIBLE_STEPS)
            log(f"steps: {cfg.steps} (30 passes over {batches.n_batches} batches; set steps "
                f"to choose)")
        model = Transformer(cfg.model_config(len(tok)))
        vsrcs, vtgts = encode_pairs(tok, val, max_len=None)
        batch_fn, step_fn = batches, None
        if parallel is not None:
            batch_fn = parallel.shard(batches, ignore_index=model.config.pad_id)
            step_fn = parallel.wrap(seq2seq_step)
        evaluate = (TranslationEvaluator(tok, val, vsrcs, vtgts, cfg.eval_decode)
                    if out is not None or parallel is None else None)
        extra = {**cfg.split_info(), "tokenizer": tok.to_dict(), "max_len": cfg.max_len,
                 "max_tokens": cfg.max_tokens, "run_config": cfg.to_dict()}
        trainer = Trainer(model, batch_fn, cfg, step_fn=step_fn, out_dir=out, evaluate=evaluate,
                          progress=cfg.progress if out is not None or parallel is None else False,
                          extra_state=extra, threads=cfg.threads)
        log(f"model: {model.num_parameters() / 1e6:.2f}M parameters; {batches.n_batches} "
            f"batches per epoch, {cfg.steps} steps ≈ {cfg.steps / batches.n_batches:.2f} epochs")
        return _Job(trainer, tok, train, val, test, log)

    def probe_monitor(self, cfg, job: _Job):
        """The probe: the first validation pair (source, reference)."""
        from .monitor import monitor_for_translation

        return monitor_for_translation(job.tokenizer, job.trainer.model, *job.val[0],
                                       every=cfg.monitor_every)

    def finish(self, cfg, job: _Job, result, t0) -> RunResult:
        """Score the test split (rank 0) and write ``OUT/results.json``."""
        from ..translation.evaluate import score_test

        trainer = job.trainer
        results = {"train_seconds": round(result.train_time_s, 1), "step": result.step,
                   "val": result.eval}  # measured in this call only (empty if none ran)
        main = trainer.evaluate is not None
        if main and cfg.test_beams:
            job.log(f"trained to step {result.step} in {result.train_time_s:.0f}s; scoring "
                    f"{len(job.test[:cfg.test_limit] if cfg.test_limit else job.test)} test pairs")
            results["test"] = score_test(trainer.model, job.tokenizer, job.train, job.test,
                                         cfg.test_beams, cfg.test_limit)
        if trainer.out_dir:
            with open(os.path.join(trainer.out_dir, "results.json"), "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
        return RunResult(trainer.model, cfg, result.step, result.stop_reason,
                         result.train_time_s, time.perf_counter() - t0, result.eval,
                         trainer.out_dir, trainer,
                         {"tokenizer": job.tokenizer, "test": results.get("test")})


def _check_splits(cfg, train, val, test) -> None:
    sizes = f"{len(train)} / {len(val)} / {len(test)} pairs"
    if not train or not val:
        raise ValueError(f"the {'training' if not train else 'validation'} split is empty "
                         f"({sizes}): give more pairs or a larger val_frac")
    if cfg.test_beams and not test:
        raise ValueError(f"the test split is empty ({sizes}): raise test_frac, or set "
                         f"test_beams=() to skip scoring it")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_translation(cfg: TranslationTrainConfig | None = None, **fields) -> RunResult:
    """Train a translator as ``cfg`` says (or ``TranslationTrainConfig(**fields)``);
    ``result.metrics`` is the last validation, ``result.extras["test"]`` the test scores."""
    cfg = cfg if cfg is not None else TranslationTrainConfig(**fields)
    return run(cfg, _TranslationKind())
