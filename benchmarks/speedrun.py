"""The char-GPT speedrun: nanoGPT's CPU quick-start and ``scratchformer gpt train``, back to
back on the same machine and the same text, and the table a user cares about: how long
the whole command takes, when (seconds and step) the validation loss first reaches the
target, and the final validation loss.

    python benchmarks/speedrun.py --nanogpt /tmp/nanogpt                 # 2 pairs, target 1.88
    python benchmarks/speedrun.py --nanogpt /tmp/nanogpt --runs 1 --plot curves.png
    python benchmarks/speedrun.py --nanogpt /tmp/nanogpt --ours-args "--lr 2e-3"

``--nanogpt PATH`` is a checkout of github.com/karpathy/nanoGPT (``git clone
https://github.com/karpathy/nanoGPT /tmp/nanogpt``; tried at its commit 3adf61e; never part
of this project; without it the script says so in one line and exits 0). It is copied into a
temporary folder whose ``data/shakespeare_char/input.txt`` is written from OUR corpus
(``load_corpus(--corpus)``; nothing is downloaded), nanoGPT's own ``prepare.py`` encodes
it (first 90% train, last 10% validation, as ours), and its README's quick-start runs::

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False
        --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4
        --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

followed by ``--nano-args`` (later flags win). Ours: ``python -m scratchformer gpt train
--corpus C --out TMP --target-loss T --no-progress --sample-tokens 0`` followed by
``--ours-args`` (the quick-start prints no sample either). The runs alternate, nano, ours,
ours, nano, ..., so a busy neighbour slows both alike.

What each column means:
- wall: the whole command, from start to exit (data loading, evaluations, checkpoints).
- to target: seconds since the command started and the step of the first evaluation
  whose validation loss is <= the target, the same rule for both. nanoGPT: the time its
  ``step N: train loss X, val loss Y`` line was printed. Ours: read from its
  ``metrics.jsonl`` (the training loop's clock plus the moment the loop started, seen as
  the file appearing); what the command itself printed (``reached val loss ... after T s``)
  is kept in ``--json``. 'not reached' when no evaluation got there.
- final val loss: nanoGPT's last evaluation, an ESTIMATE (``eval_iters`` = 20 random
  batches of 12 × 64 characters of the validation split; its checkpoint is the best, not
  the last, model); ours: the whole validation split, as the command prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from machine import describe, machine_info  # noqa: E402

NANO_QUICKSTART = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                   "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
                   "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                   "--lr_decay_iters=2000", "--dropout=0.0"]
NANO_EVAL = re.compile(r"^step (\d+): train loss (\S+), val loss (\S+)$")
NANO_PARAMS = re.compile(r"number of parameters: (\S+)")
OURS_REACHED = re.compile(r"reached val loss (\S+) <= (\S+) at step (\d+) after (\S+) s")
OURS_WHOLE = re.compile(r"val loss \(whole split\) ([0-9.]+|nan|inf)")


# ---- running a command, every output line time-stamped -----------------------------------
def run_timed(cmd, cwd, env, watch=None) -> dict:
    """Run ``cmd``; {"wall_s", "rc", "lines": [(seconds since start, line)], "watch_s"}.
    ``watch``: a file whose first appearance is timed too (None when it never appears)."""
    seen, done = [], threading.Event()

    def watcher():
        while not done.is_set():
            if os.path.exists(watch):
                seen.append(time.perf_counter() - t0)
                return
            done.wait(0.02)

    lines = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    thread = threading.Thread(target=watcher, daemon=True) if watch else None
    if thread:
        thread.start()
    for line in proc.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    rc = proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    if thread:
        thread.join()
    return {"wall_s": wall, "rc": rc, "lines": lines, "watch_s": seen[0] if seen else None}


def first_at_or_below(curve, target: float):
    """(step, seconds, loss) of the first point of ``curve`` with loss <= ``target``, or None."""
    return next((p for p in curve if p[2] <= target), None)


def tail(run: dict, n: int = 15) -> str:
    return "\n".join(line for _, line in run["lines"][-n:])


# ---- nanoGPT -------------------------------------------------------------------------------
def prepare_nanogpt(src: Path, corpus: str, folder: str) -> Path:
    """A copy of the nanoGPT checkout ``src`` in ``folder`` whose shakespeare_char data is
    OUR corpus, encoded by nanoGPT's own prepare.py (input.txt present: no download)."""
    from scratchformer.data.shakespeare import load_corpus

    dst = Path(folder, "nanogpt")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "out*", "assets", "*.bin", "*.pkl"))
    data = dst / "data" / "shakespeare_char"
    data.joinpath("input.txt").write_text(load_corpus(corpus), encoding="utf-8")
    done = subprocess.run([sys.executable, "data/shakespeare_char/prepare.py"], cwd=dst,
                          capture_output=True, text=True, env={**os.environ, "PYTHONUTF8": "1"})
    if done.returncode != 0:
        sys.exit(f"speedrun: nanoGPT's prepare.py failed:\n{done.stdout}{done.stderr}")
    said = [line for line in done.stdout.splitlines() if line.startswith(("length", "vocab", "train", "val"))]
    print("nanoGPT's prepare.py: " + "; ".join(said))
    return dst


