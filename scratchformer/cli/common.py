"""What every command shares: its one error type, the argparse parser and help format,
the BLAS thread limit, and data-parallel training under torchrun.

A user mistake (a bad flag value, an unusable path, a bad or foreign file) raises
``CLIError``; ``scratchformer.cli.main`` prints it as one line ``scratchformer: error: ...``
on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import math
import os


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``scratchformer train: error: ...``), exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show ``(default: X)`` after each flag's help, except when there is no default."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def say(args, *lines):
    """Print ``lines`` unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        for line in lines:
            print(line, flush=True)


# ---- data-parallel training under torchrun: train, gpt train, translate-train ------------------
def data_parallel(batch_size: int | None = None, flag: str = "--batch-size"):
    """This process's ``training.distributed.DataParallel`` when torchrun started several
    (WORLD_SIZE > 1), else None. Only then is torch imported: CLIError when it is missing,
    or when ``batch_size`` (a fixed global batch; None: any size) does not split evenly."""
    from ..training.distributed import DataParallel, world_size

    if world_size() <= 1:
        return None
    try:
        parallel = DataParallel()
    except ImportError as e:
        raise CLIError(str(e)) from None
    if batch_size is not None and batch_size % parallel.world:
        raise CLIError(f"{flag} {batch_size} must be divisible by the {parallel.world} processes")
    return parallel


def in_run_dir(out, run, *, resume: bool, force: bool, parallel=None):
    """``run(out)`` holding the lock on the run directory ``out`` (``training.rundir.open_run``);
    a data-parallel helper rank (``parallel`` not rank 0) runs ``run(None)``: rank 0 alone
    owns the directory, and the others write nothing."""
    from ..training.rundir import RunDirError, open_run

    if parallel is not None and not parallel.is_main:
        return run(None)
    try:
        with open_run(out, resume=resume, force=force):
            return run(out)
    except RunDirError as e:
        raise CLIError(str(e)) from None


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
