"""What the training report flags: rules over a run's metrics and attention snapshots, each
with the step, the layer and one line on what it usually means.

    insights = find_insights(records, snapshots, warmup=100)   # [{kind, step, where, ...}]

``records``: the dicts of ``metrics.jsonl`` ("train", "eval", "grads", "diverged");
``snapshots``: ``training.snapshots.read_snapshots(run_dir)`` or None. The rules, with
their thresholds (named constants below):

- gradient flow: the gradient norm of the layer nearest the input over the one nearest the
  loss, r = ‖g_bottom‖ / ‖g_top‖; r < 1/FLOW_RATIO: vanishing, r > FLOW_RATIO: exploding;
- gradient spike: the total norm (before clipping) > SPIKE × the median of all before it;
- update ratio: ‖Δw‖/‖w‖ of a layer above RATIO_HIGH in RATIO_RECORDS records after
  warm-up, or its median below RATIO_LOW (the rule of thumb is ~1e-3; measured peaks: the
  default copy run 1.1e-2, a 300-step char GPT 3.4e-3, the copy task at 10× and 60× its
  learning rate 6.9e-2 and 2.2e-1: docs/training.md);
- loss spike: a logged training loss > LOSS_JUMP × the median of the LOSS_WINDOW before it
  (and more than LOSS_MIN_RISE nats above it);
- attention collapse: at the last snapshot, one key takes > COLLAPSE of every query's
  weight on average (normalised entropy near 0); uniform: the normalised row entropy
  H / log(keys seen) stays > UNIFORM from the first snapshot to the last;
- overfitting: the validation loss ends > OVERFIT × its minimum, over at least two
  evaluations, while the training loss kept falling.
"""

from __future__ import annotations

import math

import numpy as np

FLOW_RATIO = 100.0
SPIKE = 10.0
RATIO_LOW, RATIO_HIGH, RATIO_RECORDS = 1e-5, 3e-2, 3
LOSS_JUMP, LOSS_WINDOW, LOSS_MIN_RISE = 1.5, 5, 0.1
COLLAPSE, UNIFORM = 0.9, 0.97
OVERFIT = 1.05

MEANING = {
    "vanishing": "the early layers barely learn; deep post-LN stacks do this — pre-LN, "
                 "warm-up or a smaller depth usually help",
    "exploding": "the early layers get far larger gradients than the late ones: unstable; "
                 "lower the learning rate, clip the gradient, or use pre-LN",
    "grad_spike": "a batch or a step pushed the weights into a steep region; clipping limits "
                  "the damage, repeated spikes mean the learning rate is too high",
    "ratio_high": "each step changes these weights by a large fraction of their size: the "
                  "learning rate is too high for this layer (expect noise or divergence)",
    "ratio_low": "these weights hardly move: learning rate too low, or the layer receives "
                 "no gradient (frozen, or cut off from the loss)",
    "loss_spike": "training jumped out of the valley it was in: usually a learning rate too "
                  "high for this stage (or no warm-up); a few are harmless, many are not",
    "collapse": "every query reads the same key: the head does nothing position-specific "
                "(often the first token as an attention sink); wasteful if many heads do it",
    "uniform": "the head still spreads its attention evenly over all keys: it has not learnt "
               "to select (too few steps, or a head the task does not need)",
    "overfit": "the model is memorising the training data: more data, dropout, weight decay "
               "or stopping at the best validation step",
    "diverged": "the loss or the gradient became NaN/inf and the run stopped; lower the "
                "learning rate, warm up longer or clip gradients",
}


def _insight(kind, step, where, message, severity="warn") -> dict:
    return {"kind": kind, "step": int(step), "where": where, "message": message,
            "meaning": MEANING[kind], "severity": severity}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---- gradients ----------------------------------------------------------------------------
def _stack_order(groups: list[str]) -> list[str]:
    """The layer groups in the order the gradient reaches them: last layer first (decoder
    before encoder), the one nearest the input last."""
    layers = [g for g in groups if ".layers." in g or g.startswith("blocks.")]
    dec = [g for g in layers if not g.startswith("encoder.")]
    enc = [g for g in layers if g.startswith("encoder.")]
    return dec[::-1] + enc[::-1]


