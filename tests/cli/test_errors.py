"""One error discipline for every command: a user error is one line on stderr naming the
flag or file, exit status 2, no traceback — checked when the flags are parsed, or before
any work starts. Table-driven over the commands, plus property-based fuzzing."""

import argparse
import json
import math
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scratchformer.cli import common, main

from cli_runs import argv_for, one_line_error

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

BAD_FLAGS = [  # (command, flag, value, what the message says)
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
    ("eval", "--beam", "0", "integer >= 1"),
    ("eval", "--beam", "-4", "integer >= 1"),
    ("eval", "--threads", "0", "integer in [1,"),
    ("decode", "--beam", "-1", "integer >= 1"),
    ("decode", "--max-len", "-5", "integer >= 1"),
    ("gpt train", "--steps", "-1", "integer >= 1"),
    ("gpt train", "--block", "0", "integer >= 1"),
    ("gpt train", "--lr", "inf", "finite number > 0"),
    ("gpt train", "--beta2", "1", "[0, 1)"),
    ("gpt train", "--eval-batches", "-3", "integer >= 0"),
    ("gpt train", "--threads", "0", "integer in [1,"),
    ("gpt sample", "--tokens", "-5", "integer >= 0"),
    ("gpt sample", "--temperature", "nan", "finite number >= 0"),
    ("gpt sample", "--top-k", "-1", "integer >= 0"),
    ("translate-train", "--test-beams", "0", "integer >= 1"),
    ("translate-train", "--val-frac", "-0.1", "[0, 1)"),
    ("translate-train", "--max-tokens", "-64", "integer >= 1"),
    ("translate-train", "--label-smoothing", "1", "[0, 1)"),
    ("translate", "--beam", "0", "integer >= 1"),
    ("translate", "--length-penalty", "inf", "finite number"),
    ("translate", "--test-limit", "-1", "integer >= 1"),
    ("torch-train", "--steps", "0", "integer >= 1"),
    ("torch-train", "--lr", "-inf", "finite number > 0"),
    ("torch-train", "--eval-size", "-1", "integer >= 0"),
    ("torch-train", "--layers", "0", "integer >= 1"),
    ("attention", "--layer", "x", "integer"),
    ("attention", "--max-len", "0", "integer >= 1"),
]


@pytest.mark.parametrize("command,flag,value,message", BAD_FLAGS,
                         ids=[f"{c}{f}={v}" for c, f, v, _ in BAD_FLAGS])
def test_a_bad_flag_value_is_one_line_naming_the_flag(command, flag, value, message, capsys):
    rc = main([*BASE[command], f"{flag}={value}"])
    err = one_line_error(capsys, 2, rc)
    assert f"argument {flag}" in err and message in err


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


# ---- fuzzing: exit 0 or a one-line exit 2, never a traceback -----------------------------------
VALUES = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "", "0", "-0", "1", "2", "0.5", "x",
                     "1_000", " 3", "0x10", "\u00e9"]),
    st.text(max_size=6),
)
FUZZ = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fuzz(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc == 0:
        return
    assert rc == 2, (argv, rc, err)
    assert len(err.strip().splitlines()) == 1, (argv, err)


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


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a huge --lr overflows after step 1
@FUZZ
@given(flag=st.sampled_from(["--lr", "--batch-size", "--warmup", "--dropout", "--clip-norm",
                             "--label-smoothing", "--weight-decay", "--seed", "--log-every"]),
       value=VALUES)
def test_fuzz_train_one_step(tmp_path, capsys, flag, value):
    out = tmp_path / "fuzz"
    _fuzz([*argv_for("train", out, tmp_path, steps=1), "--force", f"{flag}={value}"], capsys)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@FUZZ
@given(flag=st.sampled_from(["--lr", "--min-lr", "--warmup", "--beta2", "--clip", "--dropout",
                             "--weight-decay", "--seed"]), value=VALUES)
def test_fuzz_gpt_train_one_step(tmp_path, capsys, flag, value):
    out = tmp_path / "fuzz"
    _fuzz([*argv_for("gpt train", out, tmp_path, steps=1), "--force", f"{flag}={value}"], capsys)
