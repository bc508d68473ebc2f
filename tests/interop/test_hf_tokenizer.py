"""GPT-2's byte-level BPE through ``load_hf_tokenizer``: a tiny tokenizer trained here with the
``tokenizers`` library (nothing downloaded), saved both ways GPT-2 folders hold it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

from scratchformer.interop import HFTokenizer, load_hf_tokenizer  # noqa: E402

CORPUS = ("Hello world! The quick brown fox jumps over the lazy dog.\n"
          "Ünïcödé text — with an emoji 🙂, tabs\tand  double  spaces.\n") * 30
SAMPLES = ["Hello world", " leading space", "The lazy dog 🙂 jumps\n\nover\ttabs",
           "never seen: Zyxw 12345 ☃ 漢字", "", "  "]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(folder with tokenizer.json, folder with vocab.json + merges.txt) of one tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS], trainer)
    a, b = tmp_path_factory.mktemp("tok-json"), tmp_path_factory.mktemp("tok-bpe")
    tok.save(str(a / "tokenizer.json"))
    tok.model.save(str(b))  # vocab.json + merges.txt
    return a, b


@pytest.mark.parametrize("which", [0, 1], ids=["tokenizer.json", "vocab+merges"])
def test_round_trip_and_merges_are_used(folders, which):
    tok = load_hf_tokenizer(folders[which])
    assert isinstance(tok, HFTokenizer) and tok.vocab_size == 320 and tok.eot_id == 0
    for text in SAMPLES:
        ids = tok.encode(text)
        assert ids.dtype == np.int64 and ids.ndim == 1
        assert tok.decode(ids) == text
    assert len(tok.encode("Hello world")) < len("Hello world".encode())  # merges applied
    assert (tok.encode("never seen: ☃") < 320).all()


def test_both_files_and_transformers_gpt2_tokenizer_give_the_same_ids(folders):
    transformers = pytest.importorskip("transformers")
    a, b = (load_hf_tokenizer(f) for f in folders)
    ref = transformers.GPT2Tokenizer(str(folders[1] / "vocab.json"), str(folders[1] / "merges.txt"))
    for text in SAMPLES + [CORPUS[:300]]:
        want = ref.encode(text)
        assert a.encode(text).tolist() == want == b.encode(text).tolist()


def test_vocabulary_mismatch_and_bad_files_are_one_error_naming_the_file(folders, tmp_path):
    with pytest.raises(ValueError, match=r"tokenizer.json: the tokenizer has 320 tokens but the model's "
                                         r"vocab_size is 100"):
        load_hf_tokenizer(folders[0], vocab_size=100)
    load_hf_tokenizer(folders[0], vocab_size=50257)  # a larger model vocabulary is fine
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or folder"):
        load_hf_tokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json, nor vocab.json"):
        load_hf_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(ValueError, match="tokenizer.json: not a readable GPT-2 tokenizer"):
        load_hf_tokenizer(tmp_path)
    tok = load_hf_tokenizer(folders[0])
    with pytest.raises(ValueError, match=r"ids must be token ids in \[0, 320\)"):
        tok.decode([5, 320])
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(b"bytes")


def test_missing_library_is_a_one_line_install_hint(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers → ImportError
    with pytest.raises(ImportError, match=r"pip install 'tokenizers>=0.19'"):
        load_hf_tokenizer(folders[0])
