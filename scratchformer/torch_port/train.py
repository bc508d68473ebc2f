"""Train the torch twin: autograd, ``torch.optim.AdamW``, GPUs, and ``torchrun`` (DDP).

    scratchformer torch-train --task reverse --device cpu --steps 2000
    scratchformer torch-train --corpus tiny --device cuda --steps 5000           # char GPT
    torchrun --nproc_per_node=4 -m scratchformer torch-train --task dates --device cuda

One step (the same as NumPy's loop, with autograd doing the backward):

    lr      = warm-up then cosine (scratchformer.training.schedules.WarmupCosine), set before the update
    loss    = cross-entropy over non-PAD target tokens
    grads   = autograd; under DDP all-reduced (averaged) across ranks
    clip    = clip_grad_norm_(params, --clip);  AdamW(betas=(0.9, 0.98), eps=1e-9)

A non-finite loss or gradient norm halts the run before the update (``TrainingDiverged``
naming the step, as in NumPy's ``Trainer``; exit status 1), and weights that are not all
finite are never saved. The ``--out`` file is checked before training: its directory must
be writable, an existing file (another run's checkpoint) is refused unless ``--force``,
and ``OUT.lock`` keeps a second trainer off it.

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

import contextlib
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models.gpt import GPTConfig
from ..models.transformer import TransformerConfig
from ..training.rundir import check_writable_dir, open_output_file
from ..training.schedules import WarmupCosine
from ..training.trainer import TrainingDiverged
from .convert import to_numpy
from .decoding import greedy_decode
from .models import TorchGPT, TorchTransformer

def _check_args(a) -> None:
    for name in ("steps", "batch_size", "block_size", "d_model", "n_heads", "d_ff", "log_every"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.layers < 0 or a.warmup < 0 or a.eval_size < 0:
        raise ValueError(f"--layers, --warmup and --eval-size must be >= 0, got "
                         f"{a.layers}, {a.warmup}, {a.eval_size}")
    if not a.lr > 0 or a.clip < 0:
        raise ValueError(f"--lr must be > 0 and --clip >= 0, got {a.lr} and {a.clip}")
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    if a.batch_size % world:
        raise ValueError(f"--batch-size {a.batch_size} must be divisible by the number of "
                         f"processes {world}")
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda given, but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__})")


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
def build_model(a, data):
    """TorchTransformer for a task, TorchGPT for a corpus (initial weights = NumPy's, seeded)."""
    if a.task:
        t = data.task
        cfg = TransformerConfig(
            src_vocab_size=t.vocab_size, tgt_vocab_size=t.vocab_size, d_model=a.d_model,
            n_heads=a.n_heads, d_ff=a.d_ff, n_encoder_layers=a.layers, n_decoder_layers=a.layers,
            dropout=a.dropout, max_len=max(t.max_src_len, t.max_tgt_len + 1), activation=a.activation,
            norm_first=bool(a.norm_first), tie_embeddings=bool(a.tie_embeddings), seed=a.seed)
        return TorchTransformer(cfg)
    cfg = GPTConfig(vocab_size=data.tok.vocab_size, d_model=a.d_model, n_heads=a.n_heads,
                    d_ff=a.d_ff, n_layers=a.layers, max_len=a.block_size, dropout=a.dropout,
                    activation=a.activation, norm_first=a.norm_first is not False,
                    tie_embeddings=a.tie_embeddings is not False, seed=a.seed)
    return TorchGPT(cfg)


def step_loss(model, batch, n_tokens_global: int, world: int, device, is_task: bool):
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
                            ignore_index=0 if is_task else -100, reduction="sum")  # Σ token losses
    return total * (world / n_tokens_global), total.detach()


def train(args) -> tuple[torch.nn.Module, dict]:
    """Run the training described by ``args`` (parsed torch-train options).

    Returns (the trained model, unwrapped from DDP, on its device; a summary dict). Under
    torchrun every rank returns its own replica; only rank 0 logs and saves.
    """
    _check_args(args)
    out = _out_path(args)
    if out and int(os.environ.get("RANK", "0")) == 0:  # checked before any work, held to the end
        run = open_output_file(out, force=getattr(args, "force", False))
    else:
        run = contextlib.nullcontext()
    with run:
        return _train(args, out)


