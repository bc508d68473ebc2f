"""Toy tasks and the vocabulary: batch layout, target rules, dates, held-out sets."""

import calendar
import datetime as dt
import json
import re

import numpy as np
import pytest

from scratchformer.data.dates import FORMATS, format_date
from scratchformer.data.taskbase import pad_batch
from scratchformer.data.tasks import TASKS, get_task
from scratchformer.data.vocab import BOS, EOS, PAD, Vocab

ALL_TASKS = ["copy", "reverse", "shift", "dates", "numbers"]


# ------------------------------------------------------------------------- vocab
def test_vocab_ids_start_after_pad_bos_eos():
    v = Vocab(list("abc"))
    assert (PAD, BOS, EOS) == (0, 1, 2)
    assert len(v) == 6
    assert v.encode("cab") == [5, 3, 4]
    assert v.tokens([0, 1, 3, 2]) == ["<pad>", "<bos>", "a", "<eos>"]


def test_vocab_encode_decode_round_trip_chars_and_words():
    chars = Vocab(list("0123456789-"))
    assert chars.decode(chars.encode("2026-11-27")) == "2026-11-27"
    words = Vocab([str(i) for i in range(20)], sep=" ")
    ids = words.encode("3 19 4")
    assert ids == [6, 22, 7]
    assert words.decode(ids) == "3 19 4"
    assert words.encode(["3", "19"]) == [6, 22]


def test_vocab_decode_skips_pad_bos_and_stops_at_eos():
    v = Vocab(list("ab"))
    assert v.decode([BOS, 3, PAD, 4, EOS, 3, 3]) == "ab"
    assert v.decode(np.array([3, 4, EOS, 4]), stop_at_eos=False) == "abb"
    assert v.decode([]) == ""


def test_vocab_unknown_symbol_error_names_symbol_and_position():
    v = Vocab(list("abc"))
    with pytest.raises(ValueError, match=r"unknown symbol 'x' at position 2"):
        v.encode("abxc")
    w = Vocab(["0", "1"], sep=" ")
    with pytest.raises(ValueError, match=r"unknown symbol '7' at position 1"):
        w.encode("0 7 1")


def test_vocab_decode_rejects_out_of_range_ids():
    v = Vocab(list("ab"))
    with pytest.raises(ValueError, match=r"token id 5 at position 1 out of range for vocab_size"):
        v.decode([3, 5])


def test_vocab_rejects_bad_symbol_lists():
    with pytest.raises(ValueError, match="unique"):
        Vocab(list("aba"))
    with pytest.raises(ValueError, match="single character"):
        Vocab(["ab"])
    with pytest.raises(ValueError, match="whitespace"):
        Vocab(["a b"], sep=" ")
    with pytest.raises(ValueError, match="special"):
        Vocab(["<eos>"], sep=" ")
    with pytest.raises(TypeError, match="list of strings"):
        Vocab("abc")


def test_vocab_json_round_trip():
    for v in (Vocab(list("xyz ,")), Vocab(["10", "11"], sep=" ")):
        s = v.to_json()
        assert isinstance(json.loads(s), dict)
        w = Vocab.from_json(s)
        assert w == v and w.sep == v.sep and len(w) == len(v)
        assert w.encode(v.decode([3, 4])) == [3, 4]


