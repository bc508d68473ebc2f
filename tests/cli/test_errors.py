"""One error discipline for every command: a user error is one line on stderr naming the
flag or file, exit status 2, no traceback — checked when the flags are parsed, or before
any work starts. Table-driven over the commands (the property-based fuzzing is in
test_fuzz.py)."""

import argparse
import json
import math
import os
import sys

import pytest
from scratchformer.cli import common, main

from cli_runs import argv_for, one_line_error

@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    """The base command lines write to relative paths ("unused", "a.png"): should a case ever
    run instead of failing, its files land in the test's own folder, not the checkout."""
    monkeypatch.chdir(tmp_path)


# every command with a valid base command line; the flag under test comes last (wins)
BASE = {
    "train": ["train", "--task", "copy", "--out", "unused"],
    "eval": ["eval", "--checkpoint", "x.npz"],
    "decode": ["decode", "--checkpoint", "x.npz", "--input", "1 2"],
    "gpt train": ["gpt", "train", "--out", "unused"],
    "gpt sample": ["gpt", "sample", "--checkpoint", "x.npz"],
    "translate-train": ["translate-train", "--pairs", "x.tsv", "--out", "unused"],
    "translate": ["translate", "--checkpoint", "x.npz", "--text", "hi"],
    "torch-train": ["torch-train", "--task", "copy", "--out", "unused"],
    "attention": ["attention", "--checkpoint", "x.npz", "--input", "1", "--out", "a.png"],
}

BAD_FLAGS = [  # (command, flag, value or values, what the message says)
    ("train", "--steps", "-3", "integer >= 1"),
    ("train", "--steps", "ten", "integer"),
    ("train", "--batch-size", "0", "integer >= 1"),
    ("train", "--lr", "nan", "finite number > 0"),
    ("train", "--lr", "-1", "finite number > 0"),
    ("train", "--dropout", "1.5", "[0, 1)"),
    ("train", "--eval-every", "-1", "integer >= 0"),
    ("train", "--samples", "-2", "integer >= 0"),
    ("train", "--seed", "-1", "integer >= 0"),
    ("train", "--threads", "100000", "cores"),
    ("train", "--target", "inf", "[0, 1]"),
    ("train", "--out", "", "non-empty path"),
    ("train", "--n-heads", "0", "integer >= 1"),
    ("train", "--n-layers", "0", "integer >= 1"),
    ("train", "--n-encoder-layers", "-1", "integer >= 1"),
    ("train", "--n-decoder-layers", "x", "integer"),
    ("train", "--d-ff", "0", "integer >= 1"),
    ("train", "--norm", "middle", "invalid choice: 'middle'"),
    ("train", "--activation", "tanh", "invalid choice: 'tanh'"),
    ("train", "--betas", ("0.9", "1"), "[0, 1)"),
    ("train", "--min-lr-ratio", "1.5", "[0, 1]"),
    ("train", "--clip-norm", "-1", "finite number >= 0"),
    ("train", "--checkpoint-every", "-1", "integer >= 0"),
    ("train", "--log-every", "0", "integer >= 1"),
    ("train", "--held-out-size", "0", "integer >= 1"),
    ("train", "--eval-quick", "-1", "integer >= 0"),
    ("train", "--schedule", "linear", "invalid choice: 'linear'"),
    ("train", "--optimizer", "lamb", "invalid choice: 'lamb'"),
    ("train", "--direction", "fr-en", "invalid choice: 'fr-en'"),
    ("eval", "--beam", "0", "integer >= 1"),
    ("eval", "--beam", "-4", "integer >= 1"),
    ("eval", "--threads", "0", "integer in [1,"),
    ("decode", "--beam", "-1", "integer >= 1"),
    ("decode", "--max-len", "-5", "integer >= 1"),
    ("gpt train", "--steps", "-1", "integer >= 1"),
    ("gpt train", "--block-size", "0", "integer >= 1"),
    ("gpt train", "--batch-size", "0", "integer >= 1"),
    ("gpt train", "--lr", "inf", "finite number > 0"),
    ("gpt train", "--betas", ("0.9", "1"), "[0, 1)"),
    ("gpt train", "--eval-batches", "-3", "integer >= 0"),
    ("gpt train", "--threads", "0", "integer in [1,"),
    ("gpt train", "--target-loss", "-1", "finite number >= 0"),
    ("gpt train", "--sample-tokens", "-1", "integer >= 0"),
    ("gpt train", "--out", "", "non-empty path"),
    ("gpt sample", "--tokens", "-5", "integer >= 0"),
    ("gpt sample", "--temperature", "nan", "finite number >= 0"),
    ("gpt sample", "--top-k", "-1", "integer >= 0"),
    ("translate-train", "--test-beams", "0", "integer >= 1"),
    ("translate-train", "--val-frac", "-0.1", "[0, 1)"),
    ("translate-train", "--max-tokens", "-64", "integer >= 1"),
    ("translate-train", "--label-smoothing", "1", "[0, 1)"),
    ("translate-train", "--n-layers", "0", "integer >= 1"),
    ("translate-train", "--vocab-size", "0", "integer >= 1"),
    ("translate-train", "--eval-decode", "-1", "integer >= 0"),
    ("translate-train", "--test-limit", "0", "integer >= 1"),
    ("translate-train", "--corpus", "bible-en-fr", "invalid choice: 'bible-en-fr'"),
    ("translate-train", "--clip-norm", "nan", "finite number >= 0"),
    ("translate", "--beam", "0", "integer >= 1"),
    ("translate", "--length-penalty", "inf", "finite number"),
    ("translate", "--test-limit", "-1", "integer >= 1"),
    ("torch-train", "--steps", "0", "integer >= 1"),
    ("torch-train", "--lr", "-inf", "finite number > 0"),
    ("torch-train", "--eval-size", "-1", "integer >= 0"),
    ("torch-train", "--n-layers", "0", "integer >= 1"),
    ("torch-train", "--device", "tpu", "invalid choice: 'tpu'"),
    ("torch-train", "--norm", "first", "invalid choice: 'first'"),
    ("torch-train", "--out", "", "non-empty path"),
    ("attention", "--layer", "x", "integer"),
    ("attention", "--max-len", "0", "integer >= 1"),
]


