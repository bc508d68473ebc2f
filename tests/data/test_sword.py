"""Tests for scratchformer.data.sword: zText reader, markup stripping, pairs, split."""
import os
import struct
import zlib

import pytest

from scratchformer.data import sword
from scratchformer.data.sword import (
    bible_pairs, books, fix_drop_cap, overlap, read_ztext, split_by_book, strip_markup,
    strongs_numbers, verse_refs,
)


def write_ztext(module_dir, testament, entries, per_block=3):
    """Write a zText testament: entries grouped `per_block` to a zlib block."""
    os.makedirs(module_dir, exist_ok=True)
    bzs, bzv, bzz = b"", b"", b""
    for start in range(0, len(entries), per_block):
        chunk = [e.encode("utf-8") for e in entries[start:start + per_block]]
        data = b"".join(chunk)
        comp = zlib.compress(data)
        block = len(bzs) // 12
        bzs += struct.pack("<III", len(bzz), len(comp), len(data))
        bzz += comp
        offset = 0
        for e in chunk:
            bzv += struct.pack("<IIH", block, offset, len(e))
            offset += len(e)
    for ext, data in ((".bzs", bzs), (".bzv", bzv), (".bzz", bzz)):
        with open(os.path.join(module_dir, testament + ext), "wb") as f:
            f.write(data)


def write_kjv_module(module_dir, verses):
    """A module with the full KJV index; `verses` maps (book, ch, v) -> raw text."""
    for t in ("ot", "nt"):
        refs = verse_refs(t)
        write_ztext(module_dir, t, [verses.get(r, "") if r else "" for r in refs],
                    per_block=500)


def test_read_ztext_round_trips_entries_across_blocks(tmp_path):
    entries = ["", "<milestone/>", "In the beginning", "", "caf\u00e9 ñ ¶", "x" * 300, "end"]
    write_ztext(str(tmp_path), "nt", entries, per_block=2)
    assert read_ztext(str(tmp_path), "nt") == entries


def test_read_ztext_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="testament must be 'ot' or 'nt'"):
        read_ztext(str(tmp_path), "apocrypha")
    with pytest.raises(FileNotFoundError, match="ot.bzs"):
        read_ztext(str(tmp_path), "ot")


def test_verse_refs_interleaves_module_testament_book_and_chapter_headers():
    refs = verse_refs("ot", table=[("Aa", "2 1"), ("Bb", "1")])
    assert refs == [None, None,                       # module, testament
                    None, None, ("Aa", 1, 1), ("Aa", 1, 2), None, ("Aa", 2, 1),
                    None, None, ("Bb", 1, 1)]


def test_kjv_versification_table_has_canonical_totals():
    ot, nt = verse_refs("ot"), verse_refs("nt")
    assert (len(ot), len(nt)) == (24115, 8246)          # .bzv records of a KJV module
    assert len(books("ot")) == 39 and len(books("nt")) == 27
    assert sum(r is not None for r in ot + nt) == 31102
    assert ("Ps", 119, 176) in ot and ("Ps", 119, 177) not in ot
    assert nt[-1] == ("Rev", 22, 21)


@pytest.mark.parametrize("raw, plain", [
    ('In the <w lemma="strong:H7225">beginning</w> <w lemma="strong:H0430">God</w>. ',
     "In the beginning God."),
    ('darkness.<note placement="foot"><reference type="annotateRef">1.4 </reference>'
     'Heb. between</note> And', "darkness. And"),
    ('<title level="1" type="main">The First Book</title> <div sID="g3" type="x-p"/>', ""),
    ('<title canonical="true" type="psalm">A Psalm of David.</title> <l level="1"/>LORD, how',
     "A Psalm of David. LORD, how"),
    ("¶ And  he\nsaid, <transChange type=\"added\">it was</transChange> good ", "And he said, it was good"),
    ('the \\nd <w>LORD</w></divineName> hath', "the LORD hath"),
    ('<w>Y FUÉ</w><transChange type="added">que</transChange><w>á los</w>', "Y FUÉ que á los"),
    ('<w>oyéndo</w><transChange type="added">lo</transChange> él', "oyéndolo él"),
    ('<w>que</w><transChange type="added">lo</transChange> hizo', "que lo hizo"),
    ("Fish &amp; chips<lb/>line", "Fish & chips line"),
    ("GBF <FR>red letters<Fr> text<RF>a footnote<Rf> end", "GBF red letters text end"),
])
def test_strip_markup(raw, plain):
    assert strip_markup(raw) == plain


@pytest.mark.parametrize("text, fixed", [
    ("EN el principio crió Dios", "En el principio crió Dios"),
    ("Y JEHOVÁ dijo á Noé", "Y Jehová dijo á Noé"),
    ("LA SEGUNDA suerte salió", "La segunda suerte salió"),
    ("Salmo de David. ¡OH Jehová, cuánto", "Salmo de David. ¡Oh Jehová, cuánto"),
    ("Y dijo Dios: Sea la luz", "Y dijo Dios: Sea la luz"),          # no drop cap: unchanged
])
def test_fix_drop_cap_restores_normal_casing(text, fixed):
    assert fix_drop_cap(text, casing={"jehová": "Jehová"}) == fixed


