"""Look inside a trained model: attention heatmaps and training curves.

Notation: B batch, H heads, Tq query positions, Tk key positions, S source length,
T target length (the decoder's input: BOS followed by the output tokens).

The three kinds of attention of the encoder–decoder, and where they live::

    kind    module (layer i)                 queries × keys     shape
    enc     encoder.layers.{i}.self_attn     source × source    (H, S, S)
    dec     decoder.layers.{i}.self_attn     target × target    (H, T, T)   causal: upper triangle 0
    cross   decoder.layers.{i}.cross_attn    target × source    (H, T, S)
    causal  blocks.{i}.self_attn             text × text        (H, T, T)   the GPT: causal

Row t of a map is query position t; it holds a probability distribution over the keys
(each row sums to 1; masked keys get exactly 0).

    rec = attention_for_text(model, task, "Nov 27, 2026")   # decode, then one forward
    fig = plot_attention(rec, kind="cross", layer=-1, path="attn.png")
    write_attention_html(rec, "attn.html")                  # the offline explorer (explorer.py)

Only the plotting functions import matplotlib, and only when they are called
(``import scratchformer.viz`` itself needs NumPy alone); they use the "Agg" backend
unless a backend was chosen already, so they work without a display.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..core.tokens import BOS, EOS
from ..models.decoding import greedy_decode

KINDS = {
    "enc": ("encoder", "self_attn", "encoder self-attention"),
    "dec": ("decoder", "self_attn", "decoder self-attention (masked)"),
    "cross": ("decoder", "cross_attn", "cross-attention (decoder → encoder)"),
    "causal": ("blocks", "self_attn", "causal self-attention (GPT)"),
}


def attention_name(kind: str, layer: int) -> str:
    """``("cross", 1)`` → ``"decoder.layers.1.cross_attn"``, ``("causal", 0)`` →
    ``"blocks.0.self_attn"``: the key in ``model.attention_maps()``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    stack, attn, _ = KINDS[kind]
    return f"blocks.{layer}.{attn}" if stack == "blocks" else f"{stack}.layers.{layer}.{attn}"


@dataclass
class AttentionRecord:
    """The attention weights of one example, with the tokens that label them.

    ``maps``: ``{module name: (H, Tq, Tk) float array}``, as ``model.attention_maps()``
    but for a single example (the batch axis removed). ``src_tokens`` (S strings) label the
    encoder positions, ``tgt_tokens`` (T strings, ``<bos>`` first) the decoder positions;
    for a GPT (kind ``causal``) ``tgt_tokens`` label the text and ``src_tokens`` is empty.
    ``input_text`` / ``output_text``: the text that went in and what the model produced.
    """

    src_tokens: list[str]
    tgt_tokens: list[str]
    maps: dict[str, np.ndarray]
    input_text: str | None = None
    output_text: str | None = None
    meta: dict = field(default_factory=dict)

    def n_layers(self, kind: str) -> int:
        """How many layers hold attention of this kind (0 if none)."""
        n = 0
        while attention_name(kind, n) in self.maps:
            n += 1
        return n

    @property
    def n_heads(self) -> int:
        return next(iter(self.maps.values())).shape[0]

    def query_tokens(self, kind: str) -> list[str]:
        return self.src_tokens if kind == "enc" else self.tgt_tokens  # dec, cross, causal

    def key_tokens(self, kind: str) -> list[str]:
        return self.tgt_tokens if kind in ("dec", "causal") else self.src_tokens

    def get(self, kind: str, layer: int = -1) -> np.ndarray:
        """(H, Tq, Tk) weights of ``kind`` at ``layer`` (negative counts from the last)."""
        n = self.n_layers(kind)
        if n == 0:
            raise ValueError(f"no {kind!r} attention in this record; it has {sorted(self.maps)}")
        if not -n <= layer < n:
            raise ValueError(f"layer must be in [{-n}, {n - 1}] for {kind!r} attention "
                             f"({n} layers), got {layer}")
        return self.maps[attention_name(kind, layer % n)]

    def to_json(self) -> dict:
        """A JSON-able dict (weights rounded to 4 decimals) — what the HTML explorer embeds."""
        layers = {k: [np.round(self.get(k, i).astype(np.float64), 4).tolist()
                      for i in range(self.n_layers(k))] for k in KINDS if self.n_layers(k)}
        return {"kind": "gpt" if "causal" in layers else "seq2seq",
                "src_tokens": list(self.src_tokens), "tgt_tokens": list(self.tgt_tokens),
                "input_text": self.input_text, "output_text": self.output_text,
                "n_heads": self.n_heads, "layers": layers, "meta": self.meta}


