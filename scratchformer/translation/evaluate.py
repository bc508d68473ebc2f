"""Scoring and batched translation.

BLEU and chrF are computed by ``sacrebleu`` (Post, 2018), the reference implementation
that makes scores comparable across papers; it is an optional dependency, imported only
here (``pip install sacrebleu``). Both are corpus-level, on detokenized text:

    BLEU = BP · exp( Σ_{n=1..4} ¼ log p_n ),  BP = min(1, exp(1 − r/c))
           p_n = clipped n-gram precision, c / r = hypothesis / reference length
    chrF = F_β of character n-gram (n ≤ 6) precision and recall, β = 2
"""

from __future__ import annotations

import time

import numpy as np

from ..models.decoding import beam_search, greedy_decode
from .data import pad


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("BLEU/chrF need sacrebleu: pip install sacrebleu") from None
    return sacrebleu


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """{"bleu": ..., "chrf": ...} of hypotheses against one reference each (sacrebleu
    defaults: 13a tokenization, case-sensitive)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references must have the same length, got "
                         f"{len(hypotheses)} and {len(references)}")
    sb = _sacrebleu()
    return {"bleu": round(sb.corpus_bleu(hypotheses, [references]).score, 2),
            "chrf": round(sb.corpus_chrf(hypotheses, [references]).score, 2)}


def translate_texts(model, tokenizer, texts: list[str], beam: int = 1, max_len: int | None = None,
                    batch_size: int = 64, length_penalty: float = 0.6) -> list[str]:
    """Translate strings with greedy search (``beam=1``) or beam search.

    Sources are sorted by length and decoded ``batch_size`` at a time (less padding);
    the output keeps the input order. ``max_len`` (generated tokens) defaults to
    ``min(model max_len, 2·source length + 10)`` of the longest source in each batch.
    """
    if not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be a positive integer, got {beam!r}")
    cap = model.config.max_len
    ids = [tokenizer.encode(t, eos=True)[:cap] for t in texts]
    order = np.argsort([len(s) for s in ids], kind="stable")
    out: list[str] = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        src = pad([ids[i] for i in idx], tokenizer.pad_id)  # (B, S)
        n = max_len or min(cap, 2 * src.shape[1] + 10)
        if beam == 1:
            toks = greedy_decode(model, src, n, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
        else:
            toks = beam_search(model, src, beam, n, bos_id=tokenizer.bos_id,
                               eos_id=tokenizer.eos_id, length_penalty=length_penalty)
        for i, row in zip(idx, toks):
            out[i] = tokenizer.decode(row)
    return out


def evaluate_model(model, tokenizer, pairs, beams=(1,), batch_size: int = 64) -> dict:
    """BLEU/chrF and decoding time of the model on (source, reference) pairs, per beam size.

    Returns {"greedy" | "beam5": {"bleu", "chrf", "seconds"}, ...} and the hypotheses
    under "hypotheses": {name: [...]}.
    """
    srcs, refs = [p[0] for p in pairs], [p[1] for p in pairs]
    result, hyps = {}, {}
    for k in beams:
        name = "greedy" if k == 1 else f"beam{k}"
        t0 = time.perf_counter()
        h = translate_texts(model, tokenizer, srcs, beam=k, batch_size=batch_size)
        result[name] = {**corpus_scores(h, refs), "seconds": round(time.perf_counter() - t0, 1)}
        hyps[name] = h
    result["hypotheses"] = hyps
    return result


def evaluate_baselines(train_pairs, test_pairs) -> dict:
    """Scores of the copy baseline and the IBM-1 word dictionary (learned on train_pairs)."""
    from .baselines import WordDictionary, copy_source

    srcs, refs = [p[0] for p in test_pairs], [p[1] for p in test_pairs]
    t0 = time.perf_counter()
    dictionary = WordDictionary.learn(train_pairs)
    learn_s = time.perf_counter() - t0
    return {"copy": corpus_scores(copy_source(srcs), refs),
            "dictionary": {**corpus_scores(dictionary.translate(srcs), refs),
                           "seconds": round(learn_s, 1)}}


def score_test(model, tok, train, test, beams, limit=None, baselines=True) -> dict:
    """Test-split BLEU/chrF for each beam size, plus (optionally) both baselines."""
    test = test[:limit] if limit else test
    res = evaluate_model(model, tok, test, beams=tuple(beams))
    res.pop("hypotheses")
    out = {"n_test": len(test), **res}
    if baselines:
        out.update(evaluate_baselines(train, test))
    return out


def format_results(r: dict) -> str:
    """``score_test``'s result as a table: system, BLEU, chrF, seconds."""
    rows = [f"{'system':<12} {'BLEU':>6} {'chrF':>6} {'seconds':>8}"]
    for name in ("copy", "dictionary", "greedy") + tuple(k for k in r if k.startswith("beam")):
        if name in r:
            v = r[name]
            rows.append(f"{name:<12} {v['bleu']:>6.2f} {v['chrf']:>6.2f} "
                        f"{v.get('seconds', ''):>8}")
    return "\n".join(rows) + f"\n(n={r.get('n_test')} test pairs)"
