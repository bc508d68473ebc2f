"""The machinery every toy task shares: the ``Task`` base class (options, held-out sets and
their exclusion from training, batching) and ``pad_batch``, the teacher-forcing layout::

    src     = x                  (B, S)     no BOS/EOS
    tgt_in  = [BOS] + y          (B, T)     decoder input
    tgt_out = y + [EOS]          (B, T)     what the decoder must predict, T = len(y) + 1

The tasks themselves are in ``tasks.py`` (copy, reverse, shift; the registry ``get_task``)
and ``dates.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from ..core.checks import check_int

from .vocab import BOS, EOS, PAD, Vocab

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
    return src, *teacher_forcing(y, ly)


def teacher_forcing(y: np.ndarray, lengths: np.ndarray):
    """y (B, L) PAD-padded, lengths (B,) -> tgt_in = [BOS] + y, tgt_out = y + [EOS], (B, L+1)."""
    B, L = y.shape
    tgt_in = np.full((B, L + 1), PAD, dtype=np.int64)
    tgt_in[:, 0] = BOS
    tgt_in[:, 1:] = y
    tgt_out = np.full((B, L + 1), PAD, dtype=np.int64)
    tgt_out[:, :L] = y
    tgt_out[np.arange(B), lengths] = EOS
    return tgt_in, tgt_out


def member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """keys (B,) -> (B,) bool: is each key in ``sorted_keys``? (np.isin is ~40x slower here)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[idx] == keys


def check_option(task: str, name: str, value, lo: int, hi: int | None = None) -> int:
    """A task's integer option in [lo, hi], or an error naming the task and the option."""
    return check_int(f"{task} option {name}", value, lo, hi)


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
        n = check_option(self.name, "held_out n", n, 0)
        seed = check_option(self.name, "held_out seed", seed, 0)
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
        n = check_option(self.name, "n (batch size)", n, 1)
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
