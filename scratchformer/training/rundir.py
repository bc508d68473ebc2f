"""The run directory: checked before training, locked while training, tidied at the start.

A training run writes ``checkpoint.safetensors`` and ``metrics.jsonl`` into one directory (the
*run directory*, ``out_dir``). This module keeps runs from being lost or mixed:

- ``check_writable_dir(path)``: the directory can be created and a file written in it —
  checked *before* training, so a run is never lost at the end for an unusable path;
- ``check_run_files(path)``: each file a run keeps there is absent or a regular file (a
  directory or a FIFO sitting at ``checkpoint.safetensors`` is found now, not at the
  first save);
- ``run_files(path)`` / ``check_new_run(path, force)``: a new run refuses a directory that
  holds another run (a checkpoint or metrics.jsonl) unless ``force``;
- ``resume_checkpoint(path)``: the checkpoint a resumed run continues from — always the
  run directory's own ``checkpoint.safetensors`` (an old ``checkpoint.npz`` alone gets
  the command that converts it);
- ``RunLock(lock_path)``: an ``O_CREAT | O_EXCL`` lock file holding the owner's pid; a
  second trainer on the same directory is refused, a lock left by a killed process (its
  pid no longer alive) is taken over with a warning;
- ``remove_stale_temps(path)``: the temporary files a killed checkpoint save left behind
  (``checkpoint.save`` writes ``.NAME.XXXX.tmp`` next to ``NAME`` and renames it);
- ``repair_metrics(path)``: a torn last line in metrics.jsonl (a run killed mid-write)
  is cut off, with a warning;
- ``check_input_file(path, what)``: a path to read is a regular file (never opens a FIFO);
- ``open_run(out_dir, resume=..., force=...)``: all of the above, as a context manager
  that holds the lock for the whole run. Every problem is found when it is entered,
  before any training, and a refusal changes nothing on disk.

Every user-facing problem raises ``RunDirError`` (a ``ValueError``) naming the path; the
messages name parameters (``resume=True``, ``force=True``, ``out_dir``), never flags.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import stat
import sys
import tempfile

from ..core.checks import check_bool

CHECKPOINT, METRICS, OLD_CHECKPOINT = "checkpoint.safetensors", "metrics.jsonl", "checkpoint.npz"
RUN_FILES = (CHECKPOINT, METRICS, OLD_CHECKPOINT)  # .npz: a run of the old format
LOCK_NAME = "train.lock"


class RunDirError(ValueError):
    """An unusable path or a run directory that is taken: a user error naming the path."""


def warn(message: str) -> None:
    """One line on stderr: ``scratchformer: warning: message``."""
    print(f"scratchformer: warning: {message}", file=sys.stderr, flush=True)


# ---- paths to read ------------------------------------------------------------------------------
def check_input_file(path, what: str = "file") -> str:
    """``path`` as a str if it is an existing regular file; else ``RunDirError`` (a
    missing file: ``FileNotFoundError``). Uses ``os.stat`` only, so a FIFO or a device is
    refused without being opened (opening a FIFO would block forever)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except OSError as e:
        raise RunDirError(f"{what} {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise RunDirError(f"{what} {path} is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise RunDirError(f"{what} {path} is not a regular file (a FIFO, socket or device?)")
    if not os.access(path, os.R_OK):
        raise RunDirError(f"{what} {path} is not readable (permission denied)")
    return path


# ---- paths to write -----------------------------------------------------------------------------
def check_writable_dir(path, what: str = "output directory") -> str:
    """Create ``path`` (and its parents) if needed and write then delete a temporary file
    in it; ``RunDirError`` naming the path and the reason if any of that fails."""
    path = os.fspath(path)
    if path == "":
        path = "."
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"{what} {path} exists and is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise RunDirError(f"{what} {path} is not usable: {e.strerror or e}") from None
    return path


def check_output_file(path, what: str = "output file") -> str:
    """``path`` can be written: not a directory, and its directory is creatable and
    writable (checked with a temporary file; the file itself is not touched)."""
    path = os.fspath(path)
    if not path:
        raise RunDirError(f"{what}: empty path")
    if os.path.isdir(path):
        raise RunDirError(f"{what} {path} is a directory, expected a file path")
    if os.path.exists(path) and not os.path.isfile(path):
        raise RunDirError(f"{what} {path} exists and is not a regular file")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        check_writable_dir(directory, "directory")
    except RunDirError as e:
        raise RunDirError(f"{what} {path}: {e}") from None
    return path


def run_files(path) -> list[str]:
    """The files of a run (``RUN_FILES``) that directory ``path`` holds."""
    path = os.fspath(path)
    return [name for name in RUN_FILES if os.path.lexists(os.path.join(path, name))]


def _not_a_file(path: str) -> str | None:
    """What sits at ``path`` if something does and it is not a regular file (links followed)."""
    if not os.path.lexists(path):
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a broken symbolic link"
    except OSError as e:
        return f"unusable ({e.strerror or e})"
    if stat.S_ISREG(st.st_mode):
        return None
    return "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"


def check_run_files(path) -> None:
    """Each file a run keeps in directory ``path`` (``RUN_FILES`` and the lock) is absent
    or a regular file; else ``RunDirError`` naming it — found before training, not at the
    first checkpoint."""
    for name in (*RUN_FILES, LOCK_NAME):
        file = os.path.join(os.fspath(path), name)
        what = _not_a_file(file)
        if what:
            raise RunDirError(f"{file} is {what}, where a run keeps its {name}: move it away "
                              f"or choose another out_dir")


def check_new_run(path, force: bool = False) -> None:
    """A new run may not start in a directory that holds another run, unless ``force``."""
    held = run_files(path)
    if held and not force:
        convert = ""
        if OLD_CHECKPOINT in held and CHECKPOINT not in held:
            npz = os.path.join(os.fspath(path), OLD_CHECKPOINT)
            convert = f" (after converting its checkpoint: scratchformer convert-checkpoint {npz})"
        raise RunDirError(f"{path} holds another run ({', '.join(held)}): pass resume=True to "
                          f"continue it{convert}, force=True to start a new run there (erasing "
                          f"it), or choose another out_dir")


def resume_checkpoint(out_dir) -> str:
    """The checkpoint a run resumed in ``out_dir`` continues from: ``OUT/checkpoint.safetensors``,
    checked to be a readable regular file. Else ``RunDirError``: with the command that
    converts it when only an old ``checkpoint.npz`` is there; "no checkpoint to resume"
    otherwise. Creates nothing."""
    out_dir = os.fspath(out_dir) or "."
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise RunDirError(f"output directory {out_dir} exists and is not a directory: no run "
                          f"to resume there")
    ckpt = os.path.join(out_dir, CHECKPOINT)
    if os.path.lexists(ckpt):
        what = _not_a_file(ckpt)
        if what:
            raise RunDirError(f"{ckpt} is {what}, expected the checkpoint of the run to resume")
        if not os.access(ckpt, os.R_OK):
            raise RunDirError(f"{ckpt} is not readable (permission denied)")
        return ckpt
    npz = os.path.join(out_dir, OLD_CHECKPOINT)
    if os.path.lexists(npz):
        raise RunDirError(f"{out_dir} holds only a checkpoint of the old format ({npz}): convert "
                          f"it once with: scratchformer convert-checkpoint {npz}")
    raise RunDirError(f"no checkpoint to resume in {out_dir} (start a new run without resume=True)")


# ``checkpoint.save`` writes ``tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp")`` next to
# the checkpoint and renames it: ``.checkpoint.safetensors.k2j4x8qz.tmp`` (any checkpoint extension)
_TEMP = re.compile(r"^\.[^/]+\.(npz|safetensors)\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temps(directory, name: str | None = None) -> list[str]:
    """Delete the temp files an interrupted ``checkpoint.save`` left in ``directory``
    (``.NAME.XXXXXXXX.tmp``, NAME = ``name`` or any ``*.npz`` / ``*.safetensors``); returns
    the removed paths. Call it only while holding the directory's lock: a live writer's
    temp file looks the same."""
    pattern = f".{glob.escape(name)}.*.tmp" if name else ".*.tmp"
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(os.fspath(directory)), pattern)):
        if not name and not _TEMP.match(os.path.basename(tmp)):
            continue
        try:
            os.unlink(tmp)
            removed.append(tmp)
        except OSError:
            pass
    return removed


