"""GPT-2 small (124 M parameters) at scale: memory and speed of our NumPy GPT and of its
PyTorch twin, in one run.

    python benchmarks/bench_gpt2.py                         # random weights (nothing downloaded)
    python benchmarks/bench_gpt2.py --hf gpt2               # a real GPT-2 folder of yours
    python benchmarks/bench_gpt2.py --tokens 20 --steps 3   # quicker

Each phase runs in a fresh process, so its peak resident memory (VmHWM) is its own:

    numpy-load      load_hf_gpt2(folder): the weights read one tensor at a time
    numpy-generate  load, then greedy generation: ms per new token, KV cache on and off
    numpy-train     load, then training steps (batch 1 × 128 tokens, cross-entropy, AdamW)
    torch-load      TorchGPT filled from the same file, tensor by tensor
    torch-generate  TorchGPT.generate (the twin has no KV cache: recomputes every step)
    torch-train     the same training steps with autograd and torch.optim.AdamW

"rss after imports" is the process before the model exists (Python, NumPy, torch), so the
model's own share is the difference. Times are medians; on a shared machine they are
pessimistic (the load average is printed with them). The machine is named at the top:
CPU model, cores, and the BLAS libraries and thread counts (threadpoolctl).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PHASES = ("numpy-load", "numpy-generate", "numpy-train", "torch-load", "torch-generate", "torch-train")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return float("nan")


def rss_mb() -> float:
    """Resident memory now (VmRSS), MB."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM), MB. Not ``ru_maxrss``: Linux carries
    that over ``exec`` from the forking parent, so a child would report the parent's peak."""
    return _status_mb("VmHWM")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy  # noqa: F401  (so threadpoolctl sees NumPy's BLAS)
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
                         for i in threadpool_info()) or "none found"
    except ImportError:
        blas = "unknown (pip install threadpoolctl)"
    return f"{cpu}, {os.cpu_count()} logical CPUs; NumPy BLAS: {blas}"


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


# ---- phases (each in its own process) -----------------------------------------------------------
def numpy_phase(phase: str, folder: str, a) -> dict:
    import numpy as np

    from scratchformer.core.loss import CrossEntropyLoss
    from scratchformer.interop import load_hf_gpt2
    from scratchformer.training.optim import AdamW

    out = {"rss after imports": rss_mb()}
    t = time.perf_counter()
    model = load_hf_gpt2(folder)
    out["load s"], out["rss after load"] = time.perf_counter() - t, rss_mb()
    rng = np.random.default_rng(0)
    if phase == "numpy-generate":
        prompt = rng.integers(0, model.config.vocab_size, (1, a.prompt_len))
        for use_cache, name in ((True, "ms/token cached"), (False, "ms/token uncached")):
            model.generate(prompt, 2, top_k=1, use_cache=use_cache)  # warm-up
            ms = _median_ms(lambda: model.generate(prompt, a.tokens, top_k=1, use_cache=use_cache), a.repeats)
            out[name] = ms / a.tokens
    elif phase == "numpy-train":
        crit = CrossEntropyLoss()
        opt = AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
        x = rng.integers(0, model.config.vocab_size, (a.batch, a.block))
        y = rng.integers(0, model.config.vocab_size, (a.batch, a.block))

        def step():
            opt.zero_grad()
            crit(model(x), y)
            model.backward(crit.backward())
            opt.step()

        step()  # warm-up: the optimizer's moments are allocated here
        out["ms/step"] = _median_ms(step, a.steps)
    return out


def torch_model_from_folder(folder: str):
    """TorchGPT with the folder's weights, copied in one tensor at a time (our reader)."""
    import numpy as np
    import torch

    from scratchformer.interop import iter_hf_gpt2_arrays, read_hf_gpt2_config
    from scratchformer.torch_port import TorchGPT

    cfg = read_hf_gpt2_config(folder)
    tm = TorchGPT(cfg, init_from_numpy=False)
    params = dict(tm.named_parameters())
    with torch.no_grad():
        for key, arr in iter_hf_gpt2_arrays(folder, cfg):
            params[key].copy_(torch.from_numpy(np.ascontiguousarray(arr)))
    return tm


