"""Fixtures of the command-line tests: ``ckpts``, one tiny checkpoint per kind."""

import os

import pytest

from cli_runs import argv_for
from scratchformer.cli import main


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory):
    """One tiny checkpoint per kind: train (reverse), gpt, translate."""
    tmp = tmp_path_factory.mktemp("ckpts")
    paths = {}
    assert main(argv_for("train", tmp / "train", tmp, steps=3)) == 0
    paths["train"] = str(tmp / "train" / "checkpoint.safetensors")
    assert main(argv_for("gpt train", tmp / "gpt", tmp, steps=2)) == 0
    paths["gpt"] = str(tmp / "gpt" / "checkpoint.safetensors")
    assert main(argv_for("translate-train", tmp / "tr", tmp, steps=2)) == 0
    paths["translate"] = str(tmp / "tr" / "checkpoint.safetensors")
    assert all(os.path.isfile(p) for p in paths.values())
    return paths
