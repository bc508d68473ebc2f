"""Property-based fuzzing of every command: whatever the flags, a command exits 0 or prints
one line ``scratchformer...: error: ...`` and exits 2 — never a traceback, never a
RuntimeWarning.

- the checkpoint commands (eval, decode, gpt sample, translate, attention): one flag with
  any text as its value;
- the four training commands, every flag of every shared group (model, optimization, run
  directory) and of the command's own, read from the parser itself, so a new flag is fuzzed
  without being listed here: (1) one flag with any text (the flags whose every valid value
  is cheap), (2) any combination of valid-typed values at tiny sizes: it trains or fails
  with one line. A run that diverges (a huge learning rate or weight decay) is the
  documented exit 1 with one line (``training halted``, or weights not finite: not saved).
"""

import argparse
import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_runs import PAIRS, corpus_file
from scratchformer.cli import build_parser, common, main

VALUES = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "", "0", "-0", "1", "2", "0.5", "x",
                     "1_000", " 3", "0x10", "\u00e9"]),
    st.text(max_size=6),
)
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # a NumPy warning fails a case
FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
TRAINING = ("train", "gpt train", "translate-train", "torch-train")


def _fuzz(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    if rc == 0:
        return
    lines = err.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    if rc == 1:  # diverged (TrainingDiverged): the documented exit status 1, one line
        assert len(errors) == 1 and errors[0].startswith("scratchformer: error:"), (argv, err)
        assert "training halted" in err or "not finite" in err, (argv, err)
        return
    assert rc == 2, (argv, rc, err)
    # translate-train logs its pipeline on stderr first: the error is the one last line
    assert len(errors) == 1 and lines[-1] == errors[0], (argv, err)
    assert errors[0].startswith("scratchformer"), (argv, err)


# ---- the checkpoint commands ---------------------------------------------------------------------
@FUZZ
@given(flag=st.sampled_from(["--beam", "--threads"]), value=VALUES, json_=st.booleans())
def test_fuzz_eval(ckpts, capsys, flag, value, json_):
    _fuzz(["eval", "--checkpoint", ckpts["train"], f"{flag}={value}"] + (["--json"] if json_ else []),
          capsys)


@FUZZ
@given(flag=st.sampled_from(["--beam", "--max-len"]), value=VALUES, text=st.text(max_size=8))
def test_fuzz_decode(ckpts, capsys, flag, value, text):
    _fuzz(["decode", "--checkpoint", ckpts["train"], f"--input={text}", f"{flag}={value}"], capsys)


@FUZZ
@given(flag=st.sampled_from(["--temperature", "--top-k", "--seed"]), value=VALUES,
       prompt=st.text(max_size=5), tokens=st.integers(0, 5))
def test_fuzz_gpt_sample(ckpts, capsys, flag, value, prompt, tokens):
    _fuzz(["gpt", "sample", "--checkpoint", ckpts["gpt"], f"--prompt={prompt}",
           f"--tokens={tokens}", f"{flag}={value}"], capsys)


@FUZZ
@given(flag=st.sampled_from(["--beam", "--length-penalty"]), value=VALUES,
       text=st.text(max_size=10))
def test_fuzz_translate(ckpts, capsys, flag, value, text):
    _fuzz(["translate", "--checkpoint", ckpts["translate"], f"--text={text}", f"{flag}={value}"],
          capsys)


@FUZZ
@given(flag=st.sampled_from(["--layer", "--max-len", "--kind"]), value=VALUES,
       text=st.text(max_size=6))
def test_fuzz_attention(ckpts, tmp_path, capsys, flag, value, text):
    pytest.importorskip("matplotlib")
    _fuzz(["attention", "--checkpoint", ckpts["train"], f"--input={text}",
           "--html", str(tmp_path / "a.html"), f"{flag}={value}"], capsys)


# ---- the training commands -----------------------------------------------------------------------
def command_parser(command: str) -> argparse.ArgumentParser:
    """The argparse parser of ``command`` ("train", "gpt train", ...)."""
    parser = build_parser()
    for word in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


NOT_FUZZED = {"help", "out", "corpus", "pairs", "quiet", "no_progress"}  # fixed by _base


def flags(command: str) -> dict:
    """dest → action for every fuzzed flag of ``command`` (all its groups)."""
    return {a.dest: a for a in command_parser(command)._actions if a.dest not in NOT_FUZZED}


def _base(command, tmp, out, task="copy"):
    """A tiny valid run; the fuzzed flags come after it and win."""
    tiny = ["--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32", "--steps",
            "1", "--out", str(out)]
    if command == "train":
        return ["train", *tiny, "--batch-size", "4", "--eval-every", "0", "--samples", "0",
                "--held-out-size", "10", "--quiet"]
    if command == "gpt train":
        return ["gpt", "train", *tiny, "--corpus", corpus_file(tmp), "--block-size", "8",
                "--batch-size", "4", "--eval-batches", "1", "--sample-tokens", "0",
                "--no-progress"]
    if command == "translate-train":
        return ["translate-train", *tiny, "--pairs", PAIRS, "--vocab-size", "80",
                "--max-tokens", "64", "--val-frac", "0.1", "--test-frac", "0.1", "--eval-every",
                "0", "--eval-decode", "2", "--test-beams", "1", "--no-progress"]
    pytest.importorskip("torch")
    what = ["--task", task] if task else ["--corpus", corpus_file(tmp)]
    return ["torch-train", *tiny, *what, "--batch-size", "4", "--block-size", "8",
            "--eval-size", "0", "--threads", "1", "--no-progress"]


_runs = itertools.count()


def _fresh(tmp):
    return tmp / f"run{next(_runs)}"


# (1) one flag, any text: the flags whose every valid value is cheap to run (a valid
# --steps, --eval-batches or --sample-tokens of 10**12 would run for ever)
ANY_TEXT = {"lr", "warmup", "min_lr_ratio", "betas", "weight_decay", "clip_norm",
            "label_smoothing", "seed", "dropout", "activation", "norm", "log_every",
            "checkpoint_every", "eval_every", "threads", "target", "target_loss", "eval_quick",
            "samples", "block_size", "vocab_size", "max_tokens", "eval_decode", "test_limit",
            "val_frac", "test_frac", "schedule", "optimizer", "direction", "device", "task"}
BATCH_CHECKED = {"train", "gpt train"}  # a batch too large for memory is refused up front


def _cheap(command):
    names = ANY_TEXT | ({"batch_size"} if command in BATCH_CHECKED else set())
    return sorted(set(flags(command)) & names)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a huge --lr overflows after step 1
@pytest.mark.parametrize("command", TRAINING)
@FUZZ
@given(data=st.data())
def test_fuzz_training_command_one_flag_any_text(command, tmp_path, capsys, data):
    dest = data.draw(st.sampled_from(_cheap(command)), label="flag")
    action = flags(command)[dest]
    flag = action.option_strings[0]
    if action.nargs == 2:
        extra = [flag, *data.draw(st.lists(VALUES, min_size=2, max_size=2), label="values")]
    else:
        extra = [f"{flag}={data.draw(VALUES, label='value')}"]
    _fuzz([*_base(command, tmp_path, _fresh(tmp_path)), *extra], capsys)


# (2) any combination of valid-typed values, at tiny sizes
CAPS = {"d_model": 32, "n_heads": 8, "n_layers": 2, "n_encoder_layers": 2,
        "n_decoder_layers": 2, "d_ff": 48, "steps": 3, "batch_size": 12, "block_size": 24,
        "eval_batches": 3, "eval_size": 40, "eval_decode": 4, "test_limit": 4,
        "vocab_size": 150, "max_len": 40, "max_tokens": 256, "held_out_size": 40, "min_len": 12,
        "num_symbols": 12, "offset": 20, "eval_quick": 50, "samples": 2, "sample_tokens": 10,
        "min_year": 12000, "max_year": 12000}
BIG = 10**30  # warm-up, seeds and intervals: any size is as cheap as a small one


def _typed(action) -> st.SearchStrategy:
    """A list of argv words giving ``action`` a value of its type."""
    flag, cap = action.option_strings[0], CAPS.get(action.dest, BIG)
    if isinstance(action, argparse.BooleanOptionalAction):
        return st.sampled_from([[flag], ["--no-" + flag[2:]]])
    if action.nargs == 0:  # --resume, --force, --reverse
        return st.just([flag])
    if action.choices is not None:
        one = st.sampled_from(sorted(action.choices))
    else:
        one = {common.positive_int: st.integers(1, cap),
               common.non_negative_int: st.integers(0, cap),
               common.threads: st.integers(1, os.cpu_count() or 1),
               common.probability: st.floats(0, 1, exclude_max=True),
               common.unit_interval: st.floats(0, 1),
               common.positive_float: st.floats(0, exclude_min=True, allow_infinity=False),
               common.non_negative_float: st.floats(0, allow_infinity=False),
               # --init-from: a folder that is not a GPT-2 folder, or none at all
               common.path_arg: st.sampled_from([".", "no/such/folder"])}[action.type]
    if action.nargs == "*":
        return st.lists(one.map(repr), max_size=2).map(lambda vs: [flag, *vs])
    count = action.nargs if isinstance(action.nargs, int) else 1
    return st.lists(one.map(lambda v: v if isinstance(v, str) else repr(v)), min_size=count,
                    max_size=count).map(lambda vs: [flag, *vs])


def test_every_training_flag_is_fuzzed_with_its_type():
    for command in TRAINING:
        for action in flags(command).values():
            _typed(action)  # a flag of a new type raises KeyError here: give it a strategy


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("command", TRAINING)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_training_command_any_valid_typed_flags(command, tmp_path, capsys, data):
    table = flags(command)
    chosen = data.draw(st.lists(st.sampled_from(sorted(table)), max_size=6, unique=True),
                       label="flags")
    extra = [word for dest in chosen for word in data.draw(_typed(table[dest]), label=dest)]
    task = data.draw(st.sampled_from(["copy", None]), label="task") \
        if command == "torch-train" and "task" not in chosen else "copy"
    _fuzz([*_base(command, tmp_path, _fresh(tmp_path), task), *extra], capsys)
