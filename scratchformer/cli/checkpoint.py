"""``scratchformer convert-checkpoint``: rewrite a checkpoint of the old ``.npz`` format as
safetensors (the library: ``scratchformer.training.legacy_npz.convert``)."""

from __future__ import annotations

from .common import CLIError, Formatter


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-checkpoint", formatter_class=Formatter,
        help="convert an old .npz checkpoint to the safetensors format",
        description="Read a checkpoint written before checkpoints moved to safetensors (an .npz "
                    "archive, read without unpickling) and write the same model, optimizer state "
                    "and training state as a .safetensors file.",
        epilog="example:\n  scratchformer convert-checkpoint runs/copy/checkpoint.npz   "
               "# writes runs/copy/checkpoint.safetensors")
    p.add_argument("old", metavar="OLD.npz", help="the old checkpoint")
    p.add_argument("new", metavar="NEW", nargs="?",
                   help="where to write it (default: OLD with the suffix .safetensors)")
    p.set_defaults(func=convert_command)


def convert_command(args) -> int:
    from ..training.checkpoint import CheckpointError
    from ..training.legacy_npz import convert

    try:
        out = convert(args.old, args.new)
    except FileNotFoundError:
        raise CLIError(f"checkpoint not found: {args.old}") from None
    except (CheckpointError, ValueError, OSError) as e:
        raise CLIError(str(e)) from None
    print(f"wrote {out}")
    return 0
