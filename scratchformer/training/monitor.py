"""Watch a run learn: gradient norms per layer, update/weight ratios and attention snapshots,
recorded by a monitor that ``Trainer`` calls around every optimizer step.

    monitor = monitor_for_task(task, model)              # probe: the first held-out pair
    trainer = Trainer(model, batch_fn, config, out_dir="runs/copy", monitors=[monitor])
    trainer.fit()              # metrics.jsonl gains "grads" records, snapshots.* appear
    # then: scratchformer report runs/copy  ->  runs/copy/report.html

What it records (H heads, Tq/Tk query/key lengths):

- every ``every`` steps, ``{"kind": "grads", "step": s, "grad_norm": {group: ‖g‖},
  "update_ratio": {group: ‖Δw‖ / ‖w‖}}``. g: the group's gradients as the optimizer reads
  them (after clipping); w: its weights before the update; Δw = w_after − w_before.
  A group is a layer: ``embeddings``, ``encoder.layers.0`` …, ``decoder.layers.1``,
  ``blocks.2``, the final norms (``encoder.norm``, ``norm``), ``head``.
- at log-spaced steps (1, 2, 5, 10, 20, 50, … and the run's last), the attention weights
  of every layer and head on one fixed probe input, (H, Tq, Tk) per attention module, and
  the model's decoded output for the probe at that step (``snapshots.py``: the files).
- once, ``{"kind": "monitor", ...}``: the schedule and the machine (Python, NumPy, CPUs).

The monitor draws no random numbers and runs the probe in eval mode (no dropout) after
the update, before the next step's forward: a run with it is bit-identical to the same
run without it. Its cost at the default ``every = DEFAULT_EVERY`` is measured in
docs/training.md ("Watch it learn").

``model_view``: for a trainer whose model is not a NumPy model (the torch twin), a function
``model_view(model) -> NumPy model`` (e.g. ``torch_port.to_numpy``) used for the snapshots;
the gradient statistics read ``.data`` / ``.grad`` of either kind directly.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.checks import check_int
from ..core.tokens import BOS, EOS
from ..models.sampling import NonFiniteLogits
from .snapshots import read_snapshots, write_snapshots

DEFAULT_EVERY = 25        # steps between "grads" records (overhead: docs/training.md)
MAX_BYTES = 5_000_000     # bound on snapshots.safetensors
NOT_FINITE = "(not finite: the weights of this step overflow the model)"  # a snapshot's output then
EMBEDDINGS = ("src_embed", "tgt_embed", "tok_embed", "pos_embed")
HEADS = ("generator", "lm_head")


# ---- parameter groups ----------------------------------------------------------------------
def layer_group(name: str) -> str:
    """The layer a parameter belongs to: ``decoder.layers.1.ffn.linear1.weight`` →
    ``decoder.layers.1``, ``blocks.2.norm1.bias`` → ``blocks.2``, ``src_embed.weight`` →
    ``embeddings``, ``lm_head.weight`` → ``head``, ``encoder.norm.weight`` → ``encoder.norm``."""
    parts = name.split(".")
    if parts[0] in EMBEDDINGS:
        return "embeddings"
    if parts[0] in HEADS:
        return "head"
    if len(parts) > 3 and parts[1] == "layers":
        return ".".join(parts[:3])
    if parts[0] == "blocks" and len(parts) > 2:
        return ".".join(parts[:2])
    return ".".join(parts[:-1]) or name


def param_groups(model) -> dict[str, list]:
    """{group: [parameters]} in the model's order, embeddings first and head last."""
    groups: dict[str, list] = {}
    for name, p in model.named_parameters():
        groups.setdefault(layer_group(name), []).append(p)
    order = sorted(groups, key=lambda g: (g != "embeddings", g == "head"))  # stable otherwise
    return {g: groups[g] for g in order}


def _sqnorm(a) -> float:
    """‖a‖² of a NumPy array or a torch tensor (one dot product, no temporary)."""
    a = a.reshape(-1)
    return float(a @ a)


