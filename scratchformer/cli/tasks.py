"""``scratchformer train | eval | decode``: the encoder–decoder on the toy tasks.

    scratchformer train --task copy --out runs/copy          # ~99% exact match in seconds
    scratchformer eval --checkpoint runs/copy/checkpoint.safetensors
    scratchformer decode --checkpoint runs/copy/checkpoint.safetensors --input "3 1 4 1 5" --beam 4
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

from ..data.tasks import TASKS
from ..kernels import pool
from .common import (CLIError, Formatter, check_beam, data_parallel, describe, in_run_dir,
                     non_negative_float, non_negative_int, path_arg, positive_float, positive_int,
                     probability, say, threads, unit_interval,
                     user_errors)

TASK_NAMES = tuple(TASKS)


def register(sub) -> None:
    """Add ``train``, ``eval`` and ``decode`` to the main parser's subcommands."""
    _add_train(sub)
    _add_eval(sub)
    _add_decode(sub)


def _add_train(sub):
    from ..training.recipes import TASK_PRESETS

    presets = "\n  ".join(f"{t}: " + ", ".join(f"{k}={v}" for k, v in
                                              {**TASK_PRESETS[t]["model"], **TASK_PRESETS[t]["train"]}.items())
                        for t in TASK_NAMES)
    p = sub.add_parser(
        "train", help="train an encoder–decoder on a toy task", formatter_class=Formatter,
        description="Train the NumPy Transformer on a toy task (Adam, warm-up + cosine decay, "
                    "gradient clipping), evaluate on held-out data every --eval-every steps, stop "
                    "at --target exact match, write OUT/checkpoint.safetensors and OUT/metrics.jsonl.\n\n"
                    "Flags left at 'preset' take the task's tuned value:\n  " + presets,
        epilog="examples:\n  scratchformer train --task copy --out runs/copy\n"
               "  scratchformer train --task shift --offset 3 --steps 3000 --out runs/shift3\n"
               "  scratchformer train --task dates --no-progress --out runs/dates\n"
               "  scratchformer train --resume runs/dates/checkpoint.safetensors\n"
               "  torchrun --standalone --nproc_per_node 2 -m scratchformer train --task reverse "
               "--threads 1   # data-parallel: rank 0 writes OUT")
    p.add_argument("--task", help=f"the toy task: one of {', '.join(TASK_NAMES)} "
                                  "(required unless --resume)")
    p.add_argument("--out", type=path_arg, help="run directory for checkpoint.safetensors and metrics.jsonl "
                                 "(default: runs/TASK)")
    p.add_argument("--resume", metavar="CHECKPOINT", type=path_arg,
                   help="continue the run saved in CHECKPOINT bit for bit (its model, optimizer, "
                        "task and settings). --steps may extend it, but then the cosine decay "
                        "is stretched to the new length")
    t = p.add_argument_group("task options")
    t.add_argument("--min-len", type=positive_int, help="shortest sequence (copy/reverse/shift; task default 1)")
    t.add_argument("--max-len", type=positive_int, help="longest sequence (copy/reverse/shift; task default 10)")
    t.add_argument("--num-symbols", type=positive_int, help="alphabet size (copy/reverse/shift; task default 10)")
    t.add_argument("--offset", type=non_negative_int, help="shift amount (shift; task default 1)")
    t.add_argument("--held-out", type=positive_int, dest="held_out_size",
                   help="held-out sequences, never trained on (task default 1000)")
    t.add_argument("--min-year", type=non_negative_int, help="first year (dates; task default 1900)")
    t.add_argument("--max-year", type=non_negative_int, help="last year (dates; task default 2099)")
    t.add_argument("--direction", choices=["en-es", "es-en"],
                   help="translation direction (numbers; task default en-es)")
    m = p.add_argument_group("model")
    m.add_argument("--d-model", type=positive_int, help="model width D (default: preset)")
    m.add_argument("--heads", type=positive_int, help="attention heads H (default: preset)")
    m.add_argument("--layers", type=positive_int, help="encoder and decoder layers each (default: preset)")
    m.add_argument("--d-ff", type=positive_int, help="feed-forward width (default: preset)")
    m.add_argument("--dropout", type=probability, help="dropout rate (default: preset)")
    m.add_argument("--activation", choices=["gelu", "relu"], help="FFN activation (default: preset)")
    m.add_argument("--norm", choices=["pre", "post"],
                   help="LayerNorm placement: pre-LN trains faster, post-LN is the paper's "
                        "(default: preset)")
    o = p.add_argument_group("optimization")
    o.add_argument("--steps", type=positive_int, help="maximum optimizer steps (default: preset)")
    o.add_argument("--batch-size", type=positive_int, help="sequences per step (default: preset)")
    o.add_argument("--lr", type=positive_float, help="peak learning rate (default: preset)")
    o.add_argument("--warmup", type=non_negative_int, help="linear warm-up steps (default: preset)")
    o.add_argument("--schedule", choices=["cosine", "noam", "constant"],
                   help="learning-rate schedule after warm-up (default: preset)")
    o.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help="(default: preset)")
    o.add_argument("--weight-decay", type=non_negative_float, help="(default: preset)")
    o.add_argument("--clip-norm", type=non_negative_float, help="max global gradient norm, 0 = off (default: preset)")
    o.add_argument("--label-smoothing", type=probability, help="(default: preset)")
    o.add_argument("--seed", type=non_negative_int, default=0, help="seeds the weights, dropout and the data")
    e = p.add_argument_group("evaluation and output")
    e.add_argument("--eval-every", type=non_negative_int, help="steps between evaluations, 0 = none (default: preset)")
    e.add_argument("--target", type=unit_interval,
                   help="stop at this held-out exact match, 0 = never (default: preset)")
    e.add_argument("--eval-quick", type=non_negative_int, default=200,
                   help="decode only this many held-out sequences per evaluation until they "
                        "reach --target, then all of them")
    e.add_argument("--checkpoint-every", type=non_negative_int, default=0,
                   help="also write the checkpoint every N steps (0 = only at the end)")
    e.add_argument("--log-every", type=positive_int, default=10, help="steps per metrics.jsonl line")
    e.add_argument("--samples", type=non_negative_int, default=3, help="held-out examples decoded at the end")
    e.add_argument("--threads", type=threads, default=None,
                   help="threads while training (default: every core, at most 8; 1: one thread)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar, plain lines")
    e.add_argument("--quiet", action="store_true", help="print only the final summary")
    e.add_argument("--force", action="store_true",
                   help="start a new run even if OUT holds another run (erases its metrics; "
                        "its checkpoint is replaced at the first save)")
    p.set_defaults(func=cmd_train)


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
    p.add_argument("--threads", type=threads, default=None,
                   help="threads (default: every core, at most 8; 1: one thread)")
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


