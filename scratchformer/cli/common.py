"""What every command shares: its one error type, the argparse parser and help format, the
flag validators, and the argument groups of the training commands — built once from the
library's config dataclasses, so ``--n-heads`` is ``n_heads`` in every command.

A user mistake (a bad flag value, an unusable path, a bad or foreign file) raises
``CLIError``; ``scratchformer.cli.main`` prints it as one line ``scratchformer: error: ...``
on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``scratchformer train: error: ...``), exit 2,
    and a flag is only its whole name: no prefixes, so an old flag never passes for a new one
    (``--min-lr 1e-4`` is not ``--min-lr-ratio 1e-4``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.HelpFormatter):
    """Descriptions and epilogs keep their line breaks (each line wrapped to the terminal);
    each flag's help says its default once (the groups below write it from the config)."""

    def _fill_text(self, text, width, indent):
        import textwrap

        return "\n".join(textwrap.fill(line, width, initial_indent=indent,
                                        subsequent_indent=indent + "    ") if line.strip() else ""
                         for line in text.splitlines())


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter, Formatter):
    """For commands whose flags have plain argparse defaults (gpt sample, translate): each
    shown once, as ``(default: X)``; none for a flag without one."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


# ---- flag validators: argparse ``type=`` functions --------------------------------------------
# A bad value becomes one usage line naming the flag: ``argument --steps: must be an integer
# >= 1, got '-3'``, exit status 2. Every numeric flag goes through one of these.
def _int(text: str, low: int | None = None, high: int | None = None, what: str = "") -> int:
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be an integer{what}, got {text!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"must be an integer{what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, steps, beams)."""
    return _int(text, 1, what=" >= 1")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (counts, intervals where 0 means 'none', seeds)."""
    return _int(text, 0, what=" >= 0")


def any_int(text: str) -> int:
    """Any integer (negative allowed where it has a meaning, e.g. --layer -1)."""
    return _int(text)


def _cpus() -> int:
    return os.cpu_count() or 1


def threads(text: str) -> int:
    """A thread count in [1, os.cpu_count()]."""
    n = _cpus()
    return _int(text, 1, n, what=f" in [1, {n}] (this machine's cores)")


def _float(text: str, ok, what: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a number {what}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be a finite number {what}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no nan, no inf)."""
    return _float(text, lambda v: True, "")


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    return _float(text, lambda v: v > 0, "> 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weight decay, clipping where 0 = off, temperature)."""
    return _float(text, lambda v: v >= 0, ">= 0")


def probability(text: str) -> float:
    """A number in [0, 1) (dropout, label smoothing, split fractions, beta2)."""
    return _float(text, lambda v: 0 <= v < 1, "in [0, 1)")


def unit_interval(text: str) -> float:
    """A number in [0, 1] (a target accuracy, 0 meaning 'never')."""
    return _float(text, lambda v: 0 <= v <= 1, "in [0, 1]")


def path_arg(text: str) -> str:
    """A non-empty path without NUL characters (the OS refuses those with a traceback)."""
    if not text:
        raise argparse.ArgumentTypeError("must be a non-empty path, got ''")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"must be a path without NUL characters, got {text!r}")
    return text


def check_beam(beam: int, vocab_size: int, flag: str = "--beam") -> None:
    """A beam wider than the vocabulary keeps no more distinct hypotheses after the first
    step, only costs memory (a hostile --beam 10**9 would exhaust it): refused."""
    if beam > vocab_size:
        raise CLIError(f"{flag} {beam} is larger than the model's vocabulary ({vocab_size}); "
                       f"use at most {vocab_size}")


# ---- library errors → one line ------------------------------------------------------------------
def user_errors():
    """The exception types that mean "the user's input is wrong" when raised by the library
    behind a command: bad values, bad or foreign files, unusable paths. A command turns
    them into ``CLIError`` (``except user_errors() as e: raise CLIError(...)``)."""
    from ..training.checkpoint import CheckpointError

    return (ValueError, TypeError, OSError, CheckpointError, UnicodeError)


def describe(e: BaseException) -> str:
    """One line for an exception: its message, or ``PATH: reason`` for an OSError."""
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename is not None else ""
        return f"{where}{e.strerror}"
    text = str(e) or type(e).__name__
    return " ".join(text.split("\n"))


