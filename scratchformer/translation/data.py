"""Parallel data for translation: load, split, encode, and batch by length.

Notation: N pairs, B pairs in a batch, S source length, T target length (with BOS/EOS).

Two sources of pairs:

* ``"bible-en-es"``: King James Version (1611 English, 1769 text) against Reina-Valera
  1909, aligned verse by verse (``scratchformer.data.sword``), split **by book** so no
  verse of a validation or test book is ever trained on.
* a ``src<TAB>tgt`` file (``scratchformer.data.pairs.read_pairs_tsv``): a seeded
  shuffle, then the last ``val_frac`` / ``test_frac`` of it held out.

Batches are built by length: pairs sorted by (source, target) length are cut into
consecutive chunks of at most ``max_tokens`` padded tokens, and the chunks are shuffled.
Sorting makes the pairs of a batch about equally long, so padding (which costs the same
compute as real tokens) nearly vanishes.
"""

from __future__ import annotations

import numpy as np

from ..core.tokens import BOS, EOS, PAD

CORPORA = ("bible-en-es",)


def load_splits(corpus: str | None = None, pairs_path: str | None = None,
                val_frac: float = 0.05, test_frac: float = 0.05, seed: int = 0,
                test_books=None, val_books=None):
    """(train, val, test): three lists of (source, target) strings.

    Exactly one of ``corpus`` ("bible-en-es") and ``pairs_path`` must be given.
    ``test_books`` / ``val_books`` (OSIS ids) override the Bible's default held-out books.
    """
    if (corpus is None) == (pairs_path is None):
        raise ValueError(f"give exactly one of corpus and pairs_path, got corpus={corpus!r}, "
                         f"pairs_path={pairs_path!r}")
    if corpus is not None:
        if corpus not in CORPORA:
            raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
        from ..data.sword import DEFAULT_TEST_BOOKS, DEFAULT_VAL_BOOKS, bible_pairs, split_by_book
        splits = split_by_book(bible_pairs(), test_books=test_books or DEFAULT_TEST_BOOKS,
                               val_books=val_books or DEFAULT_VAL_BOOKS)
        return tuple([(p[3], p[4]) for p in split] for split in splits)
    from ..data.pairs import read_pairs_tsv
    for name, frac in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {frac!r}")
    pairs = read_pairs_tsv(pairs_path)
    if not pairs:
        raise ValueError(f"{pairs_path}: no pairs found")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test, n_val = int(round(test_frac * len(pairs))), int(round(val_frac * len(pairs)))
    if n_test + n_val >= len(pairs):
        raise ValueError(f"{pairs_path}: {len(pairs)} pairs leave nothing to train on with "
                         f"val_frac={val_frac}, test_frac={test_frac}")
    shuffled = [pairs[i] for i in order]
    n_train = len(pairs) - n_val - n_test
    return shuffled[:n_train], shuffled[n_train:n_train + n_val], shuffled[n_train + n_val:]


def encode_pairs(tokenizer, pairs, max_len: int | None = None):
    """Encode (src, tgt) pairs → (src_ids, tgt_ids): lists of int lists.

    Sources carry EOS only; targets are ``BOS … EOS`` (the decoder reads tgt[:-1] and
    predicts tgt[1:]). With ``max_len``, pairs whose source or target (with specials) is
    longer are dropped.
    """
    srcs, tgts = [], []
    for s, t in pairs:
        a, b = tokenizer.encode(s, eos=True), tokenizer.encode(t, bos=True, eos=True)
        if max_len is None or (len(a) <= max_len and len(b) <= max_len):
            srcs.append(a)
            tgts.append(b)
    return srcs, tgts


def pad(seqs, pad_id: int = PAD) -> np.ndarray:
    """List of int lists → (B, max length) int64, right-padded with ``pad_id``."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


def length_batches(srcs, tgts, max_tokens: int, rng: np.random.Generator | None = None,
                   max_batch: int = 512) -> list[np.ndarray]:
    """Index arrays of pairs, one per batch, sorted by length, each batch holding at most
    ``max_tokens`` padded tokens: B · max(S_max, T_max) ≤ max_tokens (and B ≤ max_batch).

    Pairs are ordered by (source length, target length); ties and the order of the
    batches are shuffled with ``rng`` (no shuffling when None), so each epoch differs.
    """
    if len(srcs) != len(tgts):
        raise ValueError(f"srcs and tgts must have the same length, got {len(srcs)} and {len(tgts)}")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    ls = np.array([len(s) for s in srcs])
    lt = np.array([len(t) for t in tgts])
    tie = rng.random(len(ls)) if rng is not None else np.arange(len(ls))
    order = np.lexsort((tie, lt, ls))  # by source length, then target length
    batches, start = [], 0
    while start < len(order):
        end, longest = start, 0
        while end < len(order):
            i = order[end]
            longest_next = max(longest, ls[i], lt[i])
            if end > start and (longest_next * (end - start + 1) > max_tokens
                                or end - start >= max_batch):
                break
            longest, end = longest_next, end + 1
        batches.append(order[start:end])
        start = end
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def make_batch(srcs, tgts, idx):
    """(src (B, S), tgt_in (B, T-1), tgt_out (B, T-1)) for the pairs ``idx``: the decoder
    reads ``tgt_in = BOS y_1 … y_n`` and is trained to predict ``tgt_out = y_1 … y_n EOS``."""
    src = pad([srcs[i] for i in idx])  # (B, S)
    tgt = pad([tgts[i] for i in idx])  # (B, T)
    return src, tgt[:, :-1], tgt[:, 1:]


def run_splits(info: dict):
    """(train, val, test) of a translate-train run, rebuilt from the settings its checkpoint
    stores (corpus or pairs file, fractions, seed, direction)."""
    train, val, test = load_splits(info.get("corpus"), info.get("pairs_path"),
                                   val_frac=info.get("val_frac", 0.05),
                                   test_frac=info.get("test_frac", 0.05), seed=info.get("seed", 0))
    if info.get("reverse"):
        train, val, test = ([(b, a) for a, b in split] for split in (train, val, test))
    return train, val, test


__all__ = ["load_splits", "run_splits", "encode_pairs", "pad", "length_batches", "make_batch",
           "CORPORA", "PAD", "BOS", "EOS"]
