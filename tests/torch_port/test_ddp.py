"""DistributedDataParallel on CPU (gloo): two processes train exactly what one process
trains on the two shards together.

Each rank draws the same global batch and keeps its half; its loss is its token-loss sum
over the *global* token count times the world size, so DDP's gradient average is the
gradient of the global mean loss. After a few AdamW steps both replicas must be identical,
and equal (≤ 1e-5) to a single process trained on the whole batch.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

# the run, as a library config (the CLI's torch-train builds the same TorchTrainConfig)
CFG = dict(task="reverse", steps=4, batch_size=8, d_model=16, n_heads=2, d_ff=32, n_layers=1,
           lr=3e-3, warmup=2, threads=1, eval_size=0, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str, out: str) -> None:
    """One torchrun-like rank: the environment torchrun would set, then the real train_torch."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from scratchformer.training import TorchTrainConfig, train_torch

    model = train_torch(TorchTrainConfig(**CFG, out=out)).model
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"),
             **{k: v.detach().numpy() for k, v in model.state_dict().items()})


def _single() -> dict[str, np.ndarray]:
    from scratchformer.training import TorchTrainConfig, train_torch

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        os.environ.pop(k, None)
    result = train_torch(TorchTrainConfig(**CFG))  # out=None: nothing written
    assert result.out is None
    return {k: v.detach().numpy() for k, v in result.model.state_dict().items()}


def test_two_process_ddp_equals_single_process_on_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    from scratchformer.training.checkpoint import load

    run = str(tmp_path / "ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), run), nprocs=2, join=True)
    r0, r1 = (dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1))
    single = _single()

    assert sorted(r0) == sorted(r1) == sorted(single)
    for k in single:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=f"replicas differ at {k}")
        if k.endswith("k_proj.bias"):
            continue  # see below
        np.testing.assert_allclose(r0[k], single[k], rtol=0, atol=1e-5, err_msg=k)
    # A key bias adds q·b_k to every score of a query row, which softmax ignores: its true
    # gradient is 0, so it receives rounding noise only, which Adam normalizes into ±lr
    # steps — different noise in the two runs, different values (~1e-3), no effect at all
    # on what the model computes. So for those, compare what matters: the logits.
    logits_ddp, logits_single = _logits(r0), _logits(single)
    np.testing.assert_allclose(logits_ddp, logits_single, rtol=0, atol=1e-5)
    moved = max(np.abs(single[k] - v).max() for k, v in _initial().items())
    assert moved > 1e-3  # the runs trained: equality is not just the shared initial weights

    model, _, state = load(os.path.join(run, "checkpoint.safetensors"))  # rank 0's, NumPy
    assert state["trained_with"] == "torch"
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, r0[k])
    assert sorted(os.listdir(tmp_path)) == ["ddp", "rank0.npz", "rank1.npz"]
    assert sorted(os.listdir(run)) == ["checkpoint.safetensors", "metrics.jsonl",  # lock gone
                                       "snapshots.json", "snapshots.safetensors"]


def _config():
    from scratchformer.training import TorchTrainConfig

    return TorchTrainConfig(**CFG)


def _logits(state: dict[str, np.ndarray]) -> np.ndarray:
    from scratchformer.torch_port.train import TaskData, build_model

    cfg = _config()
    data = TaskData(cfg.task, seed=99)
    model = build_model(cfg, data).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    (src, tgt_in, _), _ = data.batch(32, 0, 1)
    with torch.no_grad():
        return model(src, tgt_in).numpy()


def _initial() -> dict[str, np.ndarray]:
    from scratchformer.torch_port.train import TaskData, build_model

    cfg = _config()
    return {k: v.detach().numpy()
            for k, v in build_model(cfg, TaskData(cfg.task, cfg.seed)).state_dict().items()}


def test_batch_not_divisible_by_world_size_is_rejected(monkeypatch, tmp_path, capsys):
    from scratchformer.cli import main

    monkeypatch.setenv("WORLD_SIZE", "3")  # checked before any process group is started
    with pytest.raises(ValueError, match="batch_size=8 must be divisible by the number of "
                                         "processes 3"):
        _config()
    out = tmp_path / "run"
    assert main(["torch-train", "--task", "reverse", "--batch-size", "8", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--batch-size 8 must be divisible by the number of processes 3" in err
    assert not out.exists()
