"""English–Spanish Bible verse pairs read straight from SWORD "zText" modules.

The Debian packages ``sword-text-kjv`` (King James Version, 1769 text of the 1611
translation) and ``sword-text-sparv`` (Reina-Valera 1909) install two public-domain
modules that share the KJV versification, so verse *i* of one is verse *i* of the
other. This module reads them with the standard library only (``struct`` + ``zlib``)::

    apt-get install -y sword-text-kjv sword-text-sparv

    from scratchformer.data.sword import bible_pairs, split_by_book
    pairs = bible_pairs()                    # [(book, chapter, verse, english, spanish)]
    train, val, test = split_by_book(pairs)  # whole books held out, no leakage

zText layout (one set of files per testament, ``ot`` and ``nt``)::

    <t>.bzs  12-byte records <III : (offset, compressed size, uncompressed size)
             of one zlib block inside <t>.bzz
    <t>.bzv  10-byte records <IIH : (block, offset, size), one per index entry;
             the entry's text is block[offset : offset + size] (UTF-8 OSIS markup)
    <t>.bzz  the concatenated zlib blocks

The index interleaves header entries with verses, in this order:
entry 0 module heading, entry 1 testament heading, then for every book a book
heading followed, for every chapter, by a chapter heading and the chapter's verses.
``verse_refs`` rebuilds that map from the KJV chapter/verse table at the bottom of
this file (SWORD's ``canon.h``: 39 + 27 books, 1189 chapters, 31102 verses).
"""
from __future__ import annotations

import html
import os
import re
import struct
import zlib
from collections import Counter

DEFAULT_ROOT = "/usr/share/sword/modules/texts/ztext"
KJV_MODULE = "engKJV2006eb"   # installed by the Debian package sword-text-kjv
RV_MODULE = "spaRV1909eb"     # installed by the Debian package sword-text-sparv
APT_COMMAND = "apt-get install -y sword-text-kjv sword-text-sparv"

# Default held-out books for split_by_book: one OT narrative, one OT prophet, one
# gospel and one epistle each, so both splits see every register of the corpus.
DEFAULT_TEST_BOOKS = ("Ruth", "Jonah", "Mark", "Jas")
DEFAULT_VAL_BOOKS = ("Esth", "Joel", "Gal", "1John")


# ----------------------------------------------------------------------------- reading
def read_ztext(module_dir: str, testament: str = "ot") -> list[str]:
    """Every index entry of one testament of a zText module, as UTF-8 strings.

    Returns one string per ``.bzv`` record (headers included, ``""`` for empty
    entries), so ``len(result)`` is the size of the versification index:
    24115 for the KJV Old Testament, 8246 for the New.
    """
    if testament not in ("ot", "nt"):
        raise ValueError(f"testament must be 'ot' or 'nt', got {testament!r}")
    base = os.path.join(module_dir, testament)
    paths = [base + ext for ext in (".bzs", ".bzv", ".bzz")]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"zText file {p} not found (module_dir={module_dir!r})")
    with open(paths[0], "rb") as f:
        bzs = f.read()
    with open(paths[1], "rb") as f:
        bzv = f.read()
    with open(paths[2], "rb") as f:
        bzz = f.read()
    if len(bzs) % 12 or len(bzv) % 10:
        raise ValueError(f"{base}: .bzs size {len(bzs)} must be a multiple of 12 and "
                         f".bzv size {len(bzv)} a multiple of 10")
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs), 12)]
    cache: dict[int, bytes] = {}   # block number -> decompressed bytes

    def block(b: int) -> bytes:
        if b not in cache:
            if b >= len(blocks):
                raise ValueError(f"{base}.bzv refers to block {b}, but .bzs has {len(blocks)}")
            offset, csize, usize = blocks[b]
            data = zlib.decompress(bzz[offset:offset + csize])
            if len(data) != usize:
                raise ValueError(f"{base}.bzz block {b}: decompressed {len(data)} bytes, "
                                 f".bzs says {usize}")
            cache[b] = data
        return cache[b]

    entries = []
    for i in range(0, len(bzv), 10):
        b, offset, size = struct.unpack_from("<IIH", bzv, i)
        entries.append(block(b)[offset:offset + size].decode("utf-8") if size else "")
    return entries


