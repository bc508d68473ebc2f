"""One worker pool for a training step: every core busy, BLAS on one thread per worker.

Why this exists. On a small machine most of a step that is not a large matmul runs on
ONE core in NumPy: the element-wise passes (GELU, LayerNorm, softmax) and the batched
attention matmuls of (T, Dh) tiles, too small for BLAS to thread. Letting BLAS start its
own threads does not help them, and OpenBLAS's threads keep spinning on the other cores
between matmuls, so a helper thread of ours would fight them for the core.

So when ``num_threads() > 1`` the step runs on this pool instead: BLAS is held to one
thread (``threads``), and each heavy operation is cut into contiguous parts along its
first axis, shared among the workers, the caller's thread being one of them.
NumPy releases the GIL inside BLAS calls and element-wise loops, so the parts really run
at the same time.

- ``matmul(a, b)``: rows of a 2-D ``a`` (or the leading batch axis of a stacked one).
  A row of the product depends only on that row of ``a``; BLAS may still round a part a
  little differently from the whole (its blocking depends on the sizes), so results are
  repeatable for a given thread count and within float32 rounding across counts
  (``tests/kernels`` hold them equal to ``np.matmul``).
- ``run(fn, n)``: any ``fn(lo, hi)`` over contiguous parts of ``range(n)``.

An element-wise operation is cut into twice as many parts as there are threads (or into
cache-sized blocks), and each thread takes the next part when it is done with one: on a
machine where another program holds a core, the thread that shares it simply does fewer
parts. A matmul is cut into one part per thread (``parts``): each BLAS call on a finer
part runs slower (a (768, 128) × (128, 512) product cut in 4: 6 % more time than in 2, one
thread), and measured on 2 cores the whole char-GPT step was 4 % faster idle and 3 % faster
with one core busy cut in 2 than in 4 (small: 1 % faster idle, 2 % slower busy).

Below ``MIN_FLOPS`` (or with one thread) an operation is one plain NumPy call: a hand-off
to a worker costs 30-100 µs, and on a machine where another program holds a core the
worker may wait a whole scheduler slice (milliseconds) before it runs. Measured on 2 cores
with one busy: the toy model (largest matmul 25 MFLOP) ran 1.7× slower cut than whole,
so operations of that size stay whole. ``SCRATCHFORMER_NUM_THREADS`` sets the default thread count
(otherwise: the cores this process may run on, at most ``MAX_DEFAULT``); ``1`` is the
plain path, NumPy calls as written.

Why not BLAS's own threads for a model that small, whose every matmul stays whole here?
OpenBLAS's threads busy-wait between calls, so their hand-off is nearly free, and on an
idle machine they do run the toy step faster than this pool (README, "Speed"). But while
they spin they take the core from this pool's helper, and on a machine where another
program holds a core they wait for it at every call: tried as a switch for such models,
the toy-task runs were 8-17 % faster idle and 2.3-2.5× slower with one core busy. So the
pool is used for every model.
"""

from __future__ import annotations

import contextvars
import os
import threading

import numpy as np

from . import memory

MIN_FLOPS = 30_000_000  # smaller matmuls: one call (see the module docstring)
MAX_DEFAULT = 8  # the default never starts more threads than this


