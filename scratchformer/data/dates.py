"""Date normalization: dates as people write them -> ISO 8601, character by character.

``"Friday, 27 November 2026" -> "2026-11-27"``. ``FORMATS`` names the 12 renderings (all
unambiguous), ``format_date(date, fmt)`` writes one, and ``DatesTask`` (``get_task("dates")``)
is the toy task built on them. Everything here is also importable from
``scratchformer.data.tasks``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from .taskbase import Task, check_option, member
from .vocab import Vocab

# ---- the formats ------------------------------------------------------------------------
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


# ---- the task ---------------------------------------------------------------------------
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
        lo = check_option(t, "min_year", o["min_year"], 1000, 9999)
        hi = check_option(t, "max_year", o["max_year"], 1000, 9999)
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
        self._check_held_out_size(check_option(t, "held_out_size", o["held_out_size"], 0))
        check_option(t, "held_out_seed", o["held_out_seed"], 0)

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
        return member(draw[:, 0], self._excluded_arr)
