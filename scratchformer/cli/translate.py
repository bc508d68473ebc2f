"""``scratchformer translate-train`` and ``scratchformer translate``: English→Spanish for real.

    scratchformer translate-train --corpus bible-en-es --out runs/translate
    scratchformer translate-train --corpus bible-en-es --out runs/translate --resume
    scratchformer translate-train --pairs my.tsv --out runs/mine --steps 2000
    scratchformer translate --checkpoint runs/translate/checkpoint.safetensors \\
        --text "And God said, Let there be light" --beam 5
    scratchformer translate --checkpoint runs/translate/checkpoint.safetensors --test --beam 5
    torchrun --standalone --nproc_per_node 2 -m scratchformer translate-train \\
        --corpus bible-en-es --out runs/translate      # data-parallel, one process per core

``register(subparsers)`` adds both commands; NumPy, the model and sacrebleu load when a
command runs. The library behind them is ``scratchformer.translation``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ..kernels import pool
from .common import (CLIError, check_beam, data_parallel, describe, finite_float, in_run_dir,
                     non_negative_int, path_arg, positive_float, positive_int, probability,
                     threads, user_errors)


def register(subparsers) -> None:
    """Add ``translate-train`` and ``translate`` to an argparse ``subparsers`` object."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    t = subparsers.add_parser(
        "translate-train", formatter_class=fmt,
        help="train an encoder–decoder translator (Bible en→es or your own TSV pairs)",
        description="Joint BPE vocabulary, pre-LN Transformer with tied embeddings, batches of "
                    "similar length, Adam + warm-up/cosine, checkpoints and resume; at the end "
                    "BLEU/chrF on the test split (greedy and beam) next to the copy and "
                    "word-dictionary baselines, written to OUT/results.json. Under torchrun "
                    "(torchrun --standalone --nproc_per_node N -m scratchformer translate-train "
                    "...) it trains data-parallel: each process takes its share of every batch, "
                    "and process 0 alone writes OUT and scores the test split.")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", choices=["bible-en-es"],
                     help="KJV (1611/1769) → Reina-Valera 1909, split by book "
                          "(apt-get install sword-text-kjv sword-text-sparv)")
    src.add_argument("--pairs", metavar="FILE", type=path_arg, help="your own source<TAB>target file")
    t.add_argument("--reverse", action="store_true", help="translate target→source instead")
    t.add_argument("--out", default="runs/translate", type=path_arg, help="directory for checkpoint.safetensors, "
                                                           "metrics.jsonl, results.json")
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.safetensors (--steps N: up to N steps in all)")
    t.add_argument("--force", action="store_true",
                   help="start a new run even if OUT holds another run (erases its metrics)")
    t.add_argument("--val-frac", type=probability, default=0.05, help="--pairs: validation share")
    t.add_argument("--test-frac", type=probability, default=0.05, help="--pairs: test share")
    d = t.add_argument_group("tokenizer and data")
    d.add_argument("--vocab-size", type=positive_int, default=4000, help="joint BPE vocabulary size")
    d.add_argument("--max-len", type=positive_int, default=64,
                   help="drop training pairs longer than this many tokens (either side)")
    d.add_argument("--max-tokens", type=positive_int, default=2048,
                   help="padded tokens per batch: B · max(S, T) ≤ this")
    g = t.add_argument_group("model")
    g.add_argument("--d-model", type=positive_int, default=256)
    g.add_argument("--n-heads", type=positive_int, default=4)
    g.add_argument("--d-ff", type=positive_int, default=1024)
    g.add_argument("--layers", type=positive_int, default=2, help="encoder and decoder layers (each)")
    g.add_argument("--dropout", type=probability, default=0.1)
    g.add_argument("--seed", type=non_negative_int, default=0)
    o = t.add_argument_group("optimisation")
    o.add_argument("--steps", type=positive_int, default=2400,
                   help="training steps; the default is the documented ~28-minute recipe")
    o.add_argument("--lr", type=positive_float, default=2e-3)
    o.add_argument("--warmup", type=non_negative_int, default=100)
    o.add_argument("--label-smoothing", type=probability, default=0.1)
    o.add_argument("--clip", type=positive_float, default=1.0)
    e = t.add_argument_group("evaluation and output")
    e.add_argument("--eval-every", type=non_negative_int, default=200)
    e.add_argument("--eval-decode", type=non_negative_int, default=100,
                   help="validation pairs translated (greedy) for BLEU at each evaluation")
    e.add_argument("--checkpoint-every", type=non_negative_int, default=100)
    e.add_argument("--test-beams", type=positive_int, nargs="*", default=[1, 5],
                   help="beam sizes scored on the test split at the end (1 = greedy; none: skip)")
    e.add_argument("--test-limit", type=positive_int, default=None, help="score only the first N test pairs")
    e.add_argument("--threads", type=threads, default=None,
                   help="threads (default: every core, at most 8; 1: one thread)")
    e.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=train_command)

    s = subparsers.add_parser(
        "translate", formatter_class=fmt, help="translate text with a translate-train checkpoint",
        description="Translate --text (or stdin lines), or score the checkpoint's test split.")
    s.add_argument("--checkpoint", required=True, type=path_arg)
    s.add_argument("--text", action="append", help="text to translate (repeatable); "
                                                   "default: one text per stdin line")
    s.add_argument("--beam", type=positive_int, default=1, help="beam size (1 = greedy)")
    s.add_argument("--length-penalty", type=finite_float, default=0.6)
    s.add_argument("--test", action="store_true",
                   help="score BLEU/chrF on the checkpoint's test split instead")
    s.add_argument("--test-limit", type=positive_int, default=None)
    s.add_argument("--show-pieces", action="store_true", help="also print the source subwords")
    s.add_argument("--threads", type=threads, default=None,
                   help="threads (default: every core, at most 8; 1: one thread)")
    s.set_defaults(func=translate_command)