# ---- the training commands' flags: one vocabulary, built from the library's configs ----------
def _default(cls, name):
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    raise KeyError(name)


def _shown(value) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value) or "none"
    return {None: "none", True: "on", False: "off"}.get(value, str(value)) \
        if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:g}"


def flag(group, cls, name: str, help: str, *, preset: str | None = None, default_text=None,
         **kw):
    """``--name-with-dashes`` for the config field ``name`` of ``cls``. Its argparse default
    is None ("not given": the library's default, a preset, or on resume the checkpoint's);
    the help ends with the library's default, written once."""
    shown = preset or default_text or _shown(_default(cls, name))
    group.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                       help=f"{help} (default: {shown})", **kw)


def add_model_flags(p, cls, *, encdec: bool = False, preset: str | None = None):
    """--d-model --n-heads --n-layers --d-ff [--n-encoder-layers --n-decoder-layers]
    --dropout --activation --norm --tie-embeddings/--no-tie-embeddings."""
    g = p.add_argument_group("model")
    flag(g, cls, "d_model", "model width D", preset=preset, type=positive_int)
    flag(g, cls, "n_heads", "attention heads H (D divisible by H)", preset=preset,
         type=positive_int)
    flag(g, cls, "n_layers", "layers (encoder and decoder each)" if encdec else "blocks",
         preset=preset, type=positive_int)
    if encdec:
        flag(g, cls, "n_encoder_layers", "encoder layers", default_text="--n-layers",
             type=positive_int)
        flag(g, cls, "n_decoder_layers", "decoder layers", default_text="--n-layers",
             type=positive_int)
    d_ff = _default(cls, "d_ff")
    flag(g, cls, "d_ff", "feed-forward width F", preset=preset,
         default_text="4·d_model" if d_ff is None else None, type=positive_int)
    flag(g, cls, "dropout", "dropout rate", type=probability)
    flag(g, cls, "activation", "feed-forward activation", choices=["gelu", "relu"])
    flag(g, cls, "norm", "LayerNorm placement: pre-LN trains faster, post-LN is the paper's",
         choices=["pre", "post"])
    tie = _default(cls, "tie_embeddings")
    g.add_argument("--tie-embeddings", dest="tie_embeddings", default=None,
                   action=argparse.BooleanOptionalAction,
                   help="share the embedding and output weights (default: "
                        f"{'on for the GPT, off for a task' if tie is None else _shown(tie)})")
    return g


def add_optim_flags(p, cls, *, preset: str | None = None, schedule: bool = True,
                    batch: bool = True, optimizer: bool = True):
    """--steps --batch-size --lr --warmup [--schedule --optimizer] --min-lr-ratio --betas
    --weight-decay --clip-norm --label-smoothing --seed."""
    g = p.add_argument_group("optimization")
    flag(g, cls, "steps", "optimizer steps in all (with --resume: up to this many in all)",
         preset=preset, type=positive_int)
    if batch:  # translate-train's batches are token budgets instead (--max-tokens)
        flag(g, cls, "batch_size", "sequences per step", preset=preset, type=positive_int)
    flag(g, cls, "lr", "peak learning rate", preset=preset, type=positive_float)
    flag(g, cls, "warmup", "linear warm-up steps", preset=preset, type=non_negative_int)
    if schedule:
        flag(g, cls, "schedule", "learning-rate schedule after warm-up",
             choices=["cosine", "noam", "constant"])
    if optimizer:
        flag(g, cls, "optimizer", "optimizer; muon: Muon for the hidden weight matrices, "
                                  "AdamW at lr·0.05 for the rest (docs/optim.md)",
             choices=["adam", "adamw", "sgd", "muon"])
    flag(g, cls, "min_lr_ratio", "cosine decays to lr · this at the last step", type=unit_interval)
    flag(g, cls, "betas", "Adam's β₁ β₂", nargs=2, type=probability, metavar=("B1", "B2"))
    flag(g, cls, "weight_decay", "weight decay", type=non_negative_float)
    flag(g, cls, "clip_norm", "clip the global gradient norm to this, 0 = off",
         type=non_negative_float)
    flag(g, cls, "label_smoothing", "label smoothing ε", type=probability)
    flag(g, cls, "seed", "seeds the weights, dropout and the data", type=non_negative_int)
    return g


