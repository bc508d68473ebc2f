"""No run is lost or silently mixed with another, the same rule in every training command:
an unusable output is refused before training, a directory holding another run needs
--force, a second trainer is locked out (a dead one's lock is taken over), a torn metrics
line does not break --resume, and --resume --steps N means 'up to N steps in all'."""

import json
import os
import subprocess
import sys

import pytest

from cli_runs import (TRAINING_COMMANDS, argv_for, one_line_error, resume_argv, run_out,
                      trained_steps)
from scratchformer.cli import main


def _lock_path(command, out):
    return os.path.join(out, "train.lock")  # every command: OUT is a run directory


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_an_unusable_output_path_is_refused_before_training(command, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "run"  # under a regular file
    err = one_line_error(capsys, 2, main(argv_for(command, out, tmp_path, steps=10**6)))
    assert str(blocker) in err  # refused at once: 10**6 steps would not finish


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_a_new_run_refuses_another_runs_output_unless_force(command, tmp_path, capsys):
    out = run_out(command, tmp_path)
    assert main(argv_for(command, out, tmp_path)) == 0
    capsys.readouterr()
    ckpt = out / "checkpoint.safetensors"
    before = ckpt.read_bytes()
    err = one_line_error(capsys, 2, main(argv_for(command, out, tmp_path, steps=3)))
    assert "--force" in err and str(out) in err
    assert ckpt.read_bytes() == before  # untouched
    assert main([*argv_for(command, out, tmp_path, steps=3), "--force"]) == 0
    assert ckpt.read_bytes() != before


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_a_forced_run_refused_while_being_built_leaves_the_old_run_whole(command, tmp_path,
                                                                         capsys):
    out = run_out(command, tmp_path)
    assert main(argv_for(command, out, tmp_path)) == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    rc = main([*argv_for(command, out, tmp_path), "--force", "--d-model", "30", "--n-heads", "4"])
    err = capsys.readouterr().err  # (translate-train logs its data pipeline on stderr first)
    assert rc == 2 and "divisible" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # its metrics too


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_a_live_trainers_lock_refuses_a_second_one(command, tmp_path, capsys):
    out = run_out(command, tmp_path)
    lock = _lock_path(command, out)
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "w") as f:
        f.write(f"{os.getpid()}\n")  # this very process: alive
    err = one_line_error(capsys, 2, main(argv_for(command, out, tmp_path)))
    assert "another trainer" in err and str(os.getpid()) in err
    assert os.path.exists(lock)  # not ours to remove


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_a_dead_trainers_lock_is_taken_over_with_a_warning(command, tmp_path, capsys):
    out = run_out(command, tmp_path)
    lock = _lock_path(command, out)
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    pid = _dead_pid()
    with open(lock, "w") as f:
        f.write(f"{pid}\n")
    assert main(argv_for(command, out, tmp_path)) == 0
    err = capsys.readouterr().err
    assert "taking over the lock" in err and str(pid) in err
    assert not os.path.exists(lock)  # released at the end


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_stale_checkpoint_temp_files_are_removed_at_the_next_start(command, tmp_path, capsys):
    out = run_out(command, tmp_path)
    out.mkdir()
    stale = out / ".checkpoint.safetensors.k2j4x8qz.tmp"  # what a killed checkpoint.save leaves
    stale.write_bytes(b"half a checkpoint")
    assert main(argv_for(command, out, tmp_path)) == 0
    assert not stale.exists() and "interrupted checkpoint save" in capsys.readouterr().err


def _resume_argv(command, out, tmp, steps):
    return resume_argv(command, out, tmp, steps)


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_resume_steps_n_continues_up_to_n_in_all(command, tmp_path, capsys):
    out = run_out(command, tmp_path)
    assert main(argv_for(command, out, tmp_path, steps=3)) == 0
    assert trained_steps(out) == 3
    assert main(_resume_argv(command, out, tmp_path, 7)) == 0
    assert trained_steps(out) == 7  # gpt train used to train zero steps here
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 7
    capsys.readouterr()
    rc = main(_resume_argv(command, out, tmp_path, 5))
    err = capsys.readouterr().err  # (translate-train logs its progress on stderr too)
    assert rc == 2 and "Traceback" not in err
    assert "up to N steps in all" in err.strip().splitlines()[-1]  # refused, not ignored


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_resume_survives_a_torn_last_metrics_line(command, tmp_path, capsys):
    out = run_out(command, tmp_path)
    assert main(argv_for(command, out, tmp_path, steps=3)) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 4, "lo')  # killed mid-write
    assert main(_resume_argv(command, out, tmp_path, 5)) == 0
    assert "torn last line" in capsys.readouterr().err
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert records and max(r["step"] for r in records) == 5


def test_train_resume_prints_metrics_measured_now(tmp_path, capsys):
    """A resumed run's stored last_eval is never printed as if it were new."""
    from scratchformer.training.checkpoint import load, save

    out = tmp_path / "run"
    assert main(argv_for("train", out, tmp_path, steps=3)) == 0
    ckpt = out / "checkpoint.safetensors"
    model, opt, state = load(ckpt)
    trainer = state.pop("trainer")
    trainer = trainer if isinstance(trainer, dict) else json.loads(str(trainer))
    trainer["last_eval"] = {"loss": 9.999, "token_accuracy": 0.123, "exact_match": 0.777, "n": 10}
    from scratchformer.training.checkpoint import optimizer_from_state
    save(ckpt, model, optimizer_from_state(model, opt), trainer=trainer, **state)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--steps", "4", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "9.999" not in printed and "77.7%" not in printed and "after 4 steps" in printed


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no NumPy warning before the line
@pytest.mark.parametrize("command, steps", [("train", 20), ("gpt train", 20), ("translate-train", 20),
                                           ("train", 1), ("gpt train", 1), ("torch-train", 1)])
