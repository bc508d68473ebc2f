"""Translation pipeline: BPE, data splits and batches, baselines, BLEU wiring, the CLI."""

import json
import math
import os

import numpy as np
import pytest

from scratchformer.data import sword
from scratchformer.translation import (
    BPETokenizer,
    TranslationBatches,
    WordDictionary,
    copy_source,
    encode_pairs,
    length_batches,
    load_splits,
    make_batch,
    pretokenize,
)
from scratchformer import cli

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "translation", "tiny.tsv")
REAL = os.path.isfile(os.path.join(sword.DEFAULT_ROOT, sword.KJV_MODULE, "ot.bzv")) and \
    os.path.isfile(os.path.join(sword.DEFAULT_ROOT, sword.RV_MODULE, "ot.bzv"))

TEXTS = ["And God said, Let there be light: and there was light.",
         "Y dijo Dios: Sea la luz: y fué la luz.",
         "In the beginning God created the heaven and the earth.",
         "En el principio crió Dios los cielos y la tierra."]


# ---- tokenizer ------------------------------------------------------------------------------
def test_pretokenize_marks_leading_spaces_and_splits_punctuation():
    assert pretokenize("And  God said,") == ["\u2581And", "\u2581God", "\u2581said", ","]


def test_bpe_round_trips_text_and_survives_json():
    assert len(BPETokenizer.train(TEXTS, vocab_size=80, min_frequency=1)) == 80
    tok = BPETokenizer.train(TEXTS, vocab_size=80)  # stops early: no pair occurs twice
    assert len(tok) < 80
    for t in TEXTS + ["God said: light.", "  la   luz  "]:
        assert tok.decode(tok.encode(t)) == " ".join(t.split())
    again = BPETokenizer.from_json(tok.to_json())
    assert again.encode(TEXTS[1]) == tok.encode(TEXTS[1])
    assert again.to_dict() == tok.to_dict()


def test_bpe_merges_frequent_words_into_single_tokens():
    tok = BPETokenizer.train(TEXTS * 3, vocab_size=200, min_frequency=2)
    assert tok.pieces("light") == ["\u2581light"]
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0]) // 3


def test_bpe_training_is_deterministic():
    a = BPETokenizer.train(TEXTS, vocab_size=60).merges
    b = BPETokenizer.train(list(TEXTS), vocab_size=60).merges
    assert a == b


