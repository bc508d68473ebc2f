"""Tiny runs of every training command, shared by the error-discipline and run-safety tests
(the ``ckpts`` fixture is in conftest.py).

``argv_for(command, out, tmp)`` is a complete, valid and fast (< 1 s) command line for
``train``, ``gpt train``, ``translate-train`` or ``torch-train`` writing to ``out``;

"""

from pathlib import Path

import pytest


FIXTURES = Path(__file__).parents[1] / "fixtures"
PAIRS = str(FIXTURES / "translation" / "tiny.tsv")
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30

TRAIN = ["train", "--task", "reverse", "--d-model", "16", "--n-heads", "2", "--n-layers", "1",
         "--d-ff", "32", "--batch-size", "8", "--eval-every", "0", "--samples", "0",
         "--max-len", "5", "--num-symbols", "5", "--held-out-size", "10", "--quiet"]
GPT = ["gpt", "train", "--n-layers", "1", "--n-heads", "2", "--d-model", "16", "--block-size",
       "8", "--batch-size", "4", "--eval-every", "0", "--eval-batches", "1",
       "--checkpoint-every", "0", "--sample-tokens", "0", "--no-progress"]
TRANSLATE = ["translate-train", "--pairs", PAIRS, "--vocab-size", "80", "--d-model", "16",
             "--d-ff", "32", "--n-heads", "2", "--n-layers", "1", "--warmup", "2",
             "--eval-every", "0", "--max-tokens", "64", "--no-progress", "--val-frac", "0.1",
             "--test-frac", "0.1", "--checkpoint-every", "0", "--test-beams"]
TORCH = ["torch-train", "--task", "copy", "--batch-size", "8", "--d-model", "16", "--n-heads",
         "2", "--d-ff", "32", "--n-layers", "1", "--warmup", "1", "--threads", "1",
         "--eval-size", "0", "--no-progress"]

TRAINING_COMMANDS = ("train", "gpt train", "translate-train", "torch-train")


def corpus_file(tmp) -> str:
    path = Path(tmp) / "corpus.txt"
    if not path.exists():
        path.write_text(TEXT, encoding="utf-8")
    return str(path)


def argv_for(command: str, out, tmp, steps: int = 2) -> list[str]:
    """A valid tiny run of ``command`` writing to the run directory ``out``."""
    out, s = str(out), ["--steps", str(steps)]
    if command == "train":
        return [*TRAIN, *s, "--out", out]
    if command == "gpt train":
        return [*GPT, "--corpus", corpus_file(tmp), *s, "--out", out]
    if command == "translate-train":
        return [*TRANSLATE, *s, "--out", out]
    if command == "torch-train":
        pytest.importorskip("torch")
        return [*TORCH, *s, "--out", out]
    raise ValueError(command)


def run_out(command: str, tmp) -> Path:
    """Where ``command``'s run goes in ``tmp``: the run directory (every command has one)."""
    return Path(tmp) / "run"


def resume_argv(command: str, out, tmp, steps: int) -> list[str]:
    """Continue the run in ``out`` up to ``steps`` in all: bare ``--out OUT --resume``, no
    data or model flag (the checkpoint has them)."""
    head = {"train": ["train", "--quiet"], "gpt train": ["gpt", "train", "--no-progress"],
            "translate-train": ["translate-train", "--no-progress"],
            "torch-train": ["torch-train", "--no-progress"]}[command]
    return [*head, "--out", str(out), "--resume", "--steps", str(steps)]


def trained_steps(out) -> int:
    """The step of the checkpoint in the run directory ``out``."""
    from scratchformer.training.checkpoint import load

    return int(load(Path(out) / "checkpoint.safetensors")[2]["trainer"]["step"])


def one_line_error(capsys, status: int, rc: int) -> str:
    """Assert an exit status and a one-line stderr without a traceback; return stderr."""
    err = capsys.readouterr().err
    assert rc == status, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


