"""Decoding for the encoder–decoder: greedy search, beam search and sampling.

Notation: B sources, K beam size, N rows still decoding, S source length, t tokens so far,
V target vocabulary.

Every decoder here reads the source once, ``memory = model.encode(src)`` (B, S, D), then
grows the target one token at a time from BOS::

    y_0 = BOS,   y_{t+1} = choose( p(· | y_0 .. y_t, src) )     until EOS or max_len tokens

* ``use_cache=True``: ``model.decode_step`` feeds only the newest token; the keys and values
  of earlier positions come from the KV cache, so step t costs O(t) attention work.
* ``use_cache=False``: ``model.decode`` re-runs the whole prefix every step (O(t²) in all),
  the textbook way. Both give the same tokens.

Output format (every function): an int64 array (B, L), L <= max_len, of generated tokens
*without* the BOS. Each row ends with its EOS (included); positions after it hold
``model.config.pad_id``; a row that reached max_len without EOS has no EOS. L is the number
of steps taken: decoding stops as soon as every row has finished. Rows that finish are
dropped from the batch (their cache rows too), so later steps only compute live rows.

The model is put in eval mode (no dropout) for the call and its previous mode restored.
A generated pad token is treated as an ordinary token (the uncached path masks only the
future, never pad positions, exactly like the cache), so a poorly trained model can emit
it; the EOS is what ends a row.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.functional import causal_mask, log_softmax, padding_mask
from ..core.tokens import BOS, EOS


# ---- shared machinery ------------------------------------------------------------------
def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_model(fn: str, model) -> None:
    if not (hasattr(model, "encode") and hasattr(model, "decode_step")):
        raise TypeError(f"{fn} needs an encoder–decoder model with encode() and decode_step(), "
                        f"got {type(model).__name__} (a GPT decodes with model.generate)")


def _check_inputs(fn: str, model, src, max_len, bos_id, eos_id, src_mask):
    """Validate the common arguments; return (src (B, S) ndarray, src_mask (B|1, 1, 1, S))."""
    _check_model(fn, model)
    cfg = model.config
    src = np.asarray(src)
    if src.dtype.kind not in "iu":
        raise TypeError(f"{fn}: src must be an integer array of token ids (B, S), "
                        f"got dtype {src.dtype}")
    if src.ndim != 2:
        raise ValueError(f"{fn}: src must have shape (B, S), got shape {src.shape}")
    if not _is_int(max_len) or not 1 <= max_len <= cfg.max_len:
        raise ValueError(f"{fn}: max_len must be an integer in [1, {cfg.max_len}] "
                         f"(the model's max_len), got {max_len!r}")
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        if not _is_int(value) or not 0 <= value < cfg.tgt_vocab_size:
            raise ValueError(f"{fn}: {name} must be a token id in [0, {cfg.tgt_vocab_size}), "
                             f"got {value!r}")
    if src_mask is None:
        src_mask = padding_mask(src, cfg.pad_id)  # (B, 1, 1, S), True = real token
    return src, np.asarray(src_mask)


class _Steps:
    """Next-token logits for N prefixes, cached (decode_step) or not (decode); ``select``
    keeps / reorders rows of the cache, the memory and the source mask together."""

    def __init__(self, model, memory, src_mask, use_cache: bool):
        self.model, self.memory, self.src_mask = model, memory, src_mask
        self.cache = model.init_cache() if use_cache else None

    def next_logits(self, prefix: np.ndarray) -> np.ndarray:
        """prefix (N, t) with BOS first → logits of position t, (N, V)."""
        if self.cache is not None:  # feed only the newest token; the rest is cached
            return self.model.decode_step(self.memory, prefix[:, -1:], self.cache,
                                          self.src_mask)[:, -1]
        t = prefix.shape[1]
        return self.model.decode(self.memory, prefix, self.src_mask,
                                 tgt_mask=causal_mask(t))[:, -1]  # (N, t, V) → (N, V)

    def select(self, rows: np.ndarray) -> None:
        """Keep rows ``rows`` (in that order): finished rows dropped, beams reordered."""
        if rows.shape[0] == self.memory.shape[0] and np.array_equal(rows, np.arange(rows.size)):
            return
        self.memory = self.memory[rows]  # (N', S, D)
        if self.src_mask.shape[0] != 1:  # a (1, ...) mask broadcasts over rows as is
            self.src_mask = self.src_mask[rows]
        if self.cache is not None:
            self.cache.reorder(rows)


def _decode_loop(fn, model, src, max_len, bos_id, eos_id, use_cache, src_mask, choose):
    """One token per step for every unfinished row, ``choose(logits (N, V)) -> (N,)``."""
    src, src_mask = _check_inputs(fn, model, src, max_len, bos_id, eos_id, src_mask)
    B = src.shape[0]
    out = np.full((B, max_len), model.config.pad_id, dtype=np.int64)  # (B, max_len)
    with model.eval_mode():
        steps = _Steps(model, model.encode(src, src_mask), src_mask, use_cache)
        prefix = np.full((B, 1), bos_id, dtype=np.int64)  # (N, t): live rows, BOS first
        live = np.arange(B)  # source row of each live row
        for t in range(max_len):
            nxt = choose(steps.next_logits(prefix))  # (N,)
            out[live, t] = nxt
            done = nxt == eos_id
            if done.all() or t == max_len - 1:
                return out[:, : t + 1]
            prefix = np.concatenate([prefix, nxt[:, None]], axis=1)  # (N, t + 1)
            if done.any():  # drop finished rows from every array and the cache
                keep = np.flatnonzero(~done)
                prefix, live = prefix[keep], live[keep]
                steps.select(keep)
    raise AssertionError("unreachable")  # pragma: no cover


# ---- greedy ----------------------------------------------------------------------------
def greedy_decode(model, src, max_len: int, bos_id: int = BOS, eos_id: int = EOS,
                  use_cache: bool = True, src_mask=None) -> np.ndarray:
    """Greedy search: y_{t+1} = argmax_v p(v | y_0..y_t, src)  (ties → the lowest id).

    src (B, S) int token ids → (B, L) int64, L <= max_len, in the module's output format
    (no BOS, EOS ends each row, pad after it, stops once every row finished).
    ``src_mask`` (B, 1, 1, S), True = may attend, defaults to ``padding_mask(src, pad_id)``.
    """
    return _decode_loop("greedy_decode", model, src, max_len, bos_id, eos_id, use_cache,
                        src_mask, lambda logits: logits.argmax(axis=-1))


# ---- sampling --------------------------------------------------------------------------
def sample_decode(model, src, max_len: int, temperature: float = 1.0, top_k: int | None = None,
                  rng=None, bos_id: int = BOS, eos_id: int = EOS, use_cache: bool = True,
                  src_mask=None) -> np.ndarray:
    """Ancestral sampling: y_{t+1} ~ softmax(logits / temperature), restricted to the
    ``top_k`` most likely tokens when given (``top_k=1`` is greedy).

    Drawn with the Gumbel-max trick, ``argmax(logits / T + g)``, g ~ Gumbel(0, 1) i.i.d.,
    which samples exactly from the softmax and never picks an excluded (−inf) token.
    ``rng``: an ``np.random.Generator``, an int seed, or None for a generator seeded with
    ``model.config.seed`` (so a call repeats itself). Output format as ``greedy_decode``.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"sample_decode: temperature must be a positive finite number, "
                         f"got {temperature!r}")
    _check_model("sample_decode", model)
    V = model.config.tgt_vocab_size
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"sample_decode: top_k must be None or a positive integer, got {top_k!r}")
    if rng is None:
        rng = np.random.default_rng(model.config.seed)
    elif _is_int(rng):
        rng = np.random.default_rng(int(rng))
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(f"sample_decode: rng must be a numpy Generator, an int seed or None, "
                        f"got {type(rng).__name__}")

    def choose(logits):  # (N, V) → (N,)
        z = logits.astype(np.float64) / temperature
        if top_k is not None and top_k < V:
            kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k, None]  # (N, 1)
            z[z < kth] = -np.inf
        return (z + rng.gumbel(size=z.shape)).argmax(axis=-1)

    return _decode_loop("sample_decode", model, src, max_len, bos_id, eos_id, use_cache,
                        src_mask, choose)


