"""The numbers task: English number words <-> Spanish number words, 0..999 999.

The table below was written from the Real Academia Española's rules for cardinal numbers
(and US English without "and"), not from the code: cien / ciento, the one-word forms
16-29 with their accents, "y" only between tens and units from 31 on, "mil" alone for
1000, and "un" / "veintiún" before "mil" but "uno" / "veintiuno" at the end.
"""

import json

import numpy as np
import pytest

from scratchformer.data.numbers import (EN_WORDS, ES_WORDS, english, english_tokens,
                                        parse_english, parse_spanish, spanish, spanish_tokens)
from scratchformer.data.taskbase import pad_batch
from scratchformer.data.tasks import TASKS, get_task
from scratchformer.data.vocab import BOS, EOS, PAD, Vocab

TABLE = [
    (0, "zero", "cero"),
    (1, "one", "uno"),
    (7, "seven", "siete"),
    (10, "ten", "diez"),
    (11, "eleven", "once"),
    (15, "fifteen", "quince"),
    (16, "sixteen", "dieciséis"),
    (19, "nineteen", "diecinueve"),
    (20, "twenty", "veinte"),
    (21, "twenty-one", "veintiuno"),
    (22, "twenty-two", "veintidós"),
    (23, "twenty-three", "veintitrés"),
    (26, "twenty-six", "veintiséis"),
    (30, "thirty", "treinta"),
    (31, "thirty-one", "treinta y uno"),
    (32, "thirty-two", "treinta y dos"),
    (99, "ninety-nine", "noventa y nueve"),
    (100, "one hundred", "cien"),
    (101, "one hundred one", "ciento uno"),
    (105, "one hundred five", "ciento cinco"),
    (115, "one hundred fifteen", "ciento quince"),
    (200, "two hundred", "doscientos"),
    (300, "three hundred", "trescientos"),
    (400, "four hundred", "cuatrocientos"),
    (500, "five hundred", "quinientos"),
    (555, "five hundred fifty-five", "quinientos cincuenta y cinco"),
    (600, "six hundred", "seiscientos"),
    (700, "seven hundred", "setecientos"),
    (800, "eight hundred", "ochocientos"),
    (900, "nine hundred", "novecientos"),
    (999, "nine hundred ninety-nine", "novecientos noventa y nueve"),
    (1000, "one thousand", "mil"),
    (1001, "one thousand one", "mil uno"),
    (1100, "one thousand one hundred", "mil cien"),
    (2000, "two thousand", "dos mil"),
    (3421, "three thousand four hundred twenty-one", "tres mil cuatrocientos veintiuno"),
    (16000, "sixteen thousand", "dieciséis mil"),
    (21000, "twenty-one thousand", "veintiún mil"),
    (21021, "twenty-one thousand twenty-one", "veintiún mil veintiuno"),
    (22000, "twenty-two thousand", "veintidós mil"),
    (31000, "thirty-one thousand", "treinta y un mil"),
    (41001, "forty-one thousand one", "cuarenta y un mil uno"),
    (100000, "one hundred thousand", "cien mil"),
    (100100, "one hundred thousand one hundred", "cien mil cien"),
    (101000, "one hundred one thousand", "ciento un mil"),
    (121000, "one hundred twenty-one thousand", "ciento veintiún mil"),
    (200001, "two hundred thousand one", "doscientos mil uno"),
    (500500, "five hundred thousand five hundred", "quinientos mil quinientos"),
    (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine",
     "novecientos noventa y nueve mil novecientos noventa y nueve"),
]


# ------------------------------------------------------------------------- the grammar
@pytest.mark.parametrize("n, en, es", TABLE)
def test_grammar_matches_the_reference_table(n, en, es):
    assert english(n) == en and spanish(n) == es
    assert parse_english(en) == n and parse_spanish(es) == n


def test_hyphens_are_not_tokens():
    assert english_tokens(21021) == ["twenty", "one", "thousand", "twenty", "one"]
    assert spanish_tokens(32) == ["treinta", "y", "dos"]
    assert "-" not in EN_WORDS + ES_WORDS


def test_every_number_round_trips_through_both_languages():
    for n in range(0, 1_000_000, 997):            # a stride through every digit pattern
        assert parse_english(english(n)) == n and parse_spanish(spanish(n)) == n
    for n in range(1000):
        assert parse_english(english(n)) == n and parse_spanish(spanish(n)) == n