# ------------------------------------------------------------------------- batches
@pytest.mark.parametrize("name", ALL_TASKS)
def test_batch_shapes_dtypes_and_teacher_forcing_layout(name):
    task = get_task(name)
    src, tgt_in, tgt_out = task.batch(np.random.default_rng(0), 64)
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == np.int64
    assert src.shape[0] == tgt_in.shape[0] == tgt_out.shape[0] == 64
    assert tgt_in.shape == tgt_out.shape
    assert src.shape[1] <= task.max_src_len and tgt_out.shape[1] <= task.max_tgt_len
    assert src.max() < task.vocab_size and tgt_out.max() < task.vocab_size
    # src: real symbols, then PAD only; no BOS/EOS; no all-PAD column at the end
    assert not np.isin(src, [BOS, EOS]).any()
    is_pad = src == PAD
    assert (is_pad[:, 1:] >= is_pad[:, :-1]).all(), "PAD must be a suffix"
    assert not is_pad[:, -1].all()
    # tgt_out = y + [EOS] + PADs ; tgt_in = [BOS] + y + PADs
    ly = (tgt_out >= 3).sum(axis=1)                                   # len(y) per row
    assert ((tgt_out == EOS).sum(axis=1) == 1).all()
    assert (tgt_out[np.arange(64), ly] == EOS).all()
    assert (tgt_in[:, 0] == BOS).all() and (tgt_in[:, 1:] != BOS).all()
    assert not (tgt_in == EOS).any()
    for i in range(64):
        y = tgt_out[i, :ly[i]]
        assert (y >= 3).all()
        assert (tgt_in[i, 1:ly[i] + 1] == y).all()
        assert (tgt_in[i, ly[i] + 1:] == PAD).all() and (tgt_out[i, ly[i] + 1:] == PAD).all()


@pytest.mark.parametrize("name", ALL_TASKS)
def test_batch_equals_pad_batch_of_the_same_draw(name):
    task = get_task(name)
    pairs = task.sample(np.random.default_rng(3), 32)
    for x, y in pairs:
        assert all(type(i) is int for i in x + y)
    batch = task.batch(np.random.default_rng(3), 32)
    for a, b in zip(batch, pad_batch(pairs)):
        np.testing.assert_array_equal(a, b)


def test_pad_batch_layout_on_a_hand_example():
    src, tgt_in, tgt_out = pad_batch([([5, 6, 7], [8]), ([9], [10, 11])])
    np.testing.assert_array_equal(src, [[5, 6, 7], [9, 0, 0]])
    np.testing.assert_array_equal(tgt_in, [[1, 8, 0], [1, 10, 11]])
    np.testing.assert_array_equal(tgt_out, [[8, 2, 0], [10, 11, 2]])
    with pytest.raises(ValueError, match="at least one"):
        pad_batch([])


RULES = {
    "copy": lambda x, K: list(x),
    "reverse": lambda x, K: list(x)[::-1],
    "shift": lambda x, K: [3 + (t - 3 + 1) % K for t in x],
}


@pytest.mark.parametrize("name", ["copy", "reverse", "shift"])
def test_sequence_task_target_rule(name):
    task = get_task(name, num_symbols=7, min_len=2, max_len=9)
    src, tgt_in, tgt_out = task.batch(np.random.default_rng(1), 200)
    lengths = (src != PAD).sum(axis=1)
    assert lengths.min() == 2 and lengths.max() == 9
    assert src[src != PAD].min() == 3 and src.max() == 3 + 7 - 1
    for i in range(200):
        x = src[i, :lengths[i]].tolist()
        assert tgt_out[i, :lengths[i] + 1].tolist() == RULES[name](x, 7) + [EOS]


def test_shift_wraps_around_and_decodes_as_text():
    task = get_task("shift")
    ids = task.encode_input("3 1 9")
    assert ids == [6, 4, 12]
    assert task.decode_output(task.target(ids)) == "4 2 0"
    assert task.target(ids) == RULES["shift"](ids, 10)
    assert get_task("reverse").target(ids) == [12, 4, 6]
    assert get_task("copy").target(ids) == ids
    task2 = get_task("shift", offset=-2, held_out_size=0)
    src, _, tgt_out = task2.batch(np.random.default_rng(0), 50)
    np.testing.assert_array_equal(
        np.where(src > 0, tgt_out[:, :-1], 0),
        np.where(src > 0, (src - 3 - 2) % 10 + 3, 0))


def test_copy_vocab_and_cli_text_round_trip():
    task = get_task("copy")
    assert task.vocab_size == 13 and task.vocab.symbols == tuple("0123456789")
    assert task.encode_input(" 3 1 4 ") == [6, 4, 7] == task.encode_input("3,1,4")
    assert task.decode_output([6, 4, 7, EOS, 6]) == "3 1 4"
    with pytest.raises(ValueError, match=r"unknown symbol '12' at position 1"):
        task.encode_input("3 12 4")
    with pytest.raises(ValueError, match="empty"):
        task.encode_input("   ")


