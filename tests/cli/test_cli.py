"""The command line: train / eval / decode round trip, help, and one-line user errors."""

import json
import os
import subprocess
import sys

import pytest

from scratchformer.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32",
        "--batch-size", "16", "--eval-every", "10", "--eval-quick", "20", "--samples", "2",
        "--max-len", "5", "--num-symbols", "5", "--held-out-size", "50"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "--task", "reverse", "--steps", "20", "--out", str(out), "--quiet",
               "--checkpoint-every", "10", *TINY])
    assert rc == 0
    return out


def test_train_writes_checkpoint_and_metrics(trained, capsys):
    assert (trained / "checkpoint.safetensors").exists()
    records = [json.loads(s) for s in (trained / "metrics.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in records} == {"train", "eval", "monitor", "grads"}
    assert max(r["step"] for r in records) == 20
    assert (trained / "snapshots.safetensors").exists()  # every run is watched (report)


def test_train_prints_the_exact_match_line(tmp_path, capsys):
    rc = main(["train", "--task", "copy", "--steps", "10", "--out", str(tmp_path), "--no-progress",
               *TINY])
    out = capsys.readouterr().out
    assert rc == 0
    assert "exact match: " in out and "%" in out.splitlines()[-2]
    assert "checkpoint:" in out


def test_eval_reports_held_out_metrics(trained, capsys):
    assert main(["eval", "--checkpoint", str(trained / "checkpoint.safetensors"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["task"] == "reverse" and m["step"] == 20
    assert 0 <= m["exact_match"] <= 1 and 0 <= m["token_accuracy"] <= 1 and m["n"] == 50


def test_decode_prints_one_line_per_input(trained, capsys):
    ckpt = str(trained / "checkpoint.safetensors")
    assert main(["decode", "--checkpoint", ckpt, "--input", "1 2 3", "4 0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(set(line.split()) <= set("01234") for line in lines)
    assert main(["decode", "--checkpoint", ckpt, "--input", "1 2", "--beam", "3"]) == 0


def test_resume_continues_to_more_steps(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["train", "--out", str(run), "--resume", "--steps", "30", "--quiet"]) == 0
    import scratchformer as sf

    _, _, state = sf.load(run / "checkpoint.safetensors")
    assert state["trainer"]["step"] == 30 and state["task"]["name"] == "reverse"


def test_resume_refuses_flags_it_would_ignore(trained, capsys):
    before = (trained / "checkpoint.safetensors").read_bytes()
    rc = main(["train", "--out", str(trained), "--resume", "--lr", "0.1"])
    assert rc == 2 and "drop --lr 0.1" in capsys.readouterr().err
    assert (trained / "checkpoint.safetensors").read_bytes() == before


def test_resume_without_out_names_the_flags(capsys):
    rc = main(["train", "--resume"])  # the default --out runs/TASK names no run to continue
    err = capsys.readouterr().err
    assert rc == 2 and "--resume" in err and "--out" in err and len(err.splitlines()) == 1


class _Called(Exception):
    pass


def test_train_without_task_is_the_copy_task_into_runs_copy(monkeypatch, tmp_path):
    from scratchformer.training import recipes

    seen = []

    def spy(cfg):
        seen.append(cfg)
        raise _Called

    monkeypatch.setattr(recipes, "train_task", spy)
    monkeypatch.chdir(tmp_path)
    for argv, task in ((["train"], "copy"), (["train", "--task", "dates"], "dates")):
        with pytest.raises(_Called):
            main(argv)
        cfg = seen.pop()
        assert cfg.task == task and cfg.out == f"runs/{task}" and not cfg.resume
        assert cfg.steps == recipes.TASK_PRESETS[task]["steps"]  # the task's preset
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv,message", [
    (["train", "--task", "sort"], "argument --task: invalid choice: 'sort'"),
    (["train", "--task", "copy", "--offset", "3"], "--offset applies to task shift, not 'copy'"),
    (["train", "--task", "copy", "--d-model", "30", "--n-heads", "4"], "divisible"),
    (["train", "--task", "copy", "--heads", "4"], "unrecognized arguments: --heads 4"),
    (["train", "--task", "copy", "--lr", "-1"], "argument --lr: must be a finite number > 0"),
    (["train", "--task", "copy", "--max-len", "0"], "argument --max-len: must be an integer >= 1"),
    (["eval", "--checkpoint", "no/such/file.npz"], "checkpoint not found"),
    (["decode", "--checkpoint", "no/such/file.npz", "--input", "1"], "checkpoint not found"),
    (["train", "--task", "copy", "--steps", "ten"], "argument --steps: must be an integer"),
])
def test_user_mistakes_exit_2_with_one_line(argv, message, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path)] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_decode_rejects_unknown_symbols_in_one_line(trained, capsys):
    rc = main(["decode", "--checkpoint", str(trained / "checkpoint.safetensors"), "--input", "1 x 3"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown symbol 'x'" in err and len(err.strip().splitlines()) == 1


def test_not_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert "not a ScratchFormer checkpoint" in capsys.readouterr().err


def test_help_describes_flags_with_defaults(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "eval" in out and "decode" in out and "examples:" in out
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--label-smoothing" in out and "(default: 200)" in out and "copy: d_model=" in out


def test_python_dash_m_scratchformer_help_runs():
    r = subprocess.run([sys.executable, "-m", "scratchformer", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "usage: scratchformer" in r.stdout and "train" in r.stdout


def test_building_the_cli_imports_no_torch_or_matplotlib():
    code = ("import sys; from scratchformer.cli import build_parser; build_parser(); "
            "bad = [m for m in ('torch', 'matplotlib', 'tqdm') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
