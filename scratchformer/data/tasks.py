"""Toy sequence-to-sequence tasks: copy, reverse, shift and date normalization.

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
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import numpy as np

from scratchformer.data.vocab import BOS, EOS, N_SPECIALS, PAD, Vocab

Pair = tuple[list[int], list[int]]


def pad_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]):
    """[(x, y), ...] -> (src, tgt_in, tgt_out), int64 arrays padded with PAD.

    src (B, S) = x;  tgt_in (B, T) = [BOS] + y;  tgt_out (B, T) = y + [EOS];
    S = longest x, T = longest y + 1.  Used for held-out sets and the dates task.
    """
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one (src_ids, tgt_ids) pair, got 0")
    xs = [np.asarray(x, dtype=np.int64).reshape(-1) for x, _ in pairs]
    ys = [np.asarray(y, dtype=np.int64).reshape(-1) for _, y in pairs]
    lx = np.array([len(x) for x in xs])                               # (B,)
    ly = np.array([len(y) for y in ys])                               # (B,)
    B, S, T = len(pairs), max(int(lx.max()), 1), int(ly.max()) + 1
    src = np.full((B, S), PAD, dtype=np.int64)
    src[np.arange(S) < lx[:, None]] = np.concatenate(xs)              # fill row prefixes
    y = np.full((B, T - 1), PAD, dtype=np.int64)
    y[np.arange(T - 1) < ly[:, None]] = np.concatenate(ys)
    return src, *_teacher_forcing(y, ly)


def _teacher_forcing(y: np.ndarray, lengths: np.ndarray):
    """y (B, L) PAD-padded, lengths (B,) -> tgt_in = [BOS] + y, tgt_out = y + [EOS], (B, L+1)."""
    B, L = y.shape
    tgt_in = np.full((B, L + 1), PAD, dtype=np.int64)
    tgt_in[:, 0] = BOS
    tgt_in[:, 1:] = y
    tgt_out = np.full((B, L + 1), PAD, dtype=np.int64)
    tgt_out[:, :L] = y
    tgt_out[np.arange(B), lengths] = EOS
    return tgt_in, tgt_out


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """keys (B,) -> (B,) bool: is each key in ``sorted_keys``? (np.isin is ~40x slower here)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[idx] == keys


def _check_int(task: str, name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{task} option {name} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{task} option {name} must be {rng}, got {value}")
    return int(value)


class Task:
    """Common machinery: options, exclusion of held-out data, batching.

    Subclasses set ``name`` and ``defaults`` and implement ``_validate``, ``_draw``
    (a training sample without exclusion handling), ``_make_held_out`` and ``_key``.
    """

    name = "task"
    defaults: dict = {}
    max_redraws = 1000          # rounds of rejection before giving up (all excluded?)

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for task {self.name!r}; "
                            f"valid options: {sorted(self.defaults)}")
        options = {k: int(v) if isinstance(v, np.integer) else v for k, v in options.items()}
        self.options = {**self.defaults, **options}
        self._validate()
        self.vocab: Vocab = self._build_vocab()
        self._excluded: set = set()                        # keys of excluded examples
        self._excluded_arr = np.zeros(0, dtype=np.int64)   # the int keys, sorted, for _member
        self._held_out_cache: dict = {}
        n = self.options["held_out_size"]
        if n:
            self.held_out()                      # builds and excludes the default set

    # ---- the public interface ---------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def to_dict(self) -> dict:
        """JSON-able ``{"name": ..., "options": {...}}``: ``get_task(d["name"], **d["options"])``
        rebuilds the task, its vocabulary and its default held-out set."""
        return {"name": self.name, "options": json.loads(json.dumps(self.options))}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"

    def sample(self, rng: np.random.Generator, n: int) -> list[Pair]:
        """n training pairs ``(src_ids, tgt_ids)`` (lists of ints, no BOS/EOS), never held out."""
        return self._pairs(self._draw_excluding(rng, n))

    def batch(self, rng: np.random.Generator, batch_size: int):
        """A training batch ``(src (B, S), tgt_in (B, T), tgt_out (B, T))``, int64, PAD-padded."""
        return pad_batch(self.sample(rng, batch_size))

    def held_out(self, n: int | None = None, seed: int | None = None) -> list[Pair]:
        """n distinct evaluation pairs drawn from ``np.random.default_rng(seed)``.

        Defaults come from the options ``held_out_size`` and ``held_out_seed``.  The set is
        added to the exclusion set, so ``sample``/``batch`` never yield it afterwards.
        """
        n = self.options["held_out_size"] if n is None else n
        seed = self.options["held_out_seed"] if seed is None else seed
        n = _check_int(self.name, "held_out n", n, 0)
        seed = _check_int(self.name, "held_out seed", seed, 0)
        if (n, seed) not in self._held_out_cache:
            self._check_held_out_size(n)
            pairs = self._make_held_out(n, np.random.default_rng(seed)) if n else []
            self._held_out_cache[(n, seed)] = pairs
            self.exclude(pairs)
        return [(list(x), list(y)) for x, y in self._held_out_cache[(n, seed)]]

    def exclude(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        """Never yield these examples (or, for dates, these dates) from ``sample``/``batch``."""
        self._excluded.update(self._key(x, y) for x, y in pairs)
        self._excluded_changed()

    def encode_input(self, text: str) -> list[int]:
        """Command-line text -> source ids (no BOS/EOS)."""
        ids = self.vocab.encode(text.strip())
        if not ids:
            raise ValueError(f"input for task {self.name!r} is empty")
        return ids

    def decode_output(self, ids) -> str:
        """Generated ids -> text (PAD/BOS skipped, stops at EOS)."""
        return self.vocab.decode(ids)

    # ---- helpers shared by subclasses --------------------------------------------
    def _excluded_changed(self) -> None:
        pass

    def _draw_excluding(self, rng, n):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}")
        n = _check_int(self.name, "n (batch size)", n, 1)
        draw = self._draw(rng, n)
        bad = self._is_excluded(draw)
        for _ in range(self.max_redraws):
            if not bad.any():
                return draw
            idx = np.flatnonzero(bad)
            redraw = self._draw(rng, len(idx))
            draw[idx] = redraw
            bad[idx] = self._is_excluded(redraw)
        raise RuntimeError(f"task {self.name!r}: could not draw a non-excluded example in "
                           f"{self.max_redraws} tries; is (almost) everything excluded?")


