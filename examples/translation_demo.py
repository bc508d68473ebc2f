"""English → Spanish with the NumPy Transformer: what the model sees, and what it says.

    # after: scratchformer translate-train --corpus bible-en-es --out runs/translate
    python examples/translation_demo.py --checkpoint runs/translate/checkpoint.safetensors

    # no checkpoint yet: a one-minute toy run on the bundled 40-pair fixture
    python examples/translation_demo.py

Prints, for a few sentences: the subword pieces of the source, the word-dictionary
baseline, the greedy translation and the beam-search translation. The toy run is one call,
what ``scratchformer translate-train --pairs FILE ...`` runs::

    from scratchformer.training import TranslationTrainConfig, train_translation
    result = train_translation(TranslationTrainConfig(pairs="my.tsv", out="runs/mine"))
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from scratchformer.training import TranslationTrainConfig, train_translation  # noqa: E402
from scratchformer.translation import WordDictionary, load_translator, translate_texts  # noqa: E402
from scratchformer.translation.data import run_splits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "translation", "tiny.tsv")
BIBLE = ["And God said, Let there be light: and there was light.",
         "In the beginning was the Word, and the Word was with God.",
         "The LORD is my shepherd; I shall not want.",
         "And Jesus said unto them, Follow me."]
TOY = ["the dog eats bread", "the woman drinks milk", "the small house", "good night"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", help="a checkpoint written by 'scratchformer translate-train'")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--text", action="append", help="your own sentence(s)")
    args = ap.parse_args()

    if args.checkpoint is None:  # train a toy model on the fixture, in a temporary folder
        out = os.path.join(tempfile.mkdtemp(prefix="sf-translate-"), "toy")
        print(f"no --checkpoint: training a toy model on {os.path.basename(FIXTURE)} → {out}")
        train_translation(TranslationTrainConfig(
            pairs=FIXTURE, out=out, val_frac=0.05, test_frac=0.05, vocab_size=150, d_model=64,
            d_ff=128, n_layers=1, steps=300, warmup=30, lr=3e-3, max_tokens=128, eval_every=0,
            eval_decode=0, test_beams=(), progress="plain"))  # no BLEU: sacrebleu not needed
        args.checkpoint = os.path.join(out, "checkpoint.safetensors")
        texts = args.text or TOY
    else:
        texts = args.text or BIBLE

    model, tok, info = load_translator(args.checkpoint)
    step = info.get("trainer", {}).get("step", "?")
    print(f"\nmodel: {sum(p.data.size for p in model.parameters()) / 1e6:.2f}M parameters, "
          f"step {step}, joint BPE vocabulary of {len(tok)}\n")
    train = run_splits(info)[0]
    dictionary = WordDictionary.learn(train)
    greedy = translate_texts(model, tok, texts, beam=1)
    beam = translate_texts(model, tok, texts, beam=args.beam)
    for text, g, b, d in zip(texts, greedy, beam, dictionary.translate(texts)):
        print(f"source      {text}")
        print(f"pieces      {' '.join(tok.pieces(text))}")
        print(f"dictionary  {d}")
        print(f"greedy      {g}")
        print(f"beam {args.beam:<6} {b}\n")


if __name__ == "__main__":
    main()