def test_no_un_mil_and_no_uno_before_mil():
    for n in range(1000, 1_000_000, 1000):
        es = spanish(n)
        assert not es.startswith("un mil") and "uno mil" not in es and "veintiuno mil" not in es


@pytest.mark.parametrize("text, lang", [
    ("one hundred and five", "English"), ("twenty-zero", "English"), ("hundred", "English"),
    ("un mil", "Spanish"), ("veintiuno mil", "Spanish"), ("ciento", "Spanish"),
    ("uno y", "Spanish"), ("ciento cero", "Spanish"),
])
def test_parsers_reject_non_canonical_spellings(text, lang):
    parse = parse_english if lang == "English" else parse_spanish
    with pytest.raises(ValueError, match=f"not an? {lang} number"):
        parse(text)


def test_numbers_out_of_range_raise():
    with pytest.raises(ValueError, match=r"number must be in \[0, 999999\], got 1000000"):
        english(1_000_000)
    with pytest.raises(TypeError, match="number must be an int"):
        spanish(2.0)


# ------------------------------------------------------------------------- the task
def _decode(task, ids):
    return task.vocab.decode(np.asarray(ids))


def test_task_pairs_are_the_grammar_and_tokens_round_trip():
    task = get_task("numbers", held_out_size=0)
    assert "numbers" in TASKS and task.vocab_size == 3 + len(EN_WORDS) + len(ES_WORDS)
    for x, y in task.sample(np.random.default_rng(0), 500):
        n = parse_english(_decode(task, x))
        assert _decode(task, y) == spanish(n)
        assert task.vocab.encode(_decode(task, x)) == x          # hyphens are put back
        assert task.vocab.encode(_decode(task, y)) == y
        assert len(x) <= task.max_src_len and len(y) + 1 <= task.max_tgt_len
    # the longest number: the longest group below 1000, twice, around "thousand" / "mil"
    longest = [2 * max(len(tokens(n)) for n in range(1000)) + 1
               for tokens in (english_tokens, spanish_tokens)]
    assert task.max_src_len == max(longest) == len(english_tokens(777_777)) == 9
    assert task.max_tgt_len == max(longest) + 1


def test_training_covers_every_digit_count_and_round_numbers():
    task = get_task("numbers", held_out_size=0)
    nums = np.array([task.number_of(x) for x, _ in task.sample(np.random.default_rng(1), 6000)])
    counts = np.bincount([len(str(n)) for n in nums], minlength=7)[1:]
    assert (counts > 800).all(), counts                       # ~1000 each
    big = nums[nums >= 10_000]
    assert 0.25 < np.mean(big % 1000 == 0) < 0.4              # "... mil" with nothing after
    assert np.count_nonzero(nums == 100) > 10                 # "cien" alone


def test_held_out_numbers_are_never_trained_on():
    task = get_task("numbers")
    held = {task.number_of(x) for x, _ in task.held_out()}
    assert len(held) == 1000
    assert all(10_000 <= n <= 999_999 for n in held)          # 5 and 6 digits for n = 1000
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        src, _, _ = task.batch(rng, 128)
        seen.update(task.number_of(row[row != PAD]) for row in src)
    assert len(seen) > 10_000 and not seen & held      # ~40 draws would be held out otherwise


def test_held_out_is_never_trained_on_even_when_it_is_likely():
    # 9000 four-digit numbers, 900 held out: a tenth of every 4-digit draw would hit it
    task = get_task("numbers", held_out_size=900, held_out_seed=3)
    held = {task.number_of(x) for x, _ in task.held_out()}
    assert min(held) < 10_000
    drawn = {task.number_of(x) for x, _ in task.sample(np.random.default_rng(0), 40_000)}
    assert not drawn & held


def test_same_seed_same_data_and_rebuild_from_to_dict():
    a, b = get_task("numbers"), get_task("numbers")
    for x, y in zip(a.batch(np.random.default_rng(5), 32), b.batch(np.random.default_rng(5), 32)):
        np.testing.assert_array_equal(x, y)
    assert a.held_out() == b.held_out()
    assert a.held_out() != get_task("numbers", held_out_seed=1).held_out()
    d = json.loads(json.dumps(get_task("numbers", direction="es-en").to_dict()))
    assert d == {"name": "numbers", "options": {"direction": "es-en", "held_out_size": 1000,
                                                 "held_out_seed": 12345}}
    again = get_task(d["name"], **d["options"])
    assert again.held_out() == get_task("numbers", direction="es-en").held_out()
    assert Vocab.from_json(a.vocab.to_json()) == a.vocab