def torch_phase(phase: str, folder: str, a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    out = {"rss after imports": rss_mb()}
    t = time.perf_counter()
    tm = torch_model_from_folder(folder)
    out["load s"], out["rss after load"] = time.perf_counter() - t, rss_mb()
    g = torch.Generator().manual_seed(0)
    V = tm.config.vocab_size
    if phase == "torch-generate":
        tm.eval()
        prompt = torch.randint(0, V, (1, a.prompt_len), generator=g)
        tm.generate(prompt, 2, top_k=1)
        out["ms/token uncached"] = _median_ms(lambda: tm.generate(prompt, a.tokens, top_k=1), a.repeats) / a.tokens
    elif phase == "torch-train":
        tm.train()
        opt = torch.optim.AdamW(tm.parameters(), lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
        x, y = (torch.randint(0, V, (a.batch, a.block), generator=g) for _ in range(2))

        def step():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(tm(x).flatten(0, 1), y.flatten()).backward()
            opt.step()

        step()
        out["ms/step"] = _median_ms(step, a.steps)
    return out


def child(a) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(a.threads):
        fn = numpy_phase if a.child.startswith("numpy") else torch_phase
        out = fn(a.child, a.folder, a)
    out["peak rss"] = peak_rss_mb()
    out["load average"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(out))


# ---- the parent: a folder, then one process per phase --------------------------------------------
def make_random_folder(path: Path) -> None:
    """GPT-2 small (transformers' default sizes) with our random initial weights."""
    from scratchformer.interop import gpt2_config_from_hf, save_hf_gpt2
    from scratchformer.models.gpt import GPT

    save_hf_gpt2(GPT(gpt2_config_from_hf({"model_type": "gpt2"})), path)


def run_phase(phase: str, folder: Path, a) -> dict:
    cmd = [sys.executable, __file__, "--child", phase, "--folder", str(folder), "--tokens", str(a.tokens),
           "--prompt-len", str(a.prompt_len), "--steps", str(a.steps), "--repeats", str(a.repeats),
           "--batch", str(a.batch), "--block", str(a.block), "--threads", str(a.threads)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(a.threads), "OMP_NUM_THREADS": str(a.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{phase} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][7:])


def report(results: dict, a) -> None:
    cols = ("rss after imports", "load s", "rss after load", "peak rss", "ms/token cached",
            "ms/token uncached", "ms/step", "load average")
    print(f"| phase | {' | '.join(cols)} |")
    print("|---" * (len(cols) + 1) + "|")
    for phase, r in results.items():
        cells = [("—" if c not in r else f"{r[c]:,.0f}" if "rss" in c else f"{r[c]:,.2f}") for c in cols]
        print(f"| {phase} | {' | '.join(cells)} |")
    print(f"(MB for rss; generation: batch 1, prompt {a.prompt_len}, {a.tokens} new tokens, greedy, "
          f"median of {a.repeats}; training: batch {a.batch} × {a.block} tokens, AdamW, median of "
          f"{a.steps} steps after one warm-up step)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hf", help="a GPT-2 folder (config.json + model.safetensors); default: random weights")
    ap.add_argument("--tokens", type=int, default=50, help="new tokens per timed generation")
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="timed training steps")
    ap.add_argument("--repeats", type=int, default=1, help="timed generations per mode")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="BLAS / torch threads in every phase")
    ap.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {PHASES}")
    ap.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a)
    print(f"machine: {machine()}; threads per phase: {a.threads}")
    with tempfile.TemporaryDirectory(prefix="bench-gpt2-") as tmp:
        folder = Path(a.hf) if a.hf else Path(tmp) / "gpt2-random"
        if not a.hf:
            t = time.perf_counter()
            make_random_folder(folder)
            print(f"wrote a random-weight GPT-2 small folder in {time.perf_counter() - t:.1f} s")
        results = {}
        for phase in a.phases.split(","):
            results[phase] = run_phase(phase, folder, a)
            print(f"{phase}: {json.dumps({k: round(v, 2) for k, v in results[phase].items()})}", flush=True)
    report(results, a)


if __name__ == "__main__":
    main()
