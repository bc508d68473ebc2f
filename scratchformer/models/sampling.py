"""Drawing the next token: the one sampling function of every decoder (``GPT.generate``,
``sample_decode``) and the one way to get its random generator.

Notation: N rows being decoded, V vocabulary, z the logits of the next position (N, V).

    p   = softmax(z / temperature)   over the top_k largest z of each row (ties at the k-th kept)
    y   = the first v with cdf_v > u · cdf_V,   u ~ U[0, 1), one per row   (inverse CDF)

``temperature=0`` or ``top_k=1`` is greedy: argmax, ties → the lowest id, no random number
drawn. The cumulative sum runs in float64, and ``u · cdf_V`` (not ``u``) is compared, so
rounding in the sum can never push the draw past the last allowed token.

Randomness (``make_rng``): a ``np.random.Generator`` is used as is; an int is a seed; None
is the model's own sampling stream ``default_rng([seed, SAMPLING_STREAM])`` from its
config seed, apart from the streams of its weights (``default_rng(seed)``) and dropout
(``[seed, 1]``): the same call repeats itself.
"""

from __future__ import annotations

import numpy as np

from ..core.checks import check_int, check_real, is_int
from ..core.functional import softmax

SAMPLING_STREAM = 2  # the model's streams from its config seed: weights seed, dropout [seed, 1]


class NonFiniteLogits(ValueError):
    """The logits to draw from hold NaN or +inf: the model's output is not finite."""


def make_rng(rng_or_seed=None, model_seed: int = 0) -> np.random.Generator:
    """The generator a decoder samples from: ``rng_or_seed`` itself if it is a
    ``np.random.Generator`` (its state advances: two calls draw differently), a new one
    seeded with it if it is an int, or for None the model's sampling stream
    ``np.random.default_rng([model_seed, SAMPLING_STREAM])``."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if rng_or_seed is None:
        return np.random.default_rng([model_seed, SAMPLING_STREAM])
    if is_int(rng_or_seed):
        return np.random.default_rng(int(rng_or_seed))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got "
                    f"{rng_or_seed!r} ({type(rng_or_seed).__name__})")


def check_sampling(temperature, top_k) -> tuple[float, int | None]:
    """(temperature, top_k) as plain numbers, or an error naming the argument: temperature a
    finite number >= 0, top_k None or an integer >= 1."""
    temperature = check_real("temperature", temperature, low=0.0)
    return temperature, None if top_k is None else check_int("top_k", top_k, low=1)


def check_logits(logits: np.ndarray) -> None:
    """``NonFiniteLogits`` naming the first row of ``logits`` (N, V) with a NaN or +inf:
    a diverged model's output, from which no token can be chosen. -inf is allowed (a token
    masked out)."""
    bad = np.isnan(logits) | (logits == np.inf)
    if bad.any():
        row = int(bad.any(axis=-1).argmax())
        what = "NaN" if np.isnan(logits[row]).any() else "+inf"
        raise NonFiniteLogits(f"logits of row {row} hold {what}: the model's output is not "
                              f"finite (diverged or overflowing weights?); there is no token "
                              f"to choose")


def sample_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                rng=None) -> np.ndarray:
    """logits (N, V) → one token id per row (N,), int64.

    p = softmax(logits / temperature) over the ``top_k`` largest logits of each row
    (None, or top_k ≥ V: every token); a token is drawn by inverting the CDF with one
    uniform per row. ``temperature=0`` or ``top_k=1``: argmax, no random number drawn.
    ``rng``: as ``make_rng``; a decoder makes one generator and passes it at every step
    (None here would start the same stream, model seed 0, at each call).
    Logits with NaN or +inf raise ``NonFiniteLogits`` (a ValueError) naming the row.
    """
    temperature, top_k = check_sampling(temperature, top_k)
    logits = np.asarray(logits)
    if logits.dtype.kind != "f":
        raise TypeError(f"logits must be a float array, got dtype {logits.dtype}")
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, V), got shape {logits.shape}")
    check_logits(logits)
    if top_k == 1 or temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)
    N, V = logits.shape
    z = logits.astype(np.float64) / temperature  # (N, V)
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k, None]  # (N, 1) k-th largest
        z = np.where(z >= kth, z, -np.inf)
    cdf = np.cumsum(softmax(z), axis=-1)  # (N, V)
    u = make_rng(rng).random((N, 1))  # (N, 1)
    return np.minimum((cdf < u * cdf[:, -1:]).sum(axis=-1), V - 1).astype(np.int64)
