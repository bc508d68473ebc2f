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

import numpy as np

from ..core.checks import check_int, check_real
from ..core.functional import causal_mask, log_softmax, padding_mask
from ..core.tokens import BOS, EOS
from .sampling import check_logits, check_sampling, make_rng, sample_next


# ---- shared machinery ------------------------------------------------------------------
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
    check_int("max_len", max_len, 1, cfg.max_len)  # at most the model's max_len
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        check_int(name, value, 0, cfg.tgt_vocab_size - 1)  # a token id of the target vocabulary
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
                        src_mask, lambda logits: sample_next(logits, temperature=0.0))


# ---- sampling --------------------------------------------------------------------------
def sample_decode(model, src, max_len: int, temperature: float = 1.0, top_k: int | None = None,
                  rng=None, bos_id: int = BOS, eos_id: int = EOS, use_cache: bool = True,
                  src_mask=None) -> np.ndarray:
    """Ancestral sampling: y_{t+1} ~ softmax(logits / temperature), restricted to the
    ``top_k`` most likely tokens when given; ``temperature=0`` or ``top_k=1`` is greedy.

    Each token is drawn by ``sampling.sample_next`` (inverse CDF), the sampler of
    ``GPT.generate`` too. ``rng``: an ``np.random.Generator``, an int seed, or None for
    the model's sampling stream (``sampling.make_rng``: a call repeats itself).
    Output format as ``greedy_decode``.
    """
    _check_model("sample_decode", model)
    temperature, top_k = check_sampling(temperature, top_k)
    gen = make_rng(rng, model.config.seed)
    return _decode_loop("sample_decode", model, src, max_len, bos_id, eos_id, use_cache,
                        src_mask, lambda logits: sample_next(logits, temperature, top_k, gen))


