"""What every command shares: its one error type, the argparse parser and help format,
and the BLAS thread limit.

A user mistake (a bad flag value, an unusable path, a bad or foreign file) raises
``CLIError``; ``scratchformer.cli.main`` prints it as one line ``scratchformer: error: ...``
on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse


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


def set_threads(n):
    """Limit BLAS to ``n`` threads for as long as the returned limiter is alive (0/None: no limit)."""
    from ..training.trainer import limit_blas_threads

    return limit_blas_threads(n) if n else None


def say(args, *lines):
    """Print ``lines`` unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        for line in lines:
            print(line, flush=True)
