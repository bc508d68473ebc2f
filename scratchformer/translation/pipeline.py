"""Glue between the translation data and the shared training loop (``scratchformer.training.trainer``).

* ``TranslationBatches``: ``batch_fn(rng, step)`` for ``Trainer``. Epoch e's batches are
  ``length_batches`` shuffled by ``np.random.default_rng([seed, e])``, and step s takes
  batch (s-1) mod n of epoch (s-1) // n — a pure function of the step, so a resumed run
  sees exactly the batches it would have seen.
* ``TranslationEvaluator``: held-out loss (teacher forcing) and greedy BLEU / chrF on
  the first ``n_decode`` validation pairs.
* ``build_model`` / ``load_translator``: the model and its tokenizer, to and from a checkpoint
  (the tokenizer is JSON inside the trainer state).
"""

from __future__ import annotations

import json

import numpy as np

from ..core.loss import CrossEntropyLoss
from ..models.transformer import Transformer, TransformerConfig
from .bpe import BPETokenizer
from .data import length_batches, make_batch


class TranslationBatches:
    """``batch_fn(rng, step) -> (src (B, S), tgt_in (B, T), tgt_out (B, T))`` over token-id pairs."""

    def __init__(self, srcs, tgts, max_tokens: int, seed: int = 0):
        if not srcs:
            raise ValueError("no training pairs (all filtered out by --max-len?)")
        self.srcs, self.tgts, self.max_tokens, self.seed = srcs, tgts, max_tokens, seed
        self._epoch, self._batches = -1, None
        self.n_batches = len(length_batches(srcs, tgts, max_tokens))

    def epoch(self, step: int) -> int:
        return (step - 1) // self.n_batches

    def __call__(self, rng, step: int):
        e, i = divmod(step - 1, self.n_batches)
        if e != self._epoch:
            self._batches = length_batches(self.srcs, self.tgts, self.max_tokens,
                                           rng=np.random.default_rng([self.seed, e]))
            self._epoch = e
        return make_batch(self.srcs, self.tgts, self._batches[i])


class TranslationEvaluator:
    """``evaluator(model) -> {"loss", "bleu", "chrf", "n"}`` on validation pairs.

    loss: mean teacher-forced cross-entropy per target token over all pairs given;
    bleu/chrf: greedy translations of the first ``n_decode`` pairs (0: skip decoding,
    also skipped when sacrebleu is missing).
    """

    def __init__(self, tokenizer, pairs, srcs, tgts, n_decode: int = 100, max_tokens: int = 4096):
        self.tokenizer, self.pairs, self.n_decode = tokenizer, list(pairs), n_decode
        self.batches = [make_batch(srcs, tgts, idx) for idx in length_batches(srcs, tgts, max_tokens)]

    def __call__(self, model) -> dict:
        from .evaluate import corpus_scores, translate_texts

        model.eval()
        crit = CrossEntropyLoss(ignore_index=self.tokenizer.pad_id)
        total, n = 0.0, 0
        for src, tgt_in, tgt_out in self.batches:
            k = int(np.count_nonzero(tgt_out != self.tokenizer.pad_id))
            total += crit(model(src, tgt_in), tgt_out) * k  # (B, T, V) logits
            n += k
        out = {"loss": total / max(n, 1)}
        pairs = self.pairs[:self.n_decode]
        if pairs:
            try:
                hyps = translate_texts(model, self.tokenizer, [p[0] for p in pairs])
                out.update(corpus_scores(hyps, [p[1] for p in pairs]))
            except ImportError:
                pass
            out["n"] = len(pairs)
        return out


def build_model(vocab_size: int, d_model: int = 256, n_heads: int = 4, d_ff: int = 1024,
                n_encoder_layers: int = 2, n_decoder_layers: int = 2, dropout: float = 0.1,
                max_len: int = 256, seed: int = 0) -> Transformer:
    """A pre-LN encoder–decoder with one shared (tied) embedding for the joint vocabulary."""
    cfg = TransformerConfig(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size,
                            d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                            n_encoder_layers=n_encoder_layers, n_decoder_layers=n_decoder_layers,
                            dropout=dropout, max_len=max_len, norm_first=True,
                            tie_embeddings=True, seed=seed, pad_id=0)
    return Transformer(cfg)


def load_translator(path):
    """(model, tokenizer, info) from a checkpoint written by ``scratchformer translate-train``.

    ``info``: the checkpoint's state (corpus, split settings, tokenizer, ...) with the
    trainer's state under ``"trainer"`` (step, train_config, last_eval).
    """
    from ..training.checkpoint import load

    model, _, state = load(path)
    info = dict(state)
    trainer = info.get("trainer")
    if isinstance(trainer, str):
        info["trainer"] = trainer = json.loads(trainer)
    if "tokenizer" not in info and isinstance(trainer, dict):  # extra state kept inside
        info = {**trainer, **info}
    if "tokenizer" not in info:
        raise ValueError(f"{path}: no tokenizer in the checkpoint's state (keys {sorted(info)}); "
                         f"was it written by 'scratchformer translate-train'?")
    model.eval()
    return model, BPETokenizer.from_dict(info["tokenizer"]), info