# ============================== copy / reverse / shift ==============================

class SequenceTask(Task):
    """Random sequences of ``num_symbols`` symbols ("0", "1", ...), lengths uniform in
    ``[min_len, max_len]``; symbol i has id 3 + i.  Subclasses define the target rule
    ``_rule(src (B, L), lengths (B,)) -> y (B, L)``, vectorized over the batch."""

    defaults = {"num_symbols": 10, "min_len": 1, "max_len": 10,
                "held_out_size": 1000, "held_out_seed": 12345}

    def _validate(self):
        o, t = self.options, self.name
        K = _check_int(t, "num_symbols", o["num_symbols"], 1, 100_000)
        lo = _check_int(t, "min_len", o["min_len"], 1)
        hi = _check_int(t, "max_len", o["max_len"], 1, 4096)
        if lo > hi:
            raise ValueError(f"{t} options need min_len <= max_len, got {lo} > {hi}")
        self._check_held_out_size(_check_int(t, "held_out_size", o["held_out_size"], 0))
        _check_int(t, "held_out_seed", o["held_out_seed"], 0)
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
        return src, *_teacher_forcing(y, lengths)

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
            return _member(self._keys(src), self._excluded_arr)
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
        _check_int(self.name, "offset", self.options["offset"], -10**9, 10**9)

    def _rule(self, src, lengths):
        v = (src - N_SPECIALS + self.options["offset"]) % self.K + N_SPECIALS
        return np.where(src == PAD, PAD, v)


# =================================== dates ==========================================

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ORD_1_19 = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh "
             "twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
             "nineteenth").split()
ORDINAL_WORDS = tuple(_ORD_1_19 + ["twentieth"] + ["twenty-" + w for w in _ORD_1_19[:9]]
                      + ["thirtieth", "thirty-first"])                   # 1..31


