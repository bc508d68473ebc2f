"""``scratchformer attention``: draw the attention of a trained checkpoint on your input.

``register(subparsers)`` adds the command. Nothing heavy is imported here; matplotlib
only when a PNG is asked for. Every kind of checkpoint works:

- a toy task (``scratchformer train``): INPUT is decoded greedily; then one teacher-forced
  forward pass over the source and ``[BOS] + output`` collects the weights that produced it;
- a character GPT (``gpt train``): INPUT is the prompt, continued greedily by ``--max-len``
  characters (default 40); the causal self-attention of every block over prompt + continuation;
- a translation model (``translate-train``): as a toy task, labelled with the BPE pieces.

    scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" \\
        --out attn.png --kind cross --layer -1          # one PNG: a heatmap per head
    scratchformer attention --checkpoint runs/gpt/checkpoint.safetensors --input "ROMEO:" \\
        --html attn.html                                # every layer, head and kind, offline
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import CLIError, any_int, describe, path_arg, positive_int, user_errors

EXAMPLES = """examples:
  scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" --out attn.png
  scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" --kind enc --layer 0 --out enc0.png
  scratchformer attention --checkpoint runs/dates/checkpoint.safetensors --input "Nov 27, 2026" --html attn.html
  scratchformer attention --checkpoint runs/gpt/checkpoint.safetensors --input "ROMEO:" --html gpt_attn.html
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "attention", help="plot attention maps (PNG) or write an offline HTML explorer",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Decode INPUT with a checkpoint written by 'scratchformer train', "
                    "'translate-train' or 'gpt train' (INPUT is then the prompt), then show the "
                    "attention that produced the output: --out writes a PNG with one heatmap "
                    "per head for one layer of one kind (enc: encoder self-attention, dec: decoder "
                    "masked self-attention, cross: decoder -> encoder, causal: the GPT's); --html "
                    "writes one self-contained HTML file to browse every layer, head and kind "
                    "(no network).")
    p.add_argument("--checkpoint", required=True, type=path_arg, help="path of checkpoint.safetensors")
    p.add_argument("--input", required=True, metavar="TEXT",
                   help="the source text to decode (a GPT: the prompt to continue)")
    p.add_argument("--out", metavar="PNG", type=path_arg, help="write the heatmaps here (.png, .svg or .pdf)")
    p.add_argument("--html", metavar="HTML", type=path_arg, help="write the interactive explorer here")
    p.add_argument("--kind", choices=["enc", "dec", "cross", "causal"],
                   help="which attention --out draws (default: cross; causal for a GPT)")
    p.add_argument("--layer", type=any_int, default=-1,
                   help="which layer --out draws; negative counts from the last (default: -1)")
    p.add_argument("--max-len", type=positive_int,
                   help="most tokens to generate (default: the task's; 40 for a GPT)")
    p.set_defaults(func=attention_command)


def attention_command(args) -> int:
    from ..training.rundir import check_input_file, check_output_file

    if not args.out and not args.html:
        raise CLIError("attention: give --out PNG and/or --html HTML (nothing to write)")
    try:  # the outputs are checked writable before any work
        for flag, path in (("--out", args.out), ("--html", args.html)):
            if path:
                check_output_file(path, flag)
        source, model, helper = load_for_attention(check_input_file(args.checkpoint, "checkpoint"))
    except user_errors() as e:
        raise CLIError(describe(e)) from None
    kind = _check_kind(args, source, model)
    rec = _record(args, source, model, helper)
    print(f"{args.input!r} -> {rec.output_text!r}")
    if args.out:
        from ..viz import close_figure, plot_attention

        n = rec.n_layers(kind)
        close_figure(plot_attention(rec, kind=kind, layer=args.layer, path=args.out))
        print(f"wrote {args.out} ({kind} attention, layer {args.layer % n}, "
              f"{rec.n_heads} heads)")
    if args.html:
        from ..viz import write_attention_html

        name = helper.name if source == "task" else source
        write_attention_html(rec, args.html, title=f"ScratchFormer attention: {name}")
        print(f"wrote {args.html} (open it in a browser; works offline)")
    sys.stdout.flush()
    return 0


def load_for_attention(path):
    """``(kind, model, helper)`` from any training checkpoint: ``"task"`` with the toy task,
    ``"gpt"`` with its CharTokenizer, ``"translation"`` with its BPETokenizer; ValueError
    when the checkpoint holds none of them."""
    from ..training.checkpoint import load

    model, _, state = load(path)
    if "task" in state:
        from ..viz import task_from_state

        return "task", model, task_from_state(state, path)
    tok = state.get("tokenizer")
    if tok is None and isinstance(state.get("trainer"), dict):
        tok = state["trainer"].get("tokenizer")
    if tok is None:
        raise ValueError(f"{path}: neither a task, a GPT nor a translation checkpoint (its "
                         f"state holds {sorted(state)})")
    if type(model).__name__ == "GPT":
        from ..data.chartok import CharTokenizer

        return "gpt", model, CharTokenizer.from_json(tok)
    from ..translation.bpe import BPETokenizer

    return "translation", model, BPETokenizer.from_dict(json.loads(tok) if isinstance(tok, str) else tok)


def _check_kind(args, source: str, model) -> str:
    """The attention kind --out draws, checked against the model, and --layer and --max-len."""
    cfg = model.config
    if args.max_len is not None and source != "gpt" and not 1 <= args.max_len <= cfg.max_len:
        raise CLIError(f"--max-len must be in [1, {cfg.max_len}], got {args.max_len}")
    if source == "gpt":
        if args.kind not in (None, "causal"):
            raise CLIError(f"--kind {args.kind}: a GPT has only causal self-attention (--kind causal)")
        kind, n = "causal", cfg.n_layers
    else:
        if args.kind == "causal":
            raise CLIError("--kind causal is the GPT's; an encoder–decoder has enc, dec and cross")
        kind = args.kind or "cross"
        n = cfg.n_encoder_layers if kind == "enc" else cfg.n_decoder_layers
    if args.out and not -n <= args.layer < n:
        raise CLIError(f"--layer must be in [{-n}, {n - 1}] for --kind {kind} "
                       f"({n} layers), got {args.layer}")
    return kind


def _record(args, source: str, model, helper):
    from ..viz import attention_for_gpt, attention_for_text, attention_for_translation

    try:
        if source == "gpt":
            return attention_for_gpt(model, helper, args.input, new_tokens=args.max_len or 40)
        if source == "translation":
            return attention_for_translation(model, helper, args.input, max_len=args.max_len)
        return attention_for_text(model, helper, args.input, max_len=args.max_len)
    except ValueError as e:
        what = f"task {helper.name!r}" if source == "task" else f"this {source} model"
        raise CLIError(f"bad --input for {what}: {e}") from None