def test_a_diverging_run_ends_in_one_line_naming_the_step(command, steps, tmp_path, capsys):
    """Weights blown up by a huge learning rate: the NumPy commands stop with exit status 1
    and one line naming the step, with no RuntimeWarning of the overflow on the way (the
    monitor and the step run with NumPy's float warnings off; the trainer checks itself).
    With one step the blow-up shows only in the final evaluation, after fit saved that
    step: halted there too, saying the checkpoint holds those weights (torch-train
    evaluates before its final save, and does not save them). (The tiny translate-train run
    evaluates nothing at its end: --eval-every 0, no test beams.)"""
    out = run_out(command, tmp_path)
    extra = ["--eval-size", "8"] if command == "torch-train" else []
    rc = main([*argv_for(command, out, tmp_path, steps=steps), "--lr", "1e37", "--warmup", "0",
                "--min-lr-ratio", "1", *extra])
    err = capsys.readouterr().err  # translate-train reports its data on stderr first
    assert rc == 1 and "Traceback" not in err and "Warning" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("scratchformer: error: training halted") and "step" in last, err
    if steps == 1 and command == "torch-train":
        assert "in the final evaluation" in last and "not saved" in last, err
        assert not (out / "checkpoint.safetensors").exists()
    elif steps == 1:  # found by the final evaluation: fit had saved that step, and says so
        assert "in the final evaluation" in last and "the checkpoint" in last, err
        assert "holds them" in last and "the last checkpoint is" not in last, err


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("trained, use", [("gpt train", ["gpt", "sample", "--tokens", "3"]),
                                          ("train", ["decode", "--input", "3 4 1"]),
                                          ("train", ["eval"])])
def test_a_checkpoint_whose_weights_overflow_gives_one_named_error(trained, use, tmp_path, capsys):
    """The checkpoint a one-step run left when its final evaluation found the weights
    overflowing (the message said it holds them): sampling, decoding or evaluating it is
    one named error (exit 2), with no RuntimeWarning before it."""
    out = run_out(trained, tmp_path)
    argv = [*argv_for(trained, out, tmp_path, steps=1), "--lr", "1e37", "--warmup", "0",
            "--min-lr-ratio", "1"]
    assert main(argv) == 1
    capsys.readouterr()
    err = one_line_error(capsys, 2, main([*use, "--checkpoint", str(out / "checkpoint.safetensors")]))
    assert "the model's output is not finite" in err


@pytest.mark.filterwarnings("error::RuntimeWarning")  # one line: no NumPy warnings before it
def test_torch_train_nan_halts_and_never_writes_nan_weights(tmp_path, capsys):
    """A forced new run that diverges halts in one line (exit 1) and writes no checkpoint:
    the old run was erased at the new one's first step (--force), and NaN weights are
    never saved, so the directory holds nothing that mixes or misleads."""
    pytest.importorskip("torch")
    out = tmp_path / "run"
    ckpt = out / "checkpoint.safetensors"
    assert main(argv_for("torch-train", out, tmp_path)) == 0
    capsys.readouterr()
    rc = main([*argv_for("torch-train", out, tmp_path, steps=20), "--force", "--lr", "1e30"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "training halted" in err and "at step" in err
    assert not ckpt.exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["step"] <= 20 for r in records)  # only the new run's records, if any


def test_torch_train_refuses_non_finite_weights_at_save(tmp_path):
    torch = pytest.importorskip("torch")
    from scratchformer.torch_port.train import TorchTrainer
    from scratchformer.training import TorchTrainConfig
    from scratchformer.training.trainer import TrainingDiverged

    cfg = TorchTrainConfig(task="copy", d_model=16, n_heads=2, d_ff=32, n_layers=1, steps=2,
                           batch_size=8, threads=1, out=str(tmp_path), progress=False)
    trainer = TorchTrainer(cfg)
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("nan")
    with pytest.raises(TrainingDiverged, match="not finite"):
        trainer.save(str(tmp_path / "checkpoint.safetensors"))
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_torch_train_an_update_overflowing_float32_halts_in_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "run"  # lr / (1 - β₁) at step 1 is beyond float32: torch's Adam refuses
    rc = main([*argv_for("torch-train", out, tmp_path, steps=1), "--batch-size", "1", "--lr",
               "3.402823466385288e+39"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "training halted: the update overflowed float32 at step 1" in err
    assert not (out / "checkpoint.safetensors").exists()


def test_torch_train_gpt_on_a_corpus_without_newline_saves_its_run(tmp_path, capsys):
    pytest.importorskip("torch")
    corpus = tmp_path / "abc.txt"
    corpus.write_text("abcab" * 200, encoding="utf-8")  # no "\n" to start the sample with
    out = tmp_path / "run"
    rc = main(["torch-train", "--corpus", str(corpus), "--steps", "2", "--batch-size", "2",
               "--block-size", "4", "--d-model", "16", "--n-heads", "2", "--d-ff", "32",
               "--n-layers", "1", "--eval-size", "20", "--threads", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "sample:\na" in printed  # it starts at the corpus' first character
    assert (out / "checkpoint.safetensors").exists()
