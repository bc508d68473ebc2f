"""Greedy search, beam search and sampling: cached == uncached, beam 1 == greedy, the
output format, early stopping, eval mode, exact beam scores, and clear errors."""

import itertools

import numpy as np
import pytest

from scratchformer.models.decoding import beam_search, greedy_decode, sample_decode
from scratchformer.core.functional import log_softmax
from scratchformer.core.loss import CrossEntropyLoss
from scratchformer.training.optim import Adam

PAD, BOS, EOS = 0, 1, 2
V = 12  # 3 specials + 9 symbols


@pytest.fixture(scope="module")
def make_model(make_transformer):
    """``make_model(seed=0, **cfg)``: a 2+2-layer, d_model 32 model over V tokens."""
    def make(**cfg):
        kw = dict(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2, max_len=24)
        return make_transformer(cfg.pop("src_vocab_size", V), **{**kw, **cfg})
    return make


def copy_batch(rng, n, lo=2, hi=7):
    """Copy toy: src = x (padded), tgt_in = [BOS] + x, tgt_out = x + [EOS]."""
    lengths = rng.integers(lo, hi + 1, n)
    T = hi + 1
    x = rng.integers(3, V, (n, hi))
    x[np.arange(hi) >= lengths[:, None]] = PAD
    src = x
    tgt_in = np.full((n, T), PAD)
    tgt_in[:, 0] = BOS
    tgt_in[:, 1:] = x
    tgt_out = np.full((n, T), PAD)
    tgt_out[:, :hi] = x
    tgt_out[np.arange(n), lengths] = EOS
    return src, tgt_in, tgt_out, lengths


@pytest.fixture(scope="module")
def trained(make_model):
    """A model trained for 100 Adam steps on the copy toy (~80% of rows copied exactly):
    it emits rows of varying lengths that end in EOS, so decoding is far from trivial."""
    model = make_model(seed=1, n_encoder_layers=1, n_decoder_layers=1)
    opt = Adam(model.parameters(), lr=5e-3)
    crit = CrossEntropyLoss(ignore_index=PAD)
    rng = np.random.default_rng(0)
    for _ in range(100):
        src, tgt_in, tgt_out, _ = copy_batch(rng, 32)
        opt.zero_grad()
        crit(model(src, tgt_in), tgt_out)
        model.backward(crit.backward())
        opt.step()
    model.eval()
    return model


def random_src(seed=0, B=16, S=9):
    rng = np.random.default_rng(seed)
    src = rng.integers(3, V, (B, S))
    src[np.arange(S) >= rng.integers(1, S + 1, B)[:, None]] = PAD  # ragged rows
    return src


def assert_valid(out, max_len, pad=PAD, eos=EOS):
    """(B, L) int64, L <= max_len; nothing but pad after the first EOS."""
    assert out.dtype == np.int64 and out.ndim == 2 and 1 <= out.shape[1] <= max_len
    is_eos = out == eos
    after = np.cumsum(is_eos, axis=1) - is_eos > 0  # strictly after the first EOS
    assert (out[after] == pad).all()
    unfinished = ~is_eos.any(axis=1)
    assert out.shape[1] == max_len or not unfinished.any()  # only max_len leaves rows open
    return is_eos.any(axis=1)


# ---- cached == uncached ------------------------------------------------------------------
@pytest.mark.parametrize("norm_first", [False, True])
def test_greedy_cached_equals_uncached_on_random_model(make_model, norm_first):
    model = make_model(seed=3, norm_first=norm_first)
    src = random_src(1)
    a = greedy_decode(model, src, 20, eos_id=11)  # a rare EOS: long rows
    b = greedy_decode(model, src, 20, eos_id=11, use_cache=False)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] > 5


def test_greedy_cached_equals_uncached_on_trained_model(trained):
    src, _, _, lengths = copy_batch(np.random.default_rng(5), 64)
    a = greedy_decode(trained, src, 20)
    b = greedy_decode(trained, src, 20, use_cache=False)
    np.testing.assert_array_equal(a, b)
    ends = assert_valid(a, 20)
    assert ends.mean() > 0.8 and len(set(np.argmax(a == EOS, axis=1))) > 2  # varied lengths


@pytest.mark.parametrize("beam_size", [2, 4])
def test_beam_cached_equals_uncached(make_model, trained, beam_size):
    src, _, _, _ = copy_batch(np.random.default_rng(6), 24)
    for model, eos in ((trained, EOS), (make_model(seed=4), 11)):
        a, sa = beam_search(model, src, beam_size, 16, eos_id=eos, return_scores=True)
        b, sb = beam_search(model, src, beam_size, 16, eos_id=eos, use_cache=False,
                            return_scores=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sa, sb, rtol=1e-5)


