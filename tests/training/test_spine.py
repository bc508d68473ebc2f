"""The spine (training/spine.py): every kind of run is a config plus one call, the same in
Python as on the command line, with the same run directory, resume and Ctrl-C rules.

- each entry point (train_task, train_gpt, train_translation, train_torch) gives the losses
  and weights of the CLI command with the equivalent flags;
- Ctrl-C, then resume=True, continues bit for bit (weights, optimizer state, losses);
- a resumed run refuses a changed setting and steps below its checkpoint, before writing;
- the library names parameters (``steps=2``), the CLI flags (``--steps 2``), for the same
  mistake.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import scratchformer.training as T
from scratchformer.cli import main
from scratchformer.training.checkpoint import load

PAIRS = str(Path(__file__).parents[1] / "fixtures" / "translation" / "tiny.tsv")
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30
KINDS = ("train", "gpt train", "translate-train", "torch-train")


def _corpus(tmp) -> str:
    path = Path(tmp) / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def python_run(kind, tmp, out, steps=4, **more):
    """(config, entry point) of a tiny run of ``kind``: the Python side of ``cli_run``."""
    tiny = dict(d_model=16, n_heads=2, n_layers=1, steps=steps, log_every=1, dropout=0.1,
                out=None if out is None else str(out), progress=False)
    if kind == "train":
        return T.TaskTrainConfig(task="reverse", d_ff=32, batch_size=8, eval_every=0, max_len=5,
                                 num_symbols=5, held_out_size=10, **tiny, **more), T.train_task
    if kind == "gpt train":
        return T.GPTTrainConfig(corpus=_corpus(tmp), block_size=8, batch_size=4, eval_every=0,
                                eval_batches=1, **tiny, **more), T.train_gpt
    if kind == "translate-train":
        return T.TranslationTrainConfig(pairs=PAIRS, vocab_size=80, d_ff=32, warmup=2,
                                        eval_every=0, max_tokens=64, val_frac=0.1,
                                        test_frac=0.1, test_beams=(), **tiny,
                                        **more), T.train_translation
    pytest.importorskip("torch")
    return T.TorchTrainConfig(task="copy", batch_size=8, d_ff=32, warmup=1, threads=1,
                              eval_size=0, **tiny, **more), T.train_torch


def cli_run(kind, tmp, out, steps=4) -> list[str]:
    """The command line of ``python_run(kind, ...)``: the same settings as flags."""
    tiny = ["--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--steps", str(steps),
            "--log-every", "1", "--dropout", "0.1", "--out", str(out)]
    if kind == "train":
        return ["train", "--task", "reverse", "--d-ff", "32", "--batch-size", "8",
                "--eval-every", "0", "--max-len", "5", "--num-symbols", "5", "--held-out-size",
                "10", *tiny, "--samples", "0", "--quiet"]
    if kind == "gpt train":
        return ["gpt", "train", "--corpus", _corpus(tmp), "--block-size", "8", "--batch-size",
                "4", "--eval-every", "0", "--eval-batches", "1", *tiny, "--sample-tokens", "0",
                "--no-progress"]
    if kind == "translate-train":
        return ["translate-train", "--pairs", PAIRS, "--vocab-size", "80", "--d-ff", "32",
                "--warmup", "2", "--eval-every", "0", "--max-tokens", "64", "--val-frac", "0.1",
                "--test-frac", "0.1", "--test-beams", *tiny, "--no-progress"]
    return ["torch-train", "--task", "copy", "--batch-size", "8", "--d-ff", "32", "--warmup",
            "1", "--threads", "1", "--eval-size", "0", *tiny, "--no-progress"]


def losses(out) -> list[float]:
    records = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"]


def assert_same_run(a, b):
    """Two run directories hold the same weights, optimizer state, step and losses."""
    (ma, oa, sa), (mb, ob, sb) = (load(Path(d) / "checkpoint.safetensors") for d in (a, b))
    assert sa["trainer"]["step"] == sb["trainer"]["step"]
    wa, wb = ma.state_dict(), mb.state_dict()
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    assert oa.keys() == ob.keys()
    for k in oa:
        np.testing.assert_array_equal(oa[k], ob[k], err_msg=k)
    assert losses(a) == losses(b)


# ---- one config, one call: the same run as the command line -------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_an_entry_point_in_python_equals_its_cli_command(kind, tmp_path, capsys):
    cfg, entry = python_run(kind, tmp_path, tmp_path / "py")
    result = entry(cfg)
    assert main(cli_run(kind, tmp_path, tmp_path / "cli")) == 0
    assert_same_run(tmp_path / "py", tmp_path / "cli")
    assert len(losses(tmp_path / "py")) == 4  # log_every=1: every step
    assert result.step == 4 and result.stop_reason == "steps"
    assert result.out == str(tmp_path / "py") and result.config.steps == 4
    if kind == "train":  # the final held-out numbers, over the whole set
        assert result.metrics["n"] == 10 and result.extras["task"].name == "reverse"


def test_a_run_without_out_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, entry = python_run("train", tmp_path, None)
    result = entry(cfg)
    assert result.out is None and result.step == 4 and list(tmp_path.iterdir()) == []


# ---- resume --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_ctrl_c_then_resume_continues_bit_for_bit(kind, tmp_path, interrupt_at):
    cfg, entry = python_run(kind, tmp_path, tmp_path / "full", steps=8)
    entry(cfg)
    cfg, entry = python_run(kind, tmp_path, tmp_path / "cut", steps=8)
    with interrupt_at(3, twin=kind == "torch-train"), pytest.raises(T.TrainingInterrupted) as e:
        entry(cfg)
    assert e.value.step == 3 and e.value.exit_status == 130
    assert load(e.value.checkpoint)[2]["trainer"]["step"] == 3
    resumed = entry(type(cfg)(out=str(tmp_path / "cut"), resume=True, progress=False))
    assert resumed.step == 8 and resumed.config.d_model == 16  # the checkpoint's settings
    assert resumed.config.threads == cfg.threads  # not given: the run's own (torch: 1)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def _trained(kind, tmp, steps=3):
    out = tmp / "run"
    cfg, entry = python_run(kind, tmp, out, steps=steps)
    entry(cfg)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    return out, entry, type(cfg), files


@pytest.mark.parametrize("kind", KINDS)
def test_resume_refuses_a_changed_setting_and_steps_before_the_checkpoint(kind, tmp_path):
    out, entry, Config, files = _trained(kind, tmp_path)
    for change, message in (({"d_model": 32}, "drop d_model=32"),
                            ({"steps": 2}, "steps=2 is before the checkpoint's step 3")):
        with pytest.raises(ValueError, match=message) as e:
            entry(Config(out=str(out), resume=True, progress=False, **change))
        assert "--" not in str(e.value)  # the library speaks parameters
        assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # nothing written


def test_resume_with_given_test_beams_uses_them(tmp_path):
    pytest.importorskip("sacrebleu")
    out, entry, Config, _ = _trained("translate-train", tmp_path)
    result = entry(Config(out=str(out), resume=True, steps=4, test_beams=(1,), progress=False))
    assert set(result.extras["test"]) >= {"greedy", "copy"}  # not the checkpoint's ()
    assert json.loads((out / "results.json").read_text())["step"] == 4


# ---- the same mistake in Python and on the command line ------------------------------------------
MISTAKES = [  # (Python call, its message, command line, its message)
    (lambda: T.TaskTrainConfig(resume=True), "resume=True continues the run in out",
     ["train", "--resume"], "--resume continues the run in --out"),
    (lambda: T.TaskTrainConfig(task="copy", offset=3), "offset applies to task shift, not 'copy'",
     ["train", "--task", "copy", "--offset", "3", "--out", "{out}"],
     "--offset applies to task shift, not 'copy'"),
    (lambda: T.GPTTrainConfig(out="x", resume=True, force=True),
     "force=True starts a new run; it does not go with resume=True",
     ["gpt", "train", "--out", "{out}", "--resume", "--force"],
     "--force starts a new run; it does not go with --resume"),
    (lambda: T.GPTTrainConfig(target_loss=1.0, eval_batches=0),
     "target_loss needs a validation estimate: eval_batches=0 gives none",
     ["gpt", "train", "--target-loss", "1", "--eval-batches", "0", "--out", "{out}"],
     "--target-loss needs a validation estimate: --eval-batches 0 gives none"),
    (lambda: T.TranslationTrainConfig(corpus="bible-en-es", pairs="x.tsv"),
     "give one of corpus='bible-en-es' or pairs=FILE",
     ["translate-train", "--corpus", "bible-en-es", "--pairs", "x.tsv", "--out", "{out}"],
     "give one of --corpus bible-en-es or --pairs FILE"),
    (lambda: T.TorchTrainConfig(task="copy", corpus="tiny"), "give one of task=NAME",
     ["torch-train", "--task", "copy", "--corpus", "tiny", "--out", "{out}"],
     "give one of --task NAME"),
]


@pytest.mark.parametrize("call,said,argv,flagged", MISTAKES,
                         ids=[m[3].split()[0] for m in MISTAKES])
def test_the_library_names_parameters_and_the_cli_flags(call, said, argv, flagged, tmp_path,
                                                         capsys, monkeypatch):
    with pytest.raises(ValueError) as e:
        call()
    assert said in str(e.value) and "--" not in str(e.value)
    monkeypatch.chdir(tmp_path)  # train's default --out is relative
    out = tmp_path / "run"
    assert main([a.replace("{out}", str(out)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scratchformer: error: ") and len(err.strip().splitlines()) == 1
    assert flagged in err and not re.search(r"\b[a-z_]+=", err), err  # no parameter words
    assert list(tmp_path.iterdir()) == []  # refused before any run directory