def collect_attention(model, src_ids, tgt_ids, src_tokens=None, tgt_tokens=None,
                      **record_kw) -> AttentionRecord:
    """Run one teacher-forced forward ``model(src, tgt)`` in eval mode and keep its attention.

    ``src_ids`` (S,) and ``tgt_ids`` (T,) are one example (the decoder input, BOS first);
    token labels default to the ids as strings. The model's train/eval mode is restored.
    """
    src = np.asarray(src_ids, dtype=np.int64).reshape(1, -1)  # (1, S)
    tgt = np.asarray(tgt_ids, dtype=np.int64).reshape(1, -1)  # (1, T)
    if not hasattr(model, "attention_maps") or not hasattr(model, "encode"):
        raise TypeError(f"collect_attention needs an encoder–decoder Transformer, "
                        f"got {type(model).__name__}")
    with model.eval_mode():
        model(src, tgt)
        maps = {name: np.array(a[0], dtype=np.float32)  # (H, Tq, Tk), a copy
                for name, a in model.attention_maps().items() if a.shape[0] == 1}
    src_tokens = [str(i) for i in src[0]] if src_tokens is None else list(src_tokens)
    tgt_tokens = [str(i) for i in tgt[0]] if tgt_tokens is None else list(tgt_tokens)
    for name, toks, n in (("src_tokens", src_tokens, src.shape[1]),
                          ("tgt_tokens", tgt_tokens, tgt.shape[1])):
        if len(toks) != n:
            raise ValueError(f"{name} must have one label per position ({n}), got {len(toks)}")
    return AttentionRecord(src_tokens, tgt_tokens, maps, **record_kw)


def attention_for_text(model, task, text: str, max_len: int | None = None,
                       bos_id: int = BOS, eos_id: int = EOS) -> AttentionRecord:
    """Decode ``text`` greedily with ``model``, then collect the attention of the forward
    pass over ``src`` and ``[BOS] + output`` (without the final EOS, which nothing reads).

    ``task``: anything with ``encode_input(text)``, ``decode_output(ids)`` and
    ``vocab.tokens(ids)`` (every toy task). Row t of the decoder maps is the step that
    predicts output token t.
    """
    src = task.encode_input(text)  # (S,) ids
    limit = model.config.max_len
    if len(src) > limit:
        raise ValueError(f"input has {len(src)} tokens; the model takes at most {limit}")
    if max_len is None:
        max_len = min(getattr(task, "max_tgt_len", 32) + 8, limit)
    out = greedy_decode(model, np.asarray([src]), max_len=max_len, bos_id=bos_id,
                        eos_id=eos_id)[0]  # (L,)
    ids = out.tolist()
    if eos_id in ids:
        ids = ids[:ids.index(eos_id) + 1]
    tgt = [bos_id] + ids[:-1] if ids and ids[-1] == eos_id else [bos_id] + ids[:max_len - 1]
    tokens = task.vocab.tokens
    return collect_attention(model, src, tgt, tokens(src), tokens(tgt), input_text=text,
                             output_text=task.decode_output(np.asarray(ids, dtype=np.int64)),
                             meta={"predicted_tokens": tokens(ids)})


def load_model_and_task(path):
    """``(model, task)`` from a checkpoint written by ``scratchformer train`` (its state
    holds ``task = {"name": ..., "options": {...}}``)."""
    from ..training.checkpoint import load

    model, _, state = load(path)
    return model, task_from_state(state, path)


