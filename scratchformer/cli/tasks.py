"""``scratchformer train | eval | decode``: the encoder–decoder on the toy tasks.

    scratchformer train --task copy --out runs/copy          # ~99% exact match in seconds
    scratchformer train --out runs/copy --resume --steps 900 # continue it
    scratchformer eval --checkpoint runs/copy/checkpoint.safetensors
    scratchformer decode --checkpoint runs/copy/checkpoint.safetensors --input "3 1 4 1 5" --beam 4
"""

from __future__ import annotations

import json
import math
import os
import time

from ..data.tasks import TASKS
from ..kernels import pool
from .common import (CLIError, Formatter, add_model_flags, add_optim_flags, add_run_flags,
                     add_threads_flag, check_beam, config_from_args, describe, flag,
                     non_negative_int, path_arg, positive_int, run_command, unit_interval,
                     user_errors)

TASK_NAMES = tuple(TASKS)


def register(sub) -> None:
    """Add ``train``, ``eval`` and ``decode`` to the main parser's subcommands."""
    _add_train(sub)
    _add_eval(sub)
    _add_decode(sub)


def _add_train(sub):
    from ..training.recipes import TASK_PRESETS, TaskTrainConfig as C

    presets = "\n  ".join(f"{t}: " + ", ".join(f"{k}={v}" for k, v in TASK_PRESETS[t].items())
                          for t in TASK_NAMES)
    p = sub.add_parser(
        "train", help="train an encoder–decoder on a toy task", formatter_class=Formatter,
        description="Train the NumPy Transformer on a toy task (Adam, warm-up + cosine decay, "
                    "gradient clipping), evaluate on held-out data every --eval-every steps, stop "
                    "at --target exact match, write OUT/checkpoint.safetensors and "
                    "OUT/metrics.jsonl. The library call behind it: "
                    "scratchformer.training.train_task(TaskTrainConfig(...)).\n\n"
                    "Flags left at 'task preset' take the task's tuned value:\n  " + presets,
        epilog="examples:\n  scratchformer train --task copy --out runs/copy\n"
               "  scratchformer train --task shift --offset 3 --steps 3000 --out runs/shift3\n"
               "  scratchformer train --task dates --no-progress --out runs/dates\n"
               "  scratchformer train --out runs/dates --resume --steps 4000\n"
               "  torchrun --standalone --nproc_per_node 2 -m scratchformer train --task reverse "
               "--threads 1   # data-parallel: rank 0 writes OUT")
    flag(p, C, "task", f"the toy task: one of {', '.join(TASK_NAMES)}", choices=TASK_NAMES)
    t = p.add_argument_group("task options (default: the task's own)")
    flag(t, C, "min_len", "shortest sequence (copy/reverse/shift)", default_text="1",
         type=positive_int)
    flag(t, C, "max_len", "longest sequence (copy/reverse/shift)", default_text="10",
         type=positive_int)
    flag(t, C, "num_symbols", "alphabet size (copy/reverse/shift)", default_text="10",
         type=positive_int)
    flag(t, C, "offset", "shift amount (shift)", default_text="1", type=non_negative_int)
    flag(t, C, "held_out_size", "held-out sequences, never trained on", default_text="1000",
         type=positive_int)
    flag(t, C, "min_year", "first year (dates)", default_text="1900", type=non_negative_int)
    flag(t, C, "max_year", "last year (dates)", default_text="2099", type=non_negative_int)
    flag(t, C, "direction", "translation direction (numbers)", default_text="en-es",
         choices=["en-es", "es-en"])
    add_model_flags(p, C, encdec=True, preset=PRESET)
    add_optim_flags(p, C, preset=PRESET)
    e = add_run_flags(p, C, "runs/TASK")
    flag(e, C, "target", "stop at this held-out exact match, 0 = never", preset=PRESET,
         type=unit_interval)
    flag(e, C, "eval_quick", "decode only this many held-out sequences per evaluation until "
                             "they reach --target, then all of them", type=non_negative_int)
    e.add_argument("--samples", type=non_negative_int, default=3,
                   help="held-out examples decoded at the end (default: 3)")
    e.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.set_defaults(func=cmd_train)


PRESET = "task preset"


