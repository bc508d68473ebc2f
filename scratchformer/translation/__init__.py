"""Translation with the encoder–decoder: subword tokenizer, parallel data, baselines, BLEU.

    from scratchformer.translation import BPETokenizer, load_splits, load_translator
    model, tok, info = load_translator("runs/translate/checkpoint.safetensors")
    translate_texts(model, tok, ["And God said, Let there be light"], beam=5)

The command line (``scratchformer translate-train`` / ``scratchformer translate``) lives
in ``scratchformer.cli.translate``; docs/translation.md has the recipe and the results.
Only NumPy and the standard library are imported; sacrebleu is imported when scoring.
"""

from .baselines import WordDictionary, copy_source
from .bpe import BPETokenizer, pretokenize
from .data import encode_pairs, length_batches, load_splits, make_batch, pad
from .evaluate import corpus_scores, evaluate_baselines, evaluate_model, translate_texts
from .pipeline import TranslationBatches, TranslationEvaluator, build_model, load_translator

__all__ = ["BPETokenizer", "pretokenize", "load_splits", "encode_pairs", "length_batches",
           "make_batch", "pad", "WordDictionary", "copy_source", "corpus_scores",
           "evaluate_baselines", "evaluate_model", "translate_texts", "TranslationBatches",
           "TranslationEvaluator", "build_model", "load_translator"]
