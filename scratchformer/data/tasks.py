"""Toy sequence-to-sequence tasks: copy, reverse, shift, date normalization and numbers.

Every task shares one interface (``task = get_task("reverse", max_len=12)``)::

    task.name, task.options          # rebuild with get_task(task.name, **task.options)
    task.vocab, task.vocab_size      # one shared Vocab for source and target
    task.sample(rng, n)              # [(src_ids, tgt_ids), ...]   plain lists, no BOS/EOS
    task.batch(rng, batch_size)      # (src, tgt_in, tgt_out)      int64, padded with PAD
    task.held_out(n, seed)           # a fixed evaluation set the samplers never yield
    task.encode_input(text), task.decode_output(ids)      # for the command line
    task.max_src_len, task.max_tgt_len                    # longest src row, tgt_in/out row

Batches follow the teacher-forcing layout (PAD = 0, BOS = 1, EOS = 2)::

    src     = x                  (B, S)     no BOS/EOS
    tgt_in  = [BOS] + y          (B, T)     decoder input
    tgt_out = y + [EOS]          (B, T)     what the decoder must predict, T = len(y) + 1

Held-out sets are disjoint from training data: building a task builds its default
held-out set (``held_out_size`` examples from ``held_out_seed``), and ``sample``/``batch``
redraw any example whose *source* (copy/reverse/shift) or *date* (dates: every format of
it) is in a held-out set.  Each ``held_out(n, seed)`` call with other arguments excludes
its set too, from then on, so ask for it before training.  Short sequences are too few to
hold out (length 1 has only ``num_symbols`` of them), so held-out sequences come only from
lengths L with ``num_symbols**L >= 10 * n``: at most a tenth of any length is kept from
training, and every length below stays fully trainable.

Where things live: this module holds copy, reverse and shift and the registry
(``TASKS``, ``get_task``); the shared ``Task`` machinery and ``pad_batch`` are in
``taskbase.py``, the date formats and ``DatesTask`` in ``dates.py``, the number grammars and
``NumbersTask`` (English number words -> Spanish) in ``numbers.py``.
"""

from __future__ import annotations

import numpy as np

from .dates import DatesTask
from .numbers import NumbersTask
from .taskbase import Task, check_option, member, teacher_forcing
from .vocab import N_SPECIALS, PAD, Vocab


# ============================== copy / reverse / shift ==============================