def _add_eval(sub):
    p = sub.add_parser("eval", help="held-out exact match / token accuracy of a checkpoint",
                       formatter_class=Formatter,
                       description="Evaluate a checkpoint written by 'scratchformer train' on its "
                                   "task's held-out set (never seen in training): teacher-forced "
                                   "loss and token accuracy, and greedy (or beam) exact match.",
                       epilog="example:\n  scratchformer eval --checkpoint runs/copy/checkpoint.safetensors")
    p.add_argument("--checkpoint", required=True, type=path_arg, help="path of checkpoint.safetensors")
    p.add_argument("--beam", type=positive_int, default=1,
                   help="beam size for exact match (1 = greedy)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    add_threads_flag(p)
    p.set_defaults(func=cmd_eval)


def _add_decode(sub):
    p = sub.add_parser("decode", help="run a trained checkpoint on your own input",
                       formatter_class=Formatter,
                       description="Decode inputs with a checkpoint written by 'scratchformer "
                                   "train'. Sequence tasks take space-separated symbols "
                                   "('3 1 4'); dates take free text ('27 Nov 2026'), numbers "
                                   "number words ('twenty-one thousand').",
                       epilog="examples:\n  scratchformer decode --checkpoint runs/rev/checkpoint.safetensors "
                              "--input \"1 2 3\" \"9 8\"\n"
                              "  scratchformer decode --checkpoint runs/dates/checkpoint.safetensors "
                              "--input \"March 3rd, 1999\" --beam 4")
    p.add_argument("--checkpoint", required=True, type=path_arg, help="path of checkpoint.safetensors")
    p.add_argument("--input", nargs="+", required=True, metavar="TEXT",
                   help="one or more inputs, each decoded on its own line")
    p.add_argument("--beam", type=positive_int, default=1, help="beam size (1 = greedy)")
    p.add_argument("--max-len", type=positive_int, help="most tokens to generate (default: the task's)")
    p.set_defaults(func=cmd_decode)


def _load_checkpoint(path):
    from ..training.checkpoint import load
    from ..training.rundir import check_input_file

    try:
        model, opt_state, state = load(check_input_file(path, "checkpoint"))
    except user_errors() as e:
        raise CLIError(describe(e)) from None
    if "task" not in state:
        raise CLIError(f"{path}: no task stored in this checkpoint (was it written by "
                       f"'scratchformer train'?)")
    try:
        name, options = state["task"]["name"], dict(state["task"]["options"])
    except (KeyError, TypeError, ValueError):
        raise CLIError(f"{path}: the stored task is unreadable: {state['task']!r:.80}") from None
    task = _build_task(name, options)
    return model, opt_state, state, task


def _build_task(name, options):
    from ..data.tasks import get_task

    try:
        return get_task(name, **options)
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None


# ---- commands ---------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from ..training.recipes import TaskTrainConfig, train_task

    if args.out == "runs/TASK":
        if args.resume and args.task is None:
            raise CLIError("--resume continues the run in --out: give --out RUN_DIR (or "
                           "--task TASK for runs/TASK)")
        args.out = f"runs/{args.task or 'copy'}"
    fixed = {"progress": False} if args.quiet else {}
    cfg = config_from_args(TaskTrainConfig, args, **fixed)
    result = run_command(train_task, cfg)
    if isinstance(result, int):
        return result
    if result.rank:  # a data-parallel helper rank: rank 0 reports
        return 0
    final, task = result.metrics, result.extras["task"]
    if args.samples and not args.quiet:
        _print_samples(result.model, task, task.held_out()[:args.samples])
    why = {"target": "reached the target", "steps": "ran all steps"}.get(result.stop_reason, "")
    print(f"{why} after {result.step} steps in {result.wall_s:.1f} s; held-out (n={final['n']}): "
          f"loss {final['loss']:.4f}, token accuracy {100 * final['token_accuracy']:.1f}%")
    print(f"exact match: {100 * final['exact_match']:.1f}%")
    print(f"checkpoint: {os.path.join(result.out, 'checkpoint.safetensors')}  metrics: "
          f"{os.path.join(result.out, 'metrics.jsonl')}")
    return 0


def _print_samples(model, task, pairs):
    import numpy as np

    from ..data.taskbase import pad_batch
    from ..models.decoding import greedy_decode

    src, _, tgt_out = pad_batch(pairs)
    out = greedy_decode(model, src, max_len=tgt_out.shape[1])
    v = task.vocab
    for (x, y), row in zip(pairs, out):
        pred = task.decode_output(row)
        mark = "ok " if pred == v.decode(np.asarray(y)) else "BAD"
        print(f"  [{mark}] {v.decode(np.asarray(x))!r:>34} -> {pred!r}")


def cmd_eval(args) -> int:
    with pool.threads(args.threads):
        return _eval(args)


def _eval(args) -> int:
    from ..training.progress import format_metrics
    from ..training.recipes import Seq2SeqEvaluator

    model, _, state, task = _load_checkpoint(args.checkpoint)
    check_beam(args.beam, model.config.tgt_vocab_size)
    ev = Seq2SeqEvaluator(task.held_out(), beam_size=args.beam)
    t0 = time.perf_counter()
    m = ev.evaluate(model)
    m["eval_time_s"] = round(time.perf_counter() - t0, 3)
    trainer = state.get("trainer", {})
    m["step"] = trainer.get("step") if isinstance(trainer, dict) else None
    if args.json:  # strict JSON: NaN / inf (a diverged model's loss) become null
        print(json.dumps(_json_safe({"task": task.name, **m}), allow_nan=False))
    else:
        print(f"{task.name} (step {m['step']}), {'greedy' if args.beam == 1 else f'beam {args.beam}'}"
              f": {format_metrics({k: m[k] for k in ('loss', 'token_accuracy', 'n')})}")
        print(f"exact match: {100 * m['exact_match']:.1f}%")
    return 0


def _json_safe(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cmd_decode(args) -> int:
    import numpy as np

    from ..data.taskbase import pad_batch
    from ..models.decoding import beam_search, greedy_decode

    model, _, _, task = _load_checkpoint(args.checkpoint)
    check_beam(args.beam, model.config.tgt_vocab_size)
    try:
        srcs = [task.encode_input(text) for text in args.input]
    except ValueError as e:
        raise CLIError(f"bad --input for task {task.name!r}: {e}") from None
    limit = model.config.max_len
    for text, ids in zip(args.input, srcs):
        if len(ids) > limit:
            raise CLIError(f"input {text!r} has {len(ids)} tokens; the model takes at most {limit}")
    max_len = args.max_len or min(getattr(task, "max_tgt_len", 32) + 8, limit)
    if not 1 <= max_len <= limit:
        raise CLIError(f"--max-len must be in [1, {limit}], got {max_len}")
    src = pad_batch([(ids, []) for ids in srcs])[0]  # (B, S)
    if args.beam == 1:
        out = greedy_decode(model, src, max_len=max_len)
    else:
        out = beam_search(model, src, beam_size=args.beam, max_len=max_len)
    for row in np.asarray(out):
        print(task.decode_output(row))
    return 0
