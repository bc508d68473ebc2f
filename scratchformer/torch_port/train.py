"""The torch twin's training loop: autograd, ``torch.optim.AdamW``, GPUs, ``torchrun`` (DDP).
Its config and entry point are ``scratchformer.training.torch_run`` (``TorchTrainConfig``,
``train_torch``), which runs ``TorchTrainer`` on the spine every run shares.

    scratchformer torch-train --task reverse --device cpu --steps 2000
    scratchformer torch-train --corpus tiny --device cuda --steps 5000           # char GPT
    torchrun --nproc_per_node=4 -m scratchformer torch-train --task dates --device cuda

One step (the same as NumPy's loop, with autograd doing the backward):

    lr      = warm-up then cosine (scratchformer.training.schedules.WarmupCosine), set before the update
    loss    = cross-entropy over non-PAD target tokens
    grads   = autograd; under DDP all-reduced (averaged) across ranks
    clip    = clip_grad_norm_(params, clip_norm);  AdamW(betas, eps, weight_decay)

A non-finite loss or gradient norm halts the run before the update (``TrainingDiverged``
naming the step, as in NumPy's ``Trainer``; exit status 1), and weights that are not all
finite are never saved. Ctrl-C (SIGINT) or SIGTERM finishes the step, saves the checkpoint
and raises ``TrainingInterrupted``, as NumPy's ``Trainer`` does.

Data parallelism: every rank draws the same *global* batch from one generator seeded with
``--seed`` and keeps its own slice of rows (rank r: rows r·b .. (r+1)·b, b = batch / world).
Each rank's loss is its sum of token losses divided by the *global* token count, times the
world size, so DDP's gradient average equals the gradient of the global mean loss: N ranks
train exactly the model one process would train on the whole batch (up to float rounding).
Only rank 0 logs and writes the checkpoint: the weights converted to a NumPy model and
saved with ``scratchformer.training.checkpoint.save`` (the same ``.safetensors`` as NumPy training), so
``scratchformer.load`` + ``greedy_decode`` decode it without torch.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models.gpt import GPTConfig
from ..models.sampling import NonFiniteLogits
from ..models.transformer import TransformerConfig
from ..training.checkpoint import load, save
from ..training.optim import AdamW
from ..training.trainer import (NOT_SAVED, NOT_UPDATED, StopSignals, TrainingDiverged,
                                TrainingInterrupted, TrainResult, diverged, make_schedule,
                                quiet_float_errors, trainer_state)
from .convert import to_numpy
from .decoding import greedy_decode
from .models import TorchGPT, TorchTransformer

# ---- processes ---------------------------------------------------------------------------
class Dist:
    """rank / world size / device of this process; DDP set up from torchrun's environment."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))
        if device == "cuda":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        # under torchrun, a process group even for one process (exercises gloo/nccl + DDP)
        self.enabled = self.world > 1 or "TORCHELASTIC_RUN_ID" in os.environ
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        self.main = self.rank == 0

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


# ---- data ------------------------------------------------------------------------------------
class TaskData:
    """A toy task's global batches, sliced per rank."""

    def __init__(self, name: str, seed: int):
        from ..data.tasks import get_task

        self.task = get_task(name)
        self.rng = np.random.default_rng([seed, 7])  # the same stream on every rank

    def batch(self, B: int, rank: int, world: int):
        """(src, tgt_in, tgt_out) rows of this rank, plus the global non-PAD target count."""
        src, tgt_in, tgt_out = self.task.batch(self.rng, B)  # (B, S), (B, T), (B, T)
        n_tokens = int((tgt_out != 0).sum())
        b = B // world
        rows = slice(rank * b, (rank + 1) * b)
        return (src[rows], tgt_in[rows], tgt_out[rows]), n_tokens