# ---- beam search -----------------------------------------------------------------------
def _length_penalty(length, alpha: float):
    """GNMT (Wu et al., 2016): lp(L) = ((5 + L) / 6)^α; α = 0 gives raw log-probabilities."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


def beam_search(model, src, beam_size: int, max_len: int, bos_id: int = BOS, eos_id: int = EOS,
                length_penalty: float = 0.6, use_cache: bool = True, return_scores: bool = False,
                src_mask=None):
    """Beam search, batched over all B·K hypotheses; returns the best one per source.

    Each beam keeps its raw score s = Σ log p(y_i | y_<i, src) (float64). Per step the
    K·V extensions of a source's K beams are ranked by s and the best 2K kept (fairseq):
    those ending in EOS among the top K become *finished* hypotheses, scored
    s / lp(L) with the GNMT length penalty lp(L) = ((5 + L) / 6)^α, α = ``length_penalty``
    and L the generated length counting the EOS; the K best non-EOS ones stay alive.
    A source is done once it has K finished hypotheses (or at max_len, where its live
    beams are finished too, without EOS); its rows then leave the batch. Since finished
    hypotheses only come from the top K, ``beam_size=1`` is exactly ``greedy_decode``.

    Rows are flattened source-major: row b·K + k is beam k of source b. The memory is
    encoded once per source and repeated K times; ``cache.reorder(rows)`` and the same
    indexing of memory and source mask follow every beam reordering.

    Returns tokens (B, L) in ``greedy_decode``'s format, or ``(tokens, scores)`` with
    ``return_scores``: scores (B,) float64, the best hypothesis' s / lp(L).
    """
    fn = "beam_search"
    src, src_mask = _check_inputs(fn, model, src, max_len, bos_id, eos_id, src_mask)
    if not _is_int(beam_size) or beam_size < 1:
        raise ValueError(f"{fn}: beam_size must be a positive integer, got {beam_size!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float, np.floating)) \
            or not math.isfinite(length_penalty):
        raise ValueError(f"{fn}: length_penalty must be a finite number, got {length_penalty!r}")
    K, V, pad = int(beam_size), model.config.tgt_vocab_size, model.config.pad_id
    B = src.shape[0]
    C = min(2 * K, K * V)  # candidates kept per source and step
    best_tok = np.full((B, max_len), pad, dtype=np.int64)  # best finished hypothesis so far
    best_len = np.zeros(B, dtype=np.int64)
    best_score = np.full(B, -np.inf)  # normalised s / lp(L)
    n_fin = np.zeros(B, dtype=np.int64)  # finished hypotheses per source

    def offer(live, rows_tok, scores, lengths, ok):
        """Candidates (N, C') of live sources: keep each source's best if it beats the old."""
        norm = np.where(ok, scores / _length_penalty(lengths, length_penalty), -np.inf)
        j = norm.argmax(axis=1)  # (N,) first best in rank order
        n = np.arange(len(live))
        better = norm[n, j] > best_score[live]
        src_rows, j = live[better], j[better]
        best_score[src_rows] = norm[n[better], j]
        L = lengths if np.ndim(lengths) == 0 else lengths[n[better], j]
        best_len[src_rows] = L
        best_tok[src_rows] = pad
        best_tok[src_rows, :L] = rows_tok(n[better], j)[:, :L]

    with model.eval_mode():
        memory = model.encode(src, src_mask)  # (B, S, D): once per source
        rep = np.repeat(np.arange(B), K)  # (B·K,) source of each row
        steps = _Steps(model, memory[rep], src_mask[rep] if src_mask.shape[0] != 1 else src_mask,
                       use_cache)
        prefix = np.full((B * K, 1), bos_id, dtype=np.int64)  # (N·K, t)
        scores = np.full((B, K), -np.inf)  # (N, K) raw log-prob sums
        scores[:, 0] = 0.0  # all beams start identical: expand beam 0 only
        live = np.arange(B)  # sources still searching
        for t in range(max_len):
            N = len(live)
            logits = steps.next_logits(prefix).astype(np.float64)  # (N·K, V)
            cand = scores[:, :, None] + log_softmax(logits).reshape(N, K, V)  # (N, K, V)
            cand = cand.reshape(N, K * V)
            if C < K * V:  # the C best (unordered), then ordered by (score desc, index asc)
                top = np.argpartition(-cand, C - 1, axis=1)[:, :C]
            else:
                top = np.broadcast_to(np.arange(K * V), (N, K * V))
            top_s = np.take_along_axis(cand, top, axis=1)
            order = np.lexsort((top, -top_s), axis=1)  # ties → lower flat index first
            top = np.take_along_axis(top, order, axis=1)  # (N, C) ranked
            top_s = np.take_along_axis(top_s, order, axis=1)
            beam, tok = top // V, top % V  # (N, C)
            is_eos = tok == eos_id
            base = np.arange(N)[:, None] * K  # row of beam 0 of each live source

            def seq(n, j, beam=beam, tok=tok, base=base, prefix=prefix):  # tokens w/o BOS
                rows = (base[n, 0] + beam[n, j])
                return np.concatenate([prefix[rows, 1:], tok[n, j][:, None]], axis=1)

            # finished: EOS among the top K, at most K per source over the whole search
            fin = is_eos & (np.arange(C) < K) & np.isfinite(top_s)
            slot = n_fin[live][:, None] + np.cumsum(fin, axis=1)  # 1-based slot it would fill
            fin &= slot <= K
            if fin.any():
                offer(live, seq, top_s, t + 1, fin)
                n_fin[live] += fin.sum(axis=1)
            # alive: the K best non-EOS candidates, in rank order
            sel = np.argsort(is_eos, axis=1, kind="stable")[:, :K]  # (N, K)
            new_beam = np.take_along_axis(beam, sel, axis=1)
            new_tok = np.take_along_axis(tok, sel, axis=1)
            new_s = np.take_along_axis(top_s, sel, axis=1)
            new_s[np.take_along_axis(is_eos, sel, axis=1)] = -np.inf  # only when C < 2K
            rows = (base + new_beam).ravel()  # (N·K,) parent row of each new beam
            prefix = np.concatenate([prefix[rows], new_tok.reshape(-1, 1)], axis=1)
            if t == max_len - 1:  # out of room: live beams finish without EOS
                offer(live, lambda n, j: prefix[base[n, 0] + j, 1:], new_s, max_len,
                      np.isfinite(new_s))
                break
            done = (n_fin[live] >= K) | ~np.isfinite(new_s).any(axis=1)
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            rows_keep = (keep[:, None] * K + np.arange(K)).ravel()
            steps.select(rows[rows_keep])  # reorder beams and drop finished sources at once
            prefix, scores, live = prefix[rows_keep], new_s[keep], live[keep]
    tokens = best_tok[:, : int(best_len.max())]
    return (tokens, best_score) if return_scores else tokens
