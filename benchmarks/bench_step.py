"""Milliseconds per training step, NumPy ScratchFormer vs a torch.nn.Transformer reference
and vs the PyTorch twin (scratchformer.torch_port: same config, same initial weights).

A step = forward + cross-entropy + backward + Adam update, on random token batches.
Both sides use the same thread count: NumPy runs on its worker pool of ``--threads``
workers, each BLAS call on one thread (``--no-pool``: BLAS's own threads instead), torch
on ``torch.set_num_threads``. The sides alternate in one process so a busy neighbour
slows both alike, in blocks of ``--block`` back-to-back steps, each block after a short
rest (``--settle``) and one untimed step, so that neither side's spinning idle threads
steal the cores from the other. Prints the median ms/step, the ratio NumPy/torch, and the
GFLOP/s NumPy achieves against this machine's measured sgemm peak.

``--isolate`` goes further: each side runs in its own process (this script again, with
``--only numpy|nn|twin --json FILE``: the same timing loop), ``--rounds`` processes per side
and config in alternating order, so one library's threads never live beside the other's.
Every process keeps freed memory for reuse as a ScratchFormer training run does
(``kernels/memory.py``: glibc's malloc thresholds); ``--torch-malloc default`` leaves the
torch sides' processes at glibc's defaults, as a plain PyTorch script runs.

    python benchmarks/bench_step.py                 # toy, small and char-gpt
    python benchmarks/bench_step.py --isolate       # each side in its own process
    python benchmarks/bench_step.py --configs small --steps 30 --profile
    python benchmarks/bench_step.py --json results.json   # the table and the machine, as JSON

Every table is printed under the machine it was measured on (CPU model, cores, BLAS
library, version and kernel from threadpoolctl), so figures from different machines are
never mixed up; ``--json`` records the same next to the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import io
import json
import math
import os
import pstats
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scratchformer as sf  # noqa: E402
from scratchformer.kernels import memory, pool  # noqa: E402
from machine import describe, machine_info, sgemm_peak  # noqa: E402

CONFIGS = {
    "toy": dict(vocab=13, d_model=64, n_heads=4, d_ff=256, layers=2, batch=64, length=12),
    "small": dict(vocab=1000, d_model=256, n_heads=8, d_ff=1024, layers=3, batch=32, length=64),
    # the defaults of `scratchformer gpt train` on tiny-shakespeare (65 characters)
    "char-gpt": dict(kind="gpt", vocab=65, d_model=128, n_heads=4, d_ff=512, layers=4, batch=12,
                     length=64),
}


def step_flops(c) -> float:
    """Matmul FLOPs of one training step (forward ×3 for forward + backward)."""
    B, T, D, F, V, L = c["batch"], c["length"], c["d_model"], c["d_ff"], c["vocab"], c["layers"]
    N = B * T
    attn = 2 * N * D * 4 * D + 2 * 2 * B * T * T * D  # projections + scores + weighted sum
    ffn = 2 * 2 * N * D * F
    if c.get("kind") == "gpt":  # L blocks of self-attention + FFN, then the (tied) lm_head
        return 3.0 * (L * (attn + ffn) + 2 * N * D * V)
    enc = L * (attn + ffn)
    dec = L * (2 * attn + ffn)
    gen = 2 * N * D * V
    return 3.0 * (enc + dec + gen)


def numpy_setup(c, seed=0, package=sf):
    """One NumPy training step (forward, loss, backward, Adam) on config ``c``, built with
    ``package`` (ScratchFormer, or an earlier revision of it imported under another name)."""
    optim = importlib.import_module(f"{package.__name__}.training.optim")
    rng = np.random.default_rng(seed)
    if c.get("kind") == "gpt":  # the char-GPT config
        model = package.GPT(package.GPTConfig(
            c["vocab"], d_model=c["d_model"], n_heads=c["n_heads"], d_ff=c["d_ff"],
            n_layers=c["layers"], max_len=c["length"], dropout=0.0, seed=seed))
        crit = package.CrossEntropyLoss()
        data = rng.integers(0, c["vocab"], (c["batch"], c["length"] + 1))

        def forward():
            return crit(model(data[:, :-1]), data[:, 1:])
    else:
        model = package.Transformer(package.TransformerConfig(
            c["vocab"], c["vocab"], d_model=c["d_model"], n_heads=c["n_heads"], d_ff=c["d_ff"],
            n_encoder_layers=c["layers"], n_decoder_layers=c["layers"], dropout=0.0, seed=seed))
        crit = package.CrossEntropyLoss(ignore_index=0)
        src = rng.integers(3, c["vocab"], (c["batch"], c["length"]))
        tgt = rng.integers(3, c["vocab"], (c["batch"], c["length"] + 1))

        def forward():
            return crit(model(src, tgt[:, :-1]), tgt[:, 1:])
    opt = optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        loss = forward()
        model.backward(crit.backward())
        opt.step()
        return loss

    return step


def torch_setup(c, seed=0):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    D, V = c["d_model"], c["vocab"]

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed, self.tgt_embed = nn.Embedding(V, D), nn.Embedding(V, D)
            with warnings.catch_warnings():  # "enable_nested_tensor is True, but ...": the
                warnings.simplefilter("ignore")  # tanh-GELU lambda rules nested tensors out
                self.tf = nn.Transformer(D, c["n_heads"], c["layers"], c["layers"], c["d_ff"],
                                         dropout=0.0, batch_first=True,
                                         activation=lambda x: F.gelu(x, approximate="tanh"))
            self.generator = nn.Linear(D, V)
            self.register_buffer("pe", torch.from_numpy(sf.PositionalEncoding(D, 512).pe))

        def forward(self, src, tgt):
            T = tgt.shape[1]
            s = self.src_embed(src) * D ** 0.5 + self.pe[: src.shape[1]]
            t = self.tgt_embed(tgt) * D ** 0.5 + self.pe[:T]
            causal = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
            y = self.tf(s, t, tgt_mask=causal, src_key_padding_mask=src == 0,
                        tgt_key_padding_mask=tgt == 0, memory_key_padding_mask=src == 0)
            return self.generator(y)

    model = Ref()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    rng = np.random.default_rng(seed)
    src = torch.from_numpy(rng.integers(3, V, (c["batch"], c["length"])))
    tgt = torch.from_numpy(rng.integers(3, V, (c["batch"], c["length"] + 1)))

    def step():
        opt.zero_grad(set_to_none=False)
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1), ignore_index=0)
        loss.backward()
        opt.step()
        return loss.item()

    return step


# ---- the PyTorch twin column (scratchformer.torch_port) ----------------------------------
def twin_setup(c, seed=0):
    """The same step in the torch twin (TorchTransformer / TorchGPT, same config and init):
    forward + cross-entropy + autograd backward + torch.optim.Adam."""
    import torch
    import torch.nn.functional as F

    from scratchformer.torch_port import TorchGPT, TorchTransformer

    V = c["vocab"]
    rng = np.random.default_rng(seed)
    if c.get("kind") == "gpt":
        model = TorchGPT(sf.GPTConfig(V, d_model=c["d_model"], n_heads=c["n_heads"], d_ff=c["d_ff"],
                                      n_layers=c["layers"], max_len=c["length"], dropout=0.0, seed=seed))
        data = torch.from_numpy(rng.integers(0, V, (c["batch"], c["length"] + 1)))

        def logits_targets():
            return model(data[:, :-1]), data[:, 1:]
    else:
        model = TorchTransformer(sf.TransformerConfig(
            V, V, d_model=c["d_model"], n_heads=c["n_heads"], d_ff=c["d_ff"],
            n_encoder_layers=c["layers"], n_decoder_layers=c["layers"], dropout=0.0, seed=seed))
        src = torch.from_numpy(rng.integers(3, V, (c["batch"], c["length"])))
        tgt = torch.from_numpy(rng.integers(3, V, (c["batch"], c["length"] + 1)))

        def logits_targets():
            return model(src, tgt[:, :-1]), tgt[:, 1:]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)

    def step():
        opt.zero_grad(set_to_none=False)
        logits, targets = logits_targets()
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=0)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def timed(step, prof, settle: float, block: int) -> list[float]:
    """Seconds of each of ``block`` back-to-back ``step()`` calls, after ``settle`` seconds of
    rest and one untimed step.

    The rest lets the other side's idle threads stop spinning: OpenBLAS's and OpenMP's
    workers busy-wait for a while after each call, and a side timed right after the
    other would share the cores with them (measured: torch's toy step 26 → 123 ms right
    after a NumPy step with 2 BLAS threads). The untimed step wakes this side's own
    threads (and the cores) again, so the timed steps run as in training: back to back.
    """
    time.sleep(settle)
    step()
    times = []
    for _ in range(block):
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        step()
        if prof:
            prof.disable()
        times.append(time.perf_counter() - t0)
    return times


def median_ms(times):
    return 1e3 * float(np.median(times))


SETUPS = {"numpy": numpy_setup, "nn": torch_setup, "twin": twin_setup}  # the three sides


def time_sides(c, sides, args, prof=None) -> dict:
    """{side: seconds of each timed step} for config ``c``, every side in this process:
    ``args.warmup`` untimed steps each, then blocks of ``args.block`` steps, the sides
    taking turns (``timed``: a rest, one untimed step, the block). No torch.nn reference
    for the GPT config. ``prof`` (cProfile) records the NumPy steps."""
    steps = {s: SETUPS[s](c) for s in sides if not (s == "nn" and c.get("kind") == "gpt")}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times = {s: [] for s in steps}
    for _ in range(math.ceil(args.steps / args.block)):
        for s, step in steps.items():
            times[s] += timed(step, prof if s == "numpy" else None, args.settle, args.block)
    return times


def row(name: str, times: dict, peak: float) -> dict:
    """The table row of one config from ``times`` ({side: seconds}): medians and ratios."""
    c = CONFIGS[name]
    ms = {s: median_ms(times[s]) if times.get(s) else float("nan") for s in SETUPS}
    gflops = step_flops(c) / (ms["numpy"] / 1e3) / 1e9
    return {"config": name, **c, "numpy_ms": ms["numpy"], "torch_ms": ms["nn"],
            "numpy_over_torch": ms["numpy"] / ms["nn"], "numpy_gflops": gflops,
            "percent_of_sgemm_peak": 100 * gflops / peak, "twin_ms": ms["twin"],
            "numpy_over_twin": ms["numpy"] / ms["twin"], "times_s": times}


HEADER = (f"{'config':8s} {'numpy ms':>9s} {'torch ms':>9s} {'ratio':>6s} {'GFLOP/s':>8s} "
          f"{'%peak':>6s} {'twin ms':>8s} {'np/twin':>7s}")


def format_row(r: dict) -> str:
    return (f"{r['config']:8s} {r['numpy_ms']:9.2f} {r['torch_ms']:9.2f} {r['numpy_over_torch']:6.2f}"
            f" {r['numpy_gflops']:8.1f} {r['percent_of_sgemm_peak']:5.0f}% {r['twin_ms']:8.2f}"
            f" {r['numpy_over_twin']:7.2f}")


def print_profile(prof, file=None):
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
    print(s.getvalue(), file=file)


def run_here(args, sides) -> tuple[list, dict, float]:
    """Every side in this process, printing each config's row as it is measured:
    (rows, machine, sgemm peak). NumPy runs on its worker pool (``--threads`` workers,
    each BLAS call on one thread) or, with --no-pool, on BLAS's own threads; torch's MKL
    and OpenMP are not NumPy's BLAS: the pool's one-thread limit does not reach them."""
    from threadpoolctl import threadpool_limits

    if "nn" in sides or "twin" in sides:
        import torch
        torch.set_num_threads(args.threads)
    # malloc's thresholds, before any array: ScratchFormer's training sets them for itself
    # (kernels/memory.py, on entering pool.threads); the torch sides get the same unless asked
    if "numpy" in sides or args.torch_malloc == "keep":
        memory.keep_freed_memory()
    rows = []
    with threadpool_limits(limits=args.threads), contextlib.ExitStack() as stack:
        machine = machine_info()  # no BLAS call in a torch-only process (--only nn|twin):
        peak = sgemm_peak(args.threads) if "numpy" in sides else float("nan")
        print(describe(machine))
        print(f"NumPy: {'BLAS threads, no pool' if args.no_pool else 'worker pool, 1 BLAS thread each'}"
              f"; threads={args.threads}  sgemm peak {peak:.1f} GFLOP/s  numpy {np.__version__}")
        print(malloc_line(args))
        print(HEADER)
        if "numpy" in sides and not args.no_pool:  # made here, inside threadpool_limits: its 1-BLAS-thread limit wins
            stack.enter_context(pool.threads(args.threads))
        for name in args.configs:
            prof = cProfile.Profile() if args.profile and "numpy" in sides else None
            rows.append(row(name, time_sides(CONFIGS[name], sides, args, prof), peak))
            print(format_row(rows[-1]), flush=True)
            if prof:
                print_profile(prof)
    return rows, machine, peak


# ---- --isolate: each side in its own process ------------------------------------------------
def child(args, side: str, name: str, steps: int, folder: str) -> dict:
    """Run this script again for one side and one config (``--only SIDE --json FILE``):
    the same ``time_sides``, in a process no other library's threads live in."""
    out = os.path.join(folder, f"{side}-{name}.json")
    cmd = [sys.executable, __file__, "--only", side, "--configs", name, "--steps", str(steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--block", str(args.block),
           "--settle", str(args.settle), "--json", out]
    cmd += ["--no-pool"] * args.no_pool + ["--profile"] * (args.profile and side == "numpy")
    cmd += ["--torch-malloc", args.torch_malloc]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_step: the {side} process failed on {name}:\n{done.stdout}{done.stderr}")
    if args.profile and side == "numpy":
        print(done.stdout)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def run_isolated(args, sides) -> tuple[list, dict, float]:
    """Each side in its own process, ``--rounds`` rounds per config with the order reversed
    every other round (numpy, nn, twin, then twin, nn, numpy), so a busy neighbour slows
    all sides alike; the steps of all rounds pooled. (rows, machine, sgemm peak)."""
    import tempfile

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        machine = machine_info()
    peak = 0.0  # the best of the children's sgemm peaks (each measures its own)
    per_round = math.ceil(args.steps / args.rounds)
    measured = {}  # {config: {side: seconds of each step, all rounds}}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.configs:
            times = measured[name] = {}
            for r in range(args.rounds):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    if side == "nn" and CONFIGS[name].get("kind") == "gpt":
                        continue  # no torch.nn reference for the GPT
                    got = child(args, side, name, per_round, folder)
                    new = got["results"][0]["times_s"][side]
                    times.setdefault(side, []).extend(new)
                    machine["torch"] = machine["torch"] or got["machine"]["torch"]
                    peak = max(peak, got["sgemm_peak_gflops"] or 0.0)
                    print(f"  {name} round {r + 1}/{args.rounds} {side}: "
                          f"{median_ms(new):.2f} ms", file=sys.stderr, flush=True)
    rows = [row(name, times, peak) for name, times in measured.items()]
    print(describe(machine))
    print(f"each side in its own process, rounds={args.rounds} (order alternating); NumPy: "
          f"{'BLAS threads, no pool' if args.no_pool else 'worker pool, 1 BLAS thread each'}"
          f"; threads={args.threads}  sgemm peak {peak:.1f} GFLOP/s  numpy {np.__version__}")
    print(malloc_line(args))
    print(HEADER)
    for r in rows:
        print(format_row(r))
    return rows, machine, peak


def malloc_line(args) -> str:
    return ("malloc: freed memory kept for reuse (kernels/memory.py) on "
            + ("every side" if args.torch_malloc == "keep" else "the NumPy side; torch sides glibc's default"))


def write_json(args, rows, machine, peak):
    def clean(v):  # NaN (a column not measured) → null: strict JSON
        return None if isinstance(v, float) and not math.isfinite(v) else v
    out = {"machine": machine, "threads": args.threads, "numpy_pool": not args.no_pool,
           "steps": args.steps, "isolated": args.isolate, "rounds": args.rounds if args.isolate else None,
           "torch_malloc": args.torch_malloc,
           "sgemm_peak_gflops": clean(peak), "results": [{k: clean(v) for k, v in r.items()} for r in rows]}
    text = json.dumps(out, indent=2, allow_nan=False)
    if args.json == "-":
        print(text)
    else:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=20, help="timed steps per side (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    ap.add_argument("--no-torch", action="store_true", help="time NumPy only")
    ap.add_argument("--no-pool", action="store_true",
                    help="NumPy without its worker pool: BLAS threads only (the plain path)")
    ap.add_argument("--block", type=int, default=2,
                    help="timed steps in a row per side, after one untimed step (default 2)")
    ap.add_argument("--settle", type=float, default=0.2,
                    help="seconds of rest before each timed step, so the other side's spinning "
                         "threads are asleep (default 0.2)")
    ap.add_argument("--isolate", action="store_true",
                    help="each side in its own process (this script again, with --only)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="with --isolate: processes per side and config, in alternating order (default 2)")
    ap.add_argument("--only", choices=list(SETUPS), help="time this one side (numpy, nn or twin)")
    ap.add_argument("--torch-malloc", choices=["keep", "default"], default="keep",
                    help="glibc malloc's thresholds for the torch sides: keep (default) freed "
                         "memory for reuse, as ScratchFormer's training does for itself "
                         "(kernels/memory.py), so the sides differ only in their kernels; or "
                         "glibc's default, as a plain PyTorch script runs (takes effect with "
                         "--isolate or --only, where torch has a process of its own)"),
    ap.add_argument("--profile", action="store_true", help="cProfile the NumPy steps, print the top 25")
    ap.add_argument("--json", metavar="PATH", help="also write the results and the machine as JSON "
                                                   "('-' for standard output)")
    args = ap.parse_args(argv)
    if min(args.steps, args.threads, args.block, args.rounds) < 1 or args.warmup < 0 or args.settle < 0:
        ap.error("--steps, --threads, --block and --rounds must be >= 1, --warmup and --settle >= 0")
    if args.isolate and args.only:
        ap.error("--isolate runs every side in its own process; --only times one: choose one")
    return args


def main(argv=None):
    args = parse_args(argv)
    sides = [args.only] if args.only else list(SETUPS)
    if not args.only and (args.no_torch or importlib.util.find_spec("torch") is None):
        if not args.no_torch:
            print("torch not installed: timing NumPy only")
        sides = ["numpy"]
    rows, machine, peak = (run_isolated if args.isolate else run_here)(args, sides)
    if args.json:
        write_json(args, rows, machine, peak)


if __name__ == "__main__":
    main()
