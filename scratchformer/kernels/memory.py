"""Keep freed memory in the process, so that a training step's fresh arrays are not
page-faulted in again every step.

Why this exists. A step allocates its activations and gradients anew (tens of arrays of
hundreds of kilobytes to megabytes) and frees them by the end of the step. glibc's malloc
hands blocks above a threshold back to the operating system when they are freed (``munmap``,
or trimming the top of the heap), so the next step's arrays arrive as fresh pages: the
kernel zeroes each 4 KB page on its first touch (a "minor page fault"). Measured on the
2-core AMD machine: the toy config took 1,100 page faults per step (about 4 MB; 2.4 ms of
27 ms in the kernel), the small config 500; with the thresholds below, 20 and 100, and the
toy step 27.6 → 24.5 ms (4 processes each way, alternating).

``keep_freed_memory`` raises glibc's two thresholds (``mallopt``, through ``ctypes``): blocks
up to 32 MB come from the heap, and up to 512 MB of free heap stays mapped for reuse. The
process's resident memory then stays near its peak instead of shrinking between steps.
It changes the whole process (malloc is shared), so it runs once, when a training run or a
benchmark enters ``pool.threads``; elsewhere than glibc (macOS, musl, Windows) it does
nothing. PyTorch's CPU tensors come from the same malloc and gain from it too (the twin's
char-GPT step 40–46 → 39 ms, measured alone), so ``benchmarks/bench_step.py`` gives every
side the same setting unless told ``--torch-malloc default``.
"""

from __future__ import annotations

import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h> constants
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 512 * 1024 * 1024

_done: bool | None = None  # None: not tried yet; else whether the thresholds were set


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks up to 32 MB in the heap and up to 512 MB of free heap
    mapped (once per process). Returns True when the thresholds are set, False where the C
    library is not glibc or refuses."""
    global _done
    if _done is None:
        _done = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                import ctypes

                mallopt = ctypes.CDLL(None).mallopt
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                             and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):  # no C library to load, or no mallopt in it
                pass
    return _done