# --------------------------------------------------------------------------- dates
# An independent parser: month and weekday names from `calendar`, ordinals spelled out here.
_MONTH = {m: i for i, m in enumerate(calendar.month_name) if m}
_MON = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_WORDS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
          "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth "
          "twenty-first twenty-second twenty-third twenty-fourth twenty-fifth twenty-sixth "
          "twenty-seventh twenty-eighth twenty-ninth thirtieth thirty-first").split()


def _parse_day(tok):
    if tok in _WORDS:
        return _WORDS.index(tok) + 1
    m = re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?", tok)
    assert m, tok
    n = int(m.group(1))
    if m.group(2):
        assert m.group(2) == {1: "st", 2: "nd", 3: "rd"}.get(n if n < 20 else n % 10, "th"), tok
    return n


def parse_date(text):
    """'Friday, 27 November 2026' -> (date(2026, 11, 27), 'Friday'); asserts on anything odd."""
    m = re.fullmatch(r"(\d{4})\.(\d\d)\.(\d\d)", text)
    if m:
        return dt.date(*map(int, m.groups())), None
    weekday = None
    m = re.fullmatch(r"([A-Z][a-z]+), (.+)", text)
    if m:
        weekday, text = m.groups()
    m = re.fullmatch(r"(\d\d)-([A-Z][a-z]{2})-(\d{4})", text)
    if m:
        return dt.date(int(m.group(3)), _MON[m.group(2)], int(m.group(1))), weekday
    toks = [t for t in re.split(r",? ", text) if t != "of"]
    assert len(toks) == 3 and re.fullmatch(r"\d{4}", toks[2]), text
    if toks[0] in _MONTH or toks[0] in _MON:
        month_tok, day_tok = toks[0], toks[1]
    else:
        day_tok, month_tok = toks[0], toks[1]
    month = _MONTH.get(month_tok) or _MON[month_tok]
    return dt.date(int(toks[2]), month, _parse_day(day_tok)), weekday


def test_date_formats_render_the_documented_examples():
    got = {f: format_date(dt.date(2026, 11, 27), f) for f in FORMATS}
    assert set(got.values()) >= {
        "27 November 2026", "November 27, 2026", "Nov 27, 2026", "27 Nov 2026",
        "November 27th, 2026", "27th of November 2026", "twenty-seventh of November 2026",
        "2026.11.27", "27-Nov-2026", "Friday, 27 November 2026", "Fri, 27 Nov 2026"}
    assert len(FORMATS) >= 10 and len(set(got.values())) == len(FORMATS)
    assert format_date(dt.date(1901, 3, 2), "month_dth_y") == "March 2nd, 1901"
    assert format_date(dt.date(1901, 3, 13), "dth_of_month_y") == "13th of March 1901"
    assert format_date(dt.date(1901, 3, 1), "dd-mon-y") == "01-Mar-1901"


def test_every_date_format_parses_back_to_the_same_date_with_correct_weekday():
    day = dt.date(2024, 1, 1)                     # a leap year: every month, day and weekday
    n_weekdays = 0
    while day.year == 2024:
        for f in FORMATS:
            parsed, weekday = parse_date(format_date(day, f))
            assert parsed == day, (f, format_date(day, f))
            if weekday is not None:
                n_weekdays += 1
                names = (calendar.day_name[day.weekday()], calendar.day_abbr[day.weekday()])
                assert weekday in names, (f, format_date(day, f))
        day += dt.timedelta(days=1)
    assert n_weekdays == 3 * 366


def test_dates_task_source_text_parses_to_its_iso_target():
    task = get_task("dates")
    assert task.vocab_size == len(task.vocab.symbols) + 3
    seen_formats = set()
    for x, y in task.sample(np.random.default_rng(0), 600):
        text, iso = task.decode_output(x), task.decode_output(y)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", iso)
        assert parse_date(text)[0].isoformat() == iso
        assert 1900 <= int(iso[:4]) <= 2099
        assert len(x) <= task.max_src_len
        seen_formats.add(next(f for f in FORMATS if format_date(dt.date.fromisoformat(iso), f)
                              == text))
    assert seen_formats == set(FORMATS)