# ---- helpers --------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- translate-train ----------------------------------------------------------------------
def train_command(args) -> int:
    if args.resume and args.force:
        raise CLIError("--force starts a new run; it does not go with --resume")
    if args.pairs:
        _check_file(args.pairs, "--pairs file")
    # under torchrun: data-parallel over batches of any size (padded, see DataParallel.shard);
    # rank 0 owns the run directory
    parallel = data_parallel()
    return in_run_dir(args.out, lambda out: _train_run(args, out, parallel), resume=args.resume,
                      force=args.force, parallel=parallel)


def _check_file(path, what):
    from ..training.rundir import check_input_file

    try:
        return check_input_file(path, what)
    except user_errors() as e:
        raise CLIError(describe(e)) from None


def _train_run(args, out, parallel=None) -> int:
    """translate-train inside its locked run directory ``out`` (None: a data-parallel helper
    rank, which reads the checkpoint to resume but writes nothing, does not evaluate — no
    stopping decision depends on it — and leaves the test split to rank 0)."""
    from ..training.trainer import Trainer, TrainConfig, TrainingDiverged, seq2seq_step
    from ..translation.bpe import BPETokenizer
    from ..translation.data import encode_pairs
    from ..translation.evaluate import format_results, score_test
    from ..translation.pipeline import TranslationBatches, TranslationEvaluator, build_model

    pool.threads(args.threads)  # for the rest of the command (scoring the test split too)
    log = _log if out is not None else (lambda msg: None)
    ckpt = os.path.join(args.out, "checkpoint.safetensors")
    if args.resume and not os.path.lexists(ckpt):
        raise CLIError(f"--resume: no checkpoint at {ckpt}")
    t0 = time.perf_counter()
    info = {"corpus": args.corpus, "pairs_path": os.path.abspath(args.pairs) if args.pairs else None,
            "reverse": args.reverse, "val_frac": args.val_frac, "test_frac": args.test_frac,
            "seed": args.seed}
    try:  # everything that can be checked is checked before training
        from ..translation.data import run_splits

        train, val, test = run_splits(info)
        if not train or not val:
            raise CLIError(f"the {'training' if not train else 'validation'} split is empty "
                           f"({len(train)} / {len(val)} / {len(test)} pairs): give more pairs or "
                           f"a larger --val-frac")
        if args.test_beams and not test:
            raise CLIError(f"the test split is empty ({len(train)} / {len(val)} / 0 pairs): "
                           f"raise --test-frac, or pass --test-beams with no value to skip it")
        log(f"pairs: train {len(train)}, validation {len(val)}, test {len(test)} "
            f"({time.perf_counter() - t0:.1f}s)")
        if args.resume:
            from ..training.rundir import check_input_file
            from ..translation.pipeline import load_translator
            _, tok, saved = load_translator(check_input_file(ckpt, "checkpoint"))
        else:
            t1 = time.perf_counter()
            tok = BPETokenizer.train([s for s, _ in train] + [t for _, t in train], args.vocab_size)
            log(f"BPE: {len(tok)} symbols learned in {time.perf_counter() - t1:.1f}s")
            saved = None
        for beam in args.test_beams or ():
            check_beam(beam, len(tok), "--test-beams")
        srcs, tgts = encode_pairs(tok, train, max_len=args.max_len)
        log(f"training pairs within --max-len {args.max_len}: {len(srcs)} of {len(train)}")
        if not srcs:
            raise CLIError(f"no training pair is within --max-len {args.max_len} tokens")
        vsrcs, vtgts = encode_pairs(tok, val, max_len=None)
        batches = TranslationBatches(srcs, tgts, args.max_tokens, seed=args.seed)
        model = build_model(len(tok), args.d_model, args.n_heads, args.d_ff, args.layers,
                            args.layers, args.dropout, max_len=max(256, args.max_len),
                            seed=args.seed)
        cfg = TrainConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, schedule="cosine",
                          optimizer="adam", label_smoothing=args.label_smoothing,
                          clip_norm=args.clip, seed=args.seed, eval_every=args.eval_every,
                          target=None, checkpoint_every=args.checkpoint_every, log_every=10)
        extra = {**info, "tokenizer": tok.to_dict(), "max_len": args.max_len,
                 "max_tokens": args.max_tokens}
        batch_fn, step_fn = batches, None
        if parallel is not None:
            batch_fn = parallel.shard(batches, ignore_index=model.config.pad_id)
            step_fn = parallel.wrap(seq2seq_step)
        evaluate = (TranslationEvaluator(tok, val, vsrcs, vtgts, args.eval_decode)
                    if out is not None else None)
        trainer = Trainer(model, batch_fn, cfg, step_fn=step_fn, out_dir=out, evaluate=evaluate,
                          progress=out is not None and ("plain" if args.no_progress else True),
                          extra_state=extra, threads=args.threads)
        if saved is not None:
            trainer.resume(ckpt)
            if trainer.step > args.steps:
                raise CLIError(f"--steps {args.steps} is before the checkpoint's step "
                               f"{trainer.step}: with --resume, --steps N means 'up to N steps "
                               f"in all'")
            log(f"resumed from {ckpt} at step {trainer.step}")
    except (*user_errors(), KeyError) as e:
        raise CLIError(describe(e)) from None
    n_params = sum(p.data.size for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters; {batches.n_batches} batches per epoch, "
        f"{args.steps} steps ≈ {args.steps / batches.n_batches:.2f} epochs")
    try:
        result = trainer.fit()
    except TrainingDiverged as e:
        print(f"scratchformer: error: {e}", file=sys.stderr)
        return 1
    if out is None:  # a data-parallel helper rank: rank 0 scores and reports
        return 0
    log(f"trained to step {result.step} in {result.train_time_s:.0f}s "
        f"(last loss {result.last_loss:.3f}); checkpoint {ckpt}")
    results = {"train_seconds": round(result.train_time_s, 1), "step": result.step,
               "val": result.eval}  # measured in this run only (empty if no evaluation ran)
    if args.test_beams:
        results["test"] = score_test(model, tok, train, test, args.test_beams, args.test_limit)
        print(format_results(results["test"]))
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    return 0