def books(testament: str | None = None) -> list[str]:
    """OSIS book ids in canonical order: 39 ("Gen".."Mal") for "ot", 27 for "nt", 66 for None."""
    table = {"ot": _OT_CHAPTER_VERSES, "nt": _NT_CHAPTER_VERSES,
             None: _OT_CHAPTER_VERSES + _NT_CHAPTER_VERSES}
    if testament not in table:
        raise ValueError(f"testament must be 'ot', 'nt' or None, got {testament!r}")
    return [name for name, _ in table[testament]]


def verse_refs(testament: str, table=None) -> list[tuple[str, int, int] | None]:
    """Map each index entry of a KJV-versified testament to (book, chapter, verse).

    Header entries (module, testament, book and chapter headings) map to None.
    ``table`` is a sequence of (book, "n1 n2 ...") rows, verses per chapter; it
    defaults to the KJV table of this module (tests pass tiny ones).
    """
    if table is None:
        if testament not in ("ot", "nt"):
            raise ValueError(f"testament must be 'ot' or 'nt', got {testament!r}")
        table = _OT_CHAPTER_VERSES if testament == "ot" else _NT_CHAPTER_VERSES
    refs: list[tuple[str, int, int] | None] = [None, None]      # module, testament
    for book, counts in table:
        refs.append(None)                                        # book heading
        for chapter, n in enumerate(map(int, counts.split()), start=1):
            refs.append(None)                                    # chapter heading
            refs.extend((book, chapter, v) for v in range(1, n + 1))
    return refs


