"""What one hand-off to a sleeping helper thread costs on this machine: the fixed price of
every operation the worker pool (``scratchformer/kernels/pool.py``) cuts into parts.

Three timings, each the median of ``--repeats`` round trips with a little Python work in
between (as between two operations of a training step):

- ``lock round trip``: the main thread releases a lock a helper sleeps on and waits for
  the helper to release another: the least any hand-off between Python threads can cost;
- ``pool.run, empty job``: the pool's own hand-off (``pool.run`` with parts that do nothing)
  on ``--threads`` threads;
- both again while another process spins on the machine at idle priority (``SCHED_IDLE``:
  it yields the core at once to any other program). With the cores never idle, a woken
  thread starts without the CPU leaving its idle state first; the difference is what waking
  an idle core costs here (on a VM: a trip through the hypervisor). ``--no-spin`` skips it.

    python benchmarks/bench_handoff.py

OpenBLAS's and OpenMP's threads busy-wait between calls instead of sleeping, which is why
their hand-offs are nearly free and why they take a core from everything else while they
wait (README, "Speed").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import describe, machine_info  # noqa: E402

from scratchformer.kernels import pool  # noqa: E402

SPINNER = ("import os\n"
           "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
           "while True:\n    pass\n")


def between() -> None:
    """A little Python work between two hand-offs (~20 µs), so the helper goes back to sleep."""
    sum(range(1000))


def lock_round_trip(repeats: int) -> float:
    """Median seconds of one release-and-wait round trip with a helper thread."""
    go, done = threading.Lock(), threading.Lock()
    go.acquire()
    done.acquire()

    def serve():
        while True:
            go.acquire()
            done.release()

    threading.Thread(target=serve, daemon=True).start()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        go.release()
        done.acquire()
        times.append(time.perf_counter() - t)
        between()
    return sorted(times)[len(times) // 2]


def pool_round_trip(repeats: int, threads: int) -> float:
    """Median seconds of ``pool.run`` over ``threads`` parts that do nothing."""
    times = []
    with pool.threads(threads):
        for _ in range(repeats):
            t = time.perf_counter()
            pool.run(lambda lo, hi: None, threads, threads)
            times.append(time.perf_counter() - t)
            between()
    return sorted(times)[len(times) // 2]


def measure(args) -> tuple[float, float]:
    return lock_round_trip(args.repeats), pool_round_trip(args.repeats, args.threads)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3000, help="round trips per timing (default 3000)")
    ap.add_argument("--threads", type=int, default=2, help="threads of the pool (default 2)")
    ap.add_argument("--no-spin", action="store_true",
                    help="skip the timings beside an idle-priority spinning process")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.threads < 2:
        ap.error("--repeats must be >= 1 and --threads >= 2 (a hand-off needs a helper)")
    print(describe(machine_info()))
    rows = [("idle cores", measure(args))]
    if not args.no_spin:
        if not hasattr(os, "SCHED_IDLE"):
            print("(no SCHED_IDLE on this system: the spinning-process timings are skipped)")
        else:
            spinner = subprocess.Popen([sys.executable, "-c", SPINNER])
            try:
                time.sleep(0.5)
                rows.append(("a process spinning at idle priority", measure(args)))
            finally:
                spinner.kill()
                spinner.wait()
    print(f"{'':38s} {'lock round trip':>16s} {'pool.run, empty job':>20s}")
    for label, (lock, run) in rows:
        print(f"{label:38s} {lock * 1e6:13.1f} µs {run * 1e6:17.1f} µs")


if __name__ == "__main__":
    main()