def test_dates_vocab_covers_every_rendering_and_cli_round_trip():
    task = get_task("dates", held_out_size=0)
    for year in (1900, 2099):
        for d in range(dt.date(year, 1, 1).toordinal(), dt.date(year, 12, 31).toordinal() + 1):
            for f in FORMATS:
                text = format_date(dt.date.fromordinal(d), f)
                assert task.decode_output(task.encode_input(text)) == text
    with pytest.raises(ValueError, match=r"unknown symbol '/' at position 2"):
        task.encode_input("27/11/2026")
    assert task.encode_input(" 27 Nov 2026\n") == task.vocab.encode("27 Nov 2026")


def test_dates_formats_option_restricts_the_formats():
    task = get_task("dates", formats=["y.m.d"], held_out_size=0)
    for x, y in task.sample(np.random.default_rng(0), 20):
        assert task.decode_output(x).replace(".", "-") == task.decode_output(y)
    assert task.options["formats"] == ["y.m.d"]


# ------------------------------------------------------------------ determinism, held-out
@pytest.mark.parametrize("name", ALL_TASKS)
def test_same_seed_same_batches_and_held_out(name):
    a, b = get_task(name), get_task(name)
    ra, rb = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):
        for x, y in zip(a.batch(ra, 16), b.batch(rb, 16)):
            np.testing.assert_array_equal(x, y)
    assert a.held_out() == b.held_out()
    other = a.batch(np.random.default_rng(8), 16)[0]
    first = b.batch(np.random.default_rng(7), 16)[0]
    assert other.shape != first.shape or (other != first).any()


def test_default_held_out_sets_are_distinct_and_long_enough():
    task = get_task("copy")
    ho = task.held_out()
    assert len(ho) == 1000
    assert len({tuple(x) for x, _ in ho}) == 1000
    assert min(len(x) for x, _ in ho) == 4          # 10**L >= 10 * 1000 needs L >= 4
    assert len(get_task("dates").held_out()) == 1000
    assert len({tuple(y) for _, y in get_task("dates").held_out()}) == 1000


@pytest.mark.parametrize("name", ["copy", "reverse", "shift"])
def test_training_never_yields_held_out_sequences(name):
    # a small space, so that without exclusion training would hit held-out sources often
    opts = dict(num_symbols=3, min_len=1, max_len=8, held_out_size=100)
    task = get_task(name, **opts)
    held = {tuple(x) for x, _ in task.held_out()}
    assert len(held) == 100
    rng = np.random.default_rng(0)
    drawn = set()
    for _ in range(300):
        src, _, _ = task.batch(rng, 64)
        drawn.update(tuple(r[r != PAD].tolist()) for r in src)
    drawn.update(tuple(x) for x, _ in task.sample(rng, 2000))
    assert not drawn & held
    # the same draws without exclusion do meet the held-out set: the check has teeth
    free = get_task(name, **{**opts, "held_out_size": 0})
    rng = np.random.default_rng(0)
    hits = sum(tuple(r[r != PAD].tolist()) in held
               for _ in range(300) for r in free.batch(rng, 64)[0])
    assert hits > 10


def test_training_never_yields_held_out_dates():
    task = get_task("dates", min_year=2000, max_year=2000, held_out_size=36)
    held = {tuple(y) for _, y in task.held_out()}
    assert len(held) == 36
    drawn = {tuple(y) for _, y in task.sample(np.random.default_rng(0), 5000)}
    assert len(drawn) == 366 - 36 and not drawn & held


def test_extra_held_out_sets_and_exclude_are_honoured():
    task = get_task("copy", num_symbols=3, max_len=8, held_out_size=0)
    extra = task.held_out(50, seed=99)
    assert task.held_out(50, seed=99) == extra            # cached, deterministic
    assert get_task("copy", num_symbols=3, max_len=8, held_out_size=0).held_out(50, 99) == extra
    manual = [([3, 4], [3, 4]), ([5], [5])]
    task.exclude(manual)
    banned = {tuple(x) for x, _ in extra + manual}
    drawn = {tuple(x) for x, _ in task.sample(np.random.default_rng(0), 20000)}
    assert not drawn & banned
    assert len(drawn) > 1000


