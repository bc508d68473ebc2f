"""The worker pool: every cut operation equals its one-call NumPy formula."""

import threading

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.kernels import pool

from gradcheck import rel_error

TOL = {np.float64: 1e-13, np.float32: 1e-6}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def small_cut(monkeypatch):
    monkeypatch.setattr(pool, "MIN_FLOPS", 0)  # cut even these small test arrays


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matmul_equals_numpy(rng, dtype, threads):
    cases = [
        ((37, 16), (16, 9)),  # rows cut
        ((5, 3, 7, 4), (5, 3, 4, 6)),  # batch axis cut together with b's
        ((5, 3, 7, 4), (4, 6)),  # a stacked, b one matrix shared by every part
        ((1, 3, 7, 4), (5, 3, 4, 6)),  # a broadcasts along the cut axis: one call
        ((5, 3, 7, 4), (1, 3, 4, 6)),  # b broadcasts along it: b whole
    ]
    with pool.threads(threads):
        for sa, sb in cases:
            a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
            out = pool.matmul(a, b)
            assert out.shape == np.matmul(a, b).shape and out.dtype == dtype
            assert rel_error(out, np.matmul(a, b)) < TOL[dtype], (sa, sb)
        t = rng.standard_normal((6, 2, 5, 4)).astype(dtype)  # strided views, as attention passes
        assert rel_error(pool.matmul(t, t.swapaxes(-1, -2)), t @ t.swapaxes(-1, -2)) < TOL[dtype]


def test_matmul_writes_into_out(rng):
    a, b = rng.standard_normal((30, 8)), rng.standard_normal((8, 5))
    out = np.full((30, 5), np.nan)
    with pool.threads(2):
        assert pool.matmul(a, b, out=out) is out
    assert rel_error(out, a @ b) < 1e-13


def test_repeatable_for_a_thread_count(rng):
    a, b = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal((32, 48)).astype(np.float32)
    with pool.threads(2):
        np.testing.assert_array_equal(pool.matmul(a, b), pool.matmul(a, b))


@pytest.mark.parametrize("n,parts", [(1, None), (7, None), (10, 3), (100, 7), (5, 50)])
def test_run_covers_every_index_once(n, parts):
    seen, lock = [], threading.Lock()

    def fn(lo, hi):
        with lock:
            seen.extend(range(lo, hi))

    with pool.threads(3):
        pool.run(fn, n, parts)
    assert sorted(seen) == list(range(n))


def test_run_raises_a_workers_error():
    def fn(lo, hi):
        if lo > 0:
            raise RuntimeError("part failed")

    with pool.threads(2), pytest.raises(RuntimeError, match="part failed"):
        pool.run(fn, 10)

    with pool.threads(2):  # the crew is fine afterwards: the error is not raised again
        pool.run(lambda lo, hi: None, 10)


def test_run_shares_the_parts_among_threads():
    names, lock, gate = set(), threading.Lock(), threading.Barrier(2, timeout=10)

    def fn(lo, hi):
        gate.wait()  # two parts must run at once, on two threads, or this times out
        with lock:
            names.add(threading.current_thread().name)

    with pool.threads(2):
        pool.run(fn, 2, 2)
    assert len(names) == 2


def test_every_part_runs_under_the_callers_errstate():
    """np.errstate lives in the caller's context: the helpers run their parts in a copy of
    it, so a part on a helper thread sees the caller's setting, not NumPy's default."""
    seen, lock, gate = {}, threading.Lock(), threading.Barrier(2, timeout=10)

    def fn(lo, hi):
        gate.wait()  # one part on each thread
        with lock:
            seen[threading.current_thread().name] = np.geterr()["over"]
        np.float32(3e38) * np.float32(10)  # overflows: raises under "raise"

    with pool.threads(2), np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            pool.run(fn, 2, 2)
    assert len(seen) == 2 and set(seen.values()) == {"raise"}
    with pool.threads(2), np.errstate(over="ignore"):  # and nothing leaks into the next job
        seen.clear()
        pool.run(fn, 2, 2)
    assert len(seen) == 2 and set(seen.values()) == {"ignore"}


def test_run_inside_a_part_or_beside_a_running_one_runs_inline():
    """A part that cuts its own work, or another thread calling while the helpers are busy,
    runs its slices on its own thread, in turn: covered once, no deadlock."""
    seen, lock = [], threading.Lock()

    def inner(lo, hi):
        with lock:
            seen.extend(range(lo, hi))

    def outer(lo, hi):
        for i in range(lo, hi):
            pool.run(lambda a, b: inner(100 * i + a, 100 * i + b), 10, 5)

    def beside():
        pool.run(lambda a, b: inner(1000 + a, 1000 + b), 10, 5)

    with pool.threads(2):
        other = threading.Thread(target=beside)
        other.start()
        pool.run(outer, 4)
        other.join(10)
    assert sorted(seen) == [100 * i + j for i in range(4) for j in range(10)] + list(range(1000, 1010))


def test_threads_restores_and_checks():
    before = pool.num_threads()
    with pool.threads(3) as n:
        assert n == pool.num_threads() == 3
        with pool.threads(1):
            assert pool.num_threads() == 1
        assert pool.num_threads() == 3
    assert pool.num_threads() == before
    with pytest.raises(ValueError, match="at least 1"):
        with pool.threads(0):
            pass


def test_default_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv("SCRATCHFORMER_NUM_THREADS", "3")
    assert pool.default_threads() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("SCRATCHFORMER_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="SCRATCHFORMER_NUM_THREADS"):
            pool.default_threads()
    monkeypatch.delenv("SCRATCHFORMER_NUM_THREADS")
    assert 1 <= pool.default_threads() <= pool.MAX_DEFAULT
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1000")  # torchrun: cores shared among its processes
    assert pool.default_threads() == 1


def test_threads_change_nothing_until_entered_and_enter_once():
    before = pool.num_threads()
    limit = pool.threads(2)
    assert pool.num_threads() == before
    with limit:
        assert pool.num_threads() == 2
    assert pool.num_threads() == before
    with pytest.raises(RuntimeError, match="entered once"):
        with limit:
            pass


def test_training_step_same_on_one_thread_and_three(make_transformer):
    """A whole step (forward, backward, Adam) cut over 3 threads equals the plain path."""
    def run(threads):
        model = make_transformer(seed=3).astype(np.float64)
        opt = sf.Adam(model.parameters(), lr=1e-3)
        crit = sf.CrossEntropyLoss(ignore_index=0)
        rng = np.random.default_rng(0)
        src, tgt = rng.integers(3, 11, (6, 7)), rng.integers(3, 11, (6, 8))
        src[0, -2:] = 0  # padding inside the batch
        with pool.threads(threads):
            for _ in range(2):
                opt.zero_grad()
                loss = crit(model(src, tgt[:, :-1]), tgt[:, 1:])
                model.backward(crit.backward())
                opt.step()
        return loss, [p.data.copy() for p in model.parameters()]

    loss1, params1 = run(1)
    loss3, params3 = run(3)
    assert abs(loss1 - loss3) < 1e-12
    # all parameters as one vector: the key biases' gradients are zero in exact arithmetic
    # (softmax ignores a constant added to every score), so alone they compare rounding noise
    assert rel_error(np.concatenate([p.ravel() for p in params3]),
                     np.concatenate([p.ravel() for p in params1])) < 1e-10
