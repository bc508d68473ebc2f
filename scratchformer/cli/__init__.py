"""``scratchformer`` command line: argparse and thin calls into the library.

    scratchformer train --task copy --out runs/copy          # ~99% exact match in seconds
    scratchformer eval --checkpoint runs/copy/checkpoint.safetensors
    scratchformer decode --checkpoint runs/copy/checkpoint.safetensors --input "3 1 4 1 5" --beam 4

One module per command group, each with ``register(subparsers)``: ``tasks`` (train, eval,
decode), ``gpt`` (gpt train, gpt sample), ``translate`` (translate-train, translate),
``torch_train`` (torch-train), ``attention`` and ``checkpoint`` (convert-checkpoint). None imports anything heavy (torch,
matplotlib) until its command runs.

User mistakes (a bad flag, an unknown task, a missing checkpoint, an unknown symbol in
the input, an unusable path) raise ``CLIError``: one line ``scratchformer: error: ...``,
exit status 2, no traceback. Every numeric flag is checked when parsed (the validators in
``common``); paths and files are checked before any training starts. SIGINT / SIGTERM
during training save a checkpoint and exit with status 130 / 143.
"""

from __future__ import annotations

import sys

from . import attention, checkpoint, gpt, report, tasks, torch_train, translate
from .common import CLIError, Formatter, Parser, as_flags, describe

EPILOG = """examples:
  scratchformer train --task copy --out runs/copy
  scratchformer train --task reverse --d-model 128 --steps 3000 --out runs/rev
  scratchformer train --out runs/rev --resume                        # continue an interrupted run
  scratchformer eval --checkpoint runs/copy/checkpoint.safetensors
  scratchformer decode --checkpoint runs/copy/checkpoint.safetensors --input "3 1 4 1 5"
  scratchformer decode --checkpoint runs/dates/checkpoint.safetensors --input "Friday, 27 November 2026" --beam 4
"""


# ---- parsers --------------------------------------------------------------------------------
def build_parser() -> Parser:
    parser = Parser(prog="scratchformer", formatter_class=Formatter, epilog=EPILOG,
                    description="A Transformer from scratch in NumPy: train it on toy tasks, "
                                "evaluate it, decode with it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for group in (tasks, gpt, translate, torch_train, attention, report, checkpoint):
        group.register(sub)
    return parser


def _version() -> str:
    from .. import __version__
    return __version__


# ---- entry point ------------------------------------------------------------------------------
def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    A command runs with NumPy's float warnings off (``quiet_float_errors``): a NaN or inf
    shows in the numbers it prints, or as one named error (a diverged run, a decoder's
    ``NonFiniteLogits``), never as a page of RuntimeWarnings first."""
    from ..models.sampling import NonFiniteLogits
    from ..training.trainer import quiet_float_errors

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors: return the status, don't exit
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        with quiet_float_errors():
            return int(args.func(args) or 0)
    except CLIError as e:
        print(f"scratchformer: error: {describe(e)}", file=sys.stderr)
        return 2
    except NonFiniteLogits as e:  # a checkpoint whose weights overflow the model
        print(f"scratchformer: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unusable path the command did not foresee: still one line
        print(f"scratchformer: error: {describe(e)}", file=sys.stderr)
        return 2
    except MemoryError:  # e.g. a huge size or count the library could not refuse earlier
        print("scratchformer: error: not enough memory for these settings (a size, count or "
              "length is too large)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C; TrainingInterrupted (SIGINT/SIGTERM) says more
        print(f"scratchformer: {as_flags(str(e), ()) or 'interrupted'}", file=sys.stderr)
        return getattr(e, "exit_status", 130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