def _th(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if day in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# name -> template; the examples are 2026-11-27, a Friday.  Only unambiguous formats:
# no 11/12/2026 (day or month first?) and no two-digit years.
FORMATS = {
    "d_month_y":         "{day} {month} {year}",            # 27 November 2026
    "month_d_y":         "{month} {day}, {year}",           # November 27, 2026
    "mon_d_y":           "{mon} {day}, {year}",             # Nov 27, 2026
    "d_mon_y":           "{day} {mon} {year}",              # 27 Nov 2026
    "month_dth_y":       "{month} {dth}, {year}",           # November 27th, 2026
    "dth_of_month_y":    "{dth} of {month} {year}",         # 27th of November 2026
    "words_of_month_y":  "{words} of {month} {year}",       # twenty-seventh of November 2026
    "y.m.d":             "{year}.{mm}.{dd}",                # 2026.11.27
    "dd-mon-y":          "{dd}-{mon}-{year}",               # 27-Nov-2026
    "weekday_d_month_y": "{weekday}, {day} {month} {year}", # Friday, 27 November 2026
    "weekday_month_d_y": "{weekday}, {month} {day}, {year}",  # Friday, November 27, 2026
    "wd_d_mon_y":        "{wd}, {day} {mon} {year}",        # Fri, 27 Nov 2026
}


def format_date(date: dt.date, fmt: str) -> str:
    """Write ``date`` in format ``fmt`` (a key of FORMATS)."""
    month, weekday = MONTHS[date.month - 1], WEEKDAYS[date.weekday()]
    return FORMATS[fmt].format(
        day=date.day, dd=f"{date.day:02d}", dth=_th(date.day),
        words=ORDINAL_WORDS[date.day - 1], month=month, mon=month[:3],
        mm=f"{date.month:02d}", year=date.year, weekday=weekday, wd=weekday[:3])


# every character any format or an ISO date can produce, sorted: the shared vocabulary
DATE_CHARS = tuple(sorted(set("".join(MONTHS + WEEKDAYS + ORDINAL_WORDS)
                              + "0123456789 ,.-" + "stndrdthof")))


class DatesTask(Task):
    """Dates as people write them -> ISO 8601, character by character.

    ``"Friday, 27 November 2026" -> "2026-11-27"``.  The formats are the keys of
    ``FORMATS`` (12, all unambiguous: no 11/12/2026, no two-digit years).  Dates are
    uniform over ``[min_year-01-01, max_year-12-31]``, the format uniform over ``formats``.
    Held-out sets are sets of *dates*: no rendering of a held-out date appears in training.
    """

    name = "dates"
    defaults = {"min_year": 1900, "max_year": 2099, "formats": None,
                "held_out_size": 1000, "held_out_seed": 12345}

    def _validate(self):
        o, t = self.options, self.name
        lo = _check_int(t, "min_year", o["min_year"], 1000, 9999)
        hi = _check_int(t, "max_year", o["max_year"], 1000, 9999)
        if lo > hi:
            raise ValueError(f"{t} options need min_year <= max_year, got {lo} > {hi}")
        fmts = list(FORMATS) if o["formats"] is None else o["formats"]
        if isinstance(fmts, str) or not fmts or any(f not in FORMATS for f in fmts):
            raise ValueError(f"{t} option formats must be a non-empty list of names from "
                             f"{list(FORMATS)}, got {o['formats']!r}")
        o["formats"] = list(fmts)
        self._fmts = list(fmts)
        self._lo = dt.date(lo, 1, 1).toordinal()
        self._hi = dt.date(hi, 12, 31).toordinal()
        self._check_held_out_size(_check_int(t, "held_out_size", o["held_out_size"], 0))
        _check_int(t, "held_out_seed", o["held_out_seed"], 0)

    def _check_held_out_size(self, n: int) -> None:
        days = self._hi - self._lo + 1
        if 10 * n > days:
            raise ValueError(f"{self.name}: held_out_size={n} must be at most a tenth of the "
                             f"{days} dates in {self.options['min_year']}.."
                             f"{self.options['max_year']}, i.e. <= {days // 10}")

    def _build_vocab(self) -> Vocab:
        return Vocab(DATE_CHARS, sep="")

    @property
    def max_src_len(self) -> int:
        if not hasattr(self, "_max_src_len"):      # every year holds the longest renderings
            year = dt.date(self.options["max_year"], 1, 1).toordinal()
            self._max_src_len = max(len(format_date(dt.date.fromordinal(d), f))
                                    for d in range(year, year + 365) for f in self._fmts)
        return self._max_src_len

    @property
    def max_tgt_len(self) -> int:
        return 11                                                    # "YYYY-MM-DD" + BOS/EOS

    def _draw(self, rng, n):
        days = rng.integers(self._lo, self._hi + 1, size=n)          # (n,) date ordinals
        fmts = rng.integers(0, len(self._fmts), size=n)              # (n,) format index
        return np.stack([days, fmts], axis=1)                        # (n, 2)

    def _pairs(self, draw):
        stoi, out = self.vocab.stoi, []
        for day, f in draw.tolist():
            d = dt.date.fromordinal(day)
            out.append(([stoi[c] for c in format_date(d, self._fmts[f])],
                        [stoi[c] for c in d.isoformat()]))
        return out

    def _make_held_out(self, n, rng):
        days = rng.choice(self._hi - self._lo + 1, size=n, replace=False) + self._lo
        fmts = rng.integers(0, len(self._fmts), size=n)
        return self._pairs(np.stack([days, fmts], axis=1))

    def _key(self, x, y):
        try:
            return dt.date.fromisoformat(self.vocab.decode(y)).toordinal()
        except ValueError:
            raise ValueError(f"dates: target {self.vocab.decode(y)!r} is not an ISO date "
                             f"YYYY-MM-DD") from None

    def _excluded_changed(self):
        self._excluded_arr = np.array(sorted(self._excluded), dtype=np.int64)

    def _is_excluded(self, draw):
        return _member(draw[:, 0], self._excluded_arr)


TASKS = {cls.name: cls for cls in (CopyTask, ReverseTask, ShiftTask, DatesTask)}


def get_task(name: str, **options) -> Task:
    """Build a task by name: ``get_task("copy", max_len=12)``.

    Options (all JSON-able; ``task.options`` holds them with defaults filled in):
      copy / reverse / shift: num_symbols=10, min_len=1, max_len=10,
                              held_out_size=1000, held_out_seed=12345; shift: offset=1
      dates: min_year=1900, max_year=2099, formats=None (all of FORMATS),
             held_out_size=1000, held_out_seed=12345
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {sorted(TASKS)}")
    return TASKS[name](**options)
