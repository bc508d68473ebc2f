"""Read a user's parallel corpus: one ``source<TAB>target`` pair per line.

File format (UTF-8)::

    # comments start with '#'; blank lines are skipped
    the house<TAB>la casa
    good morning<TAB>buenos días

Each line must hold exactly one tab and a non-empty side on each side of it;
anything else raises ValueError naming the file and the 1-based line number.
"""
from __future__ import annotations

import os


def read_pairs_tsv(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Return [(src, tgt), ...] from a tab-separated file, in file order.

    Leading and trailing spaces of each side are stripped (tabs inside a side are
    not allowed: a line has exactly one tab). A UTF-8 byte-order mark is ignored.
    """
    pairs: list[tuple[str, str]] = []
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 ({e})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        n_tabs = line.count("\t")
        if n_tabs != 1:
            what = "no tab" if n_tabs == 0 else f"{n_tabs} tabs"
            raise ValueError(f"{path}, line {lineno}: expected exactly one tab between source "
                             f"and target, got {what}: {line[:60]!r}")
        src, tgt = (side.strip() for side in line.split("\t"))
        if not src or not tgt:
            side = "source" if not src else "target"
            raise ValueError(f"{path}, line {lineno}: empty {side} side: {line[:60]!r}")
        pairs.append((src, tgt))
    return pairs