# ----------------------------------------------------------------------------- markup
_NOTE = re.compile(r"<note\b[^>]*/>|<note\b[^>]*>.*?</note>", re.S)
_TITLE = re.compile(r"<title\b(?![^>]*canonical=\"true\")[^>]*>.*?</title>", re.S)
_USFM = re.compile(r"\\\+?[a-z]+\d?\*?")         # leftovers such as \nd and \+nd*
_INLINE = re.compile(r"</?(?:w|transChange|divineName|seg|foreign|q|hi|rdg|name)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_GBF = re.compile(r"<[A-Z][A-Za-z]{0,3}\d*>")        # GBF tags, e.g. <FR> <Fr> <CM> <RF>
_THML_NOTE = re.compile(r"<RF>.*?<Rf>", re.S)        # GBF footnote (content dropped)
# Two inline elements written without a space between them: "mes</transChange><w>cuarto".
_GLUED = re.compile(r"(\w+)(</(?:w|transChange)>)(<(?:w|transChange)\b[^>]*>)(?=(\w+)(</)?)")
_ENCLITICS = {"lo", "la", "le", "los", "las", "les", "me", "te", "se", "nos", "os"}
_NOT_VERBS = {"que", "y", "no", "como", "os", "ya", "de", "es", "ella", "ellos", "éste",
              "cuánto", "jehová", "dios", "josué", "gentes", "estaban"}


def _unglue(m: re.Match) -> str:
    """Put a space between two glued inline elements, except for Spanish enclitic
    pronouns written as their own element after a verb ("oyéndo"+"lo" -> "oyéndolo")."""
    before, close, open_, after, ends = m.groups()
    word = before.lower()
    verbal = (re.search(r"(?:r|d|z|ndo)$", word) or re.search(r"[áéíóú]", word)
              or word in {"di", "dí", "da", "vi", "haz"})
    sep = "" if (ends and after in _ENCLITICS and verbal and word not in _NOT_VERBS) else " "
    return before + close + sep + open_


def strip_markup(text: str) -> str:
    """Plain text of one OSIS / ThML / GBF verse entry.

    Drops notes with their content, non-canonical titles (book titles, the Hebrew
    acrostic letters of Psalm 119; canonical Psalm superscriptions are scripture and
    are kept), every other tag (keeping its content), USFM leftovers (``\\nd``), the
    pilcrow ``¶``; unescapes entities and normalises whitespace.
    """
    text = _NOTE.sub(" ", text)
    text = _THML_NOTE.sub(" ", text)
    text = _TITLE.sub(" ", text)
    text = _USFM.sub("", text)
    text = _GLUED.sub(_unglue, text)
    text = _INLINE.sub("", text)      # inline markup joins its neighbours as written
    text = _GBF.sub("", text)
    text = _TAG.sub(" ", text)        # structural markup (<l/>, <div/>, <chapter/>) is a break
    text = html.unescape(text).replace("¶", " ")
    text = " ".join(text.split())
    return re.sub(r" ([,;:.!?)])", r"\1", text)


_CAPS_RUN = re.compile(r"(?<!\w)[^\W\d_a-zß-ÿ]+(?:[ ]+[^\W\d_a-zß-ÿ]+)*(?!\w)")


def casing_table(texts) -> dict[str, str]:
    """Most frequent mid-sentence spelling of every word, keyed by its lowercase form.

    Used by ``fix_drop_cap`` to restore "JEHOVÁ" as "Jehová" but "FUÉ" as "fué".
    """
    counts: dict[str, Counter] = {}
    for text in texts:
        for m in re.finditer(r"(?<=[\w,;] )\w+", text):    # preceded by a word, not ". "
            w = m.group(0)
            if not (w.isupper() and len(w) > 1):
                counts.setdefault(w.lower(), Counter())[w] += 1
    return {k: c.most_common(1)[0][0] for k, c in counts.items()}


def fix_drop_cap(text: str, casing: dict[str, str] | None = None) -> str:
    """Undo the drop-cap capitals that open a chapter: "EN el principio" -> "En el principio".

    The first run of upper-case words that contains a word of two or more letters is
    rewritten: its first word capitalised, the others in their usual spelling from
    ``casing`` (lowercase when unknown). "Y JEHOVÁ dijo" -> "Y Jehová dijo".
    """
    casing = casing or {}
    for m in _CAPS_RUN.finditer(text):
        words = m.group(0).split(" ")
        if not any(len(w) > 1 for w in words):
            continue
        first = words[0][0] + words[0][1:].lower()
        rest = [casing.get(w.lower(), w.lower()) for w in words[1:]]
        return text[:m.start()] + " ".join([first] + rest) + text[m.end():]
    return text


# Psalm 119's acrostic letters are titles in the KJV module but verse text in RV1909.
_ACROSTIC = re.compile(r"^(?:ALEPH|BETH|GIMEL|DALETH|HE|VAU|ZAIN|CHETH|TETH|JOD|CAPH|LAMED|"
                       r"MEM|NUN|SAMECH|AIN|PE|TZADDI|COPH|RESH|SCHIN|SIN|TAU)\b\.?\s*")


# ----------------------------------------------------------------------------- corpus
def _raw_verses(module_dir: str) -> list[tuple[str, int, int, str]]:
    """(book, chapter, verse, raw OSIS) for every verse of a KJV-versified module."""
    out = []
    for testament in ("ot", "nt"):
        entries = read_ztext(module_dir, testament)
        refs = verse_refs(testament)
        if len(entries) != len(refs):
            raise ValueError(f"{module_dir}/{testament}: {len(entries)} index entries, the KJV "
                             f"versification expects {len(refs)}; is the module KJV-versified?")
        out.extend((*ref, e) for ref, e in zip(refs, entries) if ref is not None)
    return out


def _clean(raw: list[tuple[str, int, int, str]], drop_caps: bool) -> list[tuple[str, int, int, str]]:
    out = [(b, c, v, strip_markup(t)) for b, c, v, t in raw]
    if drop_caps:
        casing = casing_table(t for _, _, v, t in out if v != 1)
        for i, (b, c, v, t) in enumerate(out):
            if b == "Ps" and c == 119:
                t = _ACROSTIC.sub("", t)
            if v == 1 or (b == "Ps" and c == 119 and v % 8 == 1):
                t = fix_drop_cap(t, casing)
            out[i] = (b, c, v, t)
    return out


def bible_verses(module_dir: str, drop_caps: bool = False) -> list[tuple[str, int, int, str]]:
    """All verses of a KJV-versified zText module as (book, chapter, verse, text).

    Markup is stripped with ``strip_markup``; with ``drop_caps=True`` the first verse
    of each chapter also goes through ``fix_drop_cap`` (the Reina-Valera prints each
    chapter's first word in capitals). Empty verses are kept as "".
    """
    return _clean(_raw_verses(module_dir), drop_caps)


def strongs_numbers(raw: str) -> frozenset[str]:
    """Strong's numbers tagged in one raw verse (notes excluded), zero-padding removed:
    ``<w lemma="strong:H0430 strong:H1254">`` -> {"H430", "H1254"}."""
    text = _NOTE.sub(" ", raw)
    return frozenset(f"{m.group(1)}{int(m.group(2))}"
                     for m in re.finditer(r"strong:([HG])0*(\d+)", text))


def overlap(a: frozenset, b: frozenset) -> float:
    """Jaccard overlap |a & b| / |a | b| of two verses' Strong's numbers (1.0 if both empty)."""
    return len(a & b) / len(a | b) if (a or b) else 1.0


def bible_pairs(kjv_dir: str | None = None, rv_dir: str | None = None,
                min_overlap: float = 0.2) -> list[tuple[str, int, int, str, str]]:
    """Aligned (book, chapter, verse, english, spanish) pairs, both sides non-empty.

    English: King James Version (engKJV2006eb); Spanish: Reina-Valera 1909
    (spaRV1909eb). Directories default to the Debian install location
    ``/usr/share/sword/modules/texts/ztext/<module>``; a missing module raises
    FileNotFoundError naming the apt-get command.

    Both modules are filed under the KJV versification, but where the Spanish
    numbering differs (Job 39-41, Jonah 1-2, Hosea 11-12, ...) its verses sit one
    slot off. Both modules tag words with Strong's numbers, so alignment is checked:
    with ``o = overlap(strongs_en, strongs_es)``, a chapter is dropped whole when a
    verse of it is empty on one side or two or more verses have ``o < min_overlap``;
    elsewhere a single verse with ``o < min_overlap`` is dropped. ``min_overlap=0``
    keeps every non-empty pair. Default: about 30 600 pairs.
    """
    raw_en = _raw_verses(_module_dir(kjv_dir, KJV_MODULE))
    raw_es = _raw_verses(_module_dir(rv_dir, RV_MODULE))
    en, es = _clean(raw_en, drop_caps=False), _clean(raw_es, drop_caps=True)
    low = [overlap(strongs_numbers(a[3]), strongs_numbers(b[3])) < min_overlap
           for a, b in zip(raw_en, raw_es)]
    bad_chapters: Counter = Counter()
    for (b, c, _, e), (_, _, _, s), is_low in zip(en, es, low):
        bad_chapters[(b, c)] += 2 if (not e) != (not s) else int(is_low)
    pairs = []
    for (b, c, v, e), (_, _, _, s), is_low in zip(en, es, low):
        if e and s and not is_low and bad_chapters[(b, c)] < 2:
            pairs.append((b, c, v, e, s))
    return pairs


def _module_dir(given: str | None, name: str) -> str:
    path = given if given is not None else os.path.join(DEFAULT_ROOT, name)
    if not os.path.isfile(os.path.join(path, "ot.bzv")):
        raise FileNotFoundError(
            f"SWORD module {name} not found at {path}. Install the public-domain Bibles "
            f"with:  {APT_COMMAND}   (or pass the module directory explicitly)")
    return path


def split_by_book(pairs, test_books=DEFAULT_TEST_BOOKS, val_books=DEFAULT_VAL_BOOKS):
    """Split verse tuples (book first) into (train, val, test) by whole books.

    Every verse of a test book is in ``test``, of a validation book in ``val``; the
    rest is ``train``, so no test verse (nor a neighbouring verse of the same book)
    is ever trained on. Defaults: test = Ruth, Jonah, Mark, James; validation =
    Esther, Joel, Galatians, 1 John (OSIS ids, see ``books()``).
    """
    test_set, val_set = set(test_books), set(val_books)
    known = set(books())
    for name, given in (("test_books", test_set), ("val_books", val_set)):
        unknown = sorted(given - known)
        if unknown:
            raise ValueError(f"{name}: unknown book id(s) {unknown}; expected OSIS ids such "
                             f"as 'Gen', 'Mark', '1John'")
    both = sorted(test_set & val_set)
    if both:
        raise ValueError(f"book(s) {both} are in both test_books and val_books")
    train, val, test = [], [], []
    for p in pairs:
        (test if p[0] in test_set else val if p[0] in val_set else train).append(p)
    return train, val, test


# ----------------------------------------------------------------------------- data
# KJV versification (SWORD canon.h): verses per chapter, one row per book, OSIS ids.
# Measured from the engKJV2006eb chapter headings and identical in spaRV1909eb.
_OT_CHAPTER_VERSES = (
    ("Gen", "31 25 24 26 32 22 24 22 29 32 32 20 18 24 21 16 27 33 38 18 34 24 20 67 34 35 "
     "46 22 35 43 55 32 20 31 29 43 36 30 23 23 57 38 34 34 28 34 31 22 33 26"),
    ("Exod", "22 25 22 31 23 30 25 32 35 29 10 51 22 31 27 36 16 27 25 26 36 31 33 18 40 37 "
     "21 43 46 38 18 35 23 35 35 38 29 31 43 38"),
    ("Lev", "17 16 17 35 19 30 38 36 24 20 47 8 59 57 33 34 16 30 37 27 24 33 44 23 55 46 "
     "34"),
    ("Num", "54 34 51 49 31 27 89 26 23 36 35 16 33 45 41 50 13 32 22 29 35 41 30 25 18 65 "
     "23 31 40 16 54 42 56 29 34 13"),
    ("Deut", "46 37 29 49 33 25 26 20 29 22 32 32 18 29 23 22 20 22 21 20 23 30 25 22 19 19 "
     "26 68 29 20 30 52 29 12"),
    ("Josh", "18 24 17 24 15 27 26 35 27 43 23 24 33 15 63 10 18 28 51 9 45 34 16 33"),
    ("Judg", "36 23 31 24 31 40 25 35 57 18 40 15 25 20 20 31 13 31 30 48 25"),
    ("Ruth", "22 23 18 22"),
    ("1Sam", "28 36 21 22 12 21 17 22 27 27 15 25 23 52 35 23 58 30 24 42 15 23 29 22 44 25 "
     "12 25 11 31 13"),
    ("2Sam", "27 32 39 12 25 23 29 18 13 19 27 31 39 33 37 23 29 33 43 26 22 51 39 25"),
    ("1Kgs", "53 46 28 34 18 38 51 66 28 29 43 33 34 31 34 34 24 46 21 43 29 53"),
    ("2Kgs", "18 25 27 44 27 33 20 29 37 36 21 21 25 29 38 20 41 37 37 21 26 20 37 20 30"),
    ("1Chr", "54 55 24 43 26 81 40 40 44 14 47 40 14 17 29 43 27 17 19 8 30 19 32 31 31 32 "
     "34 21 30"),
    ("2Chr", "17 18 17 22 14 42 22 18 31 19 23 16 22 15 19 14 19 34 11 37 20 12 21 27 28 23 "
     "9 27 36 27 21 33 25 33 27 23"),
    ("Ezra", "11 70 13 24 17 22 28 36 15 44"),
    ("Neh", "11 20 32 23 19 19 73 18 38 39 36 47 31"),
    ("Esth", "22 23 15 17 14 14 10 17 32 3"),
    ("Job", "22 13 26 21 27 30 21 22 35 22 20 25 28 22 35 22 16 21 29 29 34 30 17 25 6 14 "
     "23 28 25 31 40 22 33 37 16 33 24 41 30 24 34 17"),
    ("Ps", "6 12 8 8 12 10 17 9 20 18 7 8 6 7 5 11 15 50 14 9 13 31 6 10 22 12 14 9 11 12 "
     "24 11 22 22 28 12 40 22 13 17 13 11 5 26 17 11 9 14 20 23 19 9 6 7 23 13 11 11 "
     "17 12 8 12 11 10 13 20 7 35 36 5 24 20 28 23 10 12 20 72 13 19 16 8 18 12 13 "
     "17 7 18 52 17 16 15 5 23 11 13 12 9 9 5 8 28 22 35 45 48 43 13 31 7 10 10 9 8 "
     "18 19 2 29 176 7 8 9 4 8 5 6 5 6 8 8 3 18 3 3 21 26 9 8 24 13 10 7 12 15 21 10 "
     "20 14 9 6"),
    ("Prov", "33 22 35 27 23 35 27 36 18 32 31 28 25 35 33 33 28 24 29 30 31 29 35 34 28 28 "
     "27 28 27 33 31"),
    ("Eccl", "18 26 22 16 20 12 29 17 18 20 10 14"),
    ("Song", "17 17 11 16 16 13 13 14"),
    ("Isa", "31 22 26 6 30 13 25 22 21 34 16 6 22 32 9 14 14 7 25 6 17 25 18 23 12 21 13 29 "
     "24 33 9 20 24 17 10 22 38 22 8 31 29 25 28 28 25 13 15 22 26 11 23 15 12 17 13 "
     "12 21 14 21 22 11 12 19 12 25 24"),
    ("Jer", "19 37 25 31 31 30 34 22 26 25 23 17 27 22 21 21 27 23 15 18 14 30 40 10 38 24 "
     "22 17 32 24 40 44 26 22 19 32 21 28 18 16 18 22 13 30 5 28 7 47 39 46 64 34"),
    ("Lam", "22 22 66 22 22"),
    ("Ezek", "28 10 27 17 17 14 27 18 11 22 25 28 23 23 8 63 24 32 14 49 32 31 49 27 17 21 "
     "36 26 21 26 18 32 33 31 15 38 28 23 29 49 26 20 27 31 25 24 23 35"),
    ("Dan", "21 49 30 37 31 28 28 27 27 21 45 13"),
    ("Hos", "11 23 5 19 15 11 16 14 17 15 12 14 16 9"),
    ("Joel", "20 32 21"),
    ("Amos", "15 16 15 13 27 14 17 14 15"),
    ("Obad", "21"),
    ("Jonah", "17 10 10 11"),
    ("Mic", "16 13 12 13 15 16 20"),
    ("Nah", "15 13 19"),
    ("Hab", "17 20 19"),
    ("Zeph", "18 15 20"),
    ("Hag", "15 23"),
    ("Zech", "21 13 10 14 11 15 14 23 17 12 17 14 9 21"),
    ("Mal", "14 17 18 6"),
)
_NT_CHAPTER_VERSES = (
    ("Matt", "25 23 17 25 48 34 29 34 38 42 30 50 58 36 39 28 27 35 30 34 46 46 39 51 46 75 "
     "66 20"),
    ("Mark", "45 28 35 41 43 56 37 38 50 52 33 44 37 72 47 20"),
    ("Luke", "80 52 38 44 39 49 50 56 62 42 54 59 35 35 32 31 37 43 48 47 38 71 56 53"),
    ("John", "51 25 36 54 47 71 53 59 41 42 57 50 38 31 27 33 26 40 42 31 25"),
    ("Acts", "26 47 26 37 42 15 60 40 43 48 30 25 52 28 41 40 34 28 41 38 40 30 35 27 27 32 "
     "44 31"),
    ("Rom", "32 29 31 25 21 23 25 39 33 21 36 21 14 23 33 27"),
    ("1Cor", "31 16 23 21 13 20 40 13 27 33 34 31 13 40 58 24"),
    ("2Cor", "24 17 18 18 21 18 16 24 15 18 33 21 14"),
    ("Gal", "24 21 29 31 26 18"),
    ("Eph", "23 22 21 32 33 24"),
    ("Phil", "30 30 21 23"),
    ("Col", "29 23 25 18"),
    ("1Thess", "10 20 13 18 28"),
    ("2Thess", "12 17 18"),
    ("1Tim", "20 15 16 16 25 21"),
    ("2Tim", "18 26 17 22"),
    ("Titus", "16 15 15"),
    ("Phlm", "25"),
    ("Heb", "14 18 19 16 14 20 28 13 28 39 40 29 25"),
    ("Jas", "27 26 18 17 20"),
    ("1Pet", "25 25 22 19 14"),
    ("2Pet", "21 22 18"),
    ("1John", "10 29 24 21 21"),
    ("2John", "13"),
    ("3John", "14"),
    ("Jude", "25"),
    ("Rev", "20 29 22 11 14 17 17 13 21 11 19 17 18 20 8 21 18 24 21 15 27 21"),
)
