"""Two baselines a translation model must beat, and the word aligner behind the second.

* ``copy_source``: the output is the input. It scores above zero because names,
  numbers and punctuation survive translation (*Moab*, *Jesus*, ``,``, ``.``).
* ``WordDictionary``: every source word replaced by its most probable translation
  under IBM Model 1 (Brown et al., 1993), learned by EM on the training pairs only.

IBM Model 1 ("lite": no NULL word, lowercased whitespace/punctuation words) explains a
target sentence f = f_1..f_m given its source e = e_1..e_l as

    p(f | e) = Π_j  (1/l) Σ_i t(f_j | e_i)

EM over the corpus, with c(f, e) the expected number of times e generated f::

    E:  c(f, e) += t(f | e) / Σ_i' t(f | e_i')      for every f_j in f and e_i in e
    M:  t(f | e) = c(f, e) / Σ_f' c(f', e)

Every (sentence, f position, e position) triple is one entry of flat NumPy arrays, so an
iteration is a gather, two ``bincount``s and a divide — no Python loop over words.
"""

from __future__ import annotations

import re

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Words and punctuation marks, as written (case kept)."""
    return _WORD.findall(text)


def detokenize(tokens: list[str]) -> str:
    """Join words with spaces, none before closing punctuation (``"luz ."`` -> ``"luz."``)
    nor around a hyphen between words."""
    text = re.sub(r" ([,;:.!?)\]'])", r"\1", " ".join(tokens))
    return re.sub(r"(?<=\w) - (?=\w)", "-", text)  # "Beth - lehem" -> "Beth-lehem"


def copy_source(sources: list[str]) -> list[str]:
    """The copy baseline: each hypothesis is its source."""
    return list(sources)


class WordDictionary:
    """Word-by-word translation with a dictionary learned by IBM Model 1.

    ``WordDictionary.learn(pairs)`` then ``translate(texts)``. Unknown words are copied;
    a capitalised source word gives a capitalised translation.
    """

    def __init__(self, table: dict[str, str]):
        self.table = dict(table)

    @classmethod
    def learn(cls, pairs, iterations: int = 5, max_pairs_per_sentence: int = 4096,
              min_count: int = 1):
        """IBM Model 1 EM on (source, target) string pairs → best target for each source word.

        Words are lowercased. Sentences with more than ``max_pairs_per_sentence`` word
        pairs (l·m) are skipped to bound memory. Source words seen fewer than
        ``min_count`` times get no entry (they are copied).
        """
        if not pairs:
            raise ValueError("pairs must not be empty")
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        e_vocab: dict[str, int] = {}
        f_vocab: dict[str, int] = {}
        e_rows, f_rows = [], []
        for src, tgt in pairs:
            e = [e_vocab.setdefault(w.lower(), len(e_vocab)) for w in words(src)]
            f = [f_vocab.setdefault(w.lower(), len(f_vocab)) for w in words(tgt)]
            if e and f and len(e) * len(f) <= max_pairs_per_sentence:
                e_rows.append(np.array(e, dtype=np.int32))
                f_rows.append(np.array(f, dtype=np.int32))
        if not e_rows:
            raise ValueError("no usable sentence pair (both sides need a word)")
        # One entry per (sentence k, target position j, source position i): ids e, f and
        # the group (k, j) over which t(f_j | e_i) is normalised in the E step.
        E, F, G = [], [], []
        group = 0
        for e, f in zip(e_rows, f_rows):
            E.append(np.tile(e, len(f)))  # (m·l,)  i varies fastest
            F.append(np.repeat(f, len(e)))  # (m·l,)
            G.append(np.repeat(np.arange(group, group + len(f), dtype=np.int32), len(e)))
            group += len(f)
        E, F, G = np.concatenate(E), np.concatenate(F), np.concatenate(G)
        n_f = len(f_vocab)
        # flat id of the pair (e, f); int32 when it fits (np.unique sorts it: faster)
        key_type = np.int32 if len(e_vocab) * n_f < 2 ** 31 else np.int64
        key = E.astype(key_type) * key_type(n_f) + F
        del E, F
        uniq, pair = np.unique(key, return_inverse=True)  # t lives on the observed pairs only
        del key
        pair = pair.astype(np.int32)
        pe = uniq // n_f  # (P,) source word of each pair
        t = np.ones(len(uniq))  # uniform start (normalisation does not matter for step one)
        for _ in range(iterations):
            w = t[pair]  # (entries,) t(f_j | e_i)
            w = w / np.bincount(G, weights=w, minlength=group)[G]  # E: posterior of the link
            c = np.bincount(pair, weights=w, minlength=len(uniq))  # expected counts c(f, e)
            t = c / np.bincount(pe, weights=c, minlength=len(e_vocab))[pe]  # M step
        # best f for every e: sort pairs by (e, t) and take the last of each e
        order = np.lexsort((t, pe))
        last = np.r_[pe[order][1:] != pe[order][:-1], True]
        best = order[last]
        e_counts = np.bincount(np.concatenate(e_rows), minlength=len(e_vocab))
        e_words, f_words = list(e_vocab), list(f_vocab)
        table = {e_words[pe[b]]: f_words[uniq[b] % n_f] for b in best
                 if e_counts[pe[b]] >= min_count}
        return cls(table)

    def translate_one(self, text: str) -> str:
        out = []
        for w in words(text):
            f = self.table.get(w.lower(), w)
            if w[:1].isupper() and f[:1].islower():
                f = f[:1].upper() + f[1:]
            out.append(f)
        return detokenize(out)

    def translate(self, texts: list[str]) -> list[str]:
        return [self.translate_one(t) for t in texts]

    def to_dict(self) -> dict:
        return {"type": "ibm1-dictionary", "table": self.table}