def gradient_flow(grads: list[dict]) -> list[dict]:
    """Vanishing or exploding gradient norms from the top of the stack to the bottom."""
    out = {}
    for r in grads:
        order = _stack_order(list(r["grad_norm"]))
        if len(order) < 2:
            continue
        top, bottom = r["grad_norm"][order[0]], r["grad_norm"][order[-1]]
        if not (_finite(top) and _finite(bottom)) or top <= 0:
            continue
        ratio = bottom / top
        kind = "vanishing" if ratio < 1 / FLOW_RATIO else "exploding" if ratio > FLOW_RATIO else None
        if kind and kind not in out:
            out[kind] = _insight(kind, r["step"], f"{order[-1]} vs {order[0]}",
                                 f"‖g‖ of {order[-1]} is {ratio:.2g}× that of {order[0]} "
                                 f"(first at step {r['step']})")
    return list(out.values())


def gradient_spikes(train: list[dict]) -> list[dict]:
    """The first total gradient norm above SPIKE × the median of those before it."""
    norms = [(r["step"], r["grad_norm"]) for r in train if _finite(r.get("grad_norm"))]
    for i in range(5, len(norms)):
        med = float(np.median([n for _, n in norms[:i]]))
        if med > 0 and norms[i][1] > SPIKE * med:
            return [_insight("grad_spike", norms[i][0], "all layers",
                             f"gradient norm {norms[i][1]:.3g} is {norms[i][1] / med:.0f}× the "
                             f"median before it ({med:.3g})")]
    return []


def update_ratios(grads: list[dict], warmup: int = 0) -> list[dict]:
    """Layers whose ‖Δw‖/‖w‖ after warm-up is far from ~1e-3: above RATIO_HIGH in at least
    RATIO_RECORDS records, or with a median below RATIO_LOW."""
    after = [r for r in grads if r["step"] > warmup] or grads[-1:]
    if not after:
        return []
    found = []
    for g in after[-1]["update_ratio"]:
        pts = [(r["step"], r["update_ratio"].get(g)) for r in after]
        pts = [(s, v) for s, v in pts if _finite(v)]
        if not pts:
            continue
        high = [(s, v) for s, v in pts if v > RATIO_HIGH]
        med = float(np.median([v for _, v in pts]))
        if len(high) >= RATIO_RECORDS:
            found.append(_insight("ratio_high", high[0][0], g, f"‖Δw‖/‖w‖ of {g} above "
                                  f"{RATIO_HIGH:g} in {len(high)} of {len(pts)} records after "
                                  f"warm-up (largest {max(v for _, v in high):.2g}; rule of "
                                  f"thumb ~1e-3)"))
        elif med < RATIO_LOW:
            found.append(_insight("ratio_low", pts[0][0], g, f"‖Δw‖/‖w‖ of {g}: median "
                                  f"{med:.2g} over {len(pts)} records after warm-up (rule of "
                                  f"thumb ~1e-3)"))
    return found


# ---- loss ---------------------------------------------------------------------------------
def loss_spikes(train: list[dict]) -> list[dict]:
    """Logged training losses that jump well above the recent ones (at most 3 listed)."""
    losses = [(r["step"], r["loss"]) for r in train if _finite(r.get("loss"))]
    out = []
    for i in range(LOSS_WINDOW, len(losses)):
        med = float(np.median([v for _, v in losses[i - LOSS_WINDOW:i]]))
        step, v = losses[i]
        if v > LOSS_JUMP * med and v - med > LOSS_MIN_RISE:
            out.append(_insight("loss_spike", step, "loss",
                                f"training loss {v:.3g} after {med:.3g} (median of the "
                                f"{LOSS_WINDOW} records before)"))
    return out[:3]


