"""Data-parallel NumPy training (training/distributed.py) on torch.distributed with gloo:
two processes keep bit-identical replicas and train what one process trains on the whole
global batch (float64, ≤ 1e-10) — fixed-size batches (a toy task) and translate-train's
batches by length (odd sizes, padded; one smaller than the world). Then train, gpt train
and translate-train under torchrun, through the command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

STEPS = 4
FIXTURE = str(Path(__file__).parents[1] / "fixtures" / "translation" / "tiny.tsv")


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
    return _fit(Trainer(model, batch_fn, cfg, step_fn=step_fn, progress=False, threads=1))


def _train_translation(parallel, optimizer: str, dropout: float = 0.0):
    """A float64 translator trained STEPS steps on the fixture's batches by length, of 6, 3,
    1 and 2 pairs (the way translate-train wires DataParallel), data-parallel or not."""
    from scratchformer.training.trainer import TrainConfig, Trainer, seq2seq_step
    from scratchformer.translation import (BPETokenizer, TranslationBatches, build_model,
                                           encode_pairs, load_splits)

    train = load_splits(pairs_path=FIXTURE, val_frac=0.1, test_frac=0.1)[0]
    tok = BPETokenizer.train([s for s, _ in train] + [t for _, t in train], 80)
    batch_fn = TranslationBatches(*encode_pairs(tok, train), 48, seed=1)
    assert [len(batch_fn(None, s)[0]) for s in range(1, STEPS + 1)] == [6, 3, 1, 2]
    model = build_model(len(tok), d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
                        n_decoder_layers=1, dropout=dropout, max_len=32).astype(np.float64)
    cfg = TrainConfig(steps=STEPS, lr=0.05, warmup=0, optimizer=optimizer, schedule="constant",
                      clip_norm=1.0, label_smoothing=0.1, seed=5, eval_every=0, log_every=1)
    step_fn = seq2seq_step
    if parallel is not None:
        batch_fn = parallel.shard(batch_fn, ignore_index=model.config.pad_id)
        step_fn = parallel.wrap(step_fn)
    return _fit(Trainer(model, batch_fn, cfg, step_fn=step_fn, progress=False, threads=1))


def _fit(trainer):
    """(weights, training losses, dropout RNG states) after ``trainer.fit()``."""
    result = trainer.fit()
    losses = [r["loss"] for r in result.history if r["kind"] == "train"]
    return trainer.model.state_dict(), losses, trainer.state()["model_rngs"]


def _worker(rank: int, world: int, port: int, out_dir: str, job, job_args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from scratchformer.training.distributed import DataParallel

    dp = DataParallel()
    weights, losses, rngs = job(dp, *job_args)
    dp.close()
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), losses=np.array(losses),
             rngs=np.array(json.dumps(rngs)), **weights)


def _two_identical_replicas(tmp_path, job, *job_args) -> dict:
    """Run ``job(dp, *job_args)`` on two processes; assert that they end with the same weights
    and that rank 1's dropout RNG states are rank 0's jumped once (``split_streams``: rank 0's
    checkpoint resumes every rank); return rank 0's arrays."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), job, job_args), nprocs=2, join=True)
    r0, r1 = (dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1))
    rngs0, rngs1 = (json.loads(str(r.pop("rngs"))) for r in (r0, r1))
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=f"replicas differ at {k}")
    assert len(rngs0) == len(rngs1)
    from scratchformer.training.distributed import jumped_state

    def live(state):  # ``uinteger`` is a stale leftover, never read, while has_uint32 is 0
        return state if state["has_uint32"] else {**state, "uinteger": None}

    for s0, s1 in zip(rngs0, rngs1):  # s1 evolved on rank 1; jumped_state computes it from s0
        assert live(jumped_state(s0, 1)) == live(s1)
    return r0


def _assert_equal_to_one_process(replica: dict, job, *job_args) -> None:
    single, losses, _ = job(None, *job_args)
    np.testing.assert_allclose(replica.pop("losses"), losses, rtol=1e-12)
    # relative to the largest weight: a key projection's bias has a zero gradient in exact
    # arithmetic, so both runs leave it at rounding noise (~1e-17), differently
    scale = max(np.abs(v).max() for v in single.values())
    for k, v in single.items():
        err = np.abs(replica[k] - v).max() / scale
        assert err <= 1e-10, f"{k}: relative difference {err:.2e}"
    moved = max(np.abs(single[k] - r).max() for k, r in job(None, *job_args)[0].items())
    assert moved == 0  # deterministic single process: the comparison above is meaningful


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_processes_keep_identical_replicas_equal_to_one_process(tmp_path, optimizer):
    r0 = _two_identical_replicas(tmp_path, _train, optimizer)
    if optimizer == "adam":
        return  # Adam turns the rounding noise of zero-in-exact-arithmetic gradients (a key
        # projection's bias) into ±lr steps, so only the replicas' identity is pinned here
    _assert_equal_to_one_process(r0, _train, optimizer)


def test_translation_batches_of_any_size_train_as_one_process(tmp_path):
    # 6, 3, 1 and 2 pairs over 2 processes: a padding row at the 3-pair batch, a rank with
    # padding only at the 1-pair batch; label smoothing on
    _assert_equal_to_one_process(_two_identical_replicas(tmp_path, _train_translation, "sgd"),
                                 _train_translation, "sgd")


