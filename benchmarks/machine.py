"""The machine a benchmark ran on, printed beside every table so that figures from
different machines are never mixed up: CPU model, cores, NumPy's BLAS (library, version and
kernel, from threadpoolctl), its measured sgemm peak and, when torch is imported, the BLAS and CPU capability torch
was built with.

    from machine import describe, machine_info
    print(describe(machine_info()))
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def sgemm_peak(threads: int) -> float:
    """Best GFLOP/s of a 1024³ float32 matmul on this machine, with this many threads."""
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * 1024 ** 3 / best / 1e9


def torch_info() -> dict | None:
    """torch's version, the BLAS it was built with and the CPU capability it uses; None
    when torch is not imported in this process (never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    show = torch.__config__.show()

    def field(key: str, sep: str) -> str | None:  # "BLAS_INFO=mkl," / "CPU capability usage: AVX512"
        at = show.find(key + sep)
        if at < 0:
            return None
        rest = show[at + len(key) + len(sep):]
        return rest.split(",")[0].split("\n")[0].strip()

    return {"version": torch.__version__, "blas": field("BLAS_INFO", "="),
            "cpu_capability": field("CPU capability usage", ":"), "threads": torch.get_num_threads()}


def machine_info() -> dict:
    """The machine a table was measured on: CPU model, cores, BLAS library and kernel."""
    from threadpoolctl import threadpool_info

    blas = [{k: b.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for b in threadpool_info() if b.get("user_api") == "blas"]
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "blas": blas,
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch_info(),
            "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}}


def describe(m: dict) -> str:
    """One line: ``machine: <cpu>, <n> cores, BLAS <lib> <version> (<kernel>), python ...``."""
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in m["blas"])
    env = "".join(f", {k}={v}" for k, v in m["env"].items())
    t = m.get("torch")
    torch = (f"; torch {t['version']} (BLAS {t['blas']}, CPU {t['cpu_capability']})" if t else "")
    return (f"machine: {m['cpu']}, {m['cores']} cores, BLAS {blas or 'unknown'}, "
            f"python {m['python']}{env}{torch}")