def task_from_state(state: dict, path="checkpoint"):
    """The toy task stored in a checkpoint's state (``task = {"name", "options"}``)."""
    from ..data.tasks import get_task

    task = state.get("task")
    if isinstance(task, str):  # tolerate a JSON string
        task = json.loads(task)
    if not isinstance(task, dict) or "name" not in task:
        raise ValueError(f"{path}: no task stored in this checkpoint (expected state 'task' = "
                         f"{{'name': ..., 'options': {{...}}}}, got {task!r:.80})")
    return get_task(task["name"], **task.get("options", {}))


# ---- plots (matplotlib, imported lazily) ------------------------------------------------------
def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")  # no display needed; a user's own choice made earlier is kept
    import matplotlib.pyplot as plt

    return plt


def _as_heads(weights, index: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim == 4:  # (B, H, Tq, Tk) → one example
        if not -w.shape[0] <= index < w.shape[0]:
            raise ValueError(f"index must be in [0, {w.shape[0]}) for a batch of {w.shape[0]}, "
                             f"got {index}")
        w = w[index]
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(f"attention weights must have shape (H, Tq, Tk) or (B, H, Tq, Tk), "
                         f"got {np.shape(weights)}")
    return w


def _chosen_map(attn, kind, layer, index, query_tokens, key_tokens):
    """(weights (H, Tq, Tk), layer index, query labels, key labels) that ``plot_attention``
    draws from a record, a dict of maps or one array."""
    if isinstance(attn, AttentionRecord):
        w = attn.get(kind, layer)
        query_tokens = attn.query_tokens(kind) if query_tokens is None else query_tokens
        key_tokens = attn.key_tokens(kind) if key_tokens is None else key_tokens
        return w, layer % attn.n_layers(kind), query_tokens, key_tokens
    if isinstance(attn, dict):
        rec = AttentionRecord([], [], {k: _as_heads(v, index) for k, v in attn.items()})
        return rec.get(kind, layer), layer % rec.n_layers(kind), query_tokens, key_tokens
    return _as_heads(attn, index), layer, query_tokens, key_tokens


def plot_attention(attn, kind: str = "cross", layer: int = -1, *, query_tokens=None,
                   key_tokens=None, heads=None, index: int = 0, title: str | None = None,
                   path=None, ncols: int | None = None, cmap: str = "viridis", dpi: int = 100):
    """A grid of heatmaps, one per head: rows are queries, columns keys, tokens as labels.

    ``attn`` is one of
      - an ``AttentionRecord`` (tokens come with it; ``kind`` and ``layer`` choose the map),
      - ``model.attention_maps()`` (a dict; ``kind``/``layer`` choose the module,
        ``index`` the batch row),
      - one array, (H, Tq, Tk) or (B, H, Tq, Tk).
    ``kind``: "enc", "dec", "cross" or "causal" (GPT); ``layer`` may be negative (-1 = last).
    ``heads``: which heads to draw (default all). ``path``: also save the figure there
    (PNG, SVG, PDF by extension). Returns the matplotlib Figure.
    """
    w, layer, query_tokens, key_tokens = _chosen_map(attn, kind, layer, index, query_tokens,
                                                     key_tokens)
    H, Tq, Tk = w.shape
    heads = list(range(H)) if heads is None else [int(h) for h in heads]
    bad = [h for h in heads if not 0 <= h < H]
    if bad or not heads:
        raise ValueError(f"heads must be a non-empty list of head indices in [0, {H}), got {heads}")
    query_tokens = [str(i) for i in range(Tq)] if query_tokens is None else list(query_tokens)
    key_tokens = [str(i) for i in range(Tk)] if key_tokens is None else list(key_tokens)
    if len(query_tokens) != Tq or len(key_tokens) != Tk:
        raise ValueError(f"token labels must match the map's (Tq, Tk) = ({Tq}, {Tk}), got "
                         f"{len(query_tokens)} query and {len(key_tokens)} key labels")

    plt = _pyplot()
    ncols = min(len(heads), 4) if ncols is None else ncols
    nrows = -(-len(heads) // ncols)
    cell = 0.22  # inches per token
    fw = max(1.8, 0.6 + cell * Tk) * ncols + 1.0
    fh = max(1.8, 1.0 + cell * Tq) * nrows + 0.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(fw, fh), squeeze=False, dpi=dpi,
                             layout="constrained")  # room for tick labels, titles, colorbar
    label = KINDS.get(kind, (None, None, kind))[2]
    for ax in axes.flat[len(heads):]:
        ax.axis("off")
    for ax, h in zip(axes.flat, heads):
        im = ax.imshow(w[h], cmap=cmap, vmin=0.0, vmax=1.0, aspect="equal",
                       interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(Tk), [_show(t) for t in key_tokens], fontsize=7, rotation=90)
        ax.set_yticks(range(Tq), [_show(t) for t in query_tokens], fontsize=7)
        ax.tick_params(length=0)
    for ax in axes[:, 0]:
        ax.set_ylabel({"dec": "query (target input)", "cross": "query (target input)",
                       "causal": "query (text)"}.get(kind, "query (source)"), fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel({"dec": "key (target input)", "causal": "key (text)"}.get(kind, "key (source)"),
                      fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight")
    fig.suptitle(title or f"{label}, layer {layer}", fontsize=10)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi, bbox_inches="tight")
    return fig


def close_figure(fig) -> None:
    """Release a figure made here (pyplot keeps every figure alive until it is closed)."""
    _pyplot().close(fig)


def _show(token: str) -> str:
    """Make blanks visible as tick labels (a space would be an empty label)."""
    return "␣" if token == " " else token


def read_metrics(metrics_file) -> list[dict]:
    """The records of a ``metrics.jsonl`` written by the training loop, one dict per line."""
    records = []
    with open(metrics_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{metrics_file}:{lineno}: not a JSON line ({e})") from None
    return records


def plot_loss(metrics_file, path=None, title: str | None = None, dpi: int = 100):
    """Loss (left) and accuracy (right) against the step, from a training ``metrics.jsonl``.

    Training records (``"kind": "train"``) give the training loss; evaluation records
    (``"kind": "eval"``) the held-out loss, ``token_accuracy`` and ``exact_match``. Other
    numeric ``*loss*`` / ``*accuracy*`` / ``exact_match`` fields are drawn too. Returns the
    Figure; ``path`` also saves it.
    """
    records = read_metrics(metrics_file)
    if not records:
        raise ValueError(f"{metrics_file}: no metrics records")
    series: dict[str, tuple[list, list]] = {}
    for r in records:
        if "step" not in r:
            continue
        kind = r.get("kind", "train")
        for key, value in r.items():
            if key in ("step", "kind") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if "loss" in key or "accuracy" in key or key == "exact_match":
                name = f"{kind} {key}".replace("_", " ")
                xs, ys = series.setdefault(name, ([], []))
                xs.append(r["step"])
                ys.append(value)
    if not series:
        raise ValueError(f"{metrics_file}: no loss or accuracy fields with a step")
    plt = _pyplot()
    acc = {k: v for k, v in series.items() if "loss" not in k}
    fig, axes = plt.subplots(1, 2 if acc else 1, figsize=(10 if acc else 5.5, 3.6),
                             squeeze=False, dpi=dpi, layout="constrained")
    ax = axes[0, 0]
    for name, (xs, ys) in series.items():
        if "loss" in name:
            ax.plot(xs, ys, marker="o" if name.startswith("eval") else None, ms=3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if acc:
        ax = axes[0, 1]
        for name, (xs, ys) in acc.items():
            ax.plot(xs, 100 * np.asarray(ys), marker="o", ms=3, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title or os.fspath(metrics_file), fontsize=10)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi, bbox_inches="tight")
    return fig
