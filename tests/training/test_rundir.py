"""The run directory (training/rundir.py) and the Trainer's signal handling: checks,
the lock, stale temp files, torn metrics lines, a SIGINT checkpoint that resumes bit for
bit, and a kill loop (SIGKILL at random moments never leaves an unloadable checkpoint)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scratchformer.data.tasks import get_task
from scratchformer.training import rundir
from scratchformer.training.trainer import TrainConfig, Trainer, TrainingInterrupted

ROOT = str(Path(__file__).resolve().parents[2])


# ---- checks ----------------------------------------------------------------------------------
def test_check_input_file_refuses_directories_and_fifos_without_opening(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(rundir.RunDirError, match="not a regular file"):
        rundir.check_input_file(fifo, "checkpoint")
    with pytest.raises(rundir.RunDirError, match="is a directory"):
        rundir.check_input_file(tmp_path, "checkpoint")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        rundir.check_input_file(tmp_path / "nope", "checkpoint")
    (tmp_path / "ok").write_text("x")
    assert rundir.check_input_file(tmp_path / "ok") == str(tmp_path / "ok")


def test_check_writable_dir_creates_it_or_names_the_problem(tmp_path):
    assert rundir.check_writable_dir(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    (tmp_path / "file").write_text("")
    with pytest.raises(rundir.RunDirError, match="exists and is not a directory"):
        rundir.check_writable_dir(tmp_path / "file")
    with pytest.raises(rundir.RunDirError, match="not usable"):
        rundir.check_writable_dir(tmp_path / "file" / "sub")


def test_check_new_run_needs_force_when_a_run_is_there(tmp_path):
    rundir.check_new_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(rundir.RunDirError, match="holds another run"):
        rundir.check_new_run(tmp_path)
    rundir.check_new_run(tmp_path, force=True)


# ---- the lock ----------------------------------------------------------------------------------
def test_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "train.lock"
    with rundir.RunLock(path):
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(rundir.RunDirError, match=f"another trainer \\(pid {os.getpid()}\\)"):
            rundir.RunLock(path).acquire()
    assert not path.exists()


def test_a_dead_pids_lock_is_taken_over(tmp_path, capsys):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    path = tmp_path / "train.lock"
    path.write_text(f"{p.pid}\n")
    with rundir.RunLock(path):
        assert path.read_text().strip() == str(os.getpid())
    assert "taking over" in capsys.readouterr().err


# ---- temp files and metrics --------------------------------------------------------------------
def test_remove_stale_temps_matches_what_checkpoint_save_writes(tmp_path, monkeypatch):
    """The pattern is pinned to checkpoint.save's own temp names: make save leave one."""
    import tempfile

    from scratchformer import GPT, GPTConfig
    from scratchformer.training import checkpoint

    made = []
    real = tempfile.mkstemp

    def spy(*a, **k):
        fd, name = real(*a, **k)
        made.append(name)
        return fd, name

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", spy)
    monkeypatch.setattr(checkpoint.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("x")))
    model = GPT(GPTConfig(5, d_model=8, n_heads=2, d_ff=8, n_layers=1, max_len=4))
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / "checkpoint.safetensors", model)
    monkeypatch.undo()
    Path(made[0]).write_bytes(b"left by a killed save")  # as if the process had died
    (tmp_path / "keep.txt").write_text("")
    (tmp_path / ".notes.txt.abc123.tmp").write_text("")  # not a checkpoint's temp file
    assert rundir.remove_stale_temps(tmp_path) == [made[0]]
    assert sorted(os.listdir(tmp_path)) == [".notes.txt.abc123.tmp", "keep.txt"]


@pytest.mark.parametrize("content,kept", [
    ('{"step": 1}\n{"step": 2}\n{"st', 2),
    ('{"step": 1}\n{"step": 2}\n', 2),
    ('{"step": 1}\n{"step": 2}', 2),          # complete, only the newline missing
    ('{"step": 1}\n12', 1),                   # a torn number is not a record
    ("", 0),
])
def test_repair_metrics_keeps_every_complete_record(tmp_path, content, kept):
    path = tmp_path / "metrics.jsonl"
    path.write_text(content)
    rundir.repair_metrics(path)
    text = path.read_text()
    assert [json.loads(x) for x in text.splitlines()] == [{"step": i + 1} for i in range(kept)]
    assert text == "" or text.endswith("\n")