def test_strongs_overlap_ignores_zero_padding_and_notes():
    a = strongs_numbers('<w lemma="strong:H0430 strong:H1254">x</w><note>strong:H9999</note>')
    b = strongs_numbers('<w lemma="strong:H430">y</w>')
    assert a == {"H430", "H1254"} and overlap(a, b) == 0.5
    assert overlap(frozenset(), frozenset()) == 1.0


def _fixture_bibles(tmp_path):
    w = '<w lemma="strong:{}">{}</w>'
    en = {("Gen", 1, 1): "In the " + w.format("H7225", "beginning") + " " + w.format("H430", "God"),
          ("Gen", 1, 2): w.format("H776", "And the earth") + " was void.",
          ("Exod", 1, 1): w.format("H8034", "Now these") + " are the names",
          ("Exod", 1, 2): w.format("H7205", "Reuben"),
          ("Mark", 1, 1): w.format("G746", "The beginning") + " of the gospel",
          ("Ruth", 1, 1): w.format("H8199", "Now it came to pass")}
    es = {("Gen", 1, 1): w.format("H7225", "EN el principio") + " " + w.format("H430", "crió Dios"),
          ("Gen", 1, 2): w.format("H776", "Y la tierra") + " estaba desordenada.",
          ("Exod", 1, 1): w.format("H8034", "ESTOS son") + " los nombres",
          # Exod 1:2 empty on the Spanish side: versification differs, chapter dropped
          ("Mark", 1, 1): w.format("G746", "PRINCIPIO") + " del evangelio",
          ("Ruth", 1, 1): w.format("H8199", "Y ACONTECIÓ")}
    kjv, rv = str(tmp_path / "kjv"), str(tmp_path / "rv")
    write_kjv_module(kjv, en)
    write_kjv_module(rv, es)
    return kjv, rv


def test_bible_pairs_aligns_cleans_and_drops_misnumbered_chapters(tmp_path):
    kjv, rv = _fixture_bibles(tmp_path)
    pairs = bible_pairs(kjv, rv)
    assert pairs == [
        ("Gen", 1, 1, "In the beginning God", "En el principio crió Dios"),
        ("Gen", 1, 2, "And the earth was void.", "Y la tierra estaba desordenada."),
        ("Ruth", 1, 1, "Now it came to pass", "Y aconteció"),
        ("Mark", 1, 1, "The beginning of the gospel", "Principio del evangelio"),
    ]
    kept = bible_pairs(kjv, rv, min_overlap=0.0)   # still needs both sides non-empty
    assert ("Exod", 1, 1) not in [p[:3] for p in kept]


def test_bible_pairs_missing_module_names_apt_get(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y sword-text-kjv sword-text-sparv"):
        bible_pairs(str(tmp_path / "nope"), str(tmp_path / "nope2"))


def test_split_by_book_holds_out_whole_books_without_leakage():
    pairs = [(b, c, v, f"{b}{c}:{v}", "es") for b in books() for c in (1, 2) for v in (1, 2)]
    train, val, test = split_by_book(pairs)
    assert len(train) + len(val) + len(test) == len(pairs)
    train_books = {p[0] for p in train}
    assert {p[0] for p in test} == set(sword.DEFAULT_TEST_BOOKS)
    assert {p[0] for p in val} == set(sword.DEFAULT_VAL_BOOKS)
    assert not train_books & {p[0] for p in test} and not train_books & {p[0] for p in val}
    train2, val2, test2 = split_by_book(pairs, test_books=["Gen"], val_books=())
    assert {p[0] for p in test2} == {"Gen"} and val2 == [] and len(train2) == len(pairs) - 4


def test_split_by_book_rejects_unknown_or_overlapping_books():
    with pytest.raises(ValueError, match="unknown book id"):
        split_by_book([], test_books=["Genesis"])
    with pytest.raises(ValueError, match="both test_books and val_books"):
        split_by_book([], test_books=["Mark"], val_books=["Mark"])


REAL = all(os.path.isfile(os.path.join(sword.DEFAULT_ROOT, m, "nt.bzv"))
           for m in (sword.KJV_MODULE, sword.RV_MODULE))


@pytest.mark.skipif(not REAL, reason="needs: " + sword.APT_COMMAND)
def test_real_bible_corpus_has_31k_pairs_starting_with_genesis():
    pairs = bible_pairs()
    assert 30_000 <= len(pairs) <= 31_102
    assert pairs[0] == ("Gen", 1, 1, "In the beginning God created the heaven and the earth.",
                        "En el principio crió Dios los cielos y la tierra.")
    assert all(e and s and "<" not in e + s and "¶" not in e + s for *_, e, s in pairs)
    train, val, test = split_by_book(pairs)
    assert not {p[0] for p in train} & {p[0] for p in test}
