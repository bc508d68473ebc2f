"""--threads on the training commands reaches the training loop's worker pool (torch-train:
torch's CPU threads)."""

from pathlib import Path

import pytest

import scratchformer.training.lm as lm_mod
import scratchformer.training.recipes as recipes_mod
import scratchformer.training.translation as translation_mod
from scratchformer import cli

FIXTURE = str(Path(__file__).parents[1] / "fixtures" / "translation" / "tiny.tsv")


class _Stop(Exception):
    pass


@pytest.fixture
def seen(monkeypatch):
    """Replace Trainer by a stub that records its threads and stops the command."""
    got = {}

    class Recorder:
        def __init__(self, *args, threads=None, **kwargs):
            got["threads"] = threads
            raise _Stop

    monkeypatch.setattr(translation_mod, "Trainer", Recorder)  # translate-train
    monkeypatch.setattr(lm_mod, "Trainer", Recorder)  # gpt train (training.lm)
    monkeypatch.setattr(recipes_mod, "Trainer", Recorder)  # train (training.recipes)
    return got


@pytest.mark.parametrize("flag,expected", [([], None), (["--threads", "1"], 1)])
def test_gpt_train_passes_threads_to_the_trainer(tmp_path, seen, flag, expected):
    text = tmp_path / "t.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    with pytest.raises(_Stop):
        cli.main(["gpt", "train", "--corpus", str(text), "--out", str(tmp_path / "g"),
                  "--steps", "2", "--no-progress", *flag])
    assert seen["threads"] == expected


@pytest.mark.parametrize("flag,expected", [([], None), (["--threads", "1"], 1)])
def test_translate_train_passes_threads_to_the_trainer(tmp_path, seen, flag, expected):
    with pytest.raises(_Stop):
        cli.main(["translate-train", "--pairs", FIXTURE, "--vocab-size", "120", "--d-model", "32",
                  "--d-ff", "64", "--n-heads", "2", "--n-layers", "1", "--steps", "2",
                  "--out", str(tmp_path / "t"), "--no-progress", *flag])
    assert seen["threads"] == expected


@pytest.mark.parametrize("flag,expected", [([], None), (["--threads", "1"], 1)])
def test_train_passes_threads_to_the_trainer(tmp_path, seen, flag, expected):
    with pytest.raises(_Stop):
        cli.main(["train", "--task", "copy", "--steps", "2", "--out", str(tmp_path / "c"),
                  "--no-progress", *flag])
    assert seen["threads"] == expected


@pytest.mark.parametrize("flag,expected", [([], None), (["--threads", "1"], 1)])
def test_torch_train_sets_torch_threads(tmp_path, monkeypatch, flag, expected):
    import os

    torch = pytest.importorskip("torch")
    got = []

    def spy(n):
        got.append(n)
        raise _Stop

    monkeypatch.setattr(torch, "set_num_threads", spy)
    with pytest.raises(_Stop):
        cli.main(["torch-train", "--task", "copy", "--steps", "2", "--out", str(tmp_path / "t"),
                  "--no-progress", *flag])
    assert got == [expected or os.cpu_count()]  # default: the cores, one process