def test_repair_metrics_refuses_damage_in_the_middle(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(rundir.RunDirError, match="line 2"):
        rundir.repair_metrics(path)


# ---- the Trainer under a signal ------------------------------------------------------------------
def _trainer(out_dir, task, steps=16, signal_at=None, sig=signal.SIGINT):
    from scratchformer import Transformer, TransformerConfig

    model = Transformer(TransformerConfig(task.vocab_size, task.vocab_size, d_model=16, n_heads=2,
                                          d_ff=32, n_encoder_layers=1, n_decoder_layers=1,
                                          dropout=0.1, max_len=16, seed=0))

    def batch(rng, step):
        if step == signal_at:  # arrives in the middle of a step
            os.kill(os.getpid(), sig)
        return task.batch(rng, 8)

    cfg = TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup=2, eval_every=0, log_every=1)
    return Trainer(model, batch, cfg, progress=False, out_dir=out_dir)


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoint_resumes_bit_for_bit(tmp_path, sig, status):
    task = get_task("copy", max_len=5, held_out_size=10)
    full = _trainer(None, task)
    full.fit()
    first = _trainer(tmp_path, task, signal_at=7, sig=sig)
    with pytest.raises(TrainingInterrupted) as info:
        first.fit()
    assert info.value.step == 7 and info.value.exit_status == status  # the step under way finishes
    assert info.value.checkpoint == str(tmp_path / "checkpoint.safetensors")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    resumed = _trainer(tmp_path, task)
    resumed.resume(tmp_path / "checkpoint.safetensors")
    assert resumed.step == 7
    resumed.fit()
    for k, v in full.model.state_dict().items():
        assert np.array_equal(v, resumed.model.state_dict()[k]), k
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 17))


def test_fit_reports_only_evaluations_it_ran(tmp_path):
    task = get_task("copy", max_len=5, held_out_size=10)
    t = _trainer(tmp_path, task, steps=4)
    t.evaluate, t.config.eval_every = (lambda model: {"exact_match": 0.5}), 2
    assert t.fit().eval == {"exact_match": 0.5} and t.last_eval_step == 4
    t2 = _trainer(tmp_path, task, steps=6)
    t2.resume(tmp_path / "checkpoint.safetensors")
    assert t2.last_eval == {"exact_match": 0.5} and t2.last_eval_step is None
    assert t2.fit().eval == {}  # no evaluation ran in this fit(): nothing carried over


# ---- kill loop ---------------------------------------------------------------------------------
def test_sigkill_at_random_moments_never_loses_the_run(tmp_path):
    """A tiny run that saves every step, SIGKILLed 6 times at seeded random moments (while
    writing checkpoints, metrics or nothing): the checkpoint always loads, the next start
    takes over the dead lock and removes the temp files, and --resume continues."""
    from scratchformer.cli import main
    from scratchformer.training.checkpoint import load

    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    base = ["--steps", "100000", "--checkpoint-every", "1", "--log-every", "1", "--quiet"]
    fresh = [sys.executable, "-m", "scratchformer", "train", "--task", "copy", "--d-model", "16",
             "--n-heads", "2", "--n-layers", "1", "--d-ff", "32", "--batch-size", "8",
             "--eval-every", "0", "--samples", "0", "--held-out-size", "10", "--out", str(out),
             *base]
    rng = random.Random(13)
    for i in range(6):
        argv = fresh if not ckpt.exists() else [
            sys.executable, "-m", "scratchformer", "train", "--out", str(out), "--resume", *base]
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        t0 = time.monotonic()  # wait for this process's first save, then kill at random
        while (not ckpt.exists() or ckpt.stat().st_mtime_ns == before) and \
                time.monotonic() - t0 < 30 and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()  # SIGKILL: no handler runs
        _, err = proc.communicate()
        assert "Traceback" not in err, err
        model, opt, state = load(ckpt)  # always a whole checkpoint
        assert opt is not None
    step = json.loads(str(state["trainer"]))["step"] if isinstance(state["trainer"], str) \
        else state["trainer"]["step"]
    assert main(["train", "--out", str(out), "--resume", "--steps", str(step + 3), "--quiet"]) == 0
    assert not list(out.glob(".*.tmp")) and not (out / "train.lock").exists()
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == step + 3
