"""Byte-pair encoding (Sennrich et al., 2016), written out in plain Python.

Why subwords for translation: characters make a Bible verse ~130 tokens long (attention
and the decoder loop cost grow with length), whole words leave a long tail of rare and
unseen forms (*begat*, *engendró*, every proper name) that a word model can only map to
``<unk>``. BPE starts from characters and greedily merges the most frequent adjacent
pair, so frequent words become one token and rare ones split into known pieces: nothing
is ever unknown except a character never seen in training.

One vocabulary is learned on both languages together ("joint BPE"): names and numbers
are spelled alike on both sides (*David*, *Jesús*/*Jesus*), and with one vocabulary the
source embedding, target embedding and output layer can be one tied matrix.

Pre-tokenization, as in SentencePiece: whitespace is normalised, every word or
punctuation mark keeps the space before it as the marker ``▁``::

    "And God said,"  ->  ["▁And", "▁God", "▁said", ","]

Merges never cross these pieces, and ``decode`` joins the pieces and turns ``▁`` back
into spaces, so ``decode(encode(t)) == " ".join(t.split())`` for every text whose
characters were seen in training.

Ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <unk>, then the symbols (alphabet, then merges).
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter
from collections.abc import Iterable

from ..core.checks import check_int
from ..core.tokens import BOS, EOS, PAD

UNK = 3  # after the three specials every vocabulary shares
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
SPACE = "\u2581"  # ▁ marks "a space came before this piece"
_PIECES = re.compile(r" ?\w+| ?[^\w\s]")


def pretokenize(text: str) -> list[str]:
    """Text -> words and punctuation marks, each with ``▁`` for its leading space."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return [p.replace(" ", SPACE) for p in _PIECES.findall(" " + " ".join(text.split()))]


def _pairs(symbols) -> Counter:
    return Counter(zip(symbols, symbols[1:]))


def _merge_word(symbols: tuple, a: str, b: str) -> tuple:
    """Replace every adjacent (a, b) in ``symbols`` by a+b, left to right."""
    out, i, n = [], 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == a and symbols[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


class BPETokenizer:
    """Joint BPE: ``encode(text) -> list[int]``, ``decode(ids) -> str``, JSON round trip.

    Build with :meth:`train`; ``merges`` is the ordered list of learned pairs (rank =
    priority when encoding), ``alphabet`` the characters seen in training.
    """

    pad_id, bos_id, eos_id, unk_id = PAD, BOS, EOS, UNK

    def __init__(self, alphabet: Iterable[str], merges: Iterable[tuple[str, str]]):
        alphabet = list(alphabet)
        merges = [tuple(m) for m in merges]
        for i, m in enumerate(merges):
            if len(m) != 2 or not all(isinstance(s, str) and s for s in m):
                raise ValueError(f"merge {i} must be a pair of non-empty strings, got {m!r}")
        self.alphabet, self.merges = alphabet, merges
        symbols = list(dict.fromkeys(alphabet + [a + b for a, b in merges]))
        self.itos = list(SPECIALS) + symbols
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.ranks = {m: r for r, m in enumerate(merges)}
        self._cache: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={len(self)}, merges={len(self.merges)})"

    # ---- learning ---------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2):
        """Learn merges until the vocabulary (specials + alphabet + merges) has
        ``vocab_size`` entries or no pair occurs ``min_frequency`` times.

        Counting is done on distinct pre-tokens weighted by frequency. Pair counts are
        updated incrementally (only words containing the merged pair are touched) and the
        best pair is found with a lazy max-heap; ties go to the lexicographically smallest
        pair, so training is deterministic.
        """
        check_int("vocab_size", vocab_size, 5)
        freq = Counter(p for t in texts for p in pretokenize(t))
        if not freq:
            raise ValueError("texts must contain at least one non-blank text")
        words = [tuple(w) for w in freq]
        counts = list(freq.values())
        alphabet = sorted({c for w in words for c in w})
        pair_count: Counter = Counter()
        where: dict[tuple, set] = {}  # pair -> indices of words that contain it
        for i, w in enumerate(words):
            for p, k in _pairs(w).items():
                pair_count[p] += k * counts[i]
                where.setdefault(p, set()).add(i)
        heap = [(-c, p) for p, c in pair_count.items()]
        heapq.heapify(heap)
        merges: list[tuple[str, str]] = []
        n_merges = vocab_size - len(SPECIALS) - len(alphabet)
        while len(merges) < n_merges and heap:
            negc, pair = heapq.heappop(heap)
            if pair_count.get(pair, 0) != -negc:  # stale entry: the count changed since
                continue
            if -negc < min_frequency:
                break
            merges.append(pair)
            changed = set()
            for i in where.pop(pair, ()):
                old, new = words[i], _merge_word(words[i], *pair)
                words[i] = new
                for p, k in _pairs(old).items():
                    pair_count[p] -= k * counts[i]
                    changed.add(p)
                    if p in where and p != pair:
                        where[p].discard(i)
                for p, k in _pairs(new).items():
                    pair_count[p] += k * counts[i]
                    where.setdefault(p, set()).add(i)
                    changed.add(p)
            for p in changed:
                c = pair_count[p]
                if c <= 0:
                    del pair_count[p]
                elif p != pair:
                    heapq.heappush(heap, (-c, p))
            pair_count.pop(pair, None)
        return cls(alphabet, merges)

    # ---- text <-> ids -------------------------------------------------------------------
    def _encode_piece(self, piece: str) -> list[int]:
        """Apply merges to one pre-token, lowest rank first (the order they were learned)."""
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        symbols = list(piece)
        ranks = self.ranks
        while len(symbols) > 1:
            best, at = None, -1
            for j in range(len(symbols) - 1):
                r = ranks.get((symbols[j], symbols[j + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, j
            if best is None:
                break
            a, b = symbols[at], symbols[at + 1]
            symbols = list(_merge_word(tuple(symbols), a, b))
        ids = [self.stoi.get(s, UNK) for s in symbols]
        self._cache[piece] = ids
        return ids

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Text -> ids; unseen characters become ``<unk>`` (id 3). Optional BOS/EOS."""
        ids = [i for p in pretokenize(text) for i in self._encode_piece(p)]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text: stops at the first EOS, skips PAD/BOS, ``<unk>`` prints as ``?``."""
        out = []
        n = len(self.itos)
        for pos, i in enumerate(ids):
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} at position {pos} out of range for "
                                 f"vocab_size {n}")
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append("?" if i == UNK else self.itos[i])
        return "".join(out).replace(SPACE, " ").strip()

    def pieces(self, text: str) -> list[str]:
        """The subword strings of ``text`` (for showing what the model sees)."""
        return [self.itos[i] for i in self.encode(text)]

    # ---- serialization (stored in checkpoints as JSON) ----------------------------------
    def to_dict(self) -> dict:
        return {"type": "bpe", "alphabet": self.alphabet, "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        if not isinstance(d, dict) or d.get("type") != "bpe" or "merges" not in d:
            raise ValueError(f"expected a dict with type 'bpe', 'alphabet' and 'merges', "
                             f"got {str(d)[:80]}")
        return cls(d["alphabet"], d["merges"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "BPETokenizer":
        return cls.from_dict(json.loads(s))
