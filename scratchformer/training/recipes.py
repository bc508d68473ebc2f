"""Recipes for the built-in toy tasks (copy, reverse, shift, dates, numbers), used by the CLI
and the examples, and the held-out evaluation of an encoder–decoder.

- ``TASK_PRESETS``: tuned model and training settings per task (measured in docs/training.md);
- ``task_model_config(task)`` / ``task_train_config(name)``: those settings as configs;
- ``make_task_trainer(task)``: a ``Trainer`` with batches from the task and evaluation on its
  held-out set; ``train_task(name)`` trains one end to end;
- ``Seq2SeqEvaluator(pairs)``: loss, token accuracy and exact match of greedy decoding.

    trainer, result, metrics, task = train_task("reverse", out_dir="runs/reverse")
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..core.loss import CrossEntropyLoss
from ..core.tokens import BOS, EOS, PAD
from ..data.tasks import get_task
from ..data.taskbase import pad_batch
from ..models.decoding import beam_search, greedy_decode
from ..models.transformer import Transformer, TransformerConfig
from .trainer import TrainConfig, Trainer, seq2seq_step


# ---- evaluation ---------------------------------------------------------------------------------
class Seq2SeqEvaluator:
    """Held-out metrics of an encoder–decoder: ``evaluator(model) -> dict``.

    - ``loss``: teacher-forced cross-entropy (no label smoothing), mean over target tokens;
    - ``token_accuracy``: share of target tokens (EOS included) whose argmax is right;
    - ``exact_match``: share of sequences that greedy decoding reproduces exactly, EOS included.

    ``pairs`` are ``(src_ids, tgt_ids)`` lists without BOS/EOS (``task.held_out()``).
    Cheap evaluation while training: with ``quick=n`` only the first n pairs are decoded,
    and all of them only once the quick exact match reaches ``escalate_at`` (the stopping
    target) — the reported numbers say over how many (``n``). ``beam_size > 1`` decodes
    with beam search instead of greedy.
    """

    def __init__(self, pairs: Sequence, batch_size: int = 500, quick: int | None = None,
                 escalate_at: float | None = None, beam_size: int = 1, bos_id: int = BOS,
                 eos_id: int = EOS, pad_id: int = PAD):
        if len(pairs) == 0:
            raise ValueError("pairs must hold at least one (src_ids, tgt_ids) pair, got 0")
        self.pairs = list(pairs)
        self.batch_size, self.quick, self.escalate_at = batch_size, quick, escalate_at
        self.beam_size = beam_size
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self._chunks: dict[int, list] = {}

    def _batches(self, n: int):
        if n not in self._chunks:  # padded once, reused at every evaluation
            self._chunks[n] = [pad_batch(self.pairs[i:min(i + self.batch_size, n)])
                               for i in range(0, n, self.batch_size)]
        return self._chunks[n]

    def __call__(self, model) -> dict:
        n = len(self.pairs)
        if self.quick and self.quick < n:
            m = self.evaluate(model, self.quick)
            if self.escalate_at is None or m["exact_match"] < self.escalate_at:
                return m
        return self.evaluate(model, n)

    def evaluate(self, model, n: int | None = None) -> dict:
        """Metrics over the first ``n`` pairs (all by default), model in eval mode."""
        n = len(self.pairs) if n is None else min(n, len(self.pairs))
        crit = CrossEntropyLoss(ignore_index=self.pad_id)
        loss_sum = tok_ok = tok_n = seq_ok = 0.0
        with model.eval_mode():
            for src, tgt_in, tgt_out in self._batches(n):
                valid = tgt_out != self.pad_id  # (B, T)
                k = int(valid.sum())
                logits = model(src, tgt_in)  # (B, T, V)
                loss_sum += crit(logits, tgt_out) * k
                tok_ok += np.count_nonzero((logits.argmax(-1) == tgt_out) & valid)
                tok_n += k
                T = tgt_out.shape[1]
                if self.beam_size > 1:
                    out = beam_search(model, src, self.beam_size, max_len=T,
                                      bos_id=self.bos_id, eos_id=self.eos_id)
                else:
                    out = greedy_decode(model, src, max_len=T, bos_id=self.bos_id,
                                        eos_id=self.eos_id)  # (B, ≤T): EOS, then PAD
                pred = np.full_like(tgt_out, self.pad_id)
                pred[:, :out.shape[1]] = out[:, :T]
                seq_ok += np.count_nonzero((pred == tgt_out).all(axis=1))
        return {"loss": float(loss_sum / tok_n), "token_accuracy": float(tok_ok / tok_n),
                "exact_match": float(seq_ok / n), "n": n}


# ---- recipes for the built-in toy tasks --------------------------------------------------------
# Tuned on a 2-core CPU (see docs/training.md for the measured accuracy and times).
TASK_PRESETS = {
    "copy": {"model": {"d_model": 64, "n_heads": 4, "d_ff": 256, "layers": 1},
             "train": {"steps": 600, "batch_size": 64, "lr": 5e-3, "warmup": 50,
                       "eval_every": 50, "target": 0.99}},
    "reverse": {"model": {"d_model": 64, "n_heads": 4, "d_ff": 256, "layers": 1},
                "train": {"steps": 1500, "batch_size": 64, "lr": 5e-3, "warmup": 50,
                          "eval_every": 100, "target": 0.99}},
    "shift": {"model": {"d_model": 64, "n_heads": 4, "d_ff": 256, "layers": 1},
              "train": {"steps": 1500, "batch_size": 64, "lr": 5e-3, "warmup": 50,
                        "eval_every": 100, "target": 0.99}},
    "dates": {"model": {"d_model": 64, "n_heads": 4, "d_ff": 256, "layers": 2},
              "train": {"steps": 3000, "batch_size": 64, "lr": 3e-3, "warmup": 100,
                        "eval_every": 100, "target": 0.98}},
    "numbers": {"model": {"d_model": 64, "n_heads": 4, "d_ff": 256, "layers": 2},
                "train": {"steps": 3000, "batch_size": 128, "lr": 3e-3, "warmup": 100,
                          "eval_every": 50, "target": 0.99}},
}
_GENERIC_PRESET = TASK_PRESETS["copy"]


def task_model_config(task, seed: int = 0, **overrides):
    """The tuned TransformerConfig for ``task`` (pre-LN, no dropout: the toy tasks have
    unlimited fresh data), with ``overrides`` (TransformerConfig fields, or ``layers``
    for both stacks) applied. Vocabulary sizes and max_len come from the task."""
    preset = dict(TASK_PRESETS.get(task.name, _GENERIC_PRESET)["model"])
    layers = overrides.pop("layers", preset.pop("layers"))
    kw = {"d_model": preset["d_model"], "n_heads": preset["n_heads"], "d_ff": preset["d_ff"],
          "n_encoder_layers": layers, "n_decoder_layers": layers, "dropout": 0.0,
          "norm_first": True, "activation": "gelu", "seed": seed}
    kw.update(overrides)
    longest = max(task.max_src_len, task.max_tgt_len)
    kw.setdefault("max_len", longest + 8)  # a little room for decoding past the target
    return TransformerConfig(task.vocab_size, task.vocab_size, **kw)


def task_train_config(task_name: str, **overrides) -> TrainConfig:
    """The tuned TrainConfig for a built-in task, with ``overrides`` applied."""
    return TrainConfig(**{**TASK_PRESETS.get(task_name, _GENERIC_PRESET)["train"], **overrides})


def make_task_trainer(task, model=None, config: TrainConfig | None = None, *, out_dir=None,
                      progress=True, quick: int | None = 200, seed: int = 0,
                      parallel=None, threads: int | None = None) -> Trainer:
    """A Trainer for a toy task: batches ``task.batch(rng, config.batch_size)``, evaluation
    on ``task.held_out()`` (``trainer.evaluator``), the task stored in every checkpoint.
    ``parallel``: a ``training.distributed.DataParallel`` — each process then trains on its
    share of every global batch (every process evaluates, so all stop at the same step).
    ``threads``: the Trainer's (None: every core this process may use)."""
    config = config if config is not None else task_train_config(task.name, seed=seed)
    model = model if model is not None else Transformer(task_model_config(task, seed=seed))
    bs = config.batch_size
    evaluator = Seq2SeqEvaluator(task.held_out(), quick=quick, escalate_at=config.target)
    def batch_fn(rng, step):
        return task.batch(rng, bs)

    step_fn = None
    if parallel is not None:
        batch_fn, step_fn = parallel.shard(batch_fn), parallel.wrap(seq2seq_step)
    trainer = Trainer(model, batch_fn, config, step_fn=step_fn, evaluate=evaluator,
                      out_dir=out_dir, progress=progress, extra_state={"task": task.to_dict()},
                      threads=threads)
    trainer.evaluator = evaluator
    return trainer


def train_task(name: str, *, out_dir=None, progress=True, seed: int = 0, task_options=None,
               model_overrides=None, **train_overrides):
    """Train a toy task end to end; returns ``(trainer, result, final_metrics, task)``, where
    ``final_metrics`` are over the task's whole held-out set (1,000 sequences by default)."""
    task = get_task(name, **(task_options or {}))
    model = Transformer(task_model_config(task, seed=seed, **(model_overrides or {})))
    config = task_train_config(name, seed=seed, **train_overrides)
    trainer = make_task_trainer(task, model, config, out_dir=out_dir, progress=progress)
    result = trainer.fit()
    final = trainer.last_eval
    if final.get("n") != len(trainer.evaluator.pairs):
        final = trainer.evaluator.evaluate(model)
        trainer.last_eval = final
        if out_dir:  # the checkpoint carries the final numbers too
            trainer.save(os.path.join(out_dir, "checkpoint.safetensors"))
    return trainer, result, final, task