# ---- metrics.jsonl --------------------------------------------------------------------------------
def repair_metrics(path) -> int:
    """Cut a torn last line off the JSON-lines file ``path`` (a run killed mid-write) with
    a warning; returns the number of bytes removed. A bad line anywhere else is not a torn
    write: ``RunDirError`` naming the line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    keep, offset = len(data), 0
    for i, line in enumerate(lines):
        if line.strip():
            try:
                if not isinstance(json.loads(line), dict):
                    raise ValueError("not a record")
            except ValueError:
                if any(rest.strip() for rest in lines[i + 1:]):
                    raise RunDirError(f"{path}: line {i + 1} is not a JSON record (the file is "
                                      f"damaged beyond a torn last line)") from None
                keep = offset
                break
        offset += len(line) + 1
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
        warn(f"{path}: dropped a torn last line ({len(data) - keep} bytes; a run was killed "
             f"while writing it)")
    if keep and not data[:keep].endswith(b"\n"):
        with open(path, "ab") as f:
            f.write(b"\n")
    return len(data) - keep


# ---- the lock --------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunLock:
    """An exclusive lock file holding the owner's pid (``O_CREAT | O_EXCL``).

    ``acquire()`` refuses (``RunDirError``) while another live process holds it; a lock
    whose pid is gone (a killed trainer) is taken over with a warning. ``release()``
    removes it. A context manager: ``with RunLock(path): ...``.
    """

    def __init__(self, path, what: str = "run directory"):
        self.path, self.what, self.held = os.fspath(path), what, False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return True

    def owner(self) -> int | None:
        """The pid written in the lock file, or None if it is missing or unreadable."""
        try:
            with open(self.path, encoding="utf-8") as f:
                return int(f.read().strip() or "x")
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        for _ in range(3):
            try:
                if self._create():
                    self.held = True
                    return self
            except OSError as e:
                raise RunDirError(f"cannot create the lock {self.path}: {e.strerror or e}") from None
            pid = self.owner()
            if pid is not None and pid_alive(pid):
                raise RunDirError(f"{os.path.dirname(self.path) or '.'}: another trainer (pid "
                                  f"{pid}) is using this {self.what} (lock {self.path}); wait "
                                  f"for it to finish or choose another {self.what}")
            if pid is None and _younger_than(self.path, 2.0):
                continue  # being written right now by another process: look again
            warn(f"taking over the lock {self.path} left by "
                 f"{'a process that is gone' if pid is None else f'pid {pid}, which is gone'}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        raise RunDirError(f"cannot take the lock {self.path}: another process keeps creating it")

    def release(self) -> None:
        if self.held:
            self.held = False
            if self.owner() == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _younger_than(path, seconds: float) -> bool:
    import time

    try:
        return time.time() - os.stat(path).st_mtime < seconds
    except OSError:
        return False


# ---- all together -----------------------------------------------------------------------------------
@contextlib.contextmanager
def open_run(out_dir, *, resume: bool = False, force: bool = False):
    """Prepare ``out_dir`` for a run and hold its lock until the block ends.

    Everything is checked first, and a refusal (``RunDirError``) changes nothing on disk:
    ``resume`` needs the directory's own checkpoint (``resume_checkpoint``); the directory
    can be created and written; no directory or FIFO sits where a run keeps a file; a new
    run (``resume=False``) refuses a directory holding another run unless ``force``; a
    second trainer is refused by the lock ``OUT/train.lock``. Then, holding the lock: the
    temp files of an interrupted save are removed; a resumed run's metrics.jsonl loses a
    torn last line. A forced run's predecessor stays whole until the new run's first step
    (a run refused while it is being built erases nothing); then ``start_fresh`` removes
    all its files at once, so a checkpoint never outlives the log it goes with. Yields
    ``out_dir`` as a str.
    """
    resume, force = check_bool("resume", resume), check_bool("force", force)
    if resume and force:
        raise RunDirError("resume=True continues the run in out_dir and force=True erases it "
                          "to start a new one: pass one of them")
    out_dir = os.fspath(out_dir) or "."
    if resume:
        resume_checkpoint(out_dir)  # before anything is created
    created = not os.path.lexists(out_dir)
    out_dir = check_writable_dir(out_dir)
    check_run_files(out_dir)
    metrics = os.path.join(out_dir, METRICS)
    if resume and os.path.exists(metrics) and not os.access(metrics, os.W_OK):
        raise RunDirError(f"{metrics} is not writable (permission denied): a resumed run appends to it")
    if not resume:
        check_new_run(out_dir, force)
    try:
        with RunLock(os.path.join(out_dir, LOCK_NAME)):
            for tmp in remove_stale_temps(out_dir):
                warn(f"removed {tmp}, left by an interrupted checkpoint save")
            if resume:
                repair_metrics(metrics)
            yield out_dir
    except BaseException:
        if created and not os.listdir(out_dir):  # refused before its first file: leave no trace
            os.rmdir(out_dir)
        raise


def drop_records_after(path, step: int) -> None:
    """A resumed run's metrics.jsonl without what its interrupted predecessor logged after
    the checkpoint's ``step`` (a torn last line cut off first): the log continues exactly
    where the weights do. No file: nothing to do."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return
    repair_metrics(path)
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