def run_nanogpt(args, nano: Path, i: int) -> dict:
    cmd = [sys.executable, "train.py", *NANO_QUICKSTART, f"--out_dir=out-{i}",
           *shlex.split(args.nano_args)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1"}  # lines arrive as printed
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    run = run_timed(cmd, nano, env)
    curve = []  # (step, seconds since start, val loss)
    params = None
    for t, line in run["lines"]:
        m = NANO_EVAL.match(line.strip())
        if m:
            curve.append((int(m[1]), t, float(m[3])))
        p = NANO_PARAMS.search(line)
        params = p[1] if p else params
    return {"side": "nanoGPT", "wall_s": run["wall_s"], "rc": run["rc"], "curve": curve,
            "final": curve[-1][2] if curve else None, "final_kind": "estimate",
            "params": params, "tail": tail(run)}


# ---- ours ----------------------------------------------------------------------------------
def ours_curve(metrics: Path, offset: float) -> list:
    """(step, seconds since the command started, val loss) of each evaluation in
    ``metrics.jsonl``: the training loop's clock of the last "train" record before it,
    plus the evaluation's own time, plus ``offset`` (when the loop started)."""
    curve, clock = [], 0.0
    if not metrics.exists():
        return curve
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        if rec.get("kind") == "train":
            clock = rec["time_s"]
        elif rec.get("kind") == "eval" and "val_loss" in rec:
            curve.append((rec["step"], offset + clock + rec.get("eval_time_s", 0.0), rec["val_loss"]))
    return curve


def run_ours(args, folder: str, i: int) -> dict:
    out = Path(folder, f"ours-{i}")
    cmd = [sys.executable, "-m", "scratchformer", "gpt", "train", "--corpus", args.corpus,
           "--out", str(out), "--target-loss", str(args.target), "--no-progress",
           "--sample-tokens", "0", *(["--threads", str(args.threads)] if args.threads else []),
           *shlex.split(args.ours_args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = run_timed(cmd, ROOT, env, watch=out / "metrics.jsonl")
    text = "\n".join(line for _, line in run["lines"])
    reached = OURS_REACHED.findall(text)
    whole = OURS_WHOLE.findall(text)
    printed = ({"val_loss": float(reached[-1][0]), "step": int(reached[-1][2]),
                "seconds": float(reached[-1][3])} if reached else None)
    curve = ours_curve(out / "metrics.jsonl", run["watch_s"] or 0.0)
    params = re.search(r"([\d,]+) parameters", text)
    return {"side": "ours", "wall_s": run["wall_s"], "rc": run["rc"], "curve": curve,
            "final": float(whole[-1]) if whole else None, "final_kind": "whole split",
            "printed_reached": printed, "loop_start_s": run["watch_s"],
            "params": params[1] if params else None, "tail": tail(run)}


# ---- the race and its table ----------------------------------------------------------------
def race(args, nano: Path, folder: str) -> list:
    """``args.runs`` pairs, alternating nano, ours, ours, nano, ...; one result per run."""
    results = []
    for pair in range(args.runs):
        order = ("nanoGPT", "ours") if pair % 2 == 0 else ("ours", "nanoGPT")
        for side in order:
            i = len(results)
            r = run_nanogpt(args, nano, i) if side == "nanoGPT" else run_ours(args, folder, i)
            r["pair"] = pair + 1
            hit = first_at_or_below(r["curve"], args.target)
            if hit is None and r["side"] == "ours" and r["printed_reached"] and not r["curve"]:
                p = r["printed_reached"]  # no metrics.jsonl: what the command printed
                hit = (p["step"], p["seconds"], p["val_loss"])
            r["target_step"], r["target_s"] = (hit[0], hit[1]) if hit else (None, None)
            results.append(r)
            if r["rc"] != 0:
                print(f"speedrun: {side} exited with {r['rc']}; its last lines:\n{r['tail']}",
                      file=sys.stderr)
            print(f"  run {i + 1} ({side}): {format_row(r)}", file=sys.stderr, flush=True)
    return results


HEADER = f"{'pair':>4s}  {'side':8s} {'wall s':>8s} {'to target s':>12s} {'at step':>8s}  final val loss"


def format_row(r: dict) -> str:
    to = f"{r['target_s']:12.1f} {r['target_step']:8d}" if r["target_s"] is not None \
        else f"{'not reached':>12s} {'':>8s}"
    final = f"{r['final']:.4f} ({r['final_kind']})" if r["final"] is not None else "none"
    failed = f"  [exit {r['rc']}]" if r["rc"] else ""
    return f"{r['wall_s']:8.1f} {to}  {final}{failed}"


def print_table(args, results: list, machine: dict):
    print(f"\nspeedrun: corpus {args.corpus!r}, target val loss {args.target}, {args.runs} pair(s)")
    print(describe(machine))
    params = {r["side"]: r["params"] for r in results if r["params"]}
    print(f"parameters: nanoGPT {params.get('nanoGPT')} (its own count: without the position "
          f"embeddings), ours {params.get('ours')}")
    print(HEADER)
    for r in results:
        print(f"{r['pair']:4d}  {r['side']:8s} {format_row(r)}")
    walls = {s: [r["wall_s"] for r in results if r["side"] == s and r["rc"] == 0]
             for s in ("nanoGPT", "ours")}
    if walls["nanoGPT"] and walls["ours"]:
        ratio = statistics.median(walls["ours"]) / statistics.median(walls["nanoGPT"])
        print(f"median wall: ours / nanoGPT = {ratio:.2f}")


def plot(results: list, path: str, target: float):
    """Validation loss against seconds since the command started, every run, one figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"nanoGPT": "tab:blue", "ours": "tab:orange"}
    for r in results:
        if r["curve"]:
            _, t, loss = zip(*r["curve"])
            ax.plot(t, loss, marker="o", ms=3, color=colors[r["side"]],
                    label=f"{r['side']} (pair {r['pair']})")
    ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target}")
    ax.set_xlabel("seconds since the command started")
    ax.set_ylabel("validation loss")
    losses = [p[2] for r in results for p in r["curve"]]
    if losses:  # the first evaluations (~4.2) would squash the race's end: show ~1.1 above it
        ax.set_ylim(top=min(max(losses), max(target, min(losses)) + 1.1) + 0.05)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def torch_side() -> dict:
    """``machine.torch_info()`` of a fresh process that imports torch (this one never does)."""
    code = (f"import json, sys, torch; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "from machine import torch_info; print(json.dumps(torch_info()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"speedrun: nanoGPT needs torch, which does not import here:\n{done.stderr}")
    return json.loads(done.stdout)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nanogpt", metavar="PATH", help="a checkout of karpathy/nanoGPT (absent: skip)")
    ap.add_argument("--runs", type=int, default=2, help="pairs of runs (default 2)")
    ap.add_argument("--target", type=float, default=1.88,
                    help="target validation loss (default 1.88, nanoGPT's quick-start result)")
    ap.add_argument("--corpus", default="tiny", help="'tiny', 'all' or a text file (default tiny)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of both sides (default: each its own default, every core)")
    ap.add_argument("--ours-args", default="", help="extra flags for 'scratchformer gpt train'")
    ap.add_argument("--nano-args", default="", help="extra flags for nanoGPT's train.py (later wins)")
    ap.add_argument("--plot", metavar="FILE.png", help="validation loss vs time of every run")
    ap.add_argument("--json", metavar="PATH", help="also write every run (curves included) as JSON")
    args = ap.parse_args(argv)
    if args.runs < 1 or (args.threads is not None and args.threads < 1):
        ap.error(f"--runs and --threads must be >= 1, got {args.runs} and {args.threads}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    src = Path(args.nanogpt) if args.nanogpt else None
    if src is None or not (src / "train.py").is_file() or not (src / NANO_QUICKSTART[0]).is_file():
        where = f"no nanoGPT checkout at {src}" if src else "no nanoGPT checkout given"
        print(f"speedrun: skipped: {where} (--nanogpt PATH, a checkout of karpathy/nanoGPT)")
        return 0
    machine = {**machine_info(), "torch": torch_side()}
    with tempfile.TemporaryDirectory(prefix="speedrun-") as folder:
        nano = prepare_nanogpt(src, args.corpus, folder)
        results = race(args, nano, folder)
    print_table(args, results, machine)
    if args.plot:
        plot(results, args.plot, args.target)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "target": args.target, "corpus": args.corpus,
                       "runs": [{k: v for k, v in r.items() if k != "tail"} for r in results]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
