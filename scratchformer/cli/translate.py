"""``scratchformer translate-train`` and ``scratchformer translate``: English→Spanish for real.

    scratchformer translate-train --corpus bible-en-es --out runs/translate
    scratchformer translate-train --out runs/translate --resume
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

import os
import sys

from ..kernels import pool
from .common import (CLIError, DefaultsFormatter, Formatter, add_model_flags, add_optim_flags,
                     add_run_flags, add_threads_flag, check_beam, config_from_args, describe,
                     finite_float, flag, non_negative_int, path_arg, positive_int, probability,
                     run_command, user_errors)


def register(subparsers) -> None:
    """Add ``translate-train`` and ``translate`` to an argparse ``subparsers`` object."""
    from ..training.translation import BIBLE_STEPS, TranslationTrainConfig as C

    fmt = DefaultsFormatter
    t = subparsers.add_parser(
        "translate-train", formatter_class=Formatter,
        help="train an encoder–decoder translator (Bible en→es or your own TSV pairs)",
        description="Joint BPE vocabulary, pre-LN Transformer with tied embeddings, batches of "
                    "similar length, Adam + warm-up/cosine, checkpoints and resume; at the end "
                    "BLEU/chrF on the test split (greedy and beam) next to the copy and "
                    "word-dictionary baselines, written to OUT/results.json. The library call "
                    "behind it: scratchformer.training.train_translation("
                    "TranslationTrainConfig(...)). Under torchrun (torchrun --standalone "
                    "--nproc_per_node N -m scratchformer translate-train ...) it trains "
                    "data-parallel: each process takes its share of every batch, and process 0 "
                    "alone writes OUT and scores the test split.",
        epilog="examples:\n  scratchformer translate-train --corpus bible-en-es --out runs/translate\n"
               "  scratchformer translate-train --out runs/translate --resume\n"
               "  scratchformer translate-train --pairs my.tsv --steps 600 --out runs/mine")
    _add_data_flags(t, C)
    add_model_flags(t, C, encdec=True)
    add_optim_flags(t, C, schedule=False, batch=False)
    for action in t._actions:
        if action.dest == "steps":
            action.help = (f"optimizer steps in all (default: {BIBLE_STEPS} for the Bible — "
                           "the documented ~10-minute recipe; for --pairs, 30 passes over the "
                           f"training pairs, within [100, {BIBLE_STEPS}])")
    e = add_run_flags(t, C, "runs/translate")
    flag(e, C, "eval_decode", "validation pairs translated (greedy) for BLEU at each "
                              "evaluation", type=non_negative_int)
    flag(e, C, "test_beams", "beam sizes scored on the test split at the end (1 = greedy; "
                             "none: skip)", type=positive_int, nargs="*")
    flag(e, C, "test_limit", "score only the first N test pairs", default_text="all",
         type=positive_int)
    t.set_defaults(func=train_command)

    s = subparsers.add_parser(
        "translate", formatter_class=fmt, help="translate text with a translate-train checkpoint",
        description="Translate --text (or stdin lines), or score the checkpoint's test split.")
    s.add_argument("--checkpoint", required=True, type=path_arg,
                   help="a checkpoint written by 'translate-train'")
    s.add_argument("--text", action="append", help="text to translate (repeatable); "
                                                   "default: one text per stdin line")
    s.add_argument("--beam", type=positive_int, default=1, help="beam size (1 = greedy)")
    s.add_argument("--length-penalty", type=finite_float, default=0.6,
                   help="beam search: GNMT length penalty α, a hypothesis of L tokens "
                        "scores log p / ((5 + L) / 6) ** α (0 = none)")
    s.add_argument("--test", action="store_true",
                   help="score BLEU/chrF on the checkpoint's test split instead")
    s.add_argument("--test-limit", type=positive_int, default=None,
                   help="--test: score only the first N test pairs (default: all)")
    s.add_argument("--show-pieces", action="store_true", help="also print the source subwords")
    add_threads_flag(s)
    s.set_defaults(func=translate_command)


def _add_data_flags(t, C) -> None:
    d = t.add_argument_group("data and tokenizer (one of --corpus, --pairs; not with --resume)")
    flag(d, C, "corpus", "KJV (1611/1769) → Reina-Valera 1909, split by book "
                         "(apt-get install sword-text-kjv sword-text-sparv)",
         choices=["bible-en-es"])
    flag(d, C, "pairs", "your own source<TAB>target file", type=path_arg, metavar="FILE")
    d.add_argument("--reverse", action="store_true", default=None,
                   help="translate target→source instead")
    flag(d, C, "val_frac", "--pairs: validation share", type=probability)
    flag(d, C, "test_frac", "--pairs: test share", type=probability)
    flag(d, C, "vocab_size", "joint BPE vocabulary size", type=positive_int)
    flag(d, C, "max_len", "drop training pairs longer than this many tokens (either side)",
         type=positive_int)
    flag(d, C, "max_tokens", "a batch's token budget: B · max(S, T) ≤ this (B varies with "
                             "the length)", type=positive_int)


# ---- translate-train ----------------------------------------------------------------------
def train_command(args) -> int:
    from ..training.translation import TranslationTrainConfig, train_translation
    from ..translation.evaluate import format_results

    if args.test_beams is not None:
        args.test_beams = tuple(args.test_beams)
    cfg = config_from_args(TranslationTrainConfig, args)
    result = run_command(train_translation, cfg)
    if isinstance(result, int):
        return result
    if result.rank:  # a data-parallel helper rank: rank 0 scores and reports
        return 0
    if result.extras["test"]:
        print(format_results(result.extras["test"]))
    print(f"checkpoint: {os.path.join(result.out, 'checkpoint.safetensors')}  results: "
          f"{os.path.join(result.out, 'results.json')}")
    return 0


def _check_file(path, what):
    from ..training.rundir import check_input_file

    try:
        return check_input_file(path, what)
    except user_errors() as e:
        raise CLIError(describe(e)) from None


# ---- translate ------------------------------------------------------------------------------
def translate_command(args) -> int:
    with pool.threads(args.threads):
        return _translate(args)


def _translate(args) -> int:
    from ..translation.evaluate import format_results, score_test, translate_texts
    from ..translation.pipeline import load_translator

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