class CorpusData:
    """Random windows of a character corpus (90 % train / 10 % val), sliced per rank."""

    def __init__(self, corpus: str, block: int, seed: int):
        from ..training.lm import corpus_ids, split_ids

        self.tok, ids = corpus_ids(corpus)  # compact ids (uint8 for <= 256 characters)
        self.train, self.val = split_ids(ids)
        if len(self.val) <= block + 1:
            raise ValueError(f"corpus too short for --block-size {block}: validation split has "
                             f"{len(self.val)} characters")
        self.block, self.rng = block, np.random.default_rng([seed, 7])

    def windows(self, data: np.ndarray, rng, B: int):
        i = rng.integers(0, len(data) - self.block - 1, size=B)[:, None] + np.arange(self.block)
        return data[i].astype(np.int64), data[i + 1].astype(np.int64)  # (B, T), (B, T) next

    def batch(self, B: int, rank: int, world: int):
        x, y = self.windows(self.train, self.rng, B)
        b = B // world
        rows = slice(rank * b, (rank + 1) * b)
        return (x[rows], y[rows]), y.size


# ---- the loop ------------------------------------------------------------------------------
def build_model(cfg, data):
    """TorchTransformer for a task, TorchGPT for a corpus (initial weights = NumPy's, seeded)."""
    if cfg.task:
        t = data.task
        mcfg = TransformerConfig(
            src_vocab_size=t.vocab_size, tgt_vocab_size=t.vocab_size, d_model=cfg.d_model,
            n_heads=cfg.n_heads, d_ff=cfg.ff_width, n_encoder_layers=cfg.n_layers,
            n_decoder_layers=cfg.n_layers, dropout=cfg.dropout,
            max_len=max(t.max_src_len, t.max_tgt_len + 1), activation=cfg.activation,
            norm_first=cfg.norm == "pre", tie_embeddings=cfg.tie_embeddings, seed=cfg.seed)
        return TorchTransformer(mcfg)
    mcfg = GPTConfig(vocab_size=data.tok.vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads,
                     d_ff=cfg.ff_width, n_layers=cfg.n_layers, max_len=cfg.block_size,
                     dropout=cfg.dropout, activation=cfg.activation, norm_first=cfg.norm == "pre",
                     tie_embeddings=cfg.tie_embeddings, seed=cfg.seed)
    return TorchGPT(mcfg)


def step_loss(model, batch, n_tokens_global: int, world: int, device, is_task: bool,
              label_smoothing: float = 0.0):
    """This rank's share of the global mean loss: Σ_rank token losses / N_global · world.

    (DDP averages gradients over ranks, so Σ_ranks share / world = the global mean.)
    Returns (loss to back-propagate, this rank's token-loss sum as a detached tensor).
    """
    if is_task:
        src, tgt_in, tgt_out = (torch.from_numpy(x).to(device) for x in batch)
        logits = model(src, tgt_in)  # (b, T, V)
        target = tgt_out
    else:
        x, target = (torch.from_numpy(z).to(device) for z in batch)
        logits = model(x)  # (b, T, V)
    total = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(),
                            ignore_index=0 if is_task else -100, reduction="sum",
                            label_smoothing=label_smoothing)  # Σ token losses
    return total * (world / n_tokens_global), total.detach()