_TASK_FLAGS = {"min_len": ("copy", "reverse", "shift"), "max_len": ("copy", "reverse", "shift"),
               "num_symbols": ("copy", "reverse", "shift"), "offset": ("shift",),
               "min_year": ("dates",), "max_year": ("dates",), "direction": ("numbers",),
               "held_out_size": TASK_NAMES}


def _task_options(args) -> dict:
    opts = {}
    for key, tasks in _TASK_FLAGS.items():
        value = getattr(args, key)
        if value is None:
            continue
        if args.task not in tasks:
            raise CLIError(f"--{key.replace('_', '-')} applies to task {' / '.join(tasks)}, "
                           f"not {args.task!r}")
        opts[key] = value
    return opts


# flags (default None) that a resumed run takes from its checkpoint instead
_SETTINGS = ("d_model", "heads", "layers", "d_ff", "dropout", "activation", "norm", "batch_size",
             "lr", "warmup", "schedule", "optimizer", "weight_decay", "clip_norm",
             "label_smoothing", "eval_every", "target")


def _model_overrides(args) -> dict:
    pairs = {"d_model": args.d_model, "n_heads": args.heads, "d_ff": args.d_ff,
             "dropout": args.dropout, "activation": args.activation}
    out = {k: v for k, v in pairs.items() if v is not None}
    if args.layers is not None:
        out["n_encoder_layers"] = out["n_decoder_layers"] = args.layers
    if args.norm is not None:
        out["norm_first"] = args.norm == "pre"
    return out


def _train_overrides(args) -> dict:
    keys = ("steps", "batch_size", "lr", "warmup", "schedule", "optimizer", "weight_decay",
            "label_smoothing", "eval_every", "checkpoint_every", "log_every")
    out = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.clip_norm is not None:
        out["clip_norm"] = args.clip_norm or None
    if args.target is not None:
        out["target"] = args.target or None
    out["seed"] = args.seed
    return out


# ---- commands ---------------------------------------------------------------------------------
def cmd_train(args) -> int:
    pool.threads(args.threads)  # for the rest of the command (the final evaluation too)
    model, task, config = _prepare_train(args)  # every flag checked before the run directory
    out = (args.out or os.path.dirname(os.path.abspath(args.resume)) if args.resume
           else args.out or os.path.join("runs", task.name))
    parallel = data_parallel(config.batch_size)  # under torchrun: rank 0 owns the run directory
    if parallel is not None and not parallel.is_main:
        args.quiet, args.samples = True, 0
    return in_run_dir(out, lambda out: _train_run(args, out, model, task, config, parallel),
                      resume=bool(args.resume), force=args.force, parallel=parallel)