def _train(args, out):
    from torch.nn.parallel import DistributedDataParallel as DDP

    env = Dist(args.device)
    try:
        if args.threads or args.device == "cpu":
            torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // env.local_world))
        torch.manual_seed(args.seed * 1000 + env.rank)  # dropout masks differ between ranks
        data = (TaskData(args.task, args.seed) if args.task
                else CorpusData(args.corpus, args.block_size, args.seed))
        model = build_model(args, data).to(env.device)
        model.train()
        net = model
        if env.enabled:  # gradients all-reduced (averaged) during backward
            net = DDP(model, device_ids=[env.local_rank] if args.device == "cuda" else None)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9,
                                weight_decay=args.weight_decay)
        sched = WarmupCosine(args.lr, args.warmup, max(args.steps, args.warmup, 1),
                             args.lr / 10 if args.min_lr is None else args.min_lr)
        log = print if (env.main and not args.quiet) else (lambda *a, **k: None)
        n_params = sum(p.numel() for p in model.parameters())
        log(f"torch-train: {'task ' + args.task if args.task else 'corpus ' + args.corpus}, "
            f"{n_params:,} parameters, {env.world} process(es) on {args.device}, "
            f"global batch {args.batch_size}")
        losses, t0 = [], time.perf_counter()
        for step in range(1, args.steps + 1):
            batch, n_tok = data.batch(args.batch_size, env.rank, env.world)
            for g in opt.param_groups:
                g["lr"] = sched(step)
            loss, local_sum = step_loss(net, batch, n_tok, env.world, env.device, bool(args.task))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # clip (or only measure, with an infinite bound): the norm is over all ranks' grads
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                        args.clip if args.clip > 0 else math.inf))
            loss_value = float(local_sum)
            if not (math.isfinite(loss_value) and math.isfinite(norm)):
                what = (f"loss became {loss_value / n_tok:g}" if not math.isfinite(loss_value)
                        else f"gradient norm became {norm:g}")
                raise TrainingDiverged(
                    f"training halted: {what} at step {step} (lr {sched(step):.3g}); the weights "
                    f"were not updated with it and nothing was saved. Try a lower learning rate, "
                    f"a longer warm-up or gradient clipping", step)
            opt.step()
            if step % args.log_every == 0 or step == args.steps:
                if env.enabled:  # the global mean loss, for the log
                    dist.all_reduce(local_sum)
                losses.append((step, float(local_sum) / n_tok))
                ms = 1000 * (time.perf_counter() - t0) / step
                log(f"step {step:6d}  loss {losses[-1][1]:.4f}  lr {sched(step):.2e}  {ms:.1f} ms/step")
        elapsed = time.perf_counter() - t0
        summary = {"steps": args.steps, "final_loss": losses[-1][1], "losses": losses,
                   "seconds": elapsed, "ms_per_step": 1000 * elapsed / args.steps,
                   "world_size": env.world, "device": args.device}
        model.eval()
        if env.main:
            summary.update(evaluate(model, data, args))
            for k in ("exact_match", "val_loss"):
                if k in summary:
                    log(f"{k}: {summary[k]:.4f}")
            if args.corpus and "sample" in summary:
                log("sample:\n" + summary["sample"])
            if out:
                save_checkpoint(out, model, data, args, summary)
                summary["checkpoint"] = out
                log(f"saved {out}")
        if env.enabled:
            dist.barrier()
        return model, summary
    finally:
        env.close()


@torch.no_grad()
def evaluate(model, data, args) -> dict:
    """Task: exact-match rate of torch greedy decoding on held-out pairs. GPT: val loss."""
    if args.eval_size == 0:
        return {}
    if args.task:
        from ..data.taskbase import pad_batch

        pairs = data.task.held_out()[: args.eval_size]
        src, _, tgt_out = pad_batch(pairs)
        pred = greedy_decode(model, src, tgt_out.shape[1])
        want = np.zeros((len(pairs), max(pred.shape[1], tgt_out.shape[1])), np.int64)
        got = want.copy()
        want[:, : tgt_out.shape[1]], got[:, : pred.shape[1]] = tgt_out, pred
        return {"exact_match": float((want == got).all(axis=1).mean())}
    rng = np.random.default_rng(12345)
    tot = n = 0.0
    for _ in range(max(1, args.eval_size // 20)):
        x, y = data.windows(data.val, rng, 16)
        logits = model(torch.from_numpy(x).to(model.device))
        tot += float(F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(y).to(model.device).flatten(),
                                     reduction="sum"))
        n += y.size
    prompt = data.tok.encode("\n")[None]
    sample = model.generate(prompt, 200, temperature=0.8, top_k=20,
                            rng=torch.Generator(model.device).manual_seed(args.seed))
    return {"val_loss": tot / n, "sample": data.tok.decode(sample[0].cpu().numpy())}


def _out_path(args) -> str | None:
    if args.out == "":
        return None
    return args.out or os.path.join("runs", f"torch-{args.task or 'gpt'}.safetensors")


def save_checkpoint(path: str, model, data, args, summary: dict) -> None:
    """The NumPy twin of ``model``, saved with ``scratchformer.training.checkpoint.save`` (torch-free to load)."""
    from ..training.checkpoint import save

    bad = [name for name, p in model.state_dict().items()
           if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:  # never replace a good checkpoint with NaN weights
        raise TrainingDiverged(f"the trained weights are not finite ({', '.join(bad[:3])}"
                               f"{', ...' if len(bad) > 3 else ''}); {path} was not written",
                               int(args.steps))
    check_writable_dir(os.path.dirname(os.path.abspath(path)))
    extra = {"trained_with": "torch", "step": args.steps, "final_loss": summary["final_loss"],
             "torch_train_args": {k: v for k, v in vars(args).items() if k != "func"}}
    if args.task:
        extra["task"] = data.task.to_dict()  # get_task(**) rebuilds the vocabulary
    else:
        extra["tokenizer"] = data.tok.to_json()  # what `scratchformer gpt sample` reads
    save(path, to_numpy(model), optimizer=None, **extra)


def run(args) -> int:
    """Train with the options of ``scratchformer torch-train`` (an argparse namespace, see
    ``scratchformer.cli.torch_train``); returns the exit status. Bad options raise ValueError."""
    train(args)
    return 0