def test_translation_with_dropout_keeps_the_ranks_dropout_draws_in_step(tmp_path):
    # every rank draws its dropout masks on the same shapes, padding-only rank included,
    # so rank 1's RNG states stay rank 0's jumped once (checked by _two_identical_replicas)
    _two_identical_replicas(tmp_path, _train_translation, "adam", 0.1)


def test_ranks_draw_different_dropout_masks(make_transformer):
    from scratchformer.training.distributed import split_streams
    from scratchformer.training.trainer import model_generators

    masks = []
    for rank in (0, 1, 0):
        model = make_transformer(dropout=0.5)
        split_streams(model, rank)
        masks.append([g.random(8) for g in model_generators(model)])
    assert masks[0] and all(np.array_equal(a, b) for a, b in zip(masks[0], masks[2]))
    assert not any(np.array_equal(a, b) for a, b in zip(masks[0], masks[1]))


def _sharding_rule(rank: int, world: int):
    from scratchformer.training.distributed import DataParallel

    dp = DataParallel.__new__(DataParallel)  # the sharding rule alone, no process group
    dp.rank, dp.world = rank, world
    return dp


def test_an_uneven_global_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="8 sequences does not split evenly over 3 processes"):
        _sharding_rule(0, 3).shard(lambda rng, step: (np.zeros((8, 2)),))(None, 1)


def test_with_an_ignore_index_an_uneven_global_batch_is_padded_with_ignored_targets():
    src, tgt = np.arange(8 * 3).reshape(8, 3), np.arange(1, 8 * 2 + 1).reshape(8, 2)
    shards = [_sharding_rule(r, 3).shard(lambda rng, step: (src, tgt), ignore_index=0)(None, 1)
              for r in range(3)]
    assert [len(s[0]) for s in shards] == [3, 3, 3]
    np.testing.assert_array_equal(np.concatenate([s[0] for s in shards]), np.vstack([src, src[-1]]))
    np.testing.assert_array_equal(np.concatenate([s[1] for s in shards]), np.vstack([tgt, [0, 0]]))


def _torchrun(*argv: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m scratchformer ARGV``, run to its end, on the
    scratchformer imported here (whatever the working directory or the installed copy)."""
    import scratchformer

    root = os.path.dirname(os.path.dirname(os.path.abspath(scratchformer.__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "scratchformer", *argv]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_torchrun_two_processes_train_through_the_command_line(tmp_path):
    from scratchformer.training.checkpoint import load

    out = tmp_path / "run"
    r = _torchrun("train", "--task", "copy", "--steps", "6", "--batch-size", "8", "--eval-every",
                  "0", "--target", "0", "--samples", "0", "--no-progress", "--threads", "1",
                  "--out", str(out))
    assert r.stdout.count("exact match:") == 1  # rank 0 reports, rank 1 stays quiet
    model, _, state = load(out / "checkpoint.safetensors")
    assert state["trainer"]["step"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors", "metrics.jsonl",
                                                     "snapshots.json", "snapshots.safetensors"]


def test_torchrun_two_processes_train_the_gpt_and_resume(tmp_path):
    from scratchformer.training.checkpoint import load

    text = tmp_path / "t.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 60)
    out = tmp_path / "gpt"
    base = ["gpt", "train", "--corpus", str(text), "--out", str(out), "--batch-size", "4",
            "--n-layers", "1", "--d-model", "32", "--n-heads", "2", "--block-size", "16",
            "--eval-batches", "2", "--sample-tokens", "0", "--no-progress", "--threads", "1"]
    for extra, step in ((["--steps", "4"], 4), (["--resume", "--steps", "7"], 7)):
        r = _torchrun(*base, *extra)
        assert r.stdout.count("parameters;") == 1  # rank 0 reports
        assert load(out / "checkpoint.safetensors")[2]["trainer"]["step"] == step


def test_torchrun_two_processes_translate_write_once_resume_and_score_once(tmp_path):
    pytest.importorskip("sacrebleu")  # the test split's BLEU / chrF
    from scratchformer.training.checkpoint import load

    def run(out, *extra):
        # batches of 1, 8, 5, 5, ... pairs: the first leaves rank 1 nothing but padding
        r = _torchrun("translate-train", "--pairs", FIXTURE, "--val-frac", "0.1", "--test-frac",
                      "0.1", "--vocab-size", "80", "--d-model", "16", "--d-ff", "32", "--n-heads",
                      "2", "--n-layers", "1", "--warmup", "2", "--max-tokens", "64", "--eval-every",
                      "3", "--eval-decode", "2", "--checkpoint-every", "2", "--test-beams", "1",
                      "--no-progress", "--threads", "1", "--out", str(out), *extra)
        assert r.stdout.count("greedy") == 1  # rank 0 alone scores the test split
        assert r.stderr.count("trained to step") == 1  # and reports
        return load(out / "checkpoint.safetensors")

    out = tmp_path / "tr"
    run(out, "--steps", "4")
    state = run(out, "--resume", "--steps", "6")[2]
    assert state["trainer"]["step"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.safetensors", "metrics.jsonl",
                                                     "results.json", "snapshots.json",
                                                     "snapshots.safetensors"]
    assert json.loads((out / "results.json").read_text())["step"] == 6
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records if r["kind"] in ("train", "eval")] == [
        ("eval", 3), ("train", 4), ("eval", 4), ("train", 6), ("eval", 6)]  # each once:
    assert [r["step"] for r in records if r["kind"] == "monitor"] == [0, 4]  # rank 1 wrote nothing