def test_bpe_specials_and_unknown_characters():
    tok = BPETokenizer.train(TEXTS, vocab_size=60)
    ids = tok.encode("luz €", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and tok.unk_id in ids
    assert tok.decode(ids) == "luz ?"
    assert tok.decode([tok.encode("luz")[0], tok.eos_id, 5]) == tok.decode(tok.encode("luz")[:1])
    with pytest.raises(ValueError, match="token id 999 at position 0 out of range"):
        tok.decode([999])
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 5"):
        BPETokenizer.train(TEXTS, vocab_size=2)
    with pytest.raises(ValueError, match="type 'bpe'"):
        BPETokenizer.from_dict({"symbols": []})


# ---- data -------------------------------------------------------------------------------------
def test_tsv_splits_are_disjoint_seeded_and_complete():
    train, val, test = load_splits(pairs_path=FIXTURE, val_frac=0.1, test_frac=0.1, seed=3)
    assert (len(train), len(val), len(test)) == (32, 4, 4)
    assert len(set(train) | set(val) | set(test)) == 40
    assert load_splits(pairs_path=FIXTURE, val_frac=0.1, test_frac=0.1, seed=3) == (train, val, test)
    assert ("the house", "la casa") in train + val + test


def test_tsv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("the house\tla casa\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv, line 2"):
        load_splits(pairs_path=str(bad))
    with pytest.raises(ValueError, match="exactly one of corpus and pairs_path"):
        load_splits()
    with pytest.raises(ValueError, match="corpus must be one of"):
        load_splits(corpus="iwslt")


def test_length_batches_cover_every_pair_once_within_the_token_budget():
    rng = np.random.default_rng(0)
    srcs = [[5] * int(n) for n in rng.integers(1, 30, 200)]
    tgts = [[1] + [5] * int(n) + [2] for n in rng.integers(1, 30, 200)]
    batches = length_batches(srcs, tgts, max_tokens=120, rng=np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(200))
    for idx in batches:
        longest = max(max(len(srcs[i]), len(tgts[i])) for i in idx)
        assert len(idx) == 1 or longest * len(idx) <= 120
    # sorting by length: far less padding than random batches of the same sizes
    def padding(bs):
        return sum(max(len(srcs[i]) for i in b) * len(b) - sum(len(srcs[i]) for i in b) for b in bs)
    perm = np.random.default_rng(2).permutation(200)
    random_bs, k = [], 0
    for b in batches:
        random_bs.append(perm[k:k + len(b)])
        k += len(b)
    assert padding(batches) < 0.3 * padding(random_bs)


def test_make_batch_shifts_the_target_by_one():
    tok = BPETokenizer.train(TEXTS, vocab_size=60)
    srcs, tgts = encode_pairs(tok, [(TEXTS[0], TEXTS[1]), (TEXTS[2], TEXTS[3])])
    src, tgt_in, tgt_out = make_batch(srcs, tgts, np.array([0, 1]))
    assert src.shape[0] == 2 and (src[:, 0] != 0).all()
    assert (tgt_in[:, 0] == tok.bos_id).all()
    np.testing.assert_array_equal(tgt_in[:, 1:], tgt_out[:, :-1])
    assert tgt_out[0, len(tgts[0]) - 2] == tok.eos_id
    assert encode_pairs(tok, [(TEXTS[0], TEXTS[1])], max_len=5) == ([], [])


def test_batches_are_a_pure_function_of_the_step():
    srcs = [[5] * (i % 17 + 1) for i in range(100)]
    tgts = [[1] + [6] * (i % 13 + 1) + [2] for i in range(100)]
    a, b = TranslationBatches(srcs, tgts, 64, seed=4), TranslationBatches(srcs, tgts, 64, seed=4)
    n = a.n_batches
    for step in (n + 3, 1, 2 * n + 1, n + 3):  # jump around, as a resumed run does
        for x, y in zip(a(None, step), b(None, step)):
            np.testing.assert_array_equal(x, y)
    firsts = {a(None, 1 + e * n)[0].tobytes() for e in range(3)}
    assert len(firsts) > 1  # each epoch is shuffled differently


@pytest.mark.skipif(not REAL, reason="needs: " + sword.APT_COMMAND)
def test_bible_splits_hold_out_whole_books(monkeypatch):
    pairs = sword.bible_pairs()
    monkeypatch.setattr(sword, "bible_pairs", lambda: pairs)  # read the modules once
    train, val, test = load_splits(corpus="bible-en-es")
    tr, va, te = sword.split_by_book(pairs)
    assert train == [(p[3], p[4]) for p in tr] and test == [(p[3], p[4]) for p in te]
    assert val == [(p[3], p[4]) for p in va]
    books = [{p[0] for p in s} for s in (tr, va, te)]
    assert not (books[0] & books[2]) and not (books[0] & books[1]) and not (books[1] & books[2])
    assert books[2] == set(sword.DEFAULT_TEST_BOOKS)
    assert len(train) > 25000 and len(test) > 500


# ---- scores and baselines ------------------------------------------------------------------
def test_bleu_and_chrf_come_from_sacrebleu_in_the_right_order():
    sacrebleu = pytest.importorskip("sacrebleu")
    from scratchformer.translation import corpus_scores

    # 1- to 4-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths: BLEU = (1/12)^(1/4)
    s = corpus_scores(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert s["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25, abs=0.01)
    same = "y dijo Dios: Sea la luz"
    assert corpus_scores([same], [same]) == {"bleu": 100.0, "chrf": 100.0}
    hyp, ref = ["el perro come pan"], ["el perro grande come mucho pan blanco"]
    s = corpus_scores(hyp, ref)  # chrF (beta=2) is asymmetric: a swap would show
    assert s["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyp, [ref]).score, abs=0.01)
    assert s["chrf"] != pytest.approx(sacrebleu.corpus_chrf(ref, [hyp]).score, abs=0.5)
    assert s["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score, abs=0.01)
    with pytest.raises(ValueError, match="same length, got 1 and 2"):
        corpus_scores(["a"], ["a", "b"])


def test_word_dictionary_learns_translations_from_the_fixture():
    pairs = load_splits(pairs_path=FIXTURE, val_frac=0.0, test_frac=0.0)[0]
    d = WordDictionary.learn(pairs, iterations=10)
    for en, es in [("dog", "perro"), ("cat", "gato"), ("bread", "pan"), ("water", "agua"),
                   ("house", "casa"), ("milk", "leche")]:
        assert d.table[en] == es
    assert d.translate_one("The dog, Pedro.") == "El perro, Pedro."  # case kept, unknown copied
    assert copy_source(["a b", "c"]) == ["a b", "c"]


def test_baselines_score_on_the_fixture():
    pytest.importorskip("sacrebleu")
    from scratchformer.translation import evaluate_baselines

    pairs = load_splits(pairs_path=FIXTURE, val_frac=0.0, test_frac=0.0)[0]
    r = evaluate_baselines(pairs, pairs[:10])
    assert r["dictionary"]["bleu"] > r["copy"]["bleu"]
    assert r["dictionary"]["chrf"] > 50 > r["copy"]["chrf"]


# ---- command line -------------------------------------------------------------------------------
SMALL = ["--pairs", FIXTURE, "--vocab-size", "120", "--d-model", "32", "--d-ff", "64",
         "--n-heads", "2", "--n-layers", "1", "--warmup", "5", "--eval-every", "10",
         "--eval-decode", "4", "--max-tokens", "64", "--no-progress",
         "--val-frac", "0.1", "--test-frac", "0.1", "--checkpoint-every", "5"]


def test_cli_trains_resumes_and_translates(tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    out = str(tmp_path / "run")
    assert cli.main(["translate-train", *SMALL, "--out", out, "--steps", "20",
                               "--test-beams", "1", "2"]) == 0
    printed = capsys.readouterr().out
    assert "dictionary" in printed and "beam2" in printed
    results = json.load(open(os.path.join(out, "results.json")))
    assert results["step"] == 20 and {"greedy", "beam2", "copy"} <= set(results["test"])
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    losses = [r["loss"] for r in lines if r["kind"] == "train"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]

    assert cli.main(["translate-train", *SMALL, "--out", out, "--steps", "22"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["translate-train", *SMALL, "--out", out, "--steps", "24",
                               "--resume", "--test-beams"]) == 0
    assert json.load(open(os.path.join(out, "results.json")))["step"] == 24
    capsys.readouterr()

    ckpt = os.path.join(out, "checkpoint.safetensors")
    assert cli.main(["translate", "--checkpoint", ckpt, "--text", "the dog eats",
                               "--text", "good night", "--beam", "3", "--show-pieces"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "\u2581the \u2581dog \u2581eats" and len(printed) == 4


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    from scratchformer.training.trainer import Trainer, TrainConfig
    from scratchformer.translation import build_model

    train = load_splits(pairs_path=FIXTURE, val_frac=0.0, test_frac=0.0)[0]
    tok = BPETokenizer.train([s for s, _ in train] + [t for _, t in train], 100)
    srcs, tgts = encode_pairs(tok, train)
    cfg = TrainConfig(steps=8, lr=3e-3, warmup=2, eval_every=0)

    def trainer(out):
        model = build_model(len(tok), d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
                            n_decoder_layers=1, max_len=32)
        return Trainer(model, TranslationBatches(srcs, tgts, 48, seed=1), cfg, out_dir=out,
                       progress=False, extra_state={"tokenizer": tok.to_dict()})

    straight = trainer(None)
    straight.fit()
    first = trainer(str(tmp_path))
    first.fit(until=5)  # writes checkpoint.safetensors at step 5
    second = trainer(None)
    second.resume(str(tmp_path / "checkpoint.safetensors"))
    second.fit()
    for k, v in straight.model.state_dict().items():
        np.testing.assert_array_equal(v, second.model.state_dict()[k])


def test_translate_command_rejects_a_foreign_checkpoint(tmp_path, capsys):
    from scratchformer import Transformer, TransformerConfig
    from scratchformer.training.checkpoint import save

    path = tmp_path / "plain.npz"
    save(path, Transformer(TransformerConfig(10, 10, d_model=8, n_heads=2, d_ff=8,
                                             n_encoder_layers=1, n_decoder_layers=1)))
    assert cli.main(["translate", "--checkpoint", str(path), "--text", "hi"]) == 2
    err = capsys.readouterr().err
    assert "no tokenizer" in err and len(err.strip().splitlines()) == 1


def test_register_adds_both_commands_to_a_parser(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    cli.translate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["translate", "--checkpoint", "x.npz", "--text", "hi", "--beam", "5"])
    assert args.func is cli.translate.translate_command and args.beam == 5
    args = parser.parse_args(["translate-train", "--corpus", "bible-en-es"])
    assert args.func is cli.translate.train_command and args.pairs is None
    # both (or neither) data sources: refused by the config, in flag words, before any file
    out = tmp_path / "run"
    for data in (["--corpus", "bible-en-es", "--pairs", FIXTURE], []):
        assert cli.main(["translate-train", *data, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "give one of --corpus bible-en-es or --pairs FILE" in err
        assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_main_cli_loads_the_translate_plugin(tmp_path, capsys):
    cli = pytest.importorskip("scratchformer.cli")
    out = str(tmp_path / "run")
    assert cli.main(["translate-train", *SMALL, "--out", out, "--steps", "3",
                     "--test-beams"]) == 0
    capsys.readouterr()
    assert cli.main(["translate", "--checkpoint", os.path.join(out, "checkpoint.safetensors"),
                     "--text", "the cat"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