class TorchTrainer:
    """The twin's loop with the NumPy ``Trainer``'s interface for the spine: ``resume(path)``,
    ``fit() -> TrainResult``, ``save(path)``; the run directory ``out_dir`` (rank 0 only)
    gets ``checkpoint.safetensors`` and ``metrics.jsonl`` records like NumPy's."""

    def __init__(self, cfg, state=None, owner: bool = True):
        self.cfg, self.env = cfg, Dist(cfg.device)
        self.out_dir = cfg.out if owner else None
        self.summary: dict = {}
        env = self.env
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // env.local_world))
        torch.manual_seed(cfg.seed * 1000 + env.rank)  # dropout masks differ between ranks
        if cfg.task:
            self.data = TaskData(cfg.task, cfg.seed)
        else:
            self.data = CorpusData(cfg.corpus, cfg.block_size, cfg.seed)
        self.model = build_model(cfg, self.data).to(env.device)
        self.net = self.model
        if env.enabled:  # gradients all-reduced (averaged) during backward
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[env.local_rank] if cfg.device == "cuda" else None)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     eps=cfg.eps, weight_decay=cfg.weight_decay)
        self.schedule = make_schedule(cfg, cfg.d_model)
        self.step, self.history, self.monitors = 0, [], []
        self.config, self.threads = cfg, cfg.threads  # what monitors read
        self.trainer = self  # the spine drives ``job.trainer``
        self.log = print if (env.main and cfg.progress is not False) else (lambda *a, **k: None)

    # -- the loop
    def fit(self) -> TrainResult:
        cfg, env = self.cfg, self.env
        n_params = sum(p.numel() for p in self.model.parameters())
        self.log(f"torch-train: {'task ' + cfg.task if cfg.task else 'corpus ' + str(cfg.corpus)}, "
                 f"{n_params:,} parameters, {env.world} process(es) on {cfg.device}, "
                 f"global batch {cfg.batch_size}")
        if self.out_dir and self.step == 0:  # a fresh run: nothing of an older one beside it
            from ..training.rundir import start_fresh

            start_fresh(self.out_dir)
        self.model.train()
        t0, first = time.perf_counter(), self.step
        try:
            with StopSignals() as signals:
                while self.step < cfg.steps and signals.signum is None:
                    self._one_step(self.step + 1, t0, first)
                    if (self.out_dir and cfg.checkpoint_every
                            and self.step % cfg.checkpoint_every == 0):
                        self.save(self._ckpt())
                if signals.signum is not None:
                    self._interrupted(signals.signum)
                for m in self.monitors:
                    m.end(self)
            elapsed = time.perf_counter() - t0
            self.model.eval()
            try:
                metrics = evaluate(self.model, self.data, cfg) if env.main else {}
            except NonFiniteLogits:  # the last update left weights that overflow the model
                metrics = {"val_loss": math.nan}
            overflow = not math.isfinite(metrics.get("val_loss", 0.0))  # rank 0 only knows
            if not overflow:
                self._report(metrics, elapsed, first)
                if self.out_dir:
                    self.save(self._ckpt())
            if env.enabled:
                dist.barrier()
            if overflow:
                self._diverged_after_update()
        finally:
            env.close()
        return TrainResult(self.step, "steps", elapsed, self.summary.get("final_loss", math.nan),
                           metrics, list(self.history))

    def _one_step(self, step: int, t0: float, first: int) -> None:
        cfg, env = self.cfg, self.env
        batch, n_tok = self.data.batch(cfg.batch_size, env.rank, env.world)
        for g in self.opt.param_groups:
            g["lr"] = self.schedule(step)
        loss, local_sum = step_loss(self.net, batch, n_tok, env.world, env.device, bool(cfg.task),
                                    cfg.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        # clip (or only measure, with an infinite bound): the norm is over all ranks' grads
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                    cfg.clip_norm or math.inf))
        value = float(local_sum)
        if not (math.isfinite(value) and math.isfinite(norm)):
            what = (f"loss became {value / n_tok:g}" if not math.isfinite(value)
                    else f"gradient norm became {norm:g}")
            raise diverged(f"{what} at step {step}", step, self.schedule(step), NOT_UPDATED)
        with quiet_float_errors():  # the monitors' NumPy copies of diverging weights
            for m in self.monitors:
                m.before_update(self, step)
        try:
            self.opt.step()
        except RuntimeError as e:  # torch: lr / (1 - β₁ᵗ) beyond float32 ("without overflow")
            if "overflow" not in str(e):
                raise
            raise TrainingDiverged(
                f"training halted: the update overflowed float32 at step {step} (lr "
                f"{self.schedule(step):.3g}); no checkpoint was written with it. Try a lower "
                f"learning rate", step) from None
        self.step = step
        with quiet_float_errors():
            for m in self.monitors:
                m.after_update(self, step, value / n_tok)
        if step % cfg.log_every == 0 or step == cfg.steps:
            if env.enabled:  # the global mean loss, for the log
                dist.all_reduce(local_sum)
            now = time.perf_counter()
            rec = {"kind": "train", "step": step, "loss": float(local_sum) / n_tok,
                   "lr": self.schedule(step), "grad_norm": norm, "time_s": now - t0}
            self.record(rec)
            ms = 1000 * (now - t0) / (step - first)
            self.log(f"step {step:6d}  loss {rec['loss']:.4f}  lr {rec['lr']:.2e}  {ms:.1f} ms/step")

    def _diverged_after_update(self) -> None:
        """The final evaluation found the model's output NaN or inf: the last update's
        weights overflow it. Halt as a diverged step does; the final checkpoint is not
        written with those weights."""
        what = (f"the model's output became NaN or inf in the final evaluation, after step "
                f"{self.step}")
        self.record({"kind": "diverged", "step": self.step, "message": what})
        raise diverged(what, self.step, self.schedule(self.step), NOT_SAVED)

    def _report(self, metrics: dict, elapsed: float, first: int) -> None:
        losses = [(r["step"], r["loss"]) for r in self.history if r["kind"] == "train"]
        self.summary = {"steps": self.step, "final_loss": losses[-1][1] if losses else math.nan,
                        "losses": losses, "seconds": elapsed,
                        "ms_per_step": 1000 * elapsed / max(self.step - first, 1),
                        "world_size": self.env.world, "device": self.cfg.device, **metrics}
        for k in ("exact_match", "val_loss"):
            if k in metrics:
                self.log(f"{k}: {metrics[k]:.4f}")
        if "sample" in metrics:
            self.log("sample:\n" + metrics["sample"])
        if metrics:
            self.record({"kind": "eval", "step": self.step,
                         **{k: v for k, v in metrics.items() if k != "sample"}})

    def record(self, rec: dict) -> None:
        self.history.append(rec)
        if self.out_dir:
            with open(os.path.join(self.out_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    def _ckpt(self) -> str:
        return os.path.join(self.out_dir, "checkpoint.safetensors")

    def _interrupted(self, signum: int):
        name, path = signal.Signals(signum).name, None
        if self.out_dir:
            path = self._ckpt()
            with StopSignals():
                self.save(path)
        where = (f"; checkpoint saved at step {self.step}: {path} (continue with resume=True)"
                 if path else " (no output directory: nothing saved)")
        raise TrainingInterrupted(f"interrupted by {name} at step {self.step}{where}",
                                  self.step, signum, path)

    # -- checkpoints
    def save(self, path: str) -> None:
        """The NumPy twin of the model and of its AdamW state (torch-free to load)."""
        bad = [name for name, p in self.model.state_dict().items()
               if p.is_floating_point() and not bool(torch.isfinite(p).all())]
        if bad:  # never replace a good checkpoint with NaN weights
            raise TrainingDiverged(f"the trained weights are not finite ({', '.join(bad[:3])}"
                                   f"{', ...' if len(bad) > 3 else ''}); {path} was not written",
                                   self.step)
        np_model = to_numpy(self.model)
        state = {"step": self.step, "train_config": self.cfg.to_dict(),
                 "data_rng": self.data.rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state().tolist(), "model_rngs": []}
        extra = {"trained_with": "torch", "trainer": state, "run_config": self.cfg.to_dict(),
                 "summary": {k: v for k, v in self.summary.items() if k != "losses"}}
        if self.cfg.task:
            extra["task"] = self.data.task.to_dict()  # get_task(**) rebuilds the vocabulary
        else:
            extra["tokenizer"] = self.data.tok.to_json()  # what `scratchformer gpt sample` reads
        save(path, np_model, numpy_optimizer(self.opt, self.model, np_model), **extra)

    def resume(self, path: str) -> None:
        """Continue the run saved at ``path``: weights, AdamW moments, generators, step."""
        np_model, opt_state, state = load(path)
        ts = trainer_state(state, path)
        if opt_state is None:
            raise ValueError(f"{path}: the checkpoint holds no optimizer state; cannot resume")
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in
                                    np_model.state_dict().items()}, strict=False)
        load_torch_optimizer(self.opt, self.model, opt_state)
        self.step = int(ts["step"])
        self.data.rng.bit_generator.state = ts["data_rng"]
        torch.set_rng_state(torch.tensor(ts["torch_rng"], dtype=torch.uint8))
        if self.out_dir:  # drop what an interrupted run logged after its checkpoint
            from ..training.rundir import drop_records_after

            drop_records_after(os.path.join(self.out_dir, "metrics.jsonl"), self.step)


