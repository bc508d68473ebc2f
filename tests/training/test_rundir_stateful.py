"""Run directories under random sequences of runs (hypothesis stateful testing, library level):
fresh runs, resumed runs, forced runs, runs interrupted by Ctrl-C after a checkpoint, a second
trainer on a directory in use, old ``.npz`` runs and obstacles (a directory or FIFO where a
run keeps a file), in any order over a few directories.

The invariant after every step: no run's files are lost or mixed — each directory holds
exactly the run the model says it owns (its checkpoint belongs to the run whose records
fill its metrics.jsonl, step for step), no temp file or lock is left behind, and a refused
call changed nothing on disk.
"""

import json
import os
import shutil
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import settings, strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402

from scratchformer import GPT, GPTConfig  # noqa: E402
from scratchformer.training import rundir  # noqa: E402
from scratchformer.training.checkpoint import load, save  # noqa: E402

from on_disk import snapshot  # noqa: E402

DIRS = ("a", "b", "deep/c")
MODES = ({}, {"force": True}, {"resume": True})
MODEL = GPT(GPTConfig(5, d_model=8, n_heads=2, d_ff=8, n_layers=1, max_len=4))


def fake_training(out: str, run: int, start: int, steps: int, interrupt_at: int | None = None):
    """Per step: a metrics record, then a checkpoint of the tiny model tagged with the run;
    Ctrl-C (KeyboardInterrupt) right after step ``interrupt_at``'s checkpoint. A new run
    (start 0) begins as the Trainer's loop does: ``rundir.start_fresh`` at its first step."""
    if start == 0:
        rundir.start_fresh(out)
    for step in range(start + 1, start + steps + 1):
        # O_NONBLOCK: were a FIFO let through, opening it fails instead of hanging the test
        fd = os.open(os.path.join(out, "metrics.jsonl"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps({"run": run, "step": step}) + "\n")
        save(os.path.join(out, "checkpoint.safetensors"), MODEL, run=run, step=step)
        if step == interrupt_at:
            raise KeyboardInterrupt


class RunDirs(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="rundirs-")
        self.owner = {d: None for d in DIRS}    # d → (run id, steps) of the run it holds
        self.legacy = {d: False for d in DIRS}  # an old run: checkpoint.npz only
        self.obstacle = {d: None for d in DIRS}  # a directory or FIFO at a run file's path
        self.next_run = 0

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, d: str) -> str:
        return os.path.join(self.root, d)

    def taken(self, d: str) -> bool:
        return self.owner[d] is not None or self.legacy[d]

    def refused(self, d: str, mode: dict) -> bool:
        """Whether ``open_run(d, **mode)`` must refuse, by the model."""
        if self.obstacle[d]:
            return True
        if mode.get("resume"):
            return self.owner[d] is None
        return self.taken(d) and not mode.get("force")

    def expect_refusal(self, d: str, mode: dict) -> str:
        before = snapshot(self.root)
        with pytest.raises(rundir.RunDirError) as info:
            with rundir.open_run(self.path(d), **mode):
                raise AssertionError("the run started")
        assert snapshot(self.root) == before  # a refused call changed nothing
        msg = str(info.value)
        assert "--" not in msg and "\n" not in msg and ".tmp" not in msg, msg
        if mode.get("resume") and self.legacy[d] and not self.obstacle[d]:
            assert "scratchformer convert-checkpoint" in msg, msg
        return msg

    def run(self, d: str, mode: dict, steps: int, interrupt_at: int | None = None) -> None:
        """One call of the fake trainer in ``d``; the model follows what it must do."""
        if self.refused(d, mode):
            self.expect_refusal(d, mode)
            return
        with rundir.open_run(self.path(d), **mode) as out:
            if mode.get("resume"):
                _, _, state = load(rundir.resume_checkpoint(out))
                run, start = state["run"], state["step"]
                assert (run, start) == self.owner[d]  # the directory's own run, nothing else
            else:
                run, start = self.next_run, 0
                self.next_run += 1
                self.owner[d], self.legacy[d] = None, False  # erased by force (or never there)
            stop = None if interrupt_at is None else start + interrupt_at
            try:
                fake_training(out, run, start, steps, stop)
            finally:  # whatever was checkpointed stays
                self.owner[d] = (run, start + (steps if stop is None else min(steps, interrupt_at)))

    # ---- rules ----------------------------------------------------------------------------
    @rule(d=st.sampled_from(DIRS), mode=st.sampled_from(MODES), steps=st.integers(1, 3))
    def train(self, d, mode, steps):
        self.run(d, mode, steps)

    @rule(d=st.sampled_from(DIRS), mode=st.sampled_from(MODES), steps=st.integers(1, 3),
          data=st.data())
    def interrupted(self, d, mode, steps, data):
        """Ctrl-C after the k-th checkpoint of this call: the lock is released, the run kept."""
        k = data.draw(st.integers(1, steps))
        if self.refused(d, mode):
            self.expect_refusal(d, mode)
            return
        with pytest.raises(KeyboardInterrupt):
            self.run(d, mode, steps, interrupt_at=k)

    @precondition(lambda self: any(self.owner[d] and not self.obstacle[d] for d in DIRS))
    @rule(data=st.data(), mode=st.sampled_from(MODES))
    def second_trainer(self, data, mode):
        """Another run's directory, in use: a second open_run there is refused, whatever its
        mode, while the first one trains on."""
        d = data.draw(st.sampled_from([d for d in DIRS if self.owner[d] and not self.obstacle[d]]))
        with rundir.open_run(self.path(d), resume=True) as out:
            msg = self.expect_refusal(d, mode)
            if not self.refused(d, mode):  # refused by the lock alone
                assert "another trainer" in msg, msg
            run, start = self.owner[d]
            fake_training(out, run, start, 1)
            self.owner[d] = (run, start + 1)

    @precondition(lambda self: any(not self.taken(d) and not self.obstacle[d] for d in DIRS))
    @rule(data=st.data())
    def old_format_run(self, data):
        """A directory holding a run of the format before safetensors (checkpoint.npz)."""
        d = data.draw(st.sampled_from([d for d in DIRS if not self.taken(d) and not self.obstacle[d]]))
        os.makedirs(self.path(d), exist_ok=True)
        with open(os.path.join(self.path(d), "checkpoint.npz"), "wb") as f:
            f.write(b"PK\x03\x04 an old run of " + d.encode())
        self.legacy[d] = True

    @precondition(lambda self: any(not self.obstacle[d] for d in DIRS))
    @rule(data=st.data(), name=st.sampled_from(["checkpoint.safetensors", "metrics.jsonl",
                                                "train.lock"]), fifo=st.booleans())
    def put_obstacle(self, data, name, fifo):
        """A directory (or FIFO) where a run keeps a file: every open_run there is refused."""
        d = data.draw(st.sampled_from([d for d in DIRS if not self.obstacle[d]]))
        path = os.path.join(self.path(d), name)
        if os.path.lexists(path):
            return  # a run's own file is there: nothing to block with
        os.makedirs(self.path(d), exist_ok=True)
        os.mkfifo(path) if fifo else os.mkdir(path)
        self.obstacle[d] = path

    @precondition(lambda self: any(self.obstacle.values()))
    @rule(data=st.data())
    def clear_obstacle(self, data):
        d = data.draw(st.sampled_from([d for d in DIRS if self.obstacle[d]]))
        path = self.obstacle[d]
        os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
        self.obstacle[d] = None

    # ---- the invariant -------------------------------------------------------------------
    @invariant()
    def no_run_lost_or_mixed(self):
        for d in DIRS:
            path = self.path(d)
            ckpt = os.path.join(path, "checkpoint.safetensors")
            metrics = os.path.join(path, "metrics.jsonl")
            if self.owner[d] is None:
                assert not os.path.isfile(ckpt) and not os.path.isfile(metrics), d
            else:
                run, steps = self.owner[d]
                _, _, state = load(ckpt)
                assert (state["run"], state["step"]) == (run, steps), d
                with open(metrics) as f:
                    records = [json.loads(line) for line in f]
                assert records == [{"run": run, "step": s} for s in range(1, steps + 1)], d
            npz = os.path.join(path, "checkpoint.npz")
            assert os.path.exists(npz) == self.legacy[d], d
            if os.path.isdir(path):
                left = [n for n in os.listdir(path) if (n.endswith(".tmp") or n == "train.lock")
                        and os.path.join(path, n) != self.obstacle[d]]
                assert left == [], (d, left)


RunDirs.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
TestRunDirs = RunDirs.TestCase
