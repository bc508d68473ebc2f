"""Before → after in one process: the NumPy training step of an earlier revision of
ScratchFormer against the working tree's, alternating, on the same machine in the same run.

The earlier package is taken from git (``git archive REV scratchformer``) into a temporary
folder under another name, so both import side by side. Each side runs blocks of two
back-to-back steps, each block after a 0.2 s rest and one untimed step (as ``bench_step``),
and the median ms/step and the ratio after/before are printed per config.

    python benchmarks/bench_ab.py 912aafe                       # toy, small, char-gpt; 2 threads
    python benchmarks/bench_ab.py HEAD~3 --configs small --before-threads pool

``--before-threads``: how the earlier revision runs: ``blas`` (BLAS's own threads, for
revisions without the worker pool; the default) or ``pool`` (its own ``kernels.pool``).
The working tree always runs on its worker pool.
"""

from __future__ import annotations

import argparse
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_step import CONFIGS, numpy_setup, timed  # noqa: E402
from machine import describe, machine_info  # noqa: E402


def import_revision(rev: str, folder: str, name: str = "sf_before"):
    """The package ``scratchformer`` at git revision ``rev``, imported as ``name``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "scratchformer"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    Path(folder, "scratchformer").rename(Path(folder, name))  # relative imports inside: fine
    sys.path.insert(0, folder)
    return importlib.import_module(name)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the earlier git revision (a commit, tag or HEAD~N)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--threads", type=int, default=2, help="threads for both sides (default 2)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per side (default 30; 10 for small)")
    ap.add_argument("--before-threads", choices=("blas", "pool"), default="blas")
    args = ap.parse_args(argv)
    if args.threads < 1 or (args.steps is not None and args.steps < 2):
        ap.error("--threads must be >= 1 and --steps >= 2")
    from threadpoolctl import threadpool_limits

    import scratchformer as after
    from scratchformer.kernels import pool

    with tempfile.TemporaryDirectory() as tmp:
        before = import_revision(args.rev, tmp)
        if args.before_threads == "pool":
            before_pool = importlib.import_module(f"{before.__name__}.kernels.pool")

            def before_threads():
                return before_pool.threads(args.threads)
        else:
            def before_threads():
                return threadpool_limits(args.threads, user_api="blas")
        print(describe(machine_info()))
        print(f"before: {args.rev} ({args.before_threads}), after: working tree (pool); "
              f"{args.threads} threads")
        for name in args.configs:
            sides = [(before_threads, numpy_setup(CONFIGS[name], package=before), []),
                     (lambda: pool.threads(args.threads), numpy_setup(CONFIGS[name], package=after), [])]
            steps = args.steps or (10 if name == "small" else 30)
            for i in range((steps + 1) // 2):
                for threads, step, times in (sides if i % 2 == 0 else sides[::-1]):
                    with threads():  # rest 0.2 s, one untimed step, two timed ones
                        times += timed(step, None, settle=0.2, block=2)
            b, a = (1e3 * float(np.median(s[2])) for s in sides)
            print(f"{name:8s} before {b:8.2f} ms  after {a:8.2f} ms  after/before {a / b:.3f}")


if __name__ == "__main__":
    main()
