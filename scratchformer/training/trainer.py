"""The training loop: batches → loss → backward → clip → step → schedule, with evaluation,
early stopping, checkpoints, metrics and bit-exact resume.

One step, written out (B batch, T target length, V vocabulary)::

    batch  = batch_fn(rng, step)                  e.g. (src (B, S), tgt_in (B, T), tgt_out (B, T))
    opt.zero_grad()
    loss, n_tokens = step_fn(model, batch, crit)  forward, crit(logits (B, T, V), targets), backward
    norm = clip_grad_norm(params, clip_norm)      rescale if ‖g‖ > clip_norm
    opt.lr = schedule(step); opt.step()           lr is a pure function of the step number

The loop knows nothing about the model's kind: ``step_fn`` adapts it. ``seq2seq_step``
serves the encoder–decoder (batches ``(src, tgt_in, tgt_out)``), ``lm_step`` a decoder-only
GPT (batches ``(x, y)``, y = x shifted by one); any ``step_fn(model, batch, crit) ->
(loss, n_tokens)`` that runs forward and backward works.

Data comes from ``batch_fn(rng, step)`` rather than an iterator so that a run is a pure
function of its seeds: a checkpoint stores the data RNG's state (and the dropout RNG's,
the optimizer's and the step), and ``Trainer.resume`` continues **bit for bit** as if
the run had never stopped. The same seeds give the same weights, batches and losses.

    trainer = Trainer(model, lambda rng, step: task.batch(rng, 64),
                      TrainConfig(steps=2000, lr=3e-3, warmup=100, target=0.99),
                      evaluate=Seq2SeqEvaluator(task.held_out()), out_dir="runs/copy")
    result = trainer.fit()

A loss or gradient norm that becomes NaN/inf halts training with ``TrainingDiverged``
naming the step, before the optimizer can write garbage into the weights; so does an
evaluation that finds the updated weights overflow the model (a NaN/inf loss, or a
decoder's ``NonFiniteLogits``). The step runs under ``quiet_float_errors()``: that message,
not NumPy's RuntimeWarnings, tells of it. Ctrl-C (SIGINT)
or SIGTERM during ``fit`` finishes the step under way, writes the checkpoint at that step
(when there is an ``out_dir``; it resumes bit for bit like any other) and raises
``TrainingInterrupted`` (exit status 130 / 143 from the command line); a second signal
stops at once.

Beside this module: ``recipes.py`` (``Seq2SeqEvaluator`` and the toy-task recipes
``TASK_PRESETS``, ``train_task``, ...), ``lm.py`` (the GPT's data, evaluation and
``train_gpt``), ``progress.py`` (the tqdm bar or plain lines) and ``schedules.py`` (the
learning-rate schedules).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..core.checks import check_int
from ..core.loss import CrossEntropyLoss
from ..kernels import pool
from ..models.sampling import NonFiniteLogits
from .checkpoint import load, save
from .muon import MuonAdamW
from .optim import SGD, Adam, AdamW, clip_grad_norm
from .progress import Progress, format_metrics
from .rundir import drop_records_after, start_fresh
from .schedules import ConstantLR, NoamSchedule, WarmupCosine


def quiet_float_errors():
    """``np.errstate`` with NumPy's overflow, invalid and divide-by-zero warnings off, for
    the work of a training step: its loss and gradient norm are checked for NaN/inf right
    after it, and ``TrainingDiverged`` names the step, so a diverging run ends in that one
    message instead of a page of RuntimeWarnings first. (The pool's parts inherit it.)"""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite, or an evaluation found the
    model's output so (its weights overflow it); ``.step`` says when."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


NOT_UPDATED = "the weights were not updated with it"  # found before the step's update
NOT_SAVED = "this step's weights overflow the model and are not saved"  # found after it


def diverged(what: str, step: int, lr: float, weights: str, hint: str = "") -> TrainingDiverged:
    """The error of a run that diverged, for every trainer: ``what`` happened at ``step``
    (with its ``lr``), what became of the ``weights`` (``NOT_UPDATED``, ``NOT_SAVED``, ...),
    the advice, then ``hint``."""
    return TrainingDiverged(f"training halted: {what} (lr {lr:.3g}); {weights}. Try a lower "
                            f"learning rate, a longer warm-up or gradient clipping{hint}", step)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped ``fit`` between two steps; the checkpoint (if any) holds
    that step. ``.step``, ``.signum``, ``.checkpoint`` (path or None), ``.exit_status``
    (128 + the signal number: 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, step: int, signum: int, checkpoint: str | None):
        super().__init__(message)
        self.step, self.signum, self.checkpoint = step, signum, checkpoint
        self.exit_status = 128 + signum


class StopSignals:
    """While active, the first SIGINT/SIGTERM only sets ``.signum`` (the loop stops at the
    next step boundary); the previous handlers come back at once, so a second signal acts
    as usual. Only in the main thread (elsewhere Python cannot set handlers): a no-op."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum, self.previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        self._restore()

    def _restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def __exit__(self, *exc):
        self._restore()


# ---- configuration ------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Hyper-parameters of a run (the model's live in its own config).

    lr is the *peak* learning rate: ``cosine`` warms up linearly for ``warmup`` steps then
    decays to ``lr · min_lr_ratio`` at ``steps``; ``noam`` is the paper's schedule
    ``lr · min(step/warmup, √(warmup/step))``; ``constant`` warms up then stays at lr.
    ``target``: stop as soon as the evaluation metric ``target_metric`` reaches it (>= for an
    accuracy; <= for a metric whose name ends in "loss", e.g. ``val_loss``).
    ``checkpoint_every`` (0 = only at the end) and the metrics file need an ``out_dir``.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.0
    seed: int = 0
    eval_every: int = 100
    target: float | None = None
    target_metric: str = "exact_match"
    checkpoint_every: int = 0
    log_every: int = 10

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("steps", "batch_size"):
            check_int(name, getattr(self, name), 1)
        for name in ("warmup", "eval_every", "checkpoint_every", "seed"):
            check_int(name, getattr(self, name), 0)
        check_int("log_every", self.log_every, 1)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be positive or None, got {self.clip_norm!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.target is not None and self.lower_is_better:
            if not (isinstance(self.target, (int, float)) and math.isfinite(self.target)
                    and self.target > 0):
                raise ValueError(f"target must be a positive loss or None, got {self.target!r}")
        elif self.target is not None and not 0.0 < self.target <= 1.0:
            raise ValueError(f"target must be in (0, 1] or None, got {self.target!r}")

    @property
    def lower_is_better(self) -> bool:
        """True when ``target_metric`` is a loss (stop once it is <= target), False for an
        accuracy (stop once it is >= target)."""
        return self.target_metric.endswith("loss")

    def reached(self, metrics: dict) -> bool:
        """Whether ``metrics`` reach ``target`` (False without a target or the metric)."""
        if self.target is None or self.target_metric not in metrics:
            return False
        value = metrics[self.target_metric]
        return value <= self.target if self.lower_is_better else value >= self.target

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "muon": MuonAdamW}
SCHEDULES = ("cosine", "noam", "constant")


def make_optimizer(params, cfg: TrainConfig, model=None):
    """The optimizer named by ``cfg.optimizer`` over ``params``, at ``lr = cfg.lr``; "muon":
    ``MuonAdamW`` over ``muon_groups(model)`` (AdamW half at ``lr·adamw_lr_ratio``)."""
    if cfg.optimizer == "muon":
        return MuonAdamW.for_model(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas,
                                   adamw_eps=cfg.eps, adamw_weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return SGD(params, cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return OPTIMIZERS[cfg.optimizer](params, cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                     weight_decay=cfg.weight_decay)


def make_schedule(cfg: TrainConfig, d_model: int | None = None):
    """step -> lr, peaking at ``cfg.lr`` after ``cfg.warmup`` steps (see TrainConfig)."""
    if cfg.schedule == "noam":  # factor chosen so the peak, at step = warmup, is cfg.lr
        d, warmup = d_model or 1, max(cfg.warmup, 1)
        return NoamSchedule(d, warmup, factor=cfg.lr * math.sqrt(d * warmup))
    if cfg.schedule == "constant":  # warm up, then lr from step = warmup on
        return WarmupCosine(cfg.lr, cfg.warmup, cfg.warmup, min_lr=cfg.lr) if cfg.warmup \
            else ConstantLR(cfg.lr)
    return WarmupCosine(cfg.lr, cfg.warmup, max(cfg.steps, cfg.warmup, 1),
                        min_lr=cfg.lr * cfg.min_lr_ratio)


# ---- model adapters: one step's forward + loss + backward ------------------------------------
def seq2seq_step(model, batch, crit: CrossEntropyLoss) -> tuple[float, int]:
    """Encoder–decoder with teacher forcing: batch = (src (B, S), tgt_in (B, T), tgt_out (B, T)).

    logits = model(src, tgt_in) (B, T, V); loss = crit(logits, tgt_out); backward into .grad.
    Returns (loss, number of non-ignored target tokens).
    """
    src, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)  # (B, T, V)
    loss = crit(logits, tgt_out)
    model.backward(crit.backward())
    return loss, _count_tokens(tgt_out, crit.ignore_index)


def lm_step(model, batch, crit: CrossEntropyLoss) -> tuple[float, int]:
    """Decoder-only language model: batch = (x (B, T), y (B, T)), y[:, t] = next token after x[:, t].

    logits = model(x) (B, T, V); loss = crit(logits, y); backward into .grad.
    """
    x, y = batch
    logits = model(x)  # (B, T, V)
    loss = crit(logits, y)
    model.backward(crit.backward())
    return loss, _count_tokens(y, crit.ignore_index)


def _count_tokens(targets, ignore_index) -> int:
    targets = np.asarray(targets)
    return int(targets.size if ignore_index is None else np.count_nonzero(targets != ignore_index))


def default_step_fn(model) -> Callable:
    """``seq2seq_step`` for a model with an encoder (``encode``), else ``lm_step``."""
    return seq2seq_step if hasattr(model, "encode") else lm_step


class _Window:
    """The training records' running window: mean loss and tokens/s since the last record."""

    def __init__(self, t_start: float):
        self.t_start = self.t0 = t_start
        self.loss, self.tokens, self.n = 0.0, 0, 0
        self.last_loss = float("nan")

    def add(self, loss: float, n_tokens: int) -> None:
        self.loss, self.tokens, self.n = self.loss + loss, self.tokens + n_tokens, self.n + 1

    def record(self, step: int, lr: float, grad_norm: float) -> dict:
        now = time.perf_counter()
        rec = {"kind": "train", "step": step, "loss": self.loss / self.n, "lr": lr,
               "grad_norm": grad_norm, "tokens_per_s": self.tokens / max(now - self.t0, 1e-9),
               "time_s": now - self.t_start}
        self.steps_in_record = self.n
        self.last_loss = rec["loss"]
        self.loss, self.tokens, self.n, self.t0 = 0.0, 0, 0, now
        return rec


# ---- the trainer ------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    step: int                      # steps done in total (resumed runs included)
    stop_reason: str               # "target" | "steps" | "until"
    train_time_s: float            # wall time spent in this fit() call
    last_loss: float               # mean training loss over the last logging window
    eval: dict = field(default_factory=dict)     # the last evaluation run in this fit() call
                                                 # (empty if none: never a resumed run's)
    history: list = field(default_factory=list)  # every record written to metrics.jsonl


class Trainer:
    """Runs a model's training; see the module docstring for the step.

    Args:
        model: a Module with ``backward`` (Transformer, GPT, ...).
        batch_fn: ``batch_fn(rng, step) -> batch``; draw randomness only from ``rng``.
        config: a TrainConfig.
        step_fn: ``step_fn(model, batch, crit) -> (loss, n_tokens)`` (forward + backward);
            default ``seq2seq_step`` or ``lm_step`` by the model's kind.
        evaluate: ``evaluate(model) -> {metric: value}``, every ``config.eval_every`` steps.
        out_dir: where ``checkpoint.safetensors`` and ``metrics.jsonl`` go (None: nowhere).
        progress: True (tqdm if installed, else plain lines), "plain", or False.
        extra_state: JSON-able dict stored in every checkpoint (e.g. the task, for the CLI).
        criterion: the loss; default CrossEntropyLoss(ignore_index=model.config.pad_id
            (if any), label_smoothing=config.label_smoothing).
        threads: threads during ``fit``: the worker pool of ``kernels.pool``, each BLAS call
            on one thread (None: ``pool.default_threads()``, the cores this process may
            use; 1: one thread throughout).
        monitors: objects watching the run (e.g. per-layer gradient norms, attention
            snapshots); each may define ``before_update(trainer, step)`` (gradients ready,
            after clipping, weights not yet changed) and ``after_update(trainer, step, loss)``
            (weights updated, ``trainer.step == step``) and ``end(trainer)`` (the fit stopped
            normally: its last step or the target). They write with ``trainer.record``.
    """

    def __init__(self, model, batch_fn: Callable, config: TrainConfig | None = None, *,
                 step_fn: Callable | None = None, evaluate: Callable | None = None,
                 out_dir: str | os.PathLike | None = None, progress=True,
                 extra_state: dict | None = None, criterion=None, threads: int | None = None,
                 monitors: list | None = None):
        self.model, self.batch_fn = model, batch_fn
        self.config = cfg = config if config is not None else TrainConfig()
        self.step_fn = step_fn or default_step_fn(model)
        self.evaluate = evaluate
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.progress, self.extra_state = progress, dict(extra_state or {})
        self.threads = threads
        self.monitors = list(monitors or ())
        pad = getattr(getattr(model, "config", None), "pad_id", None)
        self.criterion = criterion or CrossEntropyLoss(ignore_index=pad,
                                                       label_smoothing=cfg.label_smoothing)
        self.params = model.parameters()
        self.optimizer = make_optimizer(self.params, cfg, model)
        self.schedule = make_schedule(cfg, getattr(getattr(model, "config", None), "d_model", None))
        self.rng = np.random.default_rng(cfg.seed)  # the data RNG
        self.step = 0
        self.last_eval: dict = {}
        self.last_eval_step: int | None = None  # when this process measured last_eval
        self.history: list[dict] = []

    # -- the loop
    def fit(self, until: int | None = None) -> TrainResult:
        """Train from ``self.step`` to ``until`` (default ``config.steps``) or the target."""
        cfg = self.config
        end = cfg.steps if until is None else min(int(until), cfg.steps)
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
            if self.step == 0:  # a fresh run: a fresh log, nothing of an older run beside it
                start_fresh(self.out_dir)
        self.model.train()
        t_start = time.perf_counter()
        stop = "steps" if end == cfg.steps else "until"
        evals_before = self.last_eval_step
        self._window = _Window(t_start)
        with pool.threads(self.threads), StopSignals() as signals, \
                Progress(self.progress, cfg.steps, self.step) as bar:
            while self.step < end and signals.signum is None:
                self.train_step(self.step + 1, end, bar)
                if self._evaluate_now(end, bar) and cfg.reached(self.last_eval):
                    stop = "target"
                    break
                if self.out_dir and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save(os.path.join(self.out_dir, "checkpoint.safetensors"))
            if signals.signum is not None:
                self._interrupted(signals.signum)
            for m in self.monitors:
                if hasattr(m, "end"):
                    m.end(self)
        if self.out_dir:
            self.save(os.path.join(self.out_dir, "checkpoint.safetensors"))
        measured = self.last_eval_step is not None and self.last_eval_step != evals_before
        return TrainResult(self.step, stop, time.perf_counter() - t_start, self._window.last_loss,
                           dict(self.last_eval) if measured else {}, list(self.history))

    def train_step(self, step: int, end: int, bar=None) -> float:
        """One optimizer step (batch → forward/backward → clip → monitors → update); logs
        the window's mean loss every ``log_every`` steps. Returns the step's loss."""
        cfg, opt = self.config, self.optimizer
        batch = self.batch_fn(self.rng, step)
        with quiet_float_errors():  # a NaN or inf is caught below, by name
            opt.zero_grad()
            loss, n_tok = self.step_fn(self.model, batch, self.criterion)
            if not math.isfinite(loss):
                self._diverged(f"loss became {loss} at step {step}", step)
            norm = clip_grad_norm(self.params, cfg.clip_norm or math.inf)  # inf: measure only
            if not math.isfinite(norm):
                self._diverged(f"gradient norm became {norm} at step {step} (loss {loss:.4g})", step)
            for m in self.monitors:
                if hasattr(m, "before_update"):
                    m.before_update(self, step)
            opt.lr = self.schedule(step)
            opt.step()
            self.step = step
            for m in self.monitors:
                if hasattr(m, "after_update"):
                    m.after_update(self, step, loss)
        w = self._window
        w.add(loss, n_tok)
        if step % cfg.log_every == 0 or step == end:
            rec = w.record(step, opt.lr, norm)
            self.record(rec)
            if bar is not None:
                bar.update(step, w.steps_in_record, rec)
        return loss

    def _evaluate_now(self, end: int, bar) -> bool:
        """Evaluate when ``eval_every`` says so (and at the last step); True if it ran."""
        cfg, step = self.config, self.step
        if self.evaluate is None or not cfg.eval_every or (step % cfg.eval_every and step != end):
            return False
        when = f"when evaluated after step {step}"
        with self.overflow_named(when):
            metrics = self.run_eval()
        bar.write(f"step {step:>6}  eval  {format_metrics(metrics)}")
        self.halt_if_not_finite(metrics, when)
        self._window.t0 = time.perf_counter()  # tokens/s counts training time only
        return True

    def _interrupted(self, signum: int):
        """Save the checkpoint at the current step, then raise TrainingInterrupted."""
        name = signal.Signals(signum).name
        path = None
        if self.out_dir:
            path = os.path.join(self.out_dir, "checkpoint.safetensors")
            with StopSignals():  # a signal during the save must not tear it
                self.save(path)
        where = (f"; checkpoint saved at step {self.step}: {path} (continue with resume=True)"
                 if path else " (no output directory: nothing saved)")
        raise TrainingInterrupted(f"interrupted by {name} at step {self.step}{where}",
                                  self.step, signum, path)

    def run_eval(self) -> dict:
        """Run ``evaluate`` now (eval mode, no RNG consumed), record and return its metrics."""
        t0 = time.perf_counter()
        metrics = dict(self.evaluate(self.model))
        self.model.train()
        self.last_eval, self.last_eval_step = metrics, self.step
        self.record({"kind": "eval", "step": self.step, **metrics,
                      "eval_time_s": time.perf_counter() - t0})
        return metrics

    def halt_if_not_finite(self, metrics: dict, when: str, saved: bool = False) -> None:
        """Raise ``TrainingDiverged`` if a loss in ``metrics`` (a name with "loss" in it) is
        NaN or inf: the weights of step ``self.step`` overflow the model. ``when`` says which
        evaluation found it; ``saved``: the run's checkpoint already holds those weights (the
        final evaluation, after ``fit`` saved them), else they are not saved."""
        bad = [k for k, v in metrics.items()
               if "loss" in k and isinstance(v, float) and not math.isfinite(v)]
        if bad:
            self._diverged(f"{bad[0]} became {metrics[bad[0]]} {when}", self.step,
                           weights="saved" if saved else "not saved")

    @contextlib.contextmanager
    def overflow_named(self, when: str, saved: bool = False):
        """A block that evaluates the weights of step ``self.step`` (``when`` says which
        evaluation): NumPy's float warnings off, and a decoder's ``NonFiniteLogits`` in it
        raised as ``TrainingDiverged`` (``saved``: as in ``halt_if_not_finite``)."""
        try:
            with quiet_float_errors():
                yield
        except NonFiniteLogits:
            self._diverged(f"the model's output became NaN or inf {when}", self.step,
                           weights="saved" if saved else "not saved")

    def _diverged(self, what: str, step: int, weights: str = "not updated"):
        """Record and raise ``TrainingDiverged``. ``weights``: "not updated" (the loss or the
        gradient of the step, before its update), "not saved" or "saved" (an evaluation after
        the update: its weights overflow the model; whether the checkpoint holds them)."""
        self.record({"kind": "diverged", "step": step, "message": what})
        ckpt = os.path.join(self.out_dir, "checkpoint.safetensors") if self.out_dir else None
        state = {"not updated": NOT_UPDATED, "not saved": NOT_SAVED,
                 "saved": f"this step's weights overflow the model, and the checkpoint {ckpt} "
                          f"holds them"}[weights]
        hint = (f"; the last checkpoint is {ckpt}" if weights != "saved" and ckpt
                and os.path.exists(ckpt) else "")
        raise diverged(what, step, self.schedule(step), state, hint)

    def record(self, rec: dict):
        """Append ``rec`` (JSON-able) to the history and to ``out_dir/metrics.jsonl``."""
        rec = {k: (float(v) if isinstance(v, (np.floating, np.integer)) else v)
               for k, v in rec.items()}
        self.history.append(rec)
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
            with open(os.path.join(self.out_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, allow_nan=True) + "\n")

    # -- checkpoints
    def state(self) -> dict:
        """Everything besides weights and optimizer moments that a resume needs (JSON-able)."""
        return {"step": self.step, "train_config": self.config.to_dict(),
                "data_rng": self.rng.bit_generator.state,
                "model_rngs": [g.bit_generator.state for g in model_generators(self.model)],
                "schedule": {k: np.asarray(v).item() for k, v in self.schedule.state_dict().items()},
                "last_eval": self.last_eval}

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint: model, optimizer state, ``trainer = state()`` and ``extra_state``."""
        save(path, self.model, self.optimizer, trainer=self.state(), **self.extra_state)

    def resume(self, path: str | os.PathLike) -> dict:
        """Load a checkpoint written by ``save`` into this trainer (same architecture and
        config); the next ``fit()`` continues exactly where that run stopped. Returns the
        checkpoint's state: ``trainer`` (see ``state()``) and the saved ``extra_state`` keys."""
        model, opt_state, state = load(path)
        ts = trainer_state(state, path)
        self.model.load_state_dict(model.state_dict())
        if opt_state is None:
            raise ValueError(f"{path}: the checkpoint holds no optimizer state; cannot resume")
        self.optimizer.load_state_dict(opt_state)
        self.step = int(ts["step"])
        self.rng.bit_generator.state = ts["data_rng"]
        gens = model_generators(self.model)
        if len(gens) != len(ts["model_rngs"]):
            raise ValueError(f"{path}: checkpoint has {len(ts['model_rngs'])} model RNGs, "
                             f"this model has {len(gens)}")
        for g, s in zip(gens, ts["model_rngs"]):
            g.bit_generator.state = s
        self.last_eval = ts.get("last_eval", {})  # saved again as is; not measured by us
        self.last_eval_step = None
        if self.out_dir:  # drop what an interrupted run logged after its last checkpoint
            drop_records_after(os.path.join(self.out_dir, "metrics.jsonl"), self.step)
        return state


def trainer_state(state: dict, path="checkpoint") -> dict:
    """The trainer's JSON state from a loaded checkpoint's ``state`` dict."""
    if "trainer" not in state:
        raise ValueError(f"{path}: not a training checkpoint (no 'trainer' entry); "
                         f"found {sorted(state)}")
    raw = state["trainer"]
    return raw if isinstance(raw, dict) else json.loads(str(np.asarray(raw)))


def model_generators(model) -> list[np.random.Generator]:
    """Every distinct np.random.Generator the model's modules hold (dropout), in a fixed order."""
    seen, out = set(), []
    for _, m in model.named_modules():
        for name in sorted(vars(m)):
            g = vars(m)[name]
            if isinstance(g, np.random.Generator) and id(g) not in seen:
                seen.add(id(g))
                out.append(g)
    return out
