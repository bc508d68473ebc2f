"""kernels.memory: glibc's thresholds set once per process; a no-op elsewhere."""

import platform

from scratchformer.kernels import memory, pool


def test_keep_freed_memory_once_and_only_on_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert memory.keep_freed_memory() is False
    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.undo()  # the real platform again
    monkeypatch.setattr(memory, "_done", None)
    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert memory.keep_freed_memory() is on_glibc
    assert memory.keep_freed_memory() is on_glibc  # the answer of the first call, kept


def test_entering_the_pool_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    limit = pool.threads(1)
    assert not calls  # nothing changes until the block is entered
    with limit:
        assert calls == [1]
