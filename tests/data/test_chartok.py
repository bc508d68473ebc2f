"""Tests for scratchformer.data.chartok.CharTokenizer."""
import numpy as np
import pytest

from scratchformer.data.chartok import CharTokenizer

TEXT = "First Citizen:\nBefore we proceed, hear me speak.\nÉ—ñ 😀\n"


def test_vocabulary_is_sorted_unique_characters():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.chars == "".join(sorted(set(TEXT)))
    assert tok.vocab_size == len(set(TEXT))


def test_encode_decode_round_trip_gives_int64_ids():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert ids.dtype == np.int64 and ids.shape == (len(TEXT),)
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert ids[0] == tok.chars.index("F") and ids[-2] == tok.chars.index("😀")
    assert tok.decode(ids) == TEXT
    assert tok.decode(ids.tolist()) == TEXT
    assert tok.encode("").shape == (0,) and tok.decode([]) == ""


def test_unknown_characters_name_character_and_position():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(ValueError, match=r"2 character\(s\) not in the vocabulary of 4: "
                                         r"'z' at position 1, '€' at position 4"):
        tok.encode("az b€z")


def test_decode_rejects_out_of_range_ids():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="token id 3 out of range for vocab_size 3"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="token id -1 out of range"):
        tok.decode(np.array([-1]))


def test_json_round_trip_preserves_vocabulary():
    tok = CharTokenizer.from_text(TEXT)
    s = tok.to_json()
    back = CharTokenizer.from_json(s)
    assert back == tok and back.encode(TEXT).tolist() == tok.encode(TEXT).tolist()
    with pytest.raises(ValueError, match="from_json expects"):
        CharTokenizer.from_json('{"type": "bpe"}')


def test_constructor_rejects_bad_vocabularies():
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer("aba")
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab"])
    with pytest.raises(ValueError, match="non-empty str"):
        CharTokenizer.from_text("")