def numpy_optimizer(opt, model, np_model) -> AdamW:
    """The torch AdamW's state as a NumPy ``AdamW`` over ``np_model``'s parameters (in the
    torch model's parameter order; ``exp_avg`` / ``exp_avg_sq`` are the same moments)."""
    g = opt.param_groups[0]
    params = dict(np_model.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    ours = AdamW([params[n] for n in names], lr=g["lr"], betas=g["betas"], eps=g["eps"],
                 weight_decay=g["weight_decay"])
    sd = ours.state_dict()
    steps = [int(opt.state[p]["step"]) for p in model.parameters() if p in opt.state]
    sd["step"] = np.array(steps[0] if steps else 0, dtype=np.int64)
    for i, p in enumerate(model.parameters()):
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                sd[f"{key}.{i}"] = st[key].detach().cpu().numpy().astype(sd[f"{key}.{i}"].dtype)
    ours.load_state_dict(sd)
    return ours


def load_torch_optimizer(opt, model, opt_state: dict) -> None:
    """The inverse of ``numpy_optimizer``: a saved NumPy AdamW state into torch's AdamW."""
    step = int(np.asarray(opt_state["step"]))
    for i, p in enumerate(model.parameters()):
        if step == 0:
            continue
        opt.state[p] = {"step": torch.tensor(float(step)),
                        "exp_avg": torch.from_numpy(np.array(opt_state[f"exp_avg.{i}"])).to(p),
                        "exp_avg_sq": torch.from_numpy(np.array(opt_state[f"exp_avg_sq.{i}"])).to(p)}


@torch.no_grad()
def evaluate(model, data, cfg) -> dict:
    """Task: exact-match rate of torch greedy decoding on held-out pairs. GPT: val loss."""
    if cfg.eval_size == 0:
        return {}
    if cfg.task:
        from ..data.taskbase import pad_batch

        pairs = data.task.held_out()[: cfg.eval_size]
        src, _, tgt_out = pad_batch(pairs)
        pred = greedy_decode(model, src, tgt_out.shape[1])
        want = np.zeros((len(pairs), max(pred.shape[1], tgt_out.shape[1])), np.int64)
        got = want.copy()
        want[:, : tgt_out.shape[1]], got[:, : pred.shape[1]] = tgt_out, pred
        return {"exact_match": float((want == got).all(axis=1).mean())}
    rng = np.random.default_rng(12345)
    tot = n = 0.0
    for _ in range(max(1, cfg.eval_size // 20)):
        x, y = data.windows(data.val, rng, 16)
        logits = model(torch.from_numpy(x).to(model.device))
        tot += float(F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(y).to(model.device).flatten(),
                                     reduction="sum"))
        n += y.size
    if not math.isfinite(tot / n):  # the logits overflow: there is nothing to sample from
        return {"val_loss": tot / n}
    prompt = data.tok.encode("\n" if "\n" in data.tok.stoi else data.tok.chars[0])[None]
    sample = model.generate(prompt, 200, temperature=0.8, top_k=20,
                            rng=torch.Generator(model.device).manual_seed(cfg.seed))
    return {"val_loss": tot / n, "sample": data.tok.decode(sample[0].cpu().numpy())}