def _with(argv, flag, value):
    return [*argv, f"{flag}={value}"] if isinstance(value, str) else [*argv, flag, *value]


@pytest.mark.parametrize("command,flag,value,message", BAD_FLAGS,
                         ids=[f"{c}{f}={v}" for c, f, v, _ in BAD_FLAGS])
def test_a_bad_flag_value_is_one_line_naming_the_flag(command, flag, value, message, capsys):
    rc = main(_with(BASE[command], flag, value))
    err = one_line_error(capsys, 2, rc)
    assert f"argument {flag}" in err and message in err


OLD_FLAGS = [  # renamed in the one flag vocabulary: refused, never taken for a new flag's prefix
    ("train", ["--heads", "2"]), ("train", ["--layers", "1"]), ("train", ["--held-out", "10"]),
    ("gpt train", ["--batch", "4"]), ("gpt train", ["--block", "8"]),
    ("gpt train", ["--clip", "1"]), ("gpt train", ["--beta2", "0.99"]),
    ("gpt train", ["--min-lr", "1e-4"]), ("gpt train", ["--untied"]),
    ("translate-train", ["--layers", "1"]), ("translate-train", ["--clip", "1"]),
    ("torch-train", ["--layers", "1"]), ("torch-train", ["--norm-first"]),
    ("torch-train", ["--quiet"]), ("torch-train", ["--min-lr", "1e-4"]),
]


@pytest.mark.parametrize("command,old", OLD_FLAGS, ids=[f"{c} {o[0]}" for c, o in OLD_FLAGS])
def test_an_old_flag_is_refused_by_name(command, old, capsys):
    err = one_line_error(capsys, 2, main([*BASE[command], *old]))
    assert f"unrecognized arguments: {' '.join(old)}" in err


@pytest.mark.parametrize("text,fn,value", [
    ("3", common.positive_int, 3), ("0", common.non_negative_int, 0),
    ("-2", common.any_int, -2), ("0.5", common.probability, 0.5),
    ("1", common.unit_interval, 1.0), ("1e-3", common.positive_float, 1e-3),
    ("0", common.non_negative_float, 0.0), ("-3.5", common.finite_float, -3.5),
    ("1", common.threads, 1),
])
def test_validators_accept_good_values(text, fn, value):
    assert fn(text) == value