# ---- translate ------------------------------------------------------------------------------
def translate_command(args) -> int:
    from ..translation.evaluate import format_results, score_test, translate_texts
    from ..translation.pipeline import load_translator

    pool.threads(args.threads)  # for the rest of the command
    try:
        model, tok, info = load_translator(_check_file(args.checkpoint, "checkpoint"))
        check_beam(args.beam, len(tok))
        if args.test:
            from ..translation.data import run_splits

            train, _, test = run_splits(info)
            if not test:
                raise CLIError(f"{args.checkpoint}: its test split is empty (test_frac "
                               f"{info.get('test_frac')}): nothing to score")
    except (*user_errors(), KeyError) as e:
        raise CLIError(describe(e)) from None
    if args.test:
        r = score_test(model, tok, train, test, sorted({1, args.beam}), args.test_limit)
        print(format_results(r))
        return 0
    texts = args.text if args.text else [line.rstrip("\n") for line in sys.stdin if line.strip()]
    try:
        outs = translate_texts(model, tok, texts, beam=args.beam,
                               length_penalty=args.length_penalty)
    except ValueError as e:
        raise CLIError(f"--text: {describe(e)}") from None
    for text, out in zip(texts, outs):
        if args.show_pieces:
            print(" ".join(tok.pieces(text)))
        print(out)
    return 0
