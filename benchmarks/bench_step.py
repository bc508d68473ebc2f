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

    python benchmarks/bench_step.py                 # toy, small and char-gpt
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
import importlib
import io
import json
import math
import os
import platform
import pstats
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scratchformer as sf  # noqa: E402
from scratchformer.kernels import pool  # noqa: E402

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


def sgemm_peak(threads: int) -> float:
    """Best GFLOP/s of a 1024³ float32 matmul on this machine, with this many threads."""
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * 1024 ** 3 / best / 1e9


def machine_info() -> dict:
    """The machine a table was measured on: CPU model, cores, BLAS library and kernel."""
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    blas = [{k: b.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for b in threadpool_info() if b.get("user_api") == "blas"]
    return {"cpu": cpu, "cores": os.cpu_count(), "blas": blas, "python": platform.python_version(),
            "numpy": np.__version__,
            "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}}


def describe(m: dict) -> str:
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in m["blas"])
    env = "".join(f", {k}={v}" for k, v in m["env"].items())
    return f"machine: {m['cpu']}, {m['cores']} cores, BLAS {blas or 'unknown'}, python {m['python']}{env}"


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


def main(argv=None):
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
    ap.add_argument("--profile", action="store_true", help="cProfile the NumPy steps, print the top 25")
    ap.add_argument("--json", metavar="PATH", help="also write the results and the machine as JSON "
                                                   "('-' for standard output)")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.settle < 0 or args.block < 1:
        ap.error("--steps, --threads and --block must be >= 1, --warmup and --settle >= 0")

    from threadpoolctl import threadpool_limits

    have_torch = False
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
            have_torch = True
        except ImportError:
            print("torch not installed: timing NumPy only")
    rows = []
    # NumPy's threads: the worker pool (``--threads`` workers, each BLAS call on one thread)
    # or, with --no-pool, BLAS's own threads. torch's MKL and OpenMP are not NumPy's BLAS:
    # the pool's one-thread limit does not reach them.
    with threadpool_limits(limits=args.threads), contextlib.ExitStack() as stack:
        machine = machine_info()
        peak = sgemm_peak(args.threads)
        print(describe(machine))
        print(f"NumPy: {'BLAS threads, no pool' if args.no_pool else 'worker pool, 1 BLAS thread each'}")
        print(f"threads={args.threads}  sgemm peak {peak:.1f} GFLOP/s  numpy {np.__version__}"
              + (f"  torch {torch.__version__}" if have_torch else ""))
        print(f"{'config':8s} {'numpy ms':>9s} {'torch ms':>9s} {'ratio':>6s} {'GFLOP/s':>8s} {'%peak':>6s}"
              f" {'twin ms':>8s} {'np/twin':>7s}")
        if not args.no_pool:  # made here, inside threadpool_limits: its 1-BLAS-thread limit wins
            stack.enter_context(pool.threads(args.threads))
        for name in args.configs:
            c = CONFIGS[name]
            np_step = numpy_setup(c)
            is_gpt = c.get("kind") == "gpt"  # no nn.Transformer reference for the GPT
            t_step = torch_setup(c) if have_torch and not is_gpt else None
            w_step = twin_setup(c) if have_torch else None
            for _ in range(args.warmup):
                np_step()
                if t_step:
                    t_step()
                if w_step:
                    w_step()
            tn, tt, tw = [], [], []
            prof = cProfile.Profile() if args.profile else None
            for _ in range(math.ceil(args.steps / args.block)):  # alternate blocks of steps
                tn += timed(np_step, prof, args.settle, args.block)
                if t_step:
                    tt += timed(t_step, None, args.settle, args.block)
                if w_step:
                    tw += timed(w_step, None, args.settle, args.block)
            ms_np = median_ms(tn)
            gflops = step_flops(c) / (ms_np / 1e3) / 1e9
            ms_t = median_ms(tt) if tt else float("nan")
            ms_w = median_ms(tw) if tw else float("nan")
            print(f"{name:8s} {ms_np:9.2f} {ms_t:9.2f} {ms_np / ms_t:6.2f} {gflops:8.1f} {100 * gflops / peak:5.0f}%"
                  f" {ms_w:8.2f} {ms_np / ms_w:7.2f}")
            rows.append({"config": name, **c, "numpy_ms": ms_np, "torch_ms": ms_t,
                         "numpy_over_torch": ms_np / ms_t, "numpy_gflops": gflops,
                         "percent_of_sgemm_peak": 100 * gflops / peak, "twin_ms": ms_w,
                         "numpy_over_twin": ms_np / ms_w})
            if prof:
                s = io.StringIO()
                pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
                print(s.getvalue())
    if args.json:
        def clean(v):  # NaN (a column not measured) → null: strict JSON
            return None if isinstance(v, float) and not math.isfinite(v) else v
        out = {"machine": {**machine, "torch": torch.__version__ if have_torch else None},
               "threads": args.threads, "numpy_pool": not args.no_pool, "steps": args.steps, "sgemm_peak_gflops": peak,
               "results": [{k: clean(v) for k, v in r.items()} for r in rows]}
        text = json.dumps(out, indent=2, allow_nan=False)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    main()