def _copy(a):
    return a.clone() if hasattr(a, "clone") else a.copy()


def snapshot_schedule(steps: int) -> list[int]:
    """Log-spaced steps 1, 2, 5, 10, 20, 50, 100, … below ``steps``, and ``steps`` itself."""
    out, base = [], 1
    while base < steps:
        out += [m * base for m in (1, 2, 5) if m * base < steps]
        base *= 10
    return out + [steps]


def thin(steps: list[int], n: int) -> list[int]:
    """At most ``n`` (≥ 1) of ``steps``: the last always, the others evenly spread."""
    if len(steps) <= n:
        return list(steps)
    if n == 1:
        return [steps[-1]]
    picks = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
    return [steps[i] for i in picks]


def attention_axes(module: str) -> dict:
    """What the rows and columns of a module's map are: ``{"query": axis, "key": axis,
    "causal": bool}``; axes ``src``/``tgt`` (encoder–decoder) or ``text`` (GPT)."""
    if module.startswith("encoder."):
        return {"query": "src", "key": "src", "causal": False}
    if module.endswith("cross_attn"):
        return {"query": "tgt", "key": "src", "causal": False}
    if module.startswith("decoder."):
        return {"query": "tgt", "key": "tgt", "causal": True}
    return {"query": "text", "key": "text", "causal": True}


@dataclass
class Probe:
    """The fixed input whose attention is recorded.

    ``forward(model)``: one forward pass over the probe (the monitor sets eval mode);
    ``decode(model) -> str``: the model's output for it (greedy); ``tokens``: the labels
    of each axis (``{"src": [...], "tgt": [...]}`` or ``{"text": [...]}``), one per position;
    ``kind``: "seq2seq", "gpt" or "translation"."""

    forward: Callable
    decode: Callable
    tokens: dict
    input_text: str = ""
    target_text: str | None = None
    kind: str = "seq2seq"


