"""``scratchformer attention``: draw the attention of a trained checkpoint on your input.

``register(subparsers)`` adds the command. Nothing heavy is imported here; matplotlib
only when a PNG is asked for.

    scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" \\
        --out attn.png --kind cross --layer -1          # one PNG: a heatmap per head
    scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" \\
        --html attn.html                                # every layer, head and kind, offline

The input is decoded greedily; then one teacher-forced forward pass over the source and
``[BOS] + output`` collects the weights that produced that output.
"""

from __future__ import annotations

import argparse
import sys

from .common import CLIError, any_int, describe, path_arg, positive_int, user_errors

EXAMPLES = """examples:
  scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" --out attn.png
  scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" --kind enc --layer 0 --out enc0.png
  scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" --html attn.html
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "attention", help="plot attention maps (PNG) or write an offline HTML explorer",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Decode INPUT with a checkpoint written by 'scratchformer train', then show "
                    "the attention that produced the output: --out writes a PNG with one heatmap "
                    "per head for one layer of one kind (enc: encoder self-attention, dec: decoder "
                    "masked self-attention, cross: decoder -> encoder); --html writes one "
                    "self-contained HTML file to browse every layer, head and kind (no network).")
    p.add_argument("--checkpoint", required=True, type=path_arg, help="path of checkpoint.safetensors")
    p.add_argument("--input", required=True, metavar="TEXT", help="the source text to decode")
    p.add_argument("--out", metavar="PNG", type=path_arg, help="write the heatmaps here (.png, .svg or .pdf)")
    p.add_argument("--html", metavar="HTML", type=path_arg, help="write the interactive explorer here")
    p.add_argument("--kind", choices=["enc", "dec", "cross"], default="cross",
                   help="which attention --out draws (default: cross)")
    p.add_argument("--layer", type=any_int, default=-1,
                   help="which layer --out draws; negative counts from the last (default: -1)")
    p.add_argument("--max-len", type=positive_int, help="most tokens to generate (default: the task's)")
    p.set_defaults(func=attention_command)


def attention_command(args) -> int:
    from ..training.rundir import check_input_file, check_output_file
    from ..viz import attention_for_text, load_model_and_task

    if not args.out and not args.html:
        raise CLIError("attention: give --out PNG and/or --html HTML (nothing to write)")
    try:  # the outputs are checked writable before any work
        for flag, path in (("--out", args.out), ("--html", args.html)):
            if path:
                check_output_file(path, flag)
        model, task = load_model_and_task(check_input_file(args.checkpoint, "checkpoint"))
    except user_errors() as e:
        raise CLIError(describe(e)) from None
    if not hasattr(model, "encode"):
        raise CLIError(f"{args.checkpoint}: attention needs an encoder–decoder checkpoint, "
                     f"got a {type(model).__name__}")
    if args.max_len is not None and not 1 <= args.max_len <= model.config.max_len:
        raise CLIError(f"--max-len must be in [1, {model.config.max_len}], got {args.max_len}")
    cfg = model.config
    n = cfg.n_encoder_layers if args.kind == "enc" else cfg.n_decoder_layers
    if args.out and not -n <= args.layer < n:
        raise CLIError(f"--layer must be in [{-n}, {n - 1}] for --kind {args.kind} "
                     f"({n} layers), got {args.layer}")
    try:
        rec = attention_for_text(model, task, args.input, max_len=args.max_len)
    except ValueError as e:
        raise CLIError(f"bad --input for task {task.name!r}: {e}") from None
    print(f"{args.input!r} -> {rec.output_text!r}")
    if args.out:
        from ..viz import close_figure, plot_attention

        close_figure(plot_attention(rec, kind=args.kind, layer=args.layer, path=args.out))
        print(f"wrote {args.out} ({args.kind} attention, layer {args.layer % n}, "
              f"{rec.n_heads} heads)")
    if args.html:
        from ..viz import write_attention_html

        write_attention_html(rec, args.html,
                             title=f"ScratchFormer attention: {task.name}")
        print(f"wrote {args.html} (open it in a browser; works offline)")
    sys.stdout.flush()
    return 0
