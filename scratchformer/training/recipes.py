"""The toy tasks' run (copy, reverse, shift, dates, numbers): ``TaskTrainConfig`` and
``train_task``, what ``scratchformer train`` runs, and the held-out evaluation of an
encoder–decoder.

- ``TASK_PRESETS``: tuned model and training settings per task (measured in docs/training.md);
  every ``TaskTrainConfig`` field left at None takes its task's preset;
- ``train_task(cfg)``: batches from the task, evaluation on its held-out set (never trained
  on), stop at ``target`` exact match, the final numbers over the whole held-out set;
- ``Seq2SeqEvaluator(pairs)``: loss, token accuracy and exact match of greedy decoding.

    result = train_task(TaskTrainConfig(task="reverse", out="runs/reverse"))
    result.metrics["exact_match"], result.extras["task"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.loss import CrossEntropyLoss
from ..core.tokens import BOS, EOS, PAD
from ..data.tasks import get_task
from ..data.taskbase import pad_batch
from ..models.decoding import beam_search, greedy_decode
from ..models.sizes import check_batch_fits
from ..models.transformer import Transformer, TransformerConfig
from .spine import Kind, RunConfig, RunResult, run, run_dir
from .trainer import Trainer, seq2seq_step


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
    "copy": {"d_model": 64, "n_heads": 4, "d_ff": 256, "n_layers": 1, "steps": 600,
             "batch_size": 64, "lr": 5e-3, "warmup": 50, "eval_every": 50, "target": 0.99},
    "reverse": {"d_model": 64, "n_heads": 4, "d_ff": 256, "n_layers": 1, "steps": 1500,
                "batch_size": 64, "lr": 5e-3, "warmup": 50, "eval_every": 100, "target": 0.99},
    "shift": {"d_model": 64, "n_heads": 4, "d_ff": 256, "n_layers": 1, "steps": 1500,
              "batch_size": 64, "lr": 5e-3, "warmup": 50, "eval_every": 100, "target": 0.99},
    "dates": {"d_model": 64, "n_heads": 4, "d_ff": 256, "n_layers": 2, "steps": 3000,
              "batch_size": 64, "lr": 3e-3, "warmup": 100, "eval_every": 100, "target": 0.98},
    "numbers": {"d_model": 64, "n_heads": 4, "d_ff": 256, "n_layers": 2, "steps": 3000,
                "batch_size": 128, "lr": 3e-3, "warmup": 100, "eval_every": 50, "target": 0.99},
}
SEQUENCE_TASKS = ("copy", "reverse", "shift")
TASK_OPTIONS = {"min_len": SEQUENCE_TASKS, "max_len": SEQUENCE_TASKS,  # option → its tasks
                "num_symbols": SEQUENCE_TASKS, "offset": ("shift",),
                "held_out_size": tuple(TASK_PRESETS), "min_year": ("dates",),
                "max_year": ("dates",), "direction": ("numbers",)}


@dataclass(kw_only=True)
class TaskTrainConfig(RunConfig):
    """A toy-task run. ``task``: copy, reverse, shift, dates or numbers. Fields left at None
    take the task's preset (``TASK_PRESETS``); ``target=0`` never stops early. The task's
    own options (None: the task's default): ``min_len``, ``max_len``, ``num_symbols``
    (copy/reverse/shift), ``offset`` (shift), ``min_year``, ``max_year`` (dates),
    ``direction`` (numbers), ``held_out_size`` (all). ``n_encoder_layers`` /
    ``n_decoder_layers``: None = ``n_layers``. ``eval_quick``: decode only this many held-out
    sequences per evaluation until they reach the target, then all of them. The model is
    pre-LN without dropout by default: a toy task has unlimited fresh data."""

    task: str = "copy"
    min_len: int | None = None
    max_len: int | None = None
    num_symbols: int | None = None
    offset: int | None = None
    held_out_size: int | None = None
    min_year: int | None = None
    max_year: int | None = None
    direction: str | None = None
    d_model: int | None = None
    n_heads: int | None = None
    n_layers: int | None = None
    n_encoder_layers: int | None = None
    n_decoder_layers: int | None = None
    d_ff: int | None = None
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup: int | None = None
    eval_every: int | None = None
    target: float | None = None
    eval_quick: int = 200

    def __post_init__(self):
        from ..data.tasks import TASKS

        self._chosen = self.given()
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        for name, value in TASK_PRESETS.get(self.task, TASK_PRESETS["copy"]).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.target == 0:
            self.target = None
        for name, tasks in TASK_OPTIONS.items():  # refused here, before any run directory
            if getattr(self, name) is not None and self.task not in tasks:
                raise ValueError(f"{name} applies to task {' / '.join(tasks)}, not {self.task!r}")
        super().__post_init__()

    def task_options(self) -> dict:
        """The options given for the task (``get_task(task, **options)``)."""
        return {k: getattr(self, k) for k in TASK_OPTIONS if getattr(self, k) is not None}

    def model_config(self, task) -> TransformerConfig:
        """The encoder–decoder for ``task``: its vocabulary, positions for its longest
        sequence plus room to decode past it, and this config's sizes."""
        longest = max(task.max_src_len, task.max_tgt_len)
        return TransformerConfig(
            task.vocab_size, task.vocab_size, d_model=self.d_model, n_heads=self.n_heads,
            d_ff=self.ff_width, n_encoder_layers=self.n_encoder_layers or self.n_layers,
            n_decoder_layers=self.n_decoder_layers or self.n_layers, dropout=self.dropout,
            max_len=longest + 8, activation=self.activation, norm_first=self.norm == "pre",
            tie_embeddings=self.tie_embeddings, seed=self.seed)


@dataclass
class _TaskJob:
    trainer: Trainer
    task: object
    evaluator: Seq2SeqEvaluator


class _TaskKind(Kind):
    name = "train"

    def build(self, cfg: TaskTrainConfig, parallel, state) -> _TaskJob:
        try:
            task = get_task(cfg.task, **cfg.task_options())
        except TypeError as e:
            raise ValueError(f"task {cfg.task!r}: {e}") from None
        model = Transformer(cfg.model_config(task))
        check_batch_fits(model.config, cfg.batch_size, model.config.max_len)
        evaluator = Seq2SeqEvaluator(task.held_out(), quick=cfg.eval_quick,
                                     escalate_at=cfg.target)
        bs = cfg.batch_size

        def batch_fn(rng, step):
            return task.batch(rng, bs)

        step_fn = None
        if parallel is not None:  # every process evaluates: all stop at the same step
            batch_fn, step_fn = parallel.shard(batch_fn), parallel.wrap(seq2seq_step)
        out = run_dir(cfg, parallel)
        trainer = Trainer(model, batch_fn, cfg, step_fn=step_fn, evaluate=evaluator,
                          out_dir=out, progress=cfg.progress if out or parallel is None else False,
                          extra_state={"task": task.to_dict(), "run_config": cfg.to_dict()},
                          threads=cfg.threads)
        return _TaskJob(trainer, task, evaluator)

    def probe_monitor(self, cfg, job: _TaskJob):
        from .monitor import monitor_for_task

        return monitor_for_task(job.task, job.trainer.model, every=cfg.monitor_every)

    def finish(self, cfg, job: _TaskJob, result, t0) -> RunResult:
        """The final numbers, over the whole held-out set and measured in this call (never
        a resumed run's stored evaluation, never the quick subset); saved with the run."""
        import time

        trainer = job.trainer
        final = trainer.last_eval
        if trainer.last_eval_step != trainer.step or final.get("n") != len(job.evaluator.pairs):
            final = job.evaluator.evaluate(trainer.model)
            trainer.last_eval, trainer.last_eval_step = final, trainer.step
            if trainer.out_dir:
                trainer.save(f"{trainer.out_dir}/checkpoint.safetensors")
        return RunResult(trainer.model, cfg, result.step, result.stop_reason,
                         result.train_time_s, time.perf_counter() - t0, final,
                         trainer.out_dir, trainer, {"task": job.task})


def task_trainer(cfg: TaskTrainConfig):
    """The ``Trainer`` that ``train_task(cfg)`` runs, built but not run (no run-directory
    lock, no monitor, no resume): for code that drives or watches the loop itself. Its
    ``task`` and ``evaluator`` are attributes."""
    job = _TaskKind().build(cfg, None, None)
    job.trainer.task, job.trainer.evaluator = job.task, job.evaluator
    return job.trainer


def train_task(cfg: TaskTrainConfig | None = None, **fields) -> RunResult:
    """Train an encoder–decoder on a toy task as ``cfg`` says (or ``TaskTrainConfig(**fields)``);
    ``result.metrics`` holds the final held-out loss, token accuracy and exact match."""
    cfg = cfg if cfg is not None else TaskTrainConfig(**fields)
    return run(cfg, _TaskKind())