def test_sampling_cached_equals_uncached_for_the_same_seed(trained):
    src = random_src(2)
    a = sample_decode(trained, src, 16, temperature=1.5, rng=7)
    b = sample_decode(trained, src, 16, temperature=1.5, rng=7, use_cache=False)
    np.testing.assert_array_equal(a, b)
    assert_valid(a, 16)


# ---- beam 1 == greedy, beam quality --------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_size_one_equals_greedy(make_model, trained, alpha):
    src, _, _, _ = copy_batch(np.random.default_rng(7), 48)
    for model, eos in ((trained, EOS), (make_model(seed=5), 11)):
        for use_cache in (True, False):
            g = greedy_decode(model, src, 18, eos_id=eos, use_cache=use_cache)
            b = beam_search(model, src, 1, 18, eos_id=eos, length_penalty=alpha,
                            use_cache=use_cache)
            np.testing.assert_array_equal(b, g)


def test_trained_model_copies_with_greedy_and_beam(trained):
    src, _, tgt_out, lengths = copy_batch(np.random.default_rng(8), 64)
    for out in (greedy_decode(trained, src, 12), beam_search(trained, src, 4, 12)):
        assert_valid(out, 12)
        width = min(out.shape[1], tgt_out.shape[1])
        exact = (out[:, :width] == tgt_out[:, :width]).all(axis=1)
        assert exact.mean() > 0.5, exact.mean()  # learnt something real in 100 steps


def sequence_score(model, src, seq, alpha):
    """Σ log p(y_i | y_<i, src) / ((5 + L) / 6)^α for one generated row (no BOS)."""
    L = len(seq)
    tgt = np.array([[BOS, *seq[:-1]]]) if L > 1 else np.array([[BOS]])
    from scratchformer.core.functional import causal_mask
    logits = model.decode(model.encode(src[None]), tgt, tgt_mask=causal_mask(L),
                          src_mask=(src[None] != PAD)[:, None, None, :])
    logp = log_softmax(logits[0].astype(np.float64))
    return logp[np.arange(L), seq].sum() / ((5 + L) / 6) ** alpha


