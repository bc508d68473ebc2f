"""models.sampling: the one sampler (sample_next) and the one RNG helper (make_rng):
seeds repeat, temperature 0 and top_k 1 are argmax, top_k restricts the support, the
draws follow softmax(z / T), and clear errors."""

import numpy as np
import pytest

from scratchformer.core.functional import softmax
from scratchformer.models.sampling import SAMPLING_STREAM, make_rng, sample_next


def random_logits(seed=0, N=64, V=17):
    return (2 * np.random.default_rng(seed).standard_normal((N, V))).astype(np.float32)


def test_the_same_seed_gives_the_same_tokens():
    z = random_logits()
    a = sample_next(z, 1.3, None, 5)
    np.testing.assert_array_equal(a, sample_next(z, 1.3, None, 5))
    np.testing.assert_array_equal(a, sample_next(z, 1.3, None, np.random.default_rng(5)))
    assert not np.array_equal(a, sample_next(z, 1.3, None, 6))
    assert a.dtype == np.int64 and a.shape == (64,)
    gen = np.random.default_rng(5)  # a Generator advances: the next call draws anew
    first = sample_next(z, 1.3, None, gen)
    assert not np.array_equal(first, sample_next(z, 1.3, None, gen))


def test_temperature_zero_and_top_k_one_are_argmax_without_drawing():
    z = random_logits(1)
    z[0, [3, 9]] = z[0].max() + 1  # a tie: the lowest id wins, as np.argmax
    gen = np.random.default_rng(0)
    state = gen.bit_generator.state
    for kwargs in ({"temperature": 0}, {"top_k": 1}, {"temperature": 0.0, "top_k": 4}):
        np.testing.assert_array_equal(sample_next(z, rng=gen, **kwargs), z.argmax(axis=-1))
    assert sample_next(z, temperature=0)[0] == 3
    assert gen.bit_generator.state == state  # no random number drawn


def test_top_k_restricts_the_support_to_the_k_largest_logits():
    V, k, n = 12, 3, 6000
    z = np.random.default_rng(2).standard_normal(V)
    top = set(np.argsort(z)[-k:])
    draws = sample_next(np.tile(z, (n, 1)), temperature=3.0, top_k=k, rng=0)
    assert set(np.unique(draws)) == top  # every one of the k drawn, nothing else
    p = softmax(np.where(np.isin(np.arange(V), list(top)), z / 3.0, -np.inf))
    freq = np.bincount(draws, minlength=V) / n
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / n)  # ~4 standard errors
    wide = sample_next(np.tile(z, (200, 1)), top_k=V + 5, rng=0)  # k ≥ V: no restriction
    np.testing.assert_array_equal(wide, sample_next(np.tile(z, (200, 1)), rng=0))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_draws_follow_softmax_of_logits_over_temperature(temperature):
    V, n = 6, 20000
    z = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    draws = sample_next(np.tile(z, (n, 1)), temperature=temperature, rng=11)
    p = softmax(z / temperature)
    freq = np.bincount(draws, minlength=V) / n
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / n)
    assert np.abs(freq - softmax(z)).max() > 0.02 or temperature == 1.0  # T changes the law


def test_make_rng_one_policy():
    gen = np.random.default_rng(3)
    assert make_rng(gen) is gen
    np.testing.assert_array_equal(make_rng(7).random(4), np.random.default_rng(7).random(4))
    np.testing.assert_array_equal(make_rng(np.int64(7)).random(4), np.random.default_rng(7).random(4))
    for seed in (0, 5):  # None: the model's sampling stream, apart from weights and dropout
        want = np.random.default_rng([seed, SAMPLING_STREAM]).random(4)
        np.testing.assert_array_equal(make_rng(None, seed).random(4), want)
        assert not np.array_equal(make_rng(None, seed).random(4), np.random.default_rng(seed).random(4))
    for bad in ("seed", 1.5, True):
        with pytest.raises(TypeError, match="rng must be a numpy Generator, an int seed or None"):
            make_rng(bad)


def test_sample_decode_defaults_to_the_models_sampling_stream(make_transformer):
    from scratchformer.models.decoding import sample_decode

    model = make_transformer(12, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
                             n_decoder_layers=1, max_len=10, seed=4)
    src = np.random.default_rng(0).integers(3, 12, (5, 6))
    a = sample_decode(model, src, 8, temperature=1.5, eos_id=11)
    np.testing.assert_array_equal(a, sample_decode(model, src, 8, temperature=1.5, eos_id=11,
                                                   rng=make_rng(None, 4)))


def test_clear_errors():
    z = random_logits()
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_next(z, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(z, temperature=float("inf"))
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, got 0"):
        sample_next(z, top_k=0)
    with pytest.raises(TypeError, match="top_k must be an integer"):
        sample_next(z, top_k=2.0)
    with pytest.raises(ValueError, match=r"logits must have shape \(N, V\)"):
        sample_next(z[0])
    with pytest.raises(TypeError, match="logits must be a float array"):
        sample_next(z.astype(np.int64))


@pytest.mark.parametrize("value, name", [(np.nan, "NaN"), (np.inf, r"\+inf")])
@pytest.mark.parametrize("kw", [{}, {"temperature": 0}, {"top_k": 3}])
def test_non_finite_logits_are_refused_naming_the_row(value, name, kw):
    """A diverged model's NaN (or +inf) logits: an error naming the row, never a silent
    token 0 (NaN compares false everywhere) or argmax's pick of the NaN. -inf stays a
    masked token."""
    z = random_logits()
    z[2, 5] = value
    with pytest.raises(ValueError, match=rf"logits of row 2 hold {name}: the model's output is not finite"):
        sample_next(z, rng=0, **kw)
    z[2, 5] = -np.inf
    assert sample_next(z, rng=0, **kw).shape == (z.shape[0],)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the forward pass meeting the inf
def test_every_decoder_refuses_a_model_whose_output_is_not_finite(make_transformer, make_gpt):
    """A diverged model (here: one output weight NaN): greedy, beam and sampled decoding
    and GPT.generate raise NonFiniteLogits naming it, instead of returning the token ids
    that argmax or a NaN comparison happen to give."""
    from scratchformer.models.decoding import beam_search, greedy_decode, sample_decode
    from scratchformer.models.sampling import NonFiniteLogits

    model = make_transformer()
    model.generator.weight.data[4, 0] = np.nan
    src = np.array([[3, 4, 5, 6, 2]])
    for decode in (lambda: greedy_decode(model, src, 6), lambda: beam_search(model, src, 3, 6),
                   lambda: sample_decode(model, src, 6, rng=0)):
        with pytest.raises(NonFiniteLogits, match="logits of row 0 hold NaN"):
            decode()
    gpt = make_gpt()
    gpt.lm_head.weight.data[1, 0] = np.inf
    with pytest.raises(NonFiniteLogits, match="the model's output is not finite"):
        gpt.generate(np.array([[1, 2]]), 3, rng=0)