# ---- the monitor ----------------------------------------------------------------------------
class TrainingMonitor:
    """Gradient statistics every ``every`` steps and attention snapshots of ``probe`` (None:
    statistics only) at ``snapshot_steps`` (None: ``snapshot_schedule(config.steps)``, thinned
    so the snapshots fit ``max_bytes``). Pass it to ``Trainer(..., monitors=[...])``."""

    def __init__(self, model, probe: Probe | None = None, *, every: int = DEFAULT_EVERY,
                 snapshot_steps=None, max_bytes: int = MAX_BYTES,
                 model_view: Callable | None = None):
        self.every = check_int("every", every, 1)
        self.max_bytes = check_int("max_bytes", max_bytes, 1)
        self.probe, self.model_view = probe, model_view
        self.groups = param_groups(model)
        self.snapshot_steps = None if snapshot_steps is None else sorted(
            {check_int("snapshot_steps", s, 1) for s in snapshot_steps})
        view = model_view(model) if model_view else model
        self.modules = {} if probe is None else {
            name: attention_axes(name) for name, m in view.named_modules()
            if type(m).__name__ == "MultiHeadAttention"}
        for name, ax in self.modules.items():
            for side in ("query", "key"):
                if ax[side] not in probe.tokens:
                    raise ValueError(f"probe.tokens has no {ax[side]!r} labels for {name} "
                                     f"(has {sorted(probe.tokens)})")
        mods = dict(view.named_modules())
        self.bytes_per_snapshot = 0 if probe is None else sum(  # float16: 2 bytes a weight
            2 * mods[n].n_heads * len(probe.tokens[ax["query"]]) * len(probe.tokens[ax["key"]])
            for n, ax in self.modules.items())
        if probe is not None and 2 * self.bytes_per_snapshot > self.max_bytes:
            raise ValueError(f"one attention snapshot of this probe takes "
                             f"{self.bytes_per_snapshot:,} bytes; max_bytes={self.max_bytes:,} "
                             f"holds fewer than 2: use a shorter probe")
        self.snapshots: dict[int, dict[str, np.ndarray]] = {}  # step -> {module: (H, Tq, Tk)}
        self.outputs: dict[int, str] = {}
        self.out_dir: str | None = None
        self._started, self._plan, self._pending = False, set(), None

    # -- Trainer hooks
    def before_update(self, trainer, step: int) -> None:
        """Gradients ready (clipped), weights not yet updated: measure ‖g‖, keep w."""
        self._start(trainer)
        if step % self.every and step != 1:
            return
        grad = {g: sum(_sqnorm(p.grad) for p in ps if p.grad is not None) ** 0.5
                for g, ps in self.groups.items()}
        self._pending = (step, grad, {g: [_copy(p.data) for p in ps]
                                      for g, ps in self.groups.items()})

    def after_update(self, trainer, step: int, loss: float) -> None:
        """Weights updated: ‖Δw‖/‖w‖ per group, and a snapshot when one is due."""
        if self._pending is not None and self._pending[0] == step:
            _, grad, before = self._pending
            ratio = {}
            for g, ps in self.groups.items():
                dw = sum(_sqnorm(p.data - w) for p, w in zip(ps, before[g]))
                w2 = sum(_sqnorm(w) for w in before[g])
                ratio[g] = (dw / w2) ** 0.5 if w2 > 0 else float("inf")
            trainer.record({"kind": "grads", "step": step, "grad_norm": grad,
                            "update_ratio": ratio})
            self._pending = None
        if step in self._plan:
            self.snapshot(trainer.model, step)

    def end(self, trainer) -> None:
        """The run stopped (its last step or an early stop): snapshot the final weights."""
        if self.probe is not None and trainer.step > 0 and trainer.step not in self.snapshots:
            self._start(trainer)
            self.snapshot(trainer.model, trainer.step)

    # -- snapshots
    def snapshot(self, model, step: int) -> None:
        """Record the probe's attention and decoded output with the current weights."""
        if self.probe is None:
            return
        model = self.model_view(model) if self.model_view else model
        with model.eval_mode():  # no dropout: no random number drawn
            self.probe.forward(model)
            maps = {name: np.array(a[0], dtype=np.float32)  # (H, Tq, Tk)
                    for name, a in model.attention_maps().items() if name in self.modules}
            try:
                self.outputs[step] = self.probe.decode(model)
            except NonFiniteLogits:  # this step's update overflowed: the trainer halts on it
                self.outputs[step] = NOT_FINITE
        self.snapshots[step] = maps
        if self.out_dir:
            write_snapshots(self.out_dir, self.index(), self.snapshots)

    def index(self) -> dict:
        """The JSON index of the snapshots taken so far (``snapshots.py``)."""
        p = self.probe
        steps = sorted(self.snapshots)
        return {"version": 1, "kind": p.kind, "steps": steps,
                "outputs": [self.outputs[s] for s in steps], "modules": self.modules,
                "tokens": p.tokens, "input_text": p.input_text, "target_text": p.target_text}

    def _start(self, trainer) -> None:
        """First hook of a fit: plan the snapshots, pick up a resumed run's, log the machine."""
        if self._started:
            return
        self._started = True
        self.out_dir = trainer.out_dir
        plan = self.snapshot_steps or snapshot_schedule(trainer.config.steps)
        if self.probe is not None:
            plan = thin(plan, max(1, self.max_bytes // self.bytes_per_snapshot - 1))
        self._plan = set(plan)
        done = trainer.step  # > 0 when resumed: keep the snapshots up to the checkpoint
        if done and self.out_dir and self.probe is not None:
            old = read_snapshots(self.out_dir) or {"steps": [], "outputs": [], "maps": {}}
            for s, out in zip(old["steps"], old["outputs"]):
                if s <= done:
                    self.snapshots[s], self.outputs[s] = old["maps"][s], out
        trainer.record({"kind": "monitor", "step": done, "every": self.every,
                        "groups": list(self.groups), "snapshot_steps": sorted(plan),
                        "machine": machine(trainer)})


def machine(trainer=None) -> dict:
    """Where the run happens: OS, CPU, Python and NumPy versions, cores and threads."""
    from ..kernels import pool

    threads = getattr(trainer, "threads", None)
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": sys.version.split()[0], "numpy": np.__version__, "cpus": os.cpu_count(),
            "threads": threads if threads is not None else pool.default_threads()}


# ---- one helper per kind of run -------------------------------------------------------------
def monitor_for_task(task, model, *, pair=None, **kw) -> TrainingMonitor:
    """A monitor for a toy-task encoder–decoder. Probe: ``pair`` = (src_ids, tgt_ids) without
    BOS/EOS, default the task's first held-out pair; the decoder reads [BOS] + tgt_ids (the
    reference, so every snapshot has the same rows) and the decoded output is greedy.
    ``kw``: ``TrainingMonitor``'s (every, snapshot_steps, max_bytes, model_view)."""
    if pair is None:
        held = task.held_out()
        pair = held[0] if held else task.sample(np.random.default_rng(0), 1)[0]
    src, tgt = list(pair[0]), list(pair[1])
    return TrainingMonitor(model, _seq2seq_probe(
        src, [BOS] + tgt, len(tgt) + 1, task.vocab.tokens, lambda ids: task.decode_output(ids),
        task.vocab.decode(src), task.decode_output(tgt), "seq2seq"), **kw)


def monitor_for_translation(tokenizer, model, source: str, target: str, **kw) -> TrainingMonitor:
    """A monitor for ``translate-train``: the probe is one (source, reference) pair of
    texts, e.g. the first validation pair, labelled by its BPE pieces (``▁`` = a space
    before); source = pieces + <eos>, decoder input = <bos> + reference pieces."""
    cap = model.config.max_len
    src = tokenizer.encode(source, eos=True)[:cap]
    tgt_in = ([tokenizer.bos_id] + tokenizer.encode(target))[:cap]
    labels = lambda ids: [tokenizer.itos[i] for i in ids]  # noqa: E731
    return TrainingMonitor(model, _seq2seq_probe(
        src, tgt_in, min(cap, 2 * len(src) + 10), labels, tokenizer.decode, source, target,
        "translation", bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id), **kw)


def monitor_for_gpt(tokenizer, model, prompt: str, *, new_tokens: int = 60, **kw) -> TrainingMonitor:
    """A monitor for a character GPT: the probe is ``prompt`` (cut to the model's
    ``max_len``; e.g. the first 64 characters of the validation text), the output its
    greedy continuation of ``new_tokens`` characters."""
    check_int("new_tokens", new_tokens, 1)
    ids = np.asarray(tokenizer.encode(prompt), dtype=np.int64)[:model.config.max_len]  # (T,)
    if ids.size == 0:
        raise ValueError("prompt must hold at least one character, got ''")

    def decode(m) -> str:
        out = m.generate(ids[None], new_tokens, top_k=1)  # greedy, no random number
        return tokenizer.decode(out[0, ids.size:])

    probe = Probe(lambda m: m(ids[None]), decode,
                  {"text": [tokenizer.decode(ids[i:i + 1]) for i in range(ids.size)]},
                  tokenizer.decode(ids), None, "gpt")
    return TrainingMonitor(model, probe, **kw)


def _seq2seq_probe(src, tgt_in, max_len, labels, decode_ids, input_text, target_text, kind,
                   bos_id=BOS, eos_id=EOS) -> Probe:
    from ..models.decoding import greedy_decode

    s = np.asarray([src], dtype=np.int64)     # (1, S)
    t = np.asarray([tgt_in], dtype=np.int64)  # (1, T)

    def decode(model) -> str:
        out = greedy_decode(model, s, max_len=max_len, bos_id=bos_id, eos_id=eos_id)
        return decode_ids(out[0])

    return Probe(lambda m: m(s, t), decode, {"src": labels(src), "tgt": labels(tgt_in)},
                 input_text, target_text, kind)