class SequenceTask(Task):
    """Random sequences of ``num_symbols`` symbols ("0", "1", ...), lengths uniform in
    ``[min_len, max_len]``; symbol i has id 3 + i.  Subclasses define the target rule
    ``_rule(src (B, L), lengths (B,)) -> y (B, L)``, vectorized over the batch."""

    defaults = {"num_symbols": 10, "min_len": 1, "max_len": 10,
                "held_out_size": 1000, "held_out_seed": 12345}

    def _validate(self):
        o, t = self.options, self.name
        K = check_option(t, "num_symbols", o["num_symbols"], 1, 100_000)
        lo = check_option(t, "min_len", o["min_len"], 1)
        hi = check_option(t, "max_len", o["max_len"], 1, 4096)
        if lo > hi:
            raise ValueError(f"{t} options need min_len <= max_len, got {lo} > {hi}")
        self._check_held_out_size(check_option(t, "held_out_size", o["held_out_size"], 0))
        check_option(t, "held_out_seed", o["held_out_seed"], 0)
        self.K, self.min_len, self.max_len = K, lo, hi
        # int64 keys sum(v_j * (K+1)**j), v = 0 for PAD, 1..K for symbols, when they fit
        self._int_keys = (K + 1) ** hi < 2 ** 63
        if self._int_keys:
            self._powers = (K + 1) ** np.arange(hi, dtype=np.int64)      # (max_len,)

    def _check_held_out_size(self, n: int) -> None:
        o = self.options
        if n and not self._eligible_lengths(n):
            raise ValueError(
                f"{self.name}: held_out_size={n} needs a length L <= max_len={o['max_len']} "
                f"with num_symbols**L >= 10 * {n} sequences, but num_symbols="
                f"{o['num_symbols']} gives at most {o['num_symbols'] ** o['max_len']}; lower "
                f"held_out_size (0 disables held-out data) or raise max_len")

    def _eligible_lengths(self, n: int) -> list[int]:
        o = self.options
        return [L for L in range(o["min_len"], o["max_len"] + 1)
                if o["num_symbols"] ** L >= 10 * n]

    def _build_vocab(self) -> Vocab:
        return Vocab([str(i) for i in range(self.options["num_symbols"])], sep=" ")

    @property
    def max_src_len(self) -> int:
        return self.max_len

    @property
    def max_tgt_len(self) -> int:
        """Length of tgt_in / tgt_out rows: the longest target + 1 (BOS or EOS)."""
        return self.max_len + 1

    def encode_input(self, text: str) -> list[int]:
        """``"3 1 4"`` (or ``"3,1,4"``) -> source ids."""
        return super().encode_input(text.replace(",", " "))

    def target(self, src_ids) -> list[int]:
        """The correct target ids for one source (the task's rule), e.g. for the CLI."""
        src = np.asarray(src_ids, dtype=np.int64).reshape(1, -1)               # (1, L)
        if src.size and (src.min() < N_SPECIALS or src.max() >= self.vocab_size):
            raise ValueError(f"src_ids must be symbol ids in [{N_SPECIALS}, "
                             f"{self.vocab_size}), got {src[0].tolist()}")
        return self._rule(src, np.array([src.shape[1]]))[0].tolist()

    # ---- generation ---------------------------------------------------------------
    def _random_rows(self, rng, lengths):
        """lengths (B,) -> src (B, max_len): uniform symbols, PAD after each length."""
        B = len(lengths)
        src = rng.integers(N_SPECIALS, N_SPECIALS + self.K, size=(B, self.max_len))
        src[np.arange(self.max_len) >= lengths[:, None]] = PAD             # (B, max_len)
        return src

    def _draw(self, rng, n):
        return self._random_rows(rng, rng.integers(self.min_len, self.max_len + 1, size=n))

    def batch(self, rng, batch_size):
        """Vectorized: (src (B, S), tgt_in (B, S+1), tgt_out (B, S+1)), S = longest row."""
        src = self._draw_excluding(rng, batch_size)                        # (B, max_len)
        lengths = (src != PAD).sum(axis=1)                                 # (B,)
        src = src[:, :lengths.max()]                                       # (B, S)
        y = self._rule(src, lengths)                                       # (B, S)
        return src, *teacher_forcing(y, lengths)

    def _pairs(self, src):
        lengths = (src != PAD).sum(axis=1)
        y = self._rule(src, lengths)
        return [(s[:L], t[:L]) for s, t, L in zip(src.tolist(), y.tolist(), lengths.tolist())]

    def _make_held_out(self, n, rng):
        eligible = np.array(self._eligible_lengths(n))
        rows, seen = [], set()
        while len(rows) < n:
            cand = self._random_rows(rng, rng.choice(eligible, size=n - len(rows)))
            for row, key in zip(cand, self._keys(cand).tolist()):
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
        return self._pairs(np.stack(rows))

    # ---- exclusion ------------------------------------------------------------------
    def _keys(self, src):
        """src (B, L<=max_len) PAD-padded -> one exact key per row (int64, or bytes)."""
        if self._int_keys:
            v = np.where(src == PAD, 0, src - (N_SPECIALS - 1))            # (B, L)
            return v @ self._powers[:src.shape[1]]                         # (B,)
        full = np.zeros((len(src), self.max_len), dtype=np.int64)
        full[:, :src.shape[1]] = src
        return np.array([r.tobytes() for r in full], dtype=object)

    def _key(self, x, y):
        x = np.asarray(x, dtype=np.int64).reshape(1, -1)
        if x.shape[1] > self.max_len:
            return ("too long", tuple(x[0].tolist()))     # can never be drawn
        return self._keys(x).tolist()[0]

    def _excluded_changed(self):
        if self._int_keys:
            ints = [k for k in self._excluded if isinstance(k, int)]
            self._excluded_arr = np.array(sorted(ints), dtype=np.int64)

    def _is_excluded(self, src):
        if not self._excluded:
            return np.zeros(len(src), dtype=bool)
        if self._int_keys:
            return member(self._keys(src), self._excluded_arr)
        return np.array([k in self._excluded for k in self._keys(src)], dtype=bool)


class CopyTask(SequenceTask):
    """Target = source: ``3 1 4 -> 3 1 4``."""
    name = "copy"

    def _rule(self, src, lengths):
        return src.copy()


class ReverseTask(SequenceTask):
    """Target = source reversed: ``3 1 4 -> 4 1 3``."""
    name = "reverse"

    def _rule(self, src, lengths):
        idx = lengths[:, None] - 1 - np.arange(src.shape[1])               # (B, L)
        y = np.take_along_axis(src, np.maximum(idx, 0), axis=1)
        return np.where(idx >= 0, y, PAD)


class ShiftTask(SequenceTask):
    """Each symbol moves ``offset`` places along the alphabet, wrapping around:
    ``y_j = (x_j + offset) mod num_symbols``; with 10 symbols ``3 1 9 -> 4 2 0``."""
    name = "shift"
    defaults = {**SequenceTask.defaults, "offset": 1}

    def _validate(self):
        super()._validate()
        check_option(self.name, "offset", self.options["offset"], -10**9, 10**9)

    def _rule(self, src, lengths):
        v = (src - N_SPECIALS + self.options["offset"]) % self.K + N_SPECIALS
        return np.where(src == PAD, PAD, v)


TASKS = {cls.name: cls for cls in (CopyTask, ReverseTask, ShiftTask, DatesTask, NumbersTask)}


def get_task(name: str, **options) -> Task:
    """Build a task by name: ``get_task("copy", max_len=12)``.

    Options (all JSON-able; ``task.options`` holds them with defaults filled in):
      copy / reverse / shift: num_symbols=10, min_len=1, max_len=10,
                              held_out_size=1000, held_out_seed=12345; shift: offset=1
      dates: min_year=1900, max_year=2099, formats=None (all of FORMATS),
             held_out_size=1000, held_out_seed=12345
      numbers: direction="en-es" (or "es-en"), held_out_size=1000, held_out_seed=12345
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {sorted(TASKS)}")
    return TASKS[name](**options)
