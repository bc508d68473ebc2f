"""Data-parallel NumPy training (training/distributed.py) on torch.distributed with gloo:
two processes keep bit-identical replicas and train what one process trains on the whole
global batch (float64, ≤ 1e-10)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(parallel, optimizer: str):
    """A float64 copy-task model trained STEPS steps (batches of 8), data-parallel or not."""
    import scratchformer as sf
    from scratchformer.data.tasks import get_task
    from scratchformer.training.trainer import TrainConfig, Trainer, seq2seq_step

    task = get_task("copy", held_out_size=0)
    model = sf.Transformer(sf.TransformerConfig(
        task.vocab_size, task.vocab_size, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
        n_decoder_layers=1, dropout=0.0, max_len=16, seed=3)).astype(np.float64)
    cfg = TrainConfig(steps=STEPS, batch_size=8, lr=0.05, warmup=0, optimizer=optimizer,
                      schedule="constant", clip_norm=1.0, seed=5, eval_every=0, log_every=1)

    def batch_fn(rng, step):
        return task.batch(rng, 8)

    step_fn = seq2seq_step
    if parallel is not None:
        batch_fn, step_fn = parallel.shard(batch_fn), parallel.wrap(step_fn)
    trainer = Trainer(model, batch_fn, cfg, step_fn=step_fn, progress=False, threads=1)
    result = trainer.fit()
    return model.state_dict(), [r["loss"] for r in result.history if r["kind"] == "train"]


def _worker(rank: int, world: int, port: int, out_dir: str, optimizer: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from scratchformer.training.distributed import DataParallel

    dp = DataParallel()
    weights, losses = _train(dp, optimizer)
    dp.close()
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), losses=np.array(losses), **weights)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_processes_keep_identical_replicas_equal_to_one_process(tmp_path, optimizer):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), optimizer), nprocs=2, join=True)
    r0, r1 = (dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1))
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=f"replicas differ at {k}")
    if optimizer == "adam":
        return  # Adam turns the rounding noise of zero-in-exact-arithmetic gradients (a key
        # projection's bias) into ±lr steps, so only the replicas' identity is pinned here
    single, losses = _train(None, optimizer)
    np.testing.assert_allclose(r0.pop("losses"), losses, rtol=1e-12)
    # relative to the largest weight: a key projection's bias has a zero gradient in exact
    # arithmetic, so both runs leave it at rounding noise (~1e-17), differently
    scale = max(np.abs(v).max() for v in single.values())
    for k, v in single.items():
        err = np.abs(r0[k] - v).max() / scale
        assert err <= 1e-10, f"{k}: relative difference {err:.2e}"
    moved = max(np.abs(single[k] - r).max() for k, r in _train(None, optimizer)[0].items())
    assert moved == 0  # deterministic single process: the comparison above is meaningful


def test_an_uneven_global_batch_is_a_clear_error():
    from scratchformer.training.distributed import DataParallel

    dp = DataParallel.__new__(DataParallel)  # the sharding rule alone, no process group
    dp.rank, dp.world = 0, 3
    with pytest.raises(ValueError, match="8 sequences does not split evenly over 3 processes"):
        dp.shard(lambda rng, step: (np.zeros((8, 2)),))(None, 1)


def test_torchrun_two_processes_train_through_the_command_line(tmp_path):
    import subprocess
    import sys

    from scratchformer.training.checkpoint import load

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "scratchformer", "train", "--task", "copy", "--steps", "6", "--batch-size", "8",
           "--eval-every", "0", "--target", "0", "--samples", "0", "--no-progress", "--threads", "1",
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("exact match:") == 1  # rank 0 reports, rank 1 stays quiet
    model, _, state = load(out / "checkpoint.safetensors")
    assert state["trainer"]["step"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors", "metrics.jsonl"]


def test_torchrun_two_processes_train_the_gpt_and_resume(tmp_path):
    import subprocess
    import sys

    from scratchformer.training.checkpoint import load

    text = tmp_path / "t.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 60)
    out = tmp_path / "gpt"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "scratchformer", "gpt", "train", "--corpus", str(text), "--out", str(out),
            "--batch", "4", "--n-layers", "1", "--d-model", "32", "--n-heads", "2", "--block", "16",
            "--eval-batches", "2", "--sample-tokens", "0", "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra, step in ((["--steps", "4"], 4), (["--resume", "--steps", "7"], 7)):
        r = subprocess.run(base + extra, capture_output=True, text=True, timeout=240, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.count("parameters;") == 1  # rank 0 reports
        assert load(out / "checkpoint.safetensors")[2]["trainer"]["step"] == step
