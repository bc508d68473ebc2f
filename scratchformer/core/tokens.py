"""Token ids: the special ids every built-in task uses, and the checks at a model's entry.

``PAD = 0, BOS = 1, EOS = 2`` — padding, begin- and end-of-sequence — are defined here
once; the vocabularies (``data.vocab``), the BPE tokenizer and the decoders use these.

A model checks its token arrays once per forward, at its entry: ``check_tokens`` the
dtype, the shape (B, T) and the length against ``max_len``; the Embedding that looks
the ids up checks their range (``check_token_range``), so a negative id can never wrap
around to the end of the table.
"""

from __future__ import annotations

import numpy as np

PAD, BOS, EOS = 0, 1, 2


def check_tokens(name: str, tokens, max_len: int | None = None) -> np.ndarray:
    """``tokens`` as a (B, T) integer ndarray, T ≤ max_len, or an error naming ``name``.

    The range of the ids is checked where they are looked up (``check_token_range``).
    """
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of token ids, got dtype {tokens.dtype}")
    if tokens.ndim != 2:
        raise ValueError(f"{name} must have shape (B, T), got shape {tokens.shape}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tokens.shape}")
    if max_len is not None and tokens.shape[1] > max_len:
        raise ValueError(f"{name} length {tokens.shape[1]} exceeds max_len {max_len}")
    return tokens


def check_token_range(name: str, ids, vocab_size: int) -> np.ndarray:
    """``ids`` as an integer ndarray whose every id is in [0, vocab_size), or an error naming
    the first bad id and where it is: ``token id 13 out of range for vocab_size 13 (src[0, 3])``."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        where = tuple(int(i) for i in np.argwhere((ids < 0) | (ids >= vocab_size))[0])
        at = f"{name}[{', '.join(map(str, where))}]" if where else name
        raise ValueError(f"token id {ids[where]} out of range for vocab_size {vocab_size} ({at})")
    return ids
