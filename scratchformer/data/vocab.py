"""A small token vocabulary: three special ids, then one id per symbol.

Token conventions shared by every built-in task (``core/tokens.py``)::

    id   0      1      2      3          4          ...   2 + len(symbols)
         <pad>  <bos>  <eos>  symbols[0] symbols[1] ...   symbols[-1]

A vocabulary is either *character-level* (``sep=""``: every symbol is one character,
``encode("2026-11-27")`` reads character by character) or *word-level*
(``sep=" "``: symbols are whitespace-free words, ``encode("3 1 4")`` splits on
whitespace).  ``decode`` joins symbols with ``sep``, so ``encode(decode(ids))``
gives ``ids`` back for any ids without specials.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

from ..core.tokens import BOS, EOS, PAD
SPECIALS = ("<pad>", "<bos>", "<eos>")
N_SPECIALS = len(SPECIALS)


class Vocab:
    """Map symbols (strings) to ids ``3, 4, ...`` and back; ids 0, 1, 2 are PAD, BOS, EOS.

    Args:
        symbols: the real symbols, in id order (``symbols[i]`` gets id ``3 + i``).
        sep: ``""`` for a character vocabulary (each symbol one character) or ``" "``
            for a word vocabulary (symbols without whitespace; text is split on whitespace).
    """

    pad_id, bos_id, eos_id = PAD, BOS, EOS

    def __init__(self, symbols: Sequence[str], sep: str = ""):
        if isinstance(symbols, str) or not isinstance(symbols, Iterable):
            raise TypeError(
                f"symbols must be a list of strings, got {type(symbols).__name__}")
        symbols = tuple(symbols)
        if sep not in ("", " "):
            raise ValueError(f"sep must be '' (characters) or ' ' (words), got {sep!r}")
        if not symbols:
            raise ValueError("symbols must not be empty")
        for i, s in enumerate(symbols):
            if not isinstance(s, str) or not s:
                raise ValueError(f"symbol {i} must be a non-empty string, got {s!r}")
            if s in SPECIALS:
                raise ValueError(f"symbol {i} ({s!r}) clashes with a special token {SPECIALS}")
            if sep == "" and len(s) != 1:
                raise ValueError(
                    f"symbol {i} ({s!r}) must be a single character when sep=''")
            if sep == " " and len(s.split()) != 1:
                raise ValueError(f"symbol {i} ({s!r}) must not contain whitespace when sep=' '")
        if len(set(symbols)) != len(symbols):
            dup = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"symbols must be unique, duplicated: {dup}")
        self.symbols = symbols
        self.sep = sep
        self.itos = SPECIALS + symbols                                   # id -> string
        self.stoi = {s: N_SPECIALS + i for i, s in enumerate(symbols)}   # symbol -> id

    def __len__(self) -> int:
        return N_SPECIALS + len(self.symbols)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and (self.symbols, self.sep) == (other.symbols, other.sep)

    def __repr__(self) -> str:
        shown = self.symbols if len(self.symbols) <= 12 else self.symbols[:12] + ("...",)
        return f"Vocab(size={len(self)}, sep={self.sep!r}, symbols={list(shown)})"

    # ---- text <-> ids -----------------------------------------------------------
    def split(self, text: str) -> list[str]:
        """Cut text into symbols: characters when ``sep == ""``, whitespace words otherwise."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return list(text) if self.sep == "" else text.split()

    def encode(self, text_or_symbols: str | Sequence[str]) -> list[int]:
        """Symbols -> ids (no BOS/EOS added). A str is cut with :meth:`split` first.

        Raises ValueError naming the first unknown symbol and its position.
        """
        items = (self.split(text_or_symbols) if isinstance(text_or_symbols, str)
                 else list(text_or_symbols))
        stoi = self.stoi
        try:
            return [stoi[s] for s in items]
        except (KeyError, TypeError):
            for pos, s in enumerate(items):
                if not isinstance(s, str) or s not in stoi:
                    raise ValueError(
                        f"unknown symbol {s!r} at position {pos}; the vocabulary has "
                        f"{len(self.symbols)} symbols: {self._symbols_preview()}") from None
            raise

    def decode(self, ids: Iterable[int], stop_at_eos: bool = True) -> str:
        """Ids -> text: PAD and BOS are skipped, decoding stops at the first EOS.

        ``ids`` is a 1-D sequence or array of ints; an id outside ``[0, len(self))``
        raises ValueError naming it and its position.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        out = []
        for pos, i in enumerate(ids.tolist()):
            if not 0 <= i < len(self):
                raise ValueError(
                    f"token id {i} at position {pos} out of range for vocab_size {len(self)}")
            if i == EOS and stop_at_eos:
                break
            if i >= N_SPECIALS:
                out.append(self.itos[i])
        return self.sep.join(out)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> one string per id, specials included (labels for attention plots)."""
        return [self.itos[i] for i in np.asarray(ids).tolist()]

    # ---- serialization (checkpoints store the vocabulary as JSON) ---------------
    def to_dict(self) -> dict:
        return {"symbols": list(self.symbols), "sep": self.sep}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        if not isinstance(d, dict) or "symbols" not in d:
            raise ValueError(f"expected a dict with key 'symbols' (and 'sep'), got {d!r:.80}")
        return cls(d["symbols"], sep=d.get("sep", ""))

    def to_json(self) -> str:
        """A JSON string: ``{"symbols": [...], "sep": ""}``."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> "Vocab":
        return cls.from_dict(json.loads(s))

    def _symbols_preview(self) -> str:
        if len(self.symbols) <= 40:
            return repr("".join(self.symbols)) if self.sep == "" else str(list(self.symbols))
        return str(list(self.symbols[:40]))[:-1] + ", ...]"