def _prepare_train(args):
    """(model, task, TrainConfig) from the flags or the --resume checkpoint; CLIError if bad."""
    from ..models.sizes import check_batch_fits
    from ..models.transformer import Transformer
    from ..training.recipes import task_model_config, task_train_config
    from ..training.trainer import TrainConfig, trainer_state

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in (*_TASK_FLAGS, *_SETTINGS)
                 if getattr(args, k) is not None]
        given = (["--task"] if args.task else []) + given + (["--force"] if args.force else [])
        if given:
            raise CLIError(f"--resume continues with the checkpoint's task, model and settings; "
                           f"drop {', '.join(given)} (only --steps, --out and display flags "
                           f"may change)")
        model, _, state, task = _load_checkpoint(args.resume)
        try:
            ts = trainer_state(state, args.resume)
            cfg_dict = dict(ts["train_config"])
            done = int(ts["step"])
        except (ValueError, TypeError, KeyError) as e:
            raise CLIError(f"{args.resume}: not a resumable training checkpoint ({e})") from None
        if args.steps is not None:
            if args.steps < done:
                raise CLIError(f"--steps {args.steps} is before the checkpoint's step {done}: "
                               f"--steps N with --resume means 'continue up to N steps in all'")
            cfg_dict["steps"] = args.steps
        try:
            config = TrainConfig.from_dict(cfg_dict)
        except (ValueError, TypeError) as e:
            raise CLIError(f"{args.resume}: {e}") from None
        return model, task, config
    if args.task is None:
        raise CLIError(f"--task is required (one of {', '.join(TASK_NAMES)}) unless --resume")
    if args.task not in TASK_NAMES:
        raise CLIError(f"unknown task {args.task!r}; valid tasks: {', '.join(TASK_NAMES)}")
    task = _build_task(args.task, _task_options(args))
    try:
        model = Transformer(task_model_config(task, seed=args.seed, **_model_overrides(args)))
        config = task_train_config(task.name, **_train_overrides(args))
        check_batch_fits(model.config, config.batch_size, model.config.max_len)
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None
    return model, task, config


def _train_run(args, out, model, task, config, parallel=None) -> int:
    """``train`` inside its locked run directory ``out`` (None: a data-parallel helper rank)."""
    from ..training.recipes import make_task_trainer
    from ..training.trainer import TrainingDiverged

    progress = False if args.quiet else ("plain" if args.no_progress else True)
    trainer = make_task_trainer(task, model, config, out_dir=out, progress=progress,
                                quick=args.eval_quick, parallel=parallel, threads=args.threads)
    if args.resume:
        trainer.resume(args.resume)
        say(args, f"resuming {task.name} at step {trainer.step} of {config.steps}")
    n_params = sum(p.data.size for p in model.parameters())
    c = model.config
    say(args, f"task {task.name}: vocab {task.vocab_size}, {n_params:,} parameters "
               f"(d_model {c.d_model}, {c.n_heads} heads, {c.n_encoder_layers}+{c.n_decoder_layers} "
               f"layers, d_ff {c.d_ff}, {'pre' if c.norm_first else 'post'}-LN)")
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except TrainingDiverged as e:
        print(f"scratchformer: error: {e}", file=sys.stderr)
        return 1
    # the numbers printed are measured in this process, over the whole held-out set: never a
    # resumed run's stored last_eval, never the quick subset
    measured_now = trainer.last_eval_step == trainer.step
    if measured_now and trainer.last_eval.get("n") == len(trainer.evaluator.pairs):
        final = trainer.last_eval
    else:
        final = trainer.evaluator.evaluate(model)
        trainer.last_eval, trainer.last_eval_step = final, trainer.step
        if out is not None:
            trainer.save(os.path.join(out, "checkpoint.safetensors"))
    wall = time.perf_counter() - t0
    if out is None:  # a data-parallel helper rank: rank 0 reports
        return 0
    if args.samples and not args.quiet:
        _print_samples(model, task, trainer.evaluator.pairs[:args.samples])
    why = {"target": "reached the target", "steps": "ran all steps"}.get(result.stop_reason, "")
    print(f"{why} after {result.step} steps in {wall:.1f} s; held-out (n={final['n']}): "
          f"loss {final['loss']:.4f}, token accuracy {100 * final['token_accuracy']:.1f}%")
    print(f"exact match: {100 * final['exact_match']:.1f}%")
    print(f"checkpoint: {os.path.join(out, 'checkpoint.safetensors')}  metrics: "
          f"{os.path.join(out, 'metrics.jsonl')}")
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
    from ..training.progress import format_metrics
    from ..training.recipes import Seq2SeqEvaluator

    pool.threads(args.threads)  # for the rest of the command
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