def test_options_rebuild_the_same_task_through_json():
    task = get_task("reverse", max_len=7, held_out_seed=5)
    d = json.loads(json.dumps(task.to_dict()))
    again = get_task(d["name"], **d["options"])
    assert again.options == task.options and again.vocab == task.vocab
    assert again.held_out() == task.held_out()
    dates = get_task("dates", min_year=1950, max_year=2010)
    d = json.loads(json.dumps(dates.to_dict()))
    assert d["options"]["formats"] == list(FORMATS)
    assert get_task(d["name"], **d["options"]).held_out() == dates.held_out()
    assert Vocab.from_json(dates.vocab.to_json()) == dates.vocab


# --------------------------------------------------------------------------- errors
def test_unknown_task_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown task 'sort'.*'copy'.*'dates'"):
        get_task("sort")
    assert sorted(TASKS) == sorted(ALL_TASKS)


@pytest.mark.parametrize("name, opts, err, pattern", [
    ("copy", {"max_length": 5}, TypeError, r"unknown option\(s\) \['max_length'\].*max_len"),
    ("copy", {"min_len": 5, "max_len": 3}, ValueError, "min_len <= max_len, got 5 > 3"),
    ("copy", {"num_symbols": 0}, ValueError, r"num_symbols must be an integer in \[1, 100000\], got 0"),
    ("copy", {"max_len": 2.5}, TypeError, "max_len must be an integer, got 2.5"),
    ("copy", {"max_len": True}, TypeError, "max_len must be an int"),
    ("reverse", {"num_symbols": 2, "max_len": 5}, ValueError, "held_out_size=1000"),
    ("shift", {"offset": "1"}, TypeError, "offset must be an int"),
    ("dates", {"formats": ["iso"]}, ValueError, "formats must be a non-empty list"),
    ("dates", {"min_year": 2050, "max_year": 2000}, ValueError, "min_year <= max_year"),
    ("dates", {"min_year": 2000, "max_year": 2000}, ValueError, "at most a tenth"),
    ("dates", {"max_year": 10000}, ValueError, r"max_year must be an integer in \[1000, 9999\]"),
])
def test_bad_options_raise_clear_errors(name, opts, err, pattern):
    with pytest.raises(err, match=pattern):
        get_task(name, **opts)


def test_batch_rejects_bad_rng_and_size():
    task = get_task("copy", held_out_size=0)
    with pytest.raises(TypeError, match="np.random.Generator"):
        task.batch(0, 4)
    with pytest.raises(ValueError, match="must be an integer >= 1, got 0"):
        task.batch(np.random.default_rng(0), 0)


def test_exclusion_works_when_row_keys_do_not_fit_int64():
    # 51**12 > 2**63: rows are compared as bytes instead of int64 keys
    task = get_task("copy", num_symbols=50, min_len=1, max_len=12, held_out_size=0)
    assert not task._int_keys
    task.exclude([([s], [s]) for s in range(3, 3 + 49)])        # all length-1 but id 52
    short = [x for x, _ in task.sample(np.random.default_rng(0), 60000) if len(x) == 1]
    assert len(short) > 20 and set(map(tuple, short)) == {(52,)}


def test_numpy_int_options_stay_json_able():
    task = get_task("copy", max_len=np.int64(6), held_out_size=np.int32(10))
    assert json.dumps(task.to_dict()) and task.options["max_len"] == 6


def test_held_out_request_larger_than_the_space_allows_raises():
    with pytest.raises(ValueError, match="held_out_size=2000 needs a length"):
        get_task("copy", num_symbols=3, max_len=8, held_out_size=0).held_out(2000, seed=1)
    with pytest.raises(ValueError, match="at most a tenth"):
        get_task("dates", held_out_size=0).held_out(10_000, seed=1)
