"""Mini-GPT speed: ms/token of 500-token generation with and without the KV cache, and
ms/iteration of a training step (forward + backward + AdamW) at nanoGPT's CPU recipe.

    python benchmarks/bench_gpt.py                       # both, the nanoGPT CPU sizes
    python benchmarks/bench_gpt.py --max-len 256 --tokens 500 --threads 1
    python benchmarks/bench_gpt.py --checkpoint runs/gpt/checkpoint.safetensors   # a trained model

Timings are wall-clock medians over ``--repeats`` runs; on a shared machine they are
pessimistic (the script prints the 1-minute load average next to them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scratchformer.models.gpt import GPT, GPTConfig  # noqa: E402
from scratchformer.core.loss import CrossEntropyLoss  # noqa: E402
from scratchformer.training.optim import AdamW  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_generation(model: GPT, tokens: int, prompt_len: int, repeats: int) -> dict:
    """ms/token for ``tokens`` new tokens (batch 1, greedy), cached and recomputed."""
    prompt = np.random.default_rng(0).integers(0, model.config.vocab_size, (1, prompt_len))
    out = {}
    for use_cache in (True, False):
        model.generate(prompt, 8, top_k=1, use_cache=use_cache)  # warm-up
        t = _median_time(lambda: model.generate(prompt, tokens, top_k=1, use_cache=use_cache), repeats)
        out["cached" if use_cache else "uncached"] = 1000 * t / tokens
    a = model.generate(prompt, tokens, top_k=1)
    b = model.generate(prompt, tokens, top_k=1, use_cache=False)
    out["identical"] = bool(np.array_equal(a, b))
    return out


def bench_train_step(cfg: GPTConfig, batch: int, block: int, iters: int) -> float:
    """Median ms of one step: forward, cross-entropy, backward, AdamW (nanoGPT's β2 0.99)."""
    model = GPT(cfg)
    crit = CrossEntropyLoss()
    opt = AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.vocab_size, (batch, block))
    y = rng.integers(0, cfg.vocab_size, (batch, block))

    def step():
        opt.zero_grad()
        crit(model(x), y)
        model.backward(crit.backward())
        opt.step()

    for _ in range(3):
        step()
    return 1000 * _median_time(step, iters)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="benchmark a trained GPT checkpoint instead of a fresh model")
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--d-ff", type=int, default=512)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=64, help="context length (nanoGPT's block 64)")
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--prompt-len", type=int, default=8)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--iters", type=int, default=20, help="timed training steps")
    ap.add_argument("--repeats", type=int, default=3, help="timed generations per mode")
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads for the training step")
    ap.add_argument("--gen-threads", type=int, default=1,
                    help="BLAS threads for generation (1: a second thread slows 1-token steps)")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits
    if args.checkpoint:
        from scratchformer.training.checkpoint import load
        model = load(args.checkpoint)[0]
        cfg = model.config
    else:
        cfg = GPTConfig(vocab_size=args.vocab, d_model=args.d_model, n_heads=args.n_heads,
                        d_ff=args.d_ff, n_layers=args.n_layers, max_len=args.max_len)
        model = GPT(cfg)
    load1 = os.getloadavg()[0]
    print(f"GPT: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}, d_ff {cfg.d_ff}, "
          f"max_len {cfg.max_len}, vocab {cfg.vocab_size}, {model.num_parameters():,} parameters; "
          f"BLAS threads: train {args.threads or 'default'}, generate {args.gen_threads}; "
          f"load average {load1:.2f} on {os.cpu_count()} CPUs")
    with threadpool_limits(args.gen_threads):
        g = bench_generation(model, args.tokens, args.prompt_len, args.repeats)
    print(f"generate {args.tokens} tokens (batch 1): KV cache {g['cached']:.2f} ms/token, "
          f"recompute {g['uncached']:.2f} ms/token -> {g['uncached'] / g['cached']:.1f}x faster; "
          f"identical tokens: {g['identical']}")
    if not args.skip_train:
        if args.threads:
            threadpool_limits(args.threads)
        ms = bench_train_step(cfg, args.batch, min(args.max_len, cfg.max_len), args.iters)
        print(f"train step (batch {args.batch}, block {min(args.max_len, cfg.max_len)}, fwd+bwd+AdamW): "
              f"{ms:.1f} ms/iter")


if __name__ == "__main__":
    main()