@pytest.mark.parametrize("text,fn", [
    ("0", common.positive_int), ("1.5", common.positive_int), ("-1", common.non_negative_int),
    ("nan", common.finite_float), ("inf", common.positive_float), ("1", common.probability),
    ("-0.1", common.non_negative_float), ("1.01", common.unit_interval),
    (str((os.cpu_count() or 1) + 1), common.threads), ("", common.path_arg),
    ("a\0b", common.path_arg),
])
def test_validators_refuse_bad_values(text, fn):
    with pytest.raises(argparse.ArgumentTypeError, match="must be"):
        fn(text)


# ---- paths and files --------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["eval", "decode", "gpt sample", "translate", "attention"])
def test_a_directory_or_fifo_checkpoint_is_refused_without_opening_it(command, tmp_path, capsys):
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)  # opening it would block forever
    for path, message in ((tmp_path, "is a directory"), (fifo, "not a regular file"),
                          (tmp_path / "missing.npz", "not found")):
        argv = [a if a != "x.npz" else str(path) for a in BASE[command]]
        if command == "attention":
            argv[-1] = str(tmp_path / "a.png")
        err = one_line_error(capsys, 2, main(argv))
        assert message in err and str(path) in err


@pytest.mark.parametrize("command", ["eval", "decode", "gpt sample", "translate", "attention"])
def test_a_foreign_file_as_checkpoint_is_one_line(command, tmp_path, capsys):
    bad = tmp_path / "notes.npz"
    bad.write_text("not a checkpoint")
    argv = [a if a != "x.npz" else str(bad) for a in BASE[command]]
    if command == "attention":
        argv[-1] = str(tmp_path / "a.png")
    one_line_error(capsys, 2, main(argv))


@pytest.mark.parametrize("command", ["eval", "decode", "gpt sample", "translate", "attention"])
def test_a_checkpoint_of_the_wrong_kind_is_one_line(command, ckpts, tmp_path, capsys):
    other = ckpts["gpt"] if command != "gpt sample" else ckpts["train"]
    argv = [a if a != "x.npz" else other for a in BASE[command]]
    if command == "attention":
        argv[-1] = str(tmp_path / "a.png")
    one_line_error(capsys, 2, main(argv))


def test_gpt_sample_refuses_a_prompt_outside_the_vocabulary(ckpts, capsys):
    err = one_line_error(capsys, 2, main(["gpt", "sample", "--checkpoint", ckpts["gpt"],
                                          "--prompt", "Z\u00e9", "--tokens", "3"]))
    assert "prompt" in err and "not in the vocabulary" in err


def test_a_beam_wider_than_the_vocabulary_is_refused(ckpts, capsys):
    err = one_line_error(capsys, 2, main(["decode", "--checkpoint", ckpts["train"],
                                          "--input", "1 2", "--beam", "1000000000"]))
    assert "--beam 1000000000" in err and "vocabulary" in err


def test_translate_test_refuses_an_empty_test_split_and_unusable_outputs(tmp_path, capsys):
    rc = main(argv_for("translate-train", tmp_path / "r", tmp_path) + ["--test-frac", "0",
                                                                         "--test-beams", "1"])
    assert "test split is empty" in one_line_error(capsys, 2, rc)
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()  # refused before training


@pytest.mark.parametrize("command", ["train", "gpt train", "translate-train"])
def test_torchrun_without_torch_is_one_line_before_the_run_directory(command, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts a command
    for name in ("torch", "torch.distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import torch fails
    err = one_line_error(capsys, 2, main(argv_for(command, tmp_path / "r", tmp_path)))
    assert "data-parallel training needs PyTorch" in err
    assert not (tmp_path / "r").exists()


def test_attention_checks_its_output_path_before_decoding(ckpts, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc = main(["attention", "--checkpoint", ckpts["train"], "--input", "1 2",
               "--out", str(blocker / "a.png")])
    assert str(blocker) in one_line_error(capsys, 2, rc)


def test_eval_json_is_strict_json_with_null_for_nan(ckpts, monkeypatch, capsys):
    from scratchformer.training import recipes

    real = recipes.Seq2SeqEvaluator.evaluate
    monkeypatch.setattr(recipes.Seq2SeqEvaluator, "evaluate",
                        lambda self, model, n=None: {**real(self, model, n), "loss": math.nan})
    assert main(["eval", "--checkpoint", ckpts["train"], "--json"]) == 0
    out = capsys.readouterr().out

    def refuse(name):
        raise AssertionError(f"not strict JSON: {name}")

    m = json.loads(out, parse_constant=refuse)
    assert m["loss"] is None and 0 <= m["exact_match"] <= 1