def overfitting(evals: list[dict], train: list[dict]) -> list[dict]:
    """Validation loss turning up while the training loss goes down."""
    key = next((k for k in ("val_loss", "loss") if any(_finite(r.get(k)) for r in evals)), None)
    if key is None:
        return []
    pts = [(r["step"], r[key]) for r in evals if _finite(r.get(key))]
    best = int(np.argmin([v for _, v in pts]))
    after = pts[best + 1:]
    if len(after) < 2 or not all(v > OVERFIT * pts[best][1] for _, v in after[-2:]):
        return []

    def train_at(step):
        seen = [r["loss"] for r in train if r["step"] <= step and _finite(r.get("loss"))]
        return float(np.mean(seen[-5:])) if seen else None

    t_best, t_last = train_at(pts[best][0]), train_at(after[-1][0])
    if t_best is None or t_last is None or t_last >= t_best:
        return []
    rise = next(s for s, v in after if v > OVERFIT * pts[best][1])
    return [_insight("overfit", rise, key, f"validation {key.replace('_', ' ')} "
                     f"{after[-1][1]:.3g} at step {after[-1][0]} after a minimum of "
                     f"{pts[best][1]:.3g} at step {pts[best][0]}; training loss "
                     f"{t_best:.3g} → {t_last:.3g}")]


# ---- attention ----------------------------------------------------------------------------
def head_stats(w: np.ndarray, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per head of w (H, Tq, Tk): (mean normalised row entropy H(row)/log(n keys seen),
    the largest mean weight one key receives), over the rows that see at least 2 keys."""
    H, Tq, Tk = w.shape
    seen = np.tril(np.ones((Tq, Tk), bool), k=Tk - Tq) if causal else np.ones((Tq, Tk), bool)
    n = seen.sum(1)  # (Tq,) keys each row may read
    rows = n >= 2
    if not rows.any():
        return np.zeros(H), np.zeros(H)
    p = np.clip(w[:, rows].astype(np.float64), 1e-12, 1.0)        # (H, R, Tk)
    ent = -(np.where(seen[rows], p * np.log(p), 0.0)).sum(-1) / np.log(n[rows])  # (H, R)
    counts = seen[rows].sum(0)                                      # (Tk,) rows seeing key k
    col = np.where(counts > 0, (w[:, rows] * seen[rows]).sum(1) / np.maximum(counts, 1), 0)
    return ent.mean(1), col.max(1)


def attention_heads(snapshots: dict | None) -> list[dict]:
    """Heads collapsed onto one key, and heads still uniform, at the last snapshot (one
    insight per module and kind, naming the heads)."""
    if not snapshots or not snapshots.get("steps"):
        return []
    first, last = snapshots["steps"][0], snapshots["steps"][-1]
    out = []
    for name, ax in snapshots["modules"].items():
        ent, top = head_stats(snapshots["maps"][last][name], ax["causal"])
        ent0, _ = head_stats(snapshots["maps"][first][name], ax["causal"])
        collapsed = [h for h in range(len(ent)) if top[h] > COLLAPSE]
        uniform = [h for h in range(len(ent)) if h not in collapsed and ent[h] > UNIFORM
                   and ent0[h] > UNIFORM and last > first]
        heads = lambda hs: f"{name} head{'s' if len(hs) > 1 else ''} {', '.join(map(str, hs))}"  # noqa: E731
        if collapsed:
            out.append(_insight("collapse", last, heads(collapsed), "a single key takes "
                                f"≥ {min(top[h] for h in collapsed):.0%} of the queries' "
                                f"attention on average (normalised entropy ≤ "
                                f"{max(ent[h] for h in collapsed):.2f})"))
        if uniform:
            out.append(_insight("uniform", last, heads(uniform), "normalised entropy ≥ "
                                f"{min(ent[h] for h in uniform):.2f} (1 = uniform) at step "
                                f"{last}, as at step {first}", severity="info"))
    return out


def find_insights(records: list[dict], snapshots: dict | None = None, warmup: int = 0) -> list[dict]:
    """Every rule above over one run, sorted by step."""
    by = lambda k: [r for r in records if r.get("kind") == k and "step" in r]  # noqa: E731
    train, grads = by("train"), by("grads")
    found = (gradient_flow(grads) + gradient_spikes(train) + update_ratios(grads, warmup)
             + loss_spikes(train) + overfitting(by("eval"), train) + attention_heads(snapshots))
    found += [_insight("diverged", r["step"], "run", r.get("message", "diverged"))
              for r in by("diverged")]
    return sorted(found, key=lambda i: (i["step"], i["kind"]))