def add_threads_flag(p) -> None:
    """--threads: the worker pool's size, the same flag in every command that computes."""
    p.add_argument("--threads", type=threads, default=None,
                   help="threads (default: every core, at most 8; 1: one thread)")


def add_run_flags(p, cls, out: str, *, evaluation: bool = True):
    """--out --resume --force --threads --no-progress [--eval-every] --checkpoint-every
    --log-every: the run directory and its rules, the same in every training command."""
    g = p.add_argument_group("run directory and output")
    g.add_argument("--out", type=path_arg, default=out,
                   help=f"the run directory: checkpoint.safetensors + metrics.jsonl "
                        f"(default: {out})")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out bit for bit, with its checkpoint's model "
                        "and settings (--steps N: up to N steps in all)")
    g.add_argument("--force", action="store_true",
                   help="start a new run in an --out that holds another run (erases it)")
    add_threads_flag(g)
    g.add_argument("--no-progress", action="store_true", help="plain lines, no progress bar")
    if evaluation:
        flag(g, cls, "eval_every", "steps between evaluations, 0 = none", type=non_negative_int)
    flag(g, cls, "checkpoint_every", "also save the checkpoint every N steps, 0 = only at "
                                     "the end", type=non_negative_int)
    flag(g, cls, "log_every", "steps per metrics.jsonl line", type=positive_int)
    flag(g, cls, "monitor_every", "steps between per-layer gradient norms and update/weight "
                                  "ratios in metrics.jsonl, 0 = none (scratchformer report "
                                  "draws them)", type=non_negative_int)
    g.add_argument("--snapshots", dest="snapshots", default=None,
                   action=argparse.BooleanOptionalAction,
                   help="record the attention on a fixed probe input at log-spaced steps, "
                        "for the report's step slider (default: on)")
    return g


def config_from_args(cls, args, **fixed):
    """``cls(**fields)`` from the flags the user gave (argparse default None = not given),
    plus ``fixed``; a library error becomes a CLIError naming flags instead of fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if "betas" in given:
        given["betas"] = tuple(given["betas"])
    given["progress"] = "plain" if getattr(args, "no_progress", False) else True
    given.update(fixed)
    try:
        return cls(**given)
    except (ValueError, TypeError) as e:
        raise CLIError(as_flags(str(e), names)) from None


def as_flags(message: str, names) -> str:
    """A library message in the command line's words: ``steps=3`` → ``--steps 3``,
    ``resume=True`` → ``--resume``, a leading ``lr must`` → ``--lr must``, ``d_model (30)`` →
    ``--d-model (30)`` (field names with an underscore only: plain words stay words)."""
    def sub(m):
        name, value = m.group(1), m.group(2)
        if name not in names and name not in ("force", "resume", "out"):
            return m.group(0)
        flag_ = "--" + name.replace("_", "-")
        if value == "True":
            return flag_
        if value == "False":
            return "--no-" + name.replace("_", "-")
        return f"{flag_} {value.strip(chr(39))}" if value else flag_

    message = re.sub(r"\b([a-z][a-z0-9_]*)=('[^']*'|[^\s,;:)]*)", sub, message)
    first = message.split(" ", 1)[0]
    if first in names:
        message = "--" + first.replace("_", "-") + message[len(first):]
    # "d_model (30) must be divisible by n_heads (4)": a field named beside its value
    return re.sub(r"(?<![-\w])([a-z][a-z0-9_]*) \(",
                  lambda m: ("--" + m.group(1).replace("_", "-") if m.group(1) in names
                             and "_" in m.group(1) else m.group(1)) + " (", message)


def run_command(entry, cfg, names=()) -> object:
    """Run a library entry point for a training command: its user errors (bad values,
    paths, files, missing packages) become one-line CLIErrors in flag words; a diverged
    run is printed and gives exit status 1 (returned as the int 1)."""
    from ..training.trainer import TrainingDiverged

    names = set(names) | {f.name for f in dataclasses.fields(cfg)}
    try:
        return entry(cfg)
    except TrainingDiverged as e:
        print(f"scratchformer: error: {as_flags(str(e), names)}", file=sys.stderr)
        return 1
    except (*user_errors(), ImportError, KeyError) as e:
        raise CLIError(as_flags(describe(e), names)) from None
