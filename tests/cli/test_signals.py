"""Ctrl-C (SIGINT) and SIGTERM during training save a checkpoint at the current step and
exit with 130 / 143, saying where in one line; --resume then continues from it. Every
training command, real processes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runs import TRAINING_COMMANDS, argv_for, resume_argv, trained_steps
from scratchformer.cli import main

ROOT = str(Path(__file__).resolve().parents[2])


def _start(argv, tmp):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "scratchformer", *argv], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(proc, metrics: Path, timeout=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if metrics.exists() and metrics.stat().st_size > 0:
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("training did not start")


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_a_signal_saves_a_checkpoint_and_resume_continues(command, sig, status, tmp_path):
    out = tmp_path / "run"
    argv = [*argv_for(command, out, tmp_path, steps=10**6), "--log-every", "1"]
    proc = _start(argv, tmp_path)
    _wait_for_training(proc, out / "metrics.jsonl")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert len(said) == 1 and said[0] == err.strip().splitlines()[-1], err  # one clear line
    m = re.search(r"^scratchformer: interrupted by (SIG\w+) at step (\d+); checkpoint saved at "
                  r"step (\d+): (\S+)", said[0])
    assert m and m.group(1) == sig.name and Path(m.group(4)) == out / "checkpoint.safetensors", err
    step = int(m.group(2))
    assert int(m.group(3)) == step and trained_steps(out) == step  # loadable, at that step
    assert not (out / "train.lock").exists()
    assert main(resume_argv(command, out, tmp_path, step + 2)) == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == step + 2
