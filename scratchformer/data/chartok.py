"""Character-level tokenizer for the mini-GPT: one id per distinct character.

    tok = CharTokenizer.from_text(text)      # vocabulary = sorted(set(text))
    ids = tok.encode("First Citizen:")        # (T,) int64
    tok.decode(ids) == "First Citizen:"

No special tokens: a character language model needs none. The vocabulary is
saved inside checkpoints with ``to_json()`` / ``CharTokenizer.from_json(s)``.
"""
from __future__ import annotations

import json

import numpy as np


class CharTokenizer:
    """Maps characters to ids 0..V-1 in sorted (code point) order.

    ``chars``: the vocabulary, a string or iterable of distinct single characters.
    """

    def __init__(self, chars):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"chars must be single characters, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            dupes = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"chars must be distinct, got duplicates {dupes!r}")
        if not chars:
            raise ValueError("chars must hold at least one character, got an empty vocabulary")
        self.chars = "".join(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}
        # code point -> id lookup table for vectorised encoding; -1 marks unknown
        self._table = np.full(max(map(ord, chars)) + 1, -1, dtype=np.int64)
        self._table[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.int64)
        self._chars_arr = np.array(chars)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Vocabulary = every distinct character of ``text``, sorted."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {type(text).__name__} "
                             f"of length {len(text) if hasattr(text, '__len__') else '?'}")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """V, the number of distinct characters."""
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """str of length T -> (T,) int64 ids. Unknown characters raise ValueError
        naming them and their first positions."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        if not text:
            return np.zeros(0, dtype=np.int64)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)  # (T,)
        ids = np.full(codes.shape, -1, dtype=np.int64)
        inside = codes < len(self._table)
        ids[inside] = self._table[codes[inside]]                                          # (T,)
        unknown = np.flatnonzero(ids < 0)
        if unknown.size:
            first = {}
            for pos in unknown.tolist():
                first.setdefault(text[pos], pos)
            listed = ", ".join(f"{c!r} at position {p}" for c, p in list(first.items())[:10])
            more = "" if len(first) <= 10 else f" (and {len(first) - 10} more)"
            raise ValueError(f"{len(first)} character(s) not in the vocabulary of "
                             f"{self.vocab_size}: {listed}{more}")
        return ids

    def decode(self, ids) -> str:
        """(T,) ids (any integer array-like) -> str. Ids outside [0, V) raise ValueError."""
        ids = np.asarray(ids)
        if ids.size == 0:
            return ""
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"decode expects a 1-D integer array, got shape {ids.shape} "
                             f"dtype {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= self.vocab_size)]
        if bad.size:
            raise ValueError(f"token id {int(bad[0])} out of range for vocab_size "
                             f"{self.vocab_size}")
        return "".join(self._chars_arr[ids].tolist())

    def to_json(self) -> str:
        """JSON string {"type": "char", "chars": ...} for checkpoints."""
        return json.dumps({"type": "char", "chars": self.chars}, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "CharTokenizer":
        """Inverse of ``to_json``."""
        try:
            d = json.loads(s)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"from_json expects the string written by to_json: {e}") from None
        if not isinstance(d, dict) or d.get("type") != "char" or not isinstance(d.get("chars"), str):
            raise ValueError(f"from_json expects {{'type': 'char', 'chars': str}}, got {str(d)[:80]}")
        return cls(d["chars"])

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
