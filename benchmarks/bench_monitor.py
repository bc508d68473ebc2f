"""What the training monitor costs: its hooks timed inside real runs, against the steps.

    python benchmarks/bench_monitor.py                    # copy task (default recipe) + char GPT
    python benchmarks/bench_monitor.py --gpt-steps 100 --every 10

Each run trains with a ``TrainingMonitor`` whose two hooks are timed (perf_counter around
each call), so the step time and the monitor's time come from the same run on the same
busy machine. Printed per run: ms per training step (evaluation and monitor excluded),
ms per "grads" record, ms per attention snapshot, and the overhead of the default run
length — (records · their cost + snapshots · theirs) / (steps · step time) — with the
record interval ``--every`` and the default snapshot schedule.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from scratchformer.training import monitor as mon  # noqa: E402
from scratchformer.training.lm import GPTTrainConfig, gpt_trainer  # noqa: E402
from scratchformer.training.recipes import TaskTrainConfig, task_trainer  # noqa: E402


class Timed:
    """Wraps a monitor; sums the seconds spent in its record steps and its snapshots."""

    def __init__(self, inner):
        self.inner, self.grads_s, self.snap_s, self.n_grads, self.n_snap = inner, 0.0, 0.0, 0, 0

    def before_update(self, trainer, step):
        t = time.perf_counter()
        self.inner.before_update(trainer, step)
        self._grads_t = time.perf_counter() - t

    def after_update(self, trainer, step, loss):
        n = len(self.inner.snapshots)
        logged = self.inner._pending is not None
        t = time.perf_counter()
        self.inner.after_update(trainer, step, loss)
        dt = time.perf_counter() - t
        if len(self.inner.snapshots) > n:
            self.snap_s, self.n_snap = self.snap_s + dt, self.n_snap + 1
        elif logged:
            self.grads_s, self.n_grads = self.grads_s + dt + self._grads_t, self.n_grads + 1

    def end(self, trainer):
        self.inner.end(trainer)


def report(name, trainer, timed, fit_s, default_steps, every):
    hist = trainer.history
    eval_s = sum(r.get("eval_time_s", 0.0) for r in hist if r["kind"] == "eval")
    steps = trainer.step
    step_ms = 1e3 * (fit_s - eval_s - timed.grads_s - timed.snap_s) / steps
    grads_ms = 1e3 * timed.grads_s / max(timed.n_grads, 1)
    snap_ms = 1e3 * timed.snap_s / max(timed.n_snap, 1)
    n_snap = len(mon.snapshot_schedule(default_steps))
    n_grads = default_steps // every + 1
    overhead = (n_grads * grads_ms + n_snap * snap_ms) / (default_steps * step_ms)
    print(f"{name}: {steps} steps, {step_ms:.1f} ms/step; a grads record {grads_ms:.2f} ms "
          f"({timed.n_grads}), a snapshot {snap_ms:.1f} ms ({timed.n_snap}); at every={every} "
          f"over {default_steps} steps with {n_snap} snapshots: overhead {100 * overhead:.2f} %")


def copy_run(every, out):
    trainer = task_trainer(TaskTrainConfig(task="copy", target=0, out=str(out), progress=False))
    timed = Timed(mon.monitor_for_task(trainer.task, trainer.model, every=every))
    trainer.monitors.append(timed)
    t = time.perf_counter()
    trainer.fit()
    report("copy (default recipe, no early stop)", trainer, timed, time.perf_counter() - t,
           trainer.config.steps, every)


def gpt_run(steps, every, out):
    trainer = gpt_trainer(GPTTrainConfig(steps=steps, warmup=min(100, steps), eval_batches=4,
                                         eval_every=max(steps // 2, 1), out=str(out),
                                         progress=False))
    tok, model = trainer.tokenizer, trainer.model
    prompt = tok.decode(trainer.val_ids[:64])
    timed = Timed(mon.monitor_for_gpt(tok, model, prompt, every=every))
    trainer.monitors.append(timed)
    t = time.perf_counter()
    trainer.fit()
    report(f"char GPT (default size, {steps} of 2000 steps)", trainer, timed,
           time.perf_counter() - t, 2000, every)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=int, default=mon.DEFAULT_EVERY)
    ap.add_argument("--gpt-steps", type=int, default=200)
    ap.add_argument("--skip-copy", action="store_true")
    a = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, NumPy {np.__version__}")
    with tempfile.TemporaryDirectory() as d:
        if not a.skip_copy:
            copy_run(a.every, os.path.join(d, "copy"))
        gpt_run(a.gpt_steps, a.every, os.path.join(d, "gpt"))


if __name__ == "__main__":
    main()