def default_threads() -> int:
    """``SCRATCHFORMER_NUM_THREADS`` if set, else the cores this process may use (≤ 8),
    shared among the processes torchrun started on this machine (``LOCAL_WORLD_SIZE``)."""
    env = os.environ.get("SCRATCHFORMER_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"SCRATCHFORMER_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"SCRATCHFORMER_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    except ValueError:
        local = 1
    return max(1, min(cores // local, MAX_DEFAULT))


_threads = 1  # the pool is off until ``threads`` turns it on (a training run, a benchmark)


class _Crew:
    """``n`` helper threads, each asleep on its own lock until the next job.

    A hand-off is one lock release per helper and one acquire to wait: measured on the
    2-core machine, a (768, 128) × (128, 512) matmul cut in two took 0.63-0.69 ms through
    a ``ThreadPoolExecutor`` (a Future, a work item and a condition per submit; ~50 µs a
    hand-off) and about 0.59 ms this way, against 0.52 ms for one half alone.

    Each helper runs the job in a copy of the caller's context (``contextvars``), so what
    the caller set there holds in every part as on the caller's thread: NumPy's
    ``np.errstate`` above all (a new thread would otherwise start at NumPy's defaults).
    """

    def __init__(self, n: int):
        self.pid, self.job, self.errors, self.broken = os.getpid(), None, [], False
        self.contexts = [None] * n  # the caller's context, one copy per helper
        self.go = [threading.Lock() for _ in range(n)]  # released: a job is waiting
        self.done = [threading.Lock() for _ in range(n)]  # released: that helper finished it
        for lock in self.go + self.done:
            lock.acquire()
        for i in range(n):
            threading.Thread(target=self._serve, args=(i,), daemon=True,
                             name=f"scratchformer-{i + 1}").start()

    def _serve(self, i: int) -> None:
        go, done = self.go[i], self.done[i]
        while True:
            go.acquire()
            try:
                self.contexts[i].run(self.job)
            except BaseException as e:  # handed to the caller, raised there
                self.errors.append(e)
            finally:
                done.release()

    def run(self, job, helpers: int) -> None:
        """``job()`` on the caller's thread and on ``helpers`` helpers at once; returns when
        all are done, raising the first exception any of them raised."""
        self.job = job
        for i in range(helpers):
            self.contexts[i] = contextvars.copy_context()
        for go in self.go[:helpers]:
            go.release()
        try:
            job()
        finally:
            try:
                for done in self.done[:helpers]:
                    done.acquire()
            except BaseException:  # interrupted while helpers still run: never reuse this crew
                self.broken = True
                raise
            errors, self.errors = self.errors, []  # the caller's own exception goes first
        if errors:
            raise errors[0]


def num_threads() -> int:
    """How many parts a heavy operation is cut into now (1: plain NumPy calls)."""
    return _threads


_crews: dict[int, _Crew] = {}
_busy = threading.Lock()  # held while a crew works: a nested or concurrent call runs inline


def _crew(n: int) -> _Crew:
    """The crew of ``n`` helpers (per process: a forked child cannot use its parent's threads)."""
    crew = _crews.get(n)
    if crew is None or crew.broken or crew.pid != os.getpid():
        crew = _crews[n] = _Crew(n)
    return crew


class threads:
    """A context manager that owns the thread count: ``n`` threads inside the block (None:
    ``default_threads()``), the previous setting back on exit::

        with pool.threads(2):
            trainer.fit()

    Entering also asks the C library to keep freed memory for reuse (``memory``, once per
    process). With n > 1 the pool is on and BLAS is held to one thread per worker (threadpoolctl);
    with n == 1 everything is one thread. If BLAS cannot be limited (threadpoolctl is not
    installed) the pool stays off and BLAS keeps its own threads: never both at once.
    Nothing changes until the block is entered.
    """

    def __init__(self, n: int | None = None):
        n = default_threads() if n is None else int(n)
        if n < 1:
            raise ValueError(f"threads must be at least 1, got {n}")
        self.n, self._limiter, self._before = n, None, None

    def __enter__(self) -> int:
        global _threads
        if self._before is not None:
            raise RuntimeError("pool.threads(...) is entered once; make a new one per block")
        memory.keep_freed_memory()  # a training block: its arrays reused, not page-faulted anew
        self._limiter = _limit_blas(1)
        self._before, _threads = _threads, (self.n if self._limiter is not None else 1)
        return _threads

    def __exit__(self, *exc) -> None:
        global _threads
        _threads = self._before
        if self._limiter is not None:
            self._limiter.restore_original_limits()


def _limit_blas(n: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=n, user_api="blas")


def cuts(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (lo, hi) slices of about equal size covering ``range(n)``."""
    edges = [n * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def run(fn, n: int, parts: int | None = None) -> None:
    """Call ``fn(lo, hi)`` on ``parts`` contiguous slices of ``range(n)`` that together
    cover it once, on the pool's threads, the caller's among them; returns when all are done.

    ``parts`` defaults to twice ``num_threads()``: the threads take the next slice when
    they finish one, so a thread slowed by another program on its core takes fewer
    slices and the others do not wait for it. With one thread the slices run in turn
    (a cache-sized slice at a time, for the callers that cut for that reason).
    """
    parts = min(parts or 2 * _threads, n)
    if parts <= 1:
        fn(0, n)
        return
    slices = iter(cuts(n, parts))

    def work():  # next() runs under the GIL: each slice is taken exactly once
        for lo, hi in slices:
            fn(lo, hi)

    helpers = min(_threads, parts) - 1
    if helpers == 0 or not _busy.acquire(blocking=False):  # one thread; or called from inside
        work()  # a part, or from another thread while the crew works: here, in turn
        return
    try:
        _crew(_threads - 1).run(work, helpers)
    finally:
        _busy.release()


def run_tasks(tasks: list) -> None:
    """Call every zero-argument callable in ``tasks`` once, shared among the pool's threads
    (one hand-off for them all); returns when all are done."""
    def some(lo, hi):
        for task in tasks[lo:hi]:
            task()

    run(some, len(tasks), len(tasks))


def parts(flops: float, n: int) -> int:
    """How many parts a matmul of ``flops`` over ``n`` rows is worth cutting into: one per
    thread, or 1 (keep it whole) below ``MIN_FLOPS`` (see the module docstring)."""
    if _threads <= 1 or flops < MIN_FLOPS or n < 2:
        return 1
    return min(_threads, n)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, then=None) -> np.ndarray:
    """``a @ b``, cut along a's first axis: its rows (2-D) or its batch axis (stacked).

    ``b`` is 2-D (shared by every part) or stacked like ``a`` with the same first axis.
    ``then(lo, hi)``, if given, runs right after the part ``out[lo:hi]`` is computed, on
    the same thread, while those rows are still in cache: a bias, an activation (a fused
    epilogue; with one part it runs once, on all rows).
    """
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = np.empty(shape, dtype=np.result_type(a, b))
    n_parts = parts(2.0 * out.size * a.shape[-1], a.shape[0])
    split_b = b.ndim == a.ndim and a.ndim > 2  # stacked b: its batch axis goes with a's
    if n_parts == 1 or out.ndim != a.ndim or out.shape[0] != a.shape[0] or (
            split_b and b.shape[0] != a.shape[0]):  # one of them broadcasts along that axis
        np.matmul(a, b, out=out)
        if then is not None:
            then(0, out.shape[0])
        return out

    def part(lo, hi):
        np.matmul(a[lo:hi], b[lo:hi] if split_b else b, out=out[lo:hi])
        if then is not None:
            then(lo, hi)

    run(part, a.shape[0], n_parts)
    return out

