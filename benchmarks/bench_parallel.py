"""Data-parallel gain: training tokens/s of 2 processes × 1 thread (torchrun) against
1 process × 2 threads (the worker pool) and 1 process × 1 thread, on one machine.

Each configuration runs the real command (``scratchformer train`` / ``gpt train``) in a
fresh process; the rounds alternate the configurations so that a busy neighbour slows
all of them alike. Tokens/s is the median of the windows logged in ``metrics.jsonl``
after the first (the first holds the warm-up). Needs torch (torchrun).

    python benchmarks/bench_parallel.py                     # small and char-gpt, 3 rounds
    python benchmarks/bench_parallel.py --configs char-gpt --rounds 5 --steps 300
    python benchmarks/bench_parallel.py --to-loss           # + char-GPT recipe, whole runs
    python benchmarks/bench_parallel.py --configs --to-loss # the whole runs only

``--to-loss`` also runs the default ``gpt train`` (2,000 steps, nanoGPT's CPU recipe) to the
end in both layouts and prints the wall time and the validation losses along the way:
the two processes train on the same global batches, so their curves match and the wall
time is the time to the same validation loss.

Configurations (the ``bench_step`` ones): small = reverse task of 64 tokens over 1,000
symbols, d_model 256, 8 heads, d_ff 1024, 3 + 3 layers, batch 32; char-gpt = ``gpt train``'s
defaults (4 layers, d_model 128, block 64, batch 12) on the tiny Shakespeare corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMANDS = {
    "small": ["train", "--task", "reverse", "--min-len", "64", "--max-len", "64",
              "--num-symbols", "997", "--d-model", "256", "--n-heads", "8", "--n-layers", "3",
              "--d-ff", "1024", "--batch-size", "32", "--eval-every", "0",
              "--held-out-size", "32"],  # the final evaluation is not what is measured: keep it short
    "char-gpt": ["gpt", "train", "--eval-every", "0", "--sample-tokens", "0"],
}
LAYOUTS = {  # name: (processes, threads per process)
    "1 proc x 1 thread": (1, 1),
    "1 proc x 2 threads": (1, 2),
    "2 procs x 1 thread": (2, 1),
}


def command(args: list[str], procs: int, threads: int) -> list[str]:
    """The command line: torchrun for several processes, plain python for one."""
    if procs > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={procs}", "-m", "scratchformer", *args, "--threads", str(threads)]
    return [sys.executable, "-m", "scratchformer", *args, "--threads", str(threads)]


def run(args: list[str], procs: int, threads: int, out: str) -> tuple[float, list[dict]]:
    """Run one configuration into ``out``; return (wall seconds, metrics records)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(command([*args, "--out", out, "--no-progress"], procs, threads),
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(done.args)}\n{done.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        return wall, [json.loads(line) for line in f if line.strip()]


def tokens_per_s(records: list[dict]) -> float:
    windows = [r["tokens_per_s"] for r in records if r.get("kind") == "train"][1:]
    return statistics.median(windows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=list(COMMANDS), choices=list(COMMANDS),
                    help="configurations to time (default: all; none with --to-loss only)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per run (default: 40 for small, 200 for char-gpt)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--to-loss", action="store_true",
                    help="also run the default gpt train to the end, 1 proc x 2 threads vs 2 procs")
    args = ap.parse_args(argv)
    if args.rounds < 1 or (args.steps is not None and args.steps < 20):
        ap.error("--rounds must be >= 1 and --steps >= 20")
    from bench_step import describe, machine_info  # the same machine line as bench_step

    print(describe(machine_info()))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            steps = args.steps or (40 if name == "small" else 200)
            cmd = [*COMMANDS[name], "--steps", str(steps)]
            seen = {layout: [] for layout in LAYOUTS}
            for r in range(args.rounds):
                for layout, (procs, threads) in LAYOUTS.items():
                    out = os.path.join(tmp, f"{name}-{r}-{procs}-{threads}")
                    seen[layout].append(tokens_per_s(run(cmd, procs, threads, out)[1]))
            print(f"\n{name}: training tokens/s, median of {args.rounds} rounds ({steps} steps each)")
            base = statistics.median(seen["1 proc x 2 threads"])
            for layout, values in seen.items():
                v = statistics.median(values)
                print(f"  {layout:20s} {v:9.0f}   x{v / base:.2f} vs 1 proc x 2 threads"
                      f"   (rounds: {', '.join(f'{x:.0f}' for x in values)})")
        if args.to_loss:
            print("\nchar-GPT recipe (default gpt train, 2,000 steps, eval every 250): wall time")
            full = ["gpt", "train", "--sample-tokens", "0"]  # the defaults: eval every 250 steps
            for layout in ("1 proc x 2 threads", "2 procs x 1 thread"):
                procs, threads = LAYOUTS[layout]
                wall, records = run(full, procs, threads, os.path.join(tmp, f"full-{procs}"))
                val = [f"{r['step']}:{r['val_loss']:.3f}" for r in records if r.get("kind") == "eval"]
                print(f"  {layout:20s} {wall:7.1f} s   val loss {' '.join(val)}")


if __name__ == "__main__":
    main()