def test_es_en_direction_swaps_source_and_target():
    en_es, es_en = get_task("numbers"), get_task("numbers", direction="es-en")
    assert en_es.vocab == es_en.vocab
    assert [(y, x) for x, y in en_es.held_out()] == es_en.held_out()
    src, tgt_in, tgt_out = pad_batch(es_en.sample(np.random.default_rng(0), 200))
    assert (tgt_in[:, 0] == BOS).all() and (tgt_out == EOS).any(axis=1).all()
    for x, y in es_en.sample(np.random.default_rng(0), 200):
        n = parse_spanish(_decode(es_en, x))
        assert _decode(es_en, y) == english(n) and es_en.number_of(x) == n
    assert es_en.decode_output(es_en.vocab.encode("twenty one thousand") + [EOS, 5]) \
        == "twenty-one thousand"


def test_encode_input_reads_words_of_the_source_language():
    task = get_task("numbers", held_out_size=0)
    ids = task.encode_input("  Three thousand four hundred Twenty-One ")
    assert task.vocab.tokens(ids) == ["three", "thousand", "four", "hundred", "twenty", "one"]
    assert get_task("numbers", direction="es-en", held_out_size=0).vocab.tokens(
        get_task("numbers", direction="es-en", held_out_size=0).encode_input(
            "veintiún mil")) == ["veintiún", "mil"]
    with pytest.raises(ValueError, match=r"'and' at position 2 is not an English number "
                                         r"word \(US style"):
        task.encode_input("one hundred and five")
    with pytest.raises(ValueError, match=r"'veinte' at position 0 is not an English.*en-es"):
        task.encode_input("veinte")
    with pytest.raises(ValueError, match="empty"):
        task.encode_input("  ")


@pytest.mark.parametrize("opts, err, pattern", [
    ({"direction": "en-fr"}, ValueError, r"direction must be one of \['en-es', 'es-en'\], "
                                         r"got 'en-fr'"),
    ({"held_out_size": -1}, ValueError, "held_out_size must be >= 0"),
    ({"held_out_size": 100_000}, ValueError, "held_out_size=100000 must be at most a tenth"),
    ({"held_out_seed": 1.5}, TypeError, "held_out_seed must be an int"),
    ({"max_number": 10}, TypeError, r"unknown option\(s\) \['max_number'\].*direction"),
])
def test_bad_options_raise_clear_errors(opts, err, pattern):
    with pytest.raises(err, match=pattern):
        get_task("numbers", **opts)


# ------------------------------------------------------------------------- command line
def test_cli_trains_evaluates_and_decodes_numbers_both_directions(tmp_path, capsys):
    from scratchformer.training.checkpoint import load
    from scratchformer.cli import main

    tiny = ["--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32", "--steps",
            "5", "--batch-size", "8", "--eval-every", "0", "--held-out-size", "20", "--quiet"]
    out = tmp_path / "es-en"
    assert main(["train", "--task", "numbers", "--direction", "es-en", "--out", str(out),
                 *tiny]) == 0
    ckpt = str(out / "checkpoint.safetensors")
    assert load(ckpt)[2]["task"]["options"]["direction"] == "es-en"
    assert main(["eval", "--checkpoint", ckpt, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["n"] == 20
    assert main(["decode", "--checkpoint", ckpt, "--input", "veintiún mil", "cien"]) == 0
    lines = capsys.readouterr().out.splitlines()
    words = set(EN_WORDS + ES_WORDS)
    assert len(lines) == 2 and all(set(line.replace("-", " ").split()) <= words
                                   for line in lines)                 # untrained: any words
    out = tmp_path / "en-es"
    assert main(["train", "--task", "numbers", "--out", str(out), *tiny]) == 0
    capsys.readouterr()
    assert main(["decode", "--checkpoint", str(out / "checkpoint.safetensors"), "--input",
                 "three thousand four hundred twenty-one"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["decode", "--checkpoint", str(out / "checkpoint.safetensors"), "--input",
                 "one hundred and five"]) == 2
    assert "'and' at position 2 is not an English number word" in capsys.readouterr().err
    assert main(["train", "--task", "dates", "--direction", "es-en", "--out", str(out)]) == 2
    assert "--direction applies to task numbers, not 'dates'" in capsys.readouterr().err
