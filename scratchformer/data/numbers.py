"""A tiny translation task: English number words -> Spanish number words, word by word.

``"three thousand four hundred twenty-one" -> "tres mil cuatrocientos veintiuno"``.
Numbers 0 ... 999 999 are an unlimited, exactly known parallel corpus with the phenomena
of real translation in miniature:

- one word becomes two and two become one: "fifteen" -> "quince", "twenty-one" ->
  "veintiuno", "sixteen" -> "dieciséis";
- words appear from nowhere: "thirty-two" -> "treinta y dos";
- forms depend on the context: "one hundred" -> "cien" but "one hundred five" -> "ciento
  cinco"; "five hundred" -> "quinientos"; "one" -> "uno" at the end of a number but "un"
  before "mil" ("twenty-one thousand" -> "veintiún mil"), and "one thousand" -> "mil".

``english(n)`` / ``spanish(n)`` write a number, ``parse_english`` / ``parse_spanish`` read
it back (strictly: only the one canonical spelling), and ``NumbersTask``
(``get_task("numbers")``) is the toy task built on them.

English (US style, no "and"): ``zero``; ``one`` ... ``nineteen``; ``twenty``, ``twenty-one``
... ``ninety-nine``; ``N hundred [rest]``; ``N thousand [rest]`` -- "one hundred five",
"three thousand four hundred twenty-one", "one hundred thousand one".

Spanish (the Real Academia Española's rules, accents kept)::

    0 cero      1-15  uno dos tres cuatro cinco seis siete ocho nueve diez once doce
                      trece catorce quince
    16-19  dieciséis diecisiete dieciocho diecinueve           (one word each)
    20-29  veinte veintiuno veintidós veintitrés veinticuatro veinticinco veintiséis
           veintisiete veintiocho veintinueve                   (one word each)
    30-99  treinta, treinta y uno, ..., noventa y nueve         (tens "y" units)
    100    cien; 101-199 ciento uno ... ciento noventa y nueve
    200-900  doscientos trescientos cuatrocientos quinientos seiscientos setecientos
             ochocientos novecientos   (+ the rest: "quinientos cincuenta y cinco")
    1000   mil (never "un mil"); 2000 dos mil; 100 000 cien mil; 999 999 novecientos
           noventa y nueve mil novecientos noventa y nueve
    un/uno: a number ending in one keeps "uno" at the end ("mil uno", "veintiuno") but
           drops to "un" before "mil": 21 000 veintiún mil, 31 000 treinta y un mil,
           101 000 ciento un mil

Tokens are words: both texts are cut at spaces *and hyphens*, so "twenty-one" is the two
tokens "twenty", "one". The hyphen is not a token: it is fully predictable (it always and
only joins a tens word to a following units word), so it would only lengthen the
sequences; ``NumberVocab.decode`` puts it back ("twenty one" -> "twenty-one"). "y" is a
token (it is the word that appears from nowhere). Source and target share one word
vocabulary (the English words, then the Spanish ones: 30 + 51 symbols after
PAD/BOS/EOS), the same for both directions, as the other tasks share theirs.
"""

from __future__ import annotations

import numpy as np

from ..core.checks import check_int

from .taskbase import Task, check_option, member
from .vocab import Vocab

# ---- the grammar ------------------------------------------------------------------------
EN_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
           "fourteen fifteen sixteen seventeen eighteen nineteen").split()           # 0..19
EN_TENS = ("twenty thirty forty fifty sixty seventy eighty ninety").split()            # 20..90
EN_WORDS = tuple(EN_ONES + EN_TENS + ["hundred", "thousand"])

ES_0_29 = ("cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece "
           "catorce quince dieciséis diecisiete dieciocho diecinueve veinte veintiuno "
           "veintidós veintitrés veinticuatro veinticinco veintiséis veintisiete "
           "veintiocho veintinueve").split()                                          # 0..29
