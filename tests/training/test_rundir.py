"""The run directory (training/rundir.py) and the Trainer's signal handling: checks,
every out_dir problem found when the run is opened (with messages that name the path and
parameters, never flags), the resume checkpoint, the lock, stale temp files, torn metrics
lines, a SIGINT checkpoint that resumes bit for bit, and a kill loop (SIGKILL at random
moments never leaves an unloadable checkpoint)."""

import json
import os
import random
import re
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

from on_disk import snapshot

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
    msg = refusal(rundir.check_new_run, tmp_path)
    assert msg == (f"{tmp_path} holds another run (metrics.jsonl): pass resume=True to continue "
                   f"it, force=True to start a new run there (erasing it), or choose another out_dir")
    rundir.check_new_run(tmp_path, force=True)
    (tmp_path / "metrics.jsonl").unlink()
    (tmp_path / "checkpoint.npz").write_bytes(b"PK")
    assert f"scratchformer convert-checkpoint {tmp_path / 'checkpoint.npz'}" in refusal(
        rundir.check_new_run, tmp_path)


# ---- open_run: every out_dir problem found at open, a refusal changes nothing ----------------
def refusal(fn, *args, **kwargs) -> str:
    """The RunDirError message of ``fn(*args)``: one line, no --flag."""
    with pytest.raises(rundir.RunDirError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and "--" not in msg, msg
    return msg


def open_refusal(out, **kwargs) -> str:
    """The message of an ``open_run`` that must refuse before its block runs."""
    def enter():
        with rundir.open_run(out, **kwargs):
            raise AssertionError("the run started")
    return refusal(enter)


def a_run(out, run="old"):
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint.safetensors").write_text(f"checkpoint of {run}")
    (out / "metrics.jsonl").write_text(json.dumps({"run": run, "step": 1}) + "\n")
    return out


def test_resume_checkpoint_is_the_run_dirs_own(tmp_path):
    out = a_run(tmp_path / "run")
    assert rundir.resume_checkpoint(out) == str(out / "checkpoint.safetensors")


def test_resume_without_a_checkpoint_says_so_and_creates_nothing(tmp_path):
    for out in (tmp_path / "missing", tmp_path):
        want = f"no checkpoint to resume in {out} (start a new run without resume=True)"
        assert refusal(rundir.resume_checkpoint, out) == want
        assert open_refusal(out, resume=True) == want
    assert not (tmp_path / "missing").exists() and not list(tmp_path.iterdir())


def test_resume_with_only_an_old_npz_gives_the_convert_hint(tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(b"PK\x03\x04")
    (tmp_path / "metrics.jsonl").write_text("")
    npz = tmp_path / "checkpoint.npz"
    want = (f"{tmp_path} holds only a checkpoint of the old format ({npz}): convert it once "
            f"with: scratchformer convert-checkpoint {npz}")
    assert refusal(rundir.resume_checkpoint, tmp_path) == want
    before = snapshot(tmp_path)
    assert open_refusal(tmp_path, resume=True) == want
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["checkpoint.safetensors", "metrics.jsonl", "train.lock",
                                  "checkpoint.npz"])
@pytest.mark.parametrize("kind", ["directory", "fifo"])
@pytest.mark.parametrize("mode", [{}, {"force": True}, {"resume": True}])
def test_a_non_file_where_a_run_keeps_a_file_is_refused_at_open(tmp_path, name, kind, mode):
    out = tmp_path / "run"
    out.mkdir()
    if mode.get("resume") and name != "checkpoint.safetensors":
        (out / "checkpoint.safetensors").write_text("a checkpoint")
    obstacle = out / name
    obstacle.mkdir() if kind == "directory" else os.mkfifo(obstacle)
    before = snapshot(tmp_path)
    msg = open_refusal(out, **mode)
    assert snapshot(tmp_path) == before  # nothing erased, created or written
    assert f"{obstacle} is " in msg
    assert ("a directory" if kind == "directory" else "not a regular file") in msg


def test_the_obstacle_message_is_pinned(tmp_path):
    (tmp_path / "checkpoint.safetensors").mkdir()
    assert open_refusal(tmp_path, force=True) == (
        f"{tmp_path / 'checkpoint.safetensors'} is a directory, where a run keeps its "
        f"checkpoint.safetensors: move it away or choose another out_dir")
    assert open_refusal(tmp_path, resume=True) == (
        f"{tmp_path / 'checkpoint.safetensors'} is a directory, expected the checkpoint of the "
        f"run to resume")


def test_a_new_run_refuses_another_runs_directory_and_changes_nothing(tmp_path):
    out = a_run(tmp_path / "run")
    before = snapshot(tmp_path)
    assert "holds another run (checkpoint.safetensors, metrics.jsonl)" in open_refusal(out)
    assert snapshot(tmp_path) == before


def test_force_keeps_the_other_run_whole_until_the_new_runs_first_step(tmp_path):
    out = a_run(tmp_path / "run")
    (out / "checkpoint.npz").write_bytes(b"PK\x03\x04")
    (out / "notes.txt").write_text("not a run file")
    for name in ("snapshots.json", "results.json", "report.html"):
        (out / name).write_text("{}")
    before = sorted(os.listdir(out))
    with rundir.open_run(out, force=True) as opened:
        assert opened == str(out)
        assert sorted(os.listdir(out)) == sorted([*before, "train.lock"])  # a refused build erases nothing
        rundir.start_fresh(out)  # what the loop does at its first step
        assert sorted(os.listdir(out)) == ["metrics.jsonl", "notes.txt", "train.lock"]
        assert (out / "metrics.jsonl").read_text() == ""  # no stale checkpoint or output
    assert sorted(os.listdir(out)) == ["metrics.jsonl", "notes.txt"]


def test_resume_keeps_the_run_and_force_with_resume_is_refused(tmp_path):
    out = a_run(tmp_path / "run")
    before = snapshot(tmp_path)
    with rundir.open_run(out, resume=True) as opened:
        assert rundir.resume_checkpoint(opened) == str(out / "checkpoint.safetensors")
    assert snapshot(tmp_path) == before
    assert open_refusal(out, resume=True, force=True) == (
        "resume=True continues the run in out_dir and force=True erases it to start a new "
        "one: pass one of them")
    with pytest.raises(ValueError, match="force must be True or False, got 'yes'"):
        with rundir.open_run(out, force="yes"):
            pass
    assert snapshot(tmp_path) == before


def test_an_unwritable_metrics_file_is_refused_before_resuming(tmp_path, monkeypatch):
    out = a_run(tmp_path / "run")
    real = os.access
    monkeypatch.setattr(rundir.os, "access", lambda p, m: False if str(p).endswith(
        "metrics.jsonl") and m == os.W_OK else real(p, m))  # (as root, chmod would not do it)
    assert open_refusal(out, resume=True) == (
        f"{out / 'metrics.jsonl'} is not writable (permission denied): a resumed run appends to it")


def test_every_message_names_parameters_not_flags(tmp_path):
    """The lock, the output file and the writable-dir checks too: no --flag anywhere."""
    out = a_run(tmp_path / "run")
    with rundir.open_run(out, resume=True):
        assert "another trainer" in open_refusal(out, resume=True)
    (tmp_path / "file").write_text("")
    assert "exists and is not a directory" in open_refusal(tmp_path / "file")
    assert "not usable" in open_refusal(tmp_path / "file" / "sub")

    def open_file(path, **kw):
        with rundir.open_output_file(path, **kw):
            pass
    assert refusal(open_file, tmp_path / "file") == (
        f"{tmp_path / 'file'} exists (another run's checkpoint): pass force=True to replace it, "
        f"or choose another path")
    assert "is a directory" in refusal(open_file, tmp_path)
    for module in ("rundir", "checkpoint", "safetensors_file", "legacy_npz"):
        source = (Path(rundir.__file__).parent / f"{module}.py").read_text()
        assert not re.findall(r"--[a-z]", source), module  # no --flag in any message


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
    from scratchformer.training import checkpoint, safetensors_file

    made = []
    real = tempfile.mkstemp

    def spy(*a, **k):
        fd, name = real(*a, **k)
        made.append(name)
        return fd, name

    monkeypatch.setattr(safetensors_file.tempfile, "mkstemp", spy)
    monkeypatch.setattr(safetensors_file.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("x")))
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


def test_a_run_refused_before_its_first_file_leaves_no_new_directory(tmp_path):
    fresh = tmp_path / "new" / "run"
    with pytest.raises(ValueError, match="built badly"):
        with rundir.open_run(fresh):
            raise ValueError("built badly")
    assert not fresh.exists()  # created by open_run, emptied by the lock's release: removed
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(ValueError):
        with rundir.open_run(kept):
            raise ValueError("built badly")
    assert kept.is_dir()  # the user's own directory stays
