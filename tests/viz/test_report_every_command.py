"""Every training command watches its run, so ``scratchformer report`` draws any of them:
the gradient records and the attention snapshots are in the run directory after ``train``,
``gpt train``, ``translate-train`` and ``torch-train`` alike (the twin's snapshots run on
its NumPy copy), and the page embeds them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from cli_runs import TRAINING_COMMANDS, argv_for  # noqa: E402

from scratchformer.cli import main  # noqa: E402
from scratchformer.viz.report import load_run  # noqa: E402


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_every_training_command_leaves_a_run_the_report_draws(command, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*argv_for(command, out, tmp_path, steps=6), "--monitor-every", "2"]) == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    grads = [r for r in records if r["kind"] == "grads"]
    assert [r["step"] for r in grads] == [1, 2, 4, 6]  # the first step, then every 2
    assert all(v > 0 for r in grads for v in r["grad_norm"].values())
    snaps = json.loads((out / "snapshots.json").read_text())
    assert snaps["steps"][-1] == 6 and (out / "snapshots.safetensors").stat().st_size > 0
    data = load_run(out)
    assert data["attention"] is not None and data["grads"]["step"] == [1, 2, 4, 6]
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and len(page) > 10_000  # data and script inline


@pytest.mark.parametrize("command", ["train", "gpt train"])
def test_no_monitor_when_asked(command, tmp_path):
    out = tmp_path / "run"
    assert main([*argv_for(command, out, tmp_path, steps=4), "--monitor-every", "0"]) == 0
    kinds = {json.loads(x)["kind"] for x in (out / "metrics.jsonl").read_text().splitlines()}
    assert "grads" not in kinds and not (out / "snapshots.json").exists()