def test_beam_score_is_the_length_normalised_log_probability(trained):
    src, _, _, _ = copy_batch(np.random.default_rng(9), 6)
    out, scores = beam_search(trained, src, 3, 12, length_penalty=0.6, return_scores=True)
    for b in range(len(src)):
        row = out[b]
        L = int(np.argmax(row == EOS)) + 1 if (row == EOS).any() else out.shape[1]
        assert scores[b] == pytest.approx(sequence_score(trained, src[b], row[:L], 0.6), abs=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_exhaustive_optimum(make_model, alpha):
    """V = 5, 3 steps: a beam wider than every hypothesis prunes nothing, so its answer
    is the best of all sequences (ending in EOS, or of length 3)."""
    model = make_model(seed=2, src_vocab_size=5, tgt_vocab_size=5, d_model=16, n_heads=2)
    src = np.array([[3, 4, 3], [4, 4, 0]])
    out, scores = beam_search(model, src, 125, 3, length_penalty=alpha, return_scores=True)
    for b in range(2):
        best = -np.inf
        for L in (1, 2, 3):
            for seq in itertools.product(range(5), repeat=L):
                if EOS in seq[:-1] or (L < 3 and seq[-1] != EOS):
                    continue
                best = max(best, sequence_score(model, src[b], list(seq), alpha))
        assert scores[b] == pytest.approx(best, abs=1e-6)


# ---- output format, early stop, encoder once, eval mode ------------------------------------
def test_outputs_end_at_eos_and_pad_after(trained):
    src = random_src(3, B=32)
    for out in (greedy_decode(trained, src, 15), beam_search(trained, src, 3, 15),
                sample_decode(trained, src, 15, rng=0)):
        assert_valid(out, 15)
        assert not (out[:, :1] == BOS).all()  # BOS is not part of the output


def test_decoding_stops_once_every_row_finished(trained):
    src, _, _, lengths = copy_batch(np.random.default_rng(10), 32, lo=2, hi=4)
    calls = []
    step = trained.decode_step
    trained.decode_step = lambda *a, **k: calls.append(1) or step(*a, **k)
    try:
        out = greedy_decode(trained, src, 20)
    finally:
        del trained.decode_step
    ends = np.argmax(out == EOS, axis=1) + 1  # length of every row, EOS included
    assert (out == EOS).any(axis=1).all()
    assert out.shape[1] == ends.max() < 20 and len(calls) == out.shape[1]


def test_a_row_without_eos_runs_to_max_len(make_model):
    model = make_model(seed=3)
    out = greedy_decode(model, random_src(4), 7, eos_id=11)
    assert out.shape == (16, 7)


def test_encoder_runs_once(trained):
    counted = []
    enc = trained.encode
    trained.encode = lambda *a, **k: counted.append(1) or enc(*a, **k)
    try:
        greedy_decode(trained, random_src(5), 10)
        beam_search(trained, random_src(5), 3, 10)
    finally:
        del trained.encode
    assert len(counted) == 2


@pytest.mark.parametrize("fn", ["greedy", "beam", "sample"])
def test_eval_mode_during_decoding_and_mode_restored_after(make_model, fn):
    model = make_model(seed=6, dropout=0.5)
    src = random_src(6)
    run = {"greedy": lambda: greedy_decode(model, src, 10, eos_id=11),
           "beam": lambda: beam_search(model, src, 2, 10, eos_id=11),
           "sample": lambda: sample_decode(model, src, 10, eos_id=11, rng=3)}[fn]
    model.eval()
    reference = run()
    assert not any(m.training for m in model.modules())
    model.train()
    again = run()  # dropout 0.5 would change the tokens if it were active
    np.testing.assert_array_equal(again, reference)
    assert all(m.training for m in model.modules())


def test_sampling_top_k_one_is_greedy_and_seeds_repeat(trained):
    src = random_src(7)
    np.testing.assert_array_equal(sample_decode(trained, src, 12, top_k=1, rng=1),
                                  greedy_decode(trained, src, 12))
    np.testing.assert_array_equal(sample_decode(trained, src, 12, temperature=0),
                                  greedy_decode(trained, src, 12))
    np.testing.assert_array_equal(sample_decode(trained, src, 12, temperature=2.0),  # rng=None:
                                  sample_decode(trained, src, 12, temperature=2.0))  # the model's stream
    a = sample_decode(trained, src, 12, temperature=2.0, rng=5)
    np.testing.assert_array_equal(a, sample_decode(trained, src, 12, temperature=2.0, rng=5))
    assert not np.array_equal(a, sample_decode(trained, src, 12, temperature=2.0, rng=6))


# ---- errors --------------------------------------------------------------------------------
def test_clear_errors_for_bad_arguments(make_model):
    model = make_model()
    src = random_src(0, B=2)
    with pytest.raises(TypeError, match="src must be an integer array"):
        greedy_decode(model, src.astype(np.float32), 5)
    with pytest.raises(ValueError, match=r"src must have shape \(B, S\), got shape \(9,\)"):
        greedy_decode(model, src[0], 5)
    for bad in (0, 25):
        with pytest.raises(ValueError, match=r"max_len must be an integer in \[1, 24\], got"):
            greedy_decode(model, src, bad)
    with pytest.raises(TypeError, match="max_len must be an integer, got 2.5"):
        greedy_decode(model, src, 2.5)
    with pytest.raises(ValueError, match="max_len"):
        beam_search(model, src, 2, 0)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="beam_size must be an integer >= 1"):
            beam_search(model, src, bad, 5)
    for bad in (1.5, True):
        with pytest.raises(TypeError, match="beam_size must be an integer"):
            beam_search(model, src, bad, 5)
    with pytest.raises(ValueError, match="length_penalty must be"):
        beam_search(model, src, 2, 5, length_penalty=float("nan"))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be >= 0"):
            sample_decode(model, src, 5, temperature=bad)
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        sample_decode(model, src, 5, top_k=0)
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        sample_decode(model, src, 5, rng="seed")
    with pytest.raises(ValueError, match=r"eos_id must be an integer in \[0, 11\], got 12"):
        greedy_decode(model, src, 5, eos_id=12)
    with pytest.raises(TypeError, match="encoder–decoder"):
        greedy_decode(object(), src, 5)


def test_beam_rank_equals_a_full_sort_ties_to_the_lower_index():
    """``_rank``'s threshold selection gives exactly the C best of a full sort by (score
    descending, index ascending): with ties, with beams at -inf (the first step), and with
    vocabularies too small to cut into chunks."""
    from scratchformer.models.decoding import _rank

    rng = np.random.default_rng(0)
    for trial in range(200):
        N, K, V = int(rng.integers(1, 7)), int(rng.integers(1, 6)), int(rng.integers(2, 400))
        scores = 3 * rng.standard_normal((N, K))
        if trial % 3 == 0:
            scores[:, 1:] = -np.inf  # step one: only beam 0 is alive
        logp = rng.standard_normal((N * K, V))
        if trial % 2 == 0:
            logp = np.round(logp, 1)  # many exact ties
        C = min(2 * K, K * V)
        cand = (scores[:, :, None] + logp.reshape(N, K, V)).reshape(N, -1)
        idx = np.arange(cand.shape[1])
        want = np.stack([np.lexsort((idx, -row))[:C] for row in cand])
        flat, score = _rank(scores, logp, C)
        np.testing.assert_array_equal(flat, want)
        np.testing.assert_array_equal(score, np.take_along_axis(cand, want, axis=1))