ES_TENS = ("treinta cuarenta cincuenta sesenta setenta ochenta noventa").split()      # 30..90
ES_HUNDREDS = ("ciento doscientos trescientos cuatrocientos quinientos seiscientos "
               "setecientos ochocientos novecientos").split()                          # 1..9 00
ES_APOCOPE = {"uno": "un", "veintiuno": "veintiún"}        # the last word before "mil"
ES_WORDS = tuple(ES_0_29 + ES_TENS + ES_HUNDREDS + ["cien", "y", "mil", "un", "veintiún"])

NUMBER_WORDS = EN_WORDS + ES_WORDS           # the joint vocabulary's symbols, in id order
MAX_NUMBER = 999_999
DIRECTIONS = ("en-es", "es-en")


def _en_below_1000(n: int) -> list[str]:
    h, r = divmod(n, 100)
    words = [EN_ONES[h], "hundred"] if h else []
    if r >= 20:
        words += [EN_TENS[r // 10 - 2]] + ([EN_ONES[r % 10]] if r % 10 else [])
    elif r or not h:
        words.append(EN_ONES[r])
    return words


def _es_below_1000(n: int) -> list[str]:
    h, r = divmod(n, 100)
    words = [] if not h else ["cien"] if n == 100 else [ES_HUNDREDS[h - 1]]
    if r >= 30:
        words += [ES_TENS[r // 10 - 3]] + (["y", ES_0_29[r % 10]] if r % 10 else [])
    elif r or not h:
        words.append(ES_0_29[r])
    return words


# token lists of 0..999, the building blocks of every number
_EN_1000 = [_en_below_1000(n) for n in range(1000)]
_ES_1000 = [_es_below_1000(n) for n in range(1000)]


def _check_number(n) -> int:
    return check_int("number", n, 0, MAX_NUMBER)


def english_tokens(n: int) -> list[str]:
    """21021 -> ["twenty", "one", "thousand", "twenty", "one"] (hyphens dropped)."""
    thousands, rest = divmod(_check_number(n), 1000)
    if not thousands:
        return list(_EN_1000[rest])
    return _EN_1000[thousands] + ["thousand"] + (_EN_1000[rest] if rest else [])


def spanish_tokens(n: int) -> list[str]:
    """21021 -> ["veintiún", "mil", "veintiuno"]."""
    thousands, rest = divmod(_check_number(n), 1000)
    if not thousands:
        return list(_ES_1000[rest])
    if thousands == 1:
        head = []                                                   # mil, never "un mil"
    else:
        head = list(_ES_1000[thousands])
        head[-1] = ES_APOCOPE.get(head[-1], head[-1])               # veintiún mil
    return head + ["mil"] + (_ES_1000[rest] if rest else [])


_EN_UNITS = frozenset(EN_ONES[1:10])
_EN_TENS_SET = frozenset(EN_TENS)


def join_words(tokens) -> str:
    """Tokens -> text, with the hyphen back between a tens and a units word:
    ["twenty", "one", "thousand"] -> "twenty-one thousand"."""
    out: list[str] = []
    for w in tokens:
        if out and w in _EN_UNITS and out[-1] in _EN_TENS_SET:
            out[-1] += "-" + w
        else:
            out.append(w)
    return " ".join(out)


def english(n: int) -> str:
    """3421 -> "three thousand four hundred twenty-one" (US style, no "and")."""
    return join_words(english_tokens(n))


def spanish(n: int) -> str:
    """3421 -> "tres mil cuatrocientos veintiuno"."""
    return " ".join(spanish_tokens(n))


def split_words(text: str) -> list[str]:
    """Text -> word tokens: lower case, cut at whitespace and hyphens."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return text.lower().replace("-", " ").split()


# ---- reading numbers back (strict: the canonical spelling only) --------------------------
_EN_VALUE = {**{w: i for i, w in enumerate(EN_ONES)},
             **{w: 20 + 10 * i for i, w in enumerate(EN_TENS)}}
_ES_VALUE = {**{w: i for i, w in enumerate(ES_0_29)},
             **{w: 30 + 10 * i for i, w in enumerate(ES_TENS)},
             **{w: 100 * (i + 1) for i, w in enumerate(ES_HUNDREDS)},
             "cien": 100, "un": 1, "veintiún": 21, "y": 0}


def _parse(tokens, value: dict, hundred: str | None, thousand: str, render, lang: str) -> int:
    lang = ("an " if lang[0] in "AEIOU" else "a ") + lang
    words = split_words(tokens) if isinstance(tokens, str) else list(tokens)
    total = current = 0
    for w in words:
        if w == hundred:
            current *= 100
        elif w == thousand:
            total, current = total + 1000 * (current or 1), 0
        elif w in value:
            current += value[w]
        else:
            raise ValueError(f"{w!r} is not {lang} number word")
    n = total + current
    if not words or n > MAX_NUMBER or render(n) != words:
        raise ValueError(f"{' '.join(words)!r} is not {lang} number in 0..{MAX_NUMBER} "
                         f"as this task writes it"
                         + (f" (did you mean {join_words(render(n))!r}?)"
                            if words and n <= MAX_NUMBER else ""))
    return n


def parse_english(tokens) -> int:
    """"twenty-one thousand" (or its tokens) -> 21000; ValueError unless canonical."""
    return _parse(tokens, _EN_VALUE, "hundred", "thousand", english_tokens, "English")


def parse_spanish(tokens) -> int:
    """"veintiún mil" (or its tokens) -> 21000; ValueError unless canonical."""
    return _parse(tokens, _ES_VALUE, None, "mil", spanish_tokens, "Spanish")


# ---- the vocabulary and the task ----------------------------------------------------------
class NumberVocab(Vocab):
    """The joint word vocabulary; text is cut at hyphens too, and ``decode`` puts the
    hyphen back between a tens and a units word, so ``encode(decode(ids)) == ids``."""

    def __init__(self):
        super().__init__(NUMBER_WORDS, sep=" ")

    def split(self, text: str) -> list[str]:
        return split_words(text)

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        return join_words(super().decode(ids, stop_at_eos).split())


# training draws a digit count uniformly, then a number uniformly among those with that many
# digits (0..9, 10..99, ..., 100 000..999 999): short numbers are seen as often as long ones.
# Half the draws are then rounded down to a multiple of 10**k, k uniform in 1..digits-1
# (345 678 -> 345 000): otherwise "one hundred" alone or "twenty-one thousand" with nothing
# after it ("cien", "veintiún mil") would hardly ever be seen.
ROUND_SHARE = 0.5
_CLASS_LO = np.array([0, 10, 100, 1_000, 10_000, 100_000], dtype=np.int64)
_CLASS_HI = np.array([10, 100, 1_000, 10_000, 100_000, 1_000_000], dtype=np.int64)


class NumbersTask(Task):
    """English number words -> Spanish number words (or back), word by word, 0..999 999.

    ``"three thousand four hundred twenty-one" -> "tres mil cuatrocientos veintiuno"``
    (``direction="en-es"``, the default; ``"es-en"`` swaps source and target). Training
    numbers: a digit count 1..6 uniformly, then a number with that many digits uniformly,
    and half of them rounded down to a random power of ten (``ROUND_SHARE``). Held-out
    sets are sets of *numbers*: a digit count uniformly among those with at least ten
    times ``n`` numbers (for n = 1000: 5 and 6 digits), then a number uniformly, not
    rounded; so at most a tenth of any digit count is held out, the short numbers all
    stay trainable, and no round number is held out more than by chance.
    """

    name = "numbers"
    defaults = {"direction": "en-es", "held_out_size": 1000, "held_out_seed": 12345}

    def _validate(self):
        o, t = self.options, self.name
        if o["direction"] not in DIRECTIONS:
            raise ValueError(f"{t} option direction must be one of {list(DIRECTIONS)}, "
                             f"got {o['direction']!r}")
        self._en_src = o["direction"] == "en-es"
        self._check_held_out_size(check_option(t, "held_out_size", o["held_out_size"], 0))
        check_option(t, "held_out_seed", o["held_out_seed"], 0)

    def _eligible_classes(self, n: int) -> np.ndarray:
        return np.flatnonzero(_CLASS_HI - _CLASS_LO >= 10 * n)

    def _check_held_out_size(self, n: int) -> None:
        if n and not len(self._eligible_classes(n)):
            raise ValueError(f"{self.name}: held_out_size={n} must be at most a tenth of the "
                             f"900000 six-digit numbers, i.e. <= 90000")

    def _build_vocab(self) -> Vocab:
        return NumberVocab()

    @property
    def max_src_len(self) -> int:
        return 9           # 777 777: "seven hundred seventy seven thousand seven hundred
                           # seventy seven" / "setecientos setenta y siete mil setecientos ..."

    @property
    def max_tgt_len(self) -> int:
        return 10          # 9 words + BOS or EOS

    def encode_input(self, text: str) -> list[int]:
        """Source-language text -> ids: "Twenty-one thousand" -> ["twenty", "one", ...]."""
        words = split_words(text)
        if not words:
            raise ValueError(f"input for task {self.name!r} is empty")
        lang, known = ("English", _EN_VALUE.keys() | {"hundred", "thousand"}) if self._en_src \
            else ("Spanish", _ES_VALUE.keys() | {"mil"})
        for pos, w in enumerate(words):
            if w not in known:
                hint = (" (US style: no 'and')" if w == "and"
                        else f" (direction is {self.options['direction']})")
                raise ValueError(f"{w!r} at position {pos} is not {'an' if self._en_src else 'a'} "
                                 f"{lang} number word{hint}")
        return self.vocab.encode(words)

    def number_of(self, src_ids) -> int:
        """The number a source row (ids, PAD-free) spells."""
        words = self.vocab.tokens(src_ids)
        return parse_english(words) if self._en_src else parse_spanish(words)

    # ---- generation ---------------------------------------------------------------
    def _draw_from(self, rng, n, classes):
        c = np.asarray(classes)[rng.integers(0, len(classes), size=n)]        # (n,)
        return rng.integers(_CLASS_LO[c], _CLASS_HI[c])                       # (n,) numbers

    def _draw(self, rng, n):
        c = rng.integers(0, len(_CLASS_LO), size=n)                           # (n,) digits - 1
        numbers = rng.integers(_CLASS_LO[c], _CLASS_HI[c])                    # (n,)
        k = rng.integers(1, np.maximum(c, 1) + 1)                             # (n,) in 1..digits-1
        rounded = (rng.random(n) < ROUND_SHARE) & (c > 0)
        return np.where(rounded, numbers - numbers % 10 ** k, numbers)

    def _pairs(self, numbers):
        stoi = self.vocab.stoi
        out = []
        for k in np.asarray(numbers).tolist():
            en = [stoi[w] for w in english_tokens(k)]
            es = [stoi[w] for w in spanish_tokens(k)]
            out.append((en, es) if self._en_src else (es, en))
        return out

    def _make_held_out(self, n, rng):
        classes = self._eligible_classes(n)
        chosen: list[int] = []
        seen: set = set()
        while len(chosen) < n:
            for k in self._draw_from(rng, n - len(chosen), classes).tolist():
                if k not in seen:
                    seen.add(k)
                    chosen.append(k)
        return self._pairs(np.array(chosen, dtype=np.int64))

    # ---- exclusion ------------------------------------------------------------------
    def _key(self, x, y):
        return self.number_of(x)

    def _excluded_changed(self):
        self._excluded_arr = np.array(sorted(self._excluded), dtype=np.int64)

    def _is_excluded(self, numbers):
        return member(numbers, self._excluded_arr)