# ---- beam search -----------------------------------------------------------------------
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

    One step, in named parts: ``_rank`` (the best 2K extensions), ``_finishing`` (which of
    them finish), ``_Finished.offer`` (keep the best finished one per source),
    ``_survivors`` (the K that live on), ``_Beams.extend`` / ``keep`` (reorder the beams
    and the cache, drop the sources that are done).

    Returns tokens (B, L) in ``greedy_decode``'s format, or ``(tokens, scores)`` with
    ``return_scores``: scores (B,) float64, the best hypothesis' s / lp(L).
    """
    src, src_mask = _check_inputs("beam_search", model, src, max_len, bos_id, eos_id, src_mask)
    K = check_int("beam_size", beam_size, low=1)
    best = _Finished(src.shape[0], K, max_len, model.config.pad_id,
                     check_real("length_penalty", length_penalty))
    V = model.config.tgt_vocab_size
    with model.eval_mode():
        beams = _Beams(model, src, src_mask, K, bos_id, use_cache)
        for t in range(max_len):
            logits = beams.next_logits()
            check_logits(logits)  # a diverged model: an error naming it, not a NaN ranking
            logp = log_softmax(logits.astype(np.float64))  # (N·K, V)
            flat, score = _rank(beams.scores, logp, min(2 * K, K * V))  # (N, C) each, ranked
            parent, tok = np.divmod(flat, V)  # (N, C): the beam extended, the token added
            is_eos = tok == eos_id
            fin = _finishing(is_eos, score, best.count[beams.live], K)
            best.offer(beams.live, score, fin, beams.prefix, beams.rows(parent), tok)
            beams.extend(*_survivors(parent, tok, score, is_eos, K))
            if t == max_len - 1:  # out of room: live beams finish without EOS
                best.offer(beams.live, beams.scores, np.isfinite(beams.scores), beams.prefix,
                           beams.rows(np.arange(K)))
                break
            done = (best.count[beams.live] >= K) | ~np.isfinite(beams.scores).any(axis=1)
            if done.all():
                break
            beams.keep(np.flatnonzero(~done))
    tokens = best.tokens[:, : int(best.length.max())]
    return (tokens, best.score) if return_scores else tokens


class _Beams:
    """The live hypotheses: K rows per source still searching, flattened source-major
    (row n·K + k is beam k of live source n). ``prefix`` (N·K, t) starts with BOS,
    ``scores`` (N, K) are the raw log-probability sums, ``live`` (N,) the source of each
    group. The memory is encoded once per source and repeated K times."""

    def __init__(self, model, src, src_mask, K: int, bos_id: int, use_cache: bool):
        B = src.shape[0]
        rep = np.repeat(np.arange(B), K)  # (B·K,) source of each row
        memory = model.encode(src, src_mask)  # (B, S, D): once per source
        self.steps = _Steps(model, memory[rep], src_mask[rep] if src_mask.shape[0] != 1 else src_mask,
                            use_cache)
        self.K = K
        self.prefix = np.full((B * K, 1), bos_id, dtype=np.int64)  # (N·K, t)
        self.scores = np.full((B, K), -np.inf)  # (N, K)
        self.scores[:, 0] = 0.0  # all beams start identical: expand beam 0 only
        self.live = np.arange(B)
        self._parents = None  # the rows the cache must follow at the next ``keep``

    def next_logits(self) -> np.ndarray:
        """Logits of the next position of every live beam, (N·K, V)."""
        return self.steps.next_logits(self.prefix)

    def rows(self, beam: np.ndarray) -> np.ndarray:
        """Row of beam ``beam[n, j]`` of live source n, same shape as ``beam``."""
        return np.arange(len(self.live))[:, None] * self.K + beam

    def extend(self, parent: np.ndarray, tok: np.ndarray, scores: np.ndarray) -> None:
        """The new beams (N, K): beam ``parent`` of each source extended by ``tok``."""
        self._parents = self.rows(parent).ravel()  # (N·K,) parent row of each new beam
        self.prefix = np.concatenate([self.prefix[self._parents], tok.reshape(-1, 1)], axis=1)
        self.scores = scores

    def keep(self, sources: np.ndarray) -> None:
        """Keep the live sources at positions ``sources``; the cache, the memory and the
        source mask follow the new beams' parents and lose the other sources' rows."""
        rows = (sources[:, None] * self.K + np.arange(self.K)).ravel()  # (N'·K,)
        self.steps.select(self._parents[rows])  # reorder beams and drop sources at once
        self.prefix, self.scores = self.prefix[rows], self.scores[sources]
        self.live = self.live[sources]


def _rank(scores: np.ndarray, logp: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray]:
    """The C best extensions of each source's beams, ranked by score (ties → lower index).

    scores (N, K) raw sums, logp (N·K, V) → flat indices k·V + v (N, C) and their scores
    s_k + log p(v) (N, C).
    """
    N, K = scores.shape
    cand = (scores[:, :, None] + logp.reshape(N, K, -1)).reshape(N, -1)  # (N, K·V)
    if C >= cand.shape[1]:  # every extension is kept
        top = np.broadcast_to(np.arange(cand.shape[1]), cand.shape)
        top_s = cand
    else:
        top, top_s = _best_candidates(cand, C)
    order = np.lexsort((top, -top_s), axis=1)  # score descending, then index ascending
    return (np.take_along_axis(top, order, axis=1)[:, :C],
            np.take_along_axis(top_s, order, axis=1)[:, :C])


def _best_candidates(cand: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores (N, M ≥ C) of a few entries of each row of cand (N, n) that
    include its C best (ties included), unordered; the caller sorts and keeps C.

    A threshold, not a full selection: the row is cut into chunks, each chunk's maximum
    is an entry of the row, so the C-th largest of those maxima, τ, is at most the row's
    C-th largest, and every entry ≥ τ is a candidate — a handful per row instead of a
    partition of all K·V (the one pass that remains is the chunk maxima).
    """
    N, n = cand.shape
    chunk = max(1, n // max(64, 4 * C))
    maxima = np.maximum.reduceat(cand, np.arange(0, n, chunk), axis=1)  # (N, ⌈n/chunk⌉)
    if maxima.shape[1] < C:  # too few chunks for a threshold: take every entry
        tau = np.full(N, -np.inf)
    else:
        tau = -np.partition(-maxima, C - 1, axis=1)[:, C - 1]  # C-th largest maximum
    rows, cols = np.nonzero(cand >= tau[:, None])  # every row has ≥ C entries ≥ τ
    counts = np.bincount(rows, minlength=N)
    M = int(counts.max())
    # ragged rows → (N, M), padded with -inf scores at index n (sorted after every real entry)
    slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    top = np.full((N, M), n, dtype=np.int64)
    top_s = np.full((N, M), -np.inf)
    top[rows, slot] = cols
    top_s[rows, slot] = cand[rows, cols]
    return top, top_s


def _finishing(is_eos: np.ndarray, score: np.ndarray, count: np.ndarray, K: int) -> np.ndarray:
    """Which ranked candidates (N, C) finish: an EOS among the top K with a finite score,
    in rank order while the source has fewer than K finished hypotheses (``count`` (N,))."""
    fin = is_eos & (np.arange(is_eos.shape[1]) < K) & np.isfinite(score)
    return fin & (count[:, None] + np.cumsum(fin, axis=1) <= K)


def _survivors(parent, tok, score, is_eos, K: int):
    """The K best non-EOS candidates of each source, in rank order: (parent, tok, score),
    each (N, K); a score is -inf where fewer than K exist (only when C < 2K)."""
    sel = np.argsort(is_eos, axis=1, kind="stable")[:, :K]  # non-EOS first, rank order kept
    parent, tok, score, eos = (np.take_along_axis(a, sel, axis=1)
                               for a in (parent, tok, score, is_eos))
    score[eos] = -np.inf
    return parent, tok, score


def _length_penalty(length, alpha: float):
    """GNMT (Wu et al., 2016): lp(L) = ((5 + L) / 6)^α; α = 0 gives raw log-probabilities."""
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


class _Finished:
    """Per source: the best finished hypothesis so far (``tokens`` (B, max_len), ``length``,
    ``score`` = s / lp(L)) and how many hypotheses it has finished (``count``)."""

    def __init__(self, B: int, K: int, max_len: int, pad: int, alpha: float):
        self.pad, self.alpha = pad, alpha
        self.tokens = np.full((B, max_len), pad, dtype=np.int64)
        self.length = np.zeros(B, dtype=np.int64)
        self.score = np.full(B, -np.inf)
        self.count = np.zeros(B, dtype=np.int64)

    def offer(self, live, raw, ok, prefix, rows, last=None) -> None:
        """Candidates (N, C) of the live sources, finished where ``ok``, with raw scores
        ``raw``: the beam in row ``rows`` of ``prefix`` (BOS first), followed by ``last``
        when given. Each source keeps its best (first in rank order) if it beats its own."""
        L = prefix.shape[1] - 1 + (last is not None)  # generated length, BOS not counted
        norm = np.where(ok, raw / _length_penalty(L, self.alpha), -np.inf)  # (N, C)
        n = np.arange(len(live))
        j = norm.argmax(axis=1)  # (N,) first best in rank order
        win = norm[n, j] > self.score[live]
        n, j, b = n[win], j[win], live[win]
        self.score[b], self.length[b] = norm[n, j], L
        self.tokens[b] = self.pad
        self.tokens[b, :prefix.shape[1] - 1] = prefix[rows[n, j], 1:]
        if last is not None:
            self.tokens[b, L - 1] = last[n, j]
        self.count[live] += ok.sum(axis=1)
