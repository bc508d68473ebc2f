"""Teach a Transformer, written from scratch in NumPy, to copy its input.

    pip install -r requirements.txt && python examples/copy_task_demo.py

Sequences of 1-10 symbols from an alphabet of 10 ("3 1 4 1 5" -> "3 1 4 1 5"). The
encoder reads the source, the decoder writes it back one token at a time, attending to
the source through cross-attention. A 1+1-layer, d_model 64 model trains from random
weights until greedy decoding reproduces 99% of 1,000 held-out sequences exactly, then
the script prints the loss curve, a few decoded examples, the wall time and
``exact match: NN.N%``. Everything runs on the CPU in pure NumPy.

The other task demos (reverse_task_demo.py, dates_demo.py, numbers_demo.py) reuse ``run``
below. It limits BLAS to one thread *before* NumPy loads (small matrices run faster on one
thread), trains with one call, the same as ``scratchformer train --task copy``::

    from scratchformer.training import TaskTrainConfig, train_task
    result = train_task(TaskTrainConfig(task="copy"))   # the task's tuned preset

and prints the loss falling, decoded held-out examples and the exact match.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scratchformer.data.taskbase import pad_batch  # noqa: E402
from scratchformer.models.decoding import greedy_decode  # noqa: E402
from scratchformer.training import TaskTrainConfig, train_task  # noqa: E402
from scratchformer.training.recipes import TASK_PRESETS  # noqa: E402


def run(task_name: str, what: str, samples: int = 5) -> float:
    p = argparse.ArgumentParser(description=f"Train the NumPy Transformer to {what}.")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the data")
    p.add_argument("--out", default=None, help="also write checkpoint.safetensors + metrics.jsonl here")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar: plain lines")
    args = p.parse_args()

    cfg = TaskTrainConfig(task=task_name, seed=args.seed, out=args.out,
                          progress="plain" if args.no_progress else True)
    print(f"{task_name}: {what}")
    print(f"preset: {TASK_PRESETS[task_name]}")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    result = train_task(cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    task, final = result.extras["task"], result.metrics

    losses = [r for r in result.trainer.history if r["kind"] == "train"]
    marks = sorted({0, len(losses) // 4, len(losses) // 2, 3 * len(losses) // 4, len(losses) - 1})
    print("training loss: " + "  ".join(f"step {losses[i]['step']}: {losses[i]['loss']:.3f}"
                                        for i in marks))
    pairs = task.held_out()[:samples]
    src, _, tgt_out = pad_batch(pairs)
    out = greedy_decode(result.model, src, max_len=tgt_out.shape[1])
    print("held-out samples (never seen in training):")
    for (x, y), row in zip(pairs, out):
        pred, want = task.decode_output(row), task.vocab.decode(np.asarray(y))
        print(f"  {task.vocab.decode(np.asarray(x))!r:>36} -> {pred!r}"
              f"{'' if pred == want else f'   (expected {want!r})'}")
    print(f"{'reached the target' if result.stop_reason == 'target' else 'ran all steps'} "
          f"after {result.step} steps; token accuracy {100 * final['token_accuracy']:.1f}%")
    print(f"wall time: {wall:.1f} s (CPU time {cpu:.1f} s)")
    print(f"exact match: {100 * final['exact_match']:.1f}% on {final['n']:,} held-out sequences")
    return final["exact_match"]


if __name__ == "__main__":
    run("copy", "copy sequences of 1-10 symbols")
