"""The trainer's progress display: a tqdm bar, or plain lines on stderr.

tqdm is imported inside ``Progress`` (lazily: ``import scratchformer`` stays NumPy-only),
and the display falls back to plain lines when it is missing. ``format_metrics`` writes
an evaluation's metrics as one line: ``loss 0.0123  exact_match 99.4%  (n=1000)``.
"""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar (tqdm imported here, lazily), or plain lines when tqdm is missing or unwanted."""

    def __init__(self, mode, total: int, initial: int):
        self.bar, self.mode, self.total = None, mode, total
        if mode in (True, "tqdm"):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.mode = "plain"
            else:
                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                                file=sys.stderr, leave=True)
                self.mode = "tqdm"
        self.every = max(total // 20, 1)

    def update(self, step: int, n: int, rec: dict):
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}",
                                 tok_s=f"{rec['tokens_per_s']:.0f}", refresh=False)
        elif self.mode == "plain" and (step % self.every < n or step == self.total):
            self.write(f"step {step:>6}/{self.total}  loss {rec['loss']:.4f}  lr {rec['lr']:.2e}"
                       f"  {rec['tokens_per_s']:.0f} tok/s")

    def write(self, line: str):
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        elif self.mode:
            print(line, file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def format_metrics(m: dict) -> str:
    """``{'loss': .., 'exact_match': ..}`` -> ``loss 0.0123  exact_match 99.4%  (n=1000)``."""
    parts = []
    for k, v in m.items():
        if k == "n":
            continue
        pct = k.endswith("accuracy") or k.endswith("match")
        parts.append(f"{k} {100 * v:.1f}%" if pct else f"{k} {v:.4f}")
    return "  ".join(parts) + (f"  (n={m['n']})" if "n" in m else "")