RUN_OUTPUTS = ("snapshots.safetensors", "snapshots.json", "results.json", "report.html")


def start_fresh(out_dir) -> None:
    """The first step of a new run in ``out_dir``: every file of a run that was there
    (checkpoint, metrics, snapshots, results, report) removed, an empty metrics.jsonl made —
    nothing of an older run stays beside the new one's files."""
    out_dir = os.fspath(out_dir)
    for name in (*RUN_FILES, *RUN_OUTPUTS):
        path = os.path.join(out_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
    open(os.path.join(out_dir, METRICS), "w").close()


@contextlib.contextmanager
def open_output_file(path, *, force: bool = False):
    """The ``open_run`` rule for a run whose output is one file (``torch-train``):
    refuses an existing file unless ``force``, checks its directory is writable, holds
    ``PATH.lock`` and removes the temp files of an interrupted save of it."""
    path = check_output_file(path, "output file")
    if os.path.lexists(path) and not force:
        raise RunDirError(f"{path} exists (another run's checkpoint): pass force=True to replace "
                          f"it, or choose another path")
    with RunLock(path + ".lock", what="output file"):
        directory, name = os.path.split(os.path.abspath(path))
        for tmp in remove_stale_temps(directory, name):
            warn(f"removed {tmp}, left by an interrupted checkpoint save")
        yield path
