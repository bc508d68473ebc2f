"""The training monitor: per-layer gradient norms and update ratios, attention snapshots of a
probe, their files, and a run that stays bit-identical with the monitor watching it."""

import json

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.data.chartok import CharTokenizer
from scratchformer.data.tasks import get_task
from scratchformer.models.decoding import greedy_decode
from scratchformer.training.lm import random_blocks
from scratchformer.training.monitor import (TrainingMonitor, layer_group, monitor_for_gpt,
                                            monitor_for_task, monitor_for_translation,
                                            param_groups, snapshot_schedule, thin)
from scratchformer.training.snapshots import INDEX, TENSORS, read_safetensors, read_snapshots
from scratchformer.training.trainer import TrainConfig, Trainer
from scratchformer.translation.bpe import BPETokenizer

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind\n" * 8


def copy_task():
    return get_task("copy", max_len=6, held_out_size=20)


def task_trainer(task, steps=12, dropout=0.1, out_dir=None, monitor=None, seed=0, **monitor_kw):
    """A tiny copy-task Trainer (dropout on, so a stray RNG draw would change the run)."""
    model = sf.Transformer(sf.TransformerConfig(
        task.vocab_size, task.vocab_size, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
        n_decoder_layers=2, dropout=dropout, max_len=16, seed=seed))
    cfg = TrainConfig(steps=steps, batch_size=8, lr=3e-3, warmup=3, eval_every=0, log_every=1,
                      seed=seed, checkpoint_every=6 if out_dir else 0)
    mons = [monitor_for_task(task, model, **monitor_kw)] if monitor else []
    return Trainer(model, lambda rng, step: task.batch(rng, 8), cfg, out_dir=out_dir,
                   progress=False, monitors=mons, extra_state={"task": task.to_dict()})


def gpt_trainer(steps=10, dropout=0.1, monitor=True, **monitor_kw):
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    model = sf.GPT(sf.GPTConfig(tok.vocab_size, d_model=16, n_heads=2, d_ff=32, n_layers=2,
                                max_len=16, dropout=dropout, seed=0))
    cfg = TrainConfig(steps=steps, batch_size=4, lr=3e-3, warmup=2, eval_every=0, log_every=1,
                      optimizer="adamw")
    mons = [monitor_for_gpt(tok, model, TEXT[:12], new_tokens=5, **monitor_kw)] if monitor else []
    return Trainer(model, random_blocks(ids, 16, 4), cfg, progress=False, monitors=mons), tok


# ---- groups and schedules -------------------------------------------------------------------
@pytest.mark.parametrize("name, group", [
    ("src_embed.weight", "embeddings"), ("tok_embed.weight", "embeddings"),
    ("pos_embed.weight", "embeddings"), ("generator.bias", "head"), ("lm_head.weight", "head"),
    ("encoder.layers.0.self_attn.q_proj.weight", "encoder.layers.0"),
    ("decoder.layers.11.norm3.bias", "decoder.layers.11"), ("blocks.2.ffn.linear1.weight", "blocks.2"),
    ("encoder.norm.weight", "encoder.norm"), ("norm.bias", "norm"),
])
def test_layer_group_is_the_layer_a_parameter_belongs_to(name, group):
    assert layer_group(name) == group


def test_param_groups_hold_every_parameter_once_embeddings_first_head_last(make_transformer, make_gpt):
    for model in (make_transformer(norm_first=True, n_decoder_layers=2), make_gpt(tie_embeddings=False)):
        groups = param_groups(model)
        flat = [id(p) for ps in groups.values() for p in ps]
        assert sorted(flat) == sorted(id(p) for p in model.parameters())
        names = list(groups)
        assert names[0] == "embeddings" and names[-1] == "head"
    assert names[1:-1] == ["blocks.0", "blocks.1", "norm"]


def test_snapshot_schedule_is_log_spaced_and_ends_at_the_last_step():
    assert snapshot_schedule(600) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 600]
    assert snapshot_schedule(1) == [1] and snapshot_schedule(10) == [1, 2, 5, 10]
    for n in (3, 77, 2000, 123456):
        s = snapshot_schedule(n)
        assert s == sorted(set(s)) and s[-1] == n and s[0] == 1
        assert len(s) <= 3 * len(str(n)) + 1  # a handful: about three per decade


def test_thin_keeps_the_last_step_and_at_most_n():
    steps = snapshot_schedule(2000)
    for n in range(1, len(steps) + 2):
        t = thin(steps, n)
        assert len(t) == min(n, len(steps)) and t[-1] == 2000 and set(t) <= set(steps)
        assert t == sorted(t)


def test_monitor_arguments_are_checked(make_transformer):
    model = make_transformer()
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        TrainingMonitor(model, every=0)
    with pytest.raises(TypeError, match="max_bytes must be an integer"):
        TrainingMonitor(model, max_bytes=1.5)
    with pytest.raises(ValueError, match="max_bytes=100 holds fewer than 2"):
        monitor_for_task(copy_task(), make_transformer(copy_task().vocab_size), max_bytes=100)


# ---- gradient statistics ------------------------------------------------------------------------
class Spy:
    """Copies the gradients and weights the optimizer sees, by parameter name."""

    def __init__(self, model):
        self.named, self.grads, self.before, self.after = list(model.named_parameters()), {}, {}, {}

    def before_update(self, trainer, step):
        self.grads[step] = {n: p.grad.copy() for n, p in self.named}
        self.before[step] = {n: p.data.copy() for n, p in self.named}

    def after_update(self, trainer, step, loss):
        self.after[step] = {n: p.data.copy() for n, p in self.named}


def test_grads_records_match_norms_computed_from_the_raw_gradients():
    tr = task_trainer(copy_task(), steps=6, monitor=True, every=2)
    spy = Spy(tr.model)
    tr.monitors.append(spy)
    tr.fit()
    recs = [r for r in tr.history if r["kind"] == "grads"]
    assert [r["step"] for r in recs] == [1, 2, 4, 6]
    for r in recs:
        s = r["step"]
        for g in r["grad_norm"]:
            names = [n for n, _ in spy.named if layer_group(n) == g]
            gn = np.sqrt(sum(np.sum(spy.grads[s][n].astype(np.float64) ** 2) for n in names))
            dw = np.sqrt(sum(np.sum((spy.after[s][n] - spy.before[s][n]).astype(np.float64) ** 2)
                             for n in names))
            w = np.sqrt(sum(np.sum(spy.before[s][n].astype(np.float64) ** 2) for n in names))
            assert r["grad_norm"][g] == pytest.approx(gn, rel=1e-4)
            assert r["update_ratio"][g] == pytest.approx(dw / w, rel=1e-4)
    assert set(recs[0]["grad_norm"]) == {"embeddings", "encoder.layers.0", "decoder.layers.0",
                                         "decoder.layers.1", "head"}


# ---- the run is not disturbed -------------------------------------------------------------------
def _run(make):
    tr = make()
    tr.fit()
    return tr


@pytest.mark.parametrize("kind", ["task", "gpt"])
def test_the_monitor_keeps_the_run_bit_identical(kind):
    task = copy_task()
    make = {"task": lambda m: task_trainer(task, steps=10, monitor=m, every=1),
            "gpt": lambda m: gpt_trainer(steps=10, monitor=m, every=1)[0]}[kind]
    watched, plain = _run(lambda: make(True)), _run(lambda: make(False))
    assert len(watched.monitors[0].snapshots) == len(snapshot_schedule(10))  # it did work
    loss = lambda tr: [r["loss"] for r in tr.history if r["kind"] == "train"]  # noqa: E731
    assert loss(watched) == loss(plain)
    a, b = watched.model.state_dict(), plain.model.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert watched.model.rng.bit_generator.state == plain.model.rng.bit_generator.state
    assert watched.rng.bit_generator.state == plain.rng.bit_generator.state


# ---- snapshots ------------------------------------------------------------------------------------
def test_snapshots_hold_the_probe_attention_and_greedy_output(tmp_path):
    task = copy_task()
    tr = task_trainer(task, steps=12, dropout=0.0, out_dir=tmp_path, monitor=True)
    mon = tr.monitors[0]
    tr.fit()
    assert sorted(mon.snapshots) == snapshot_schedule(12)
    src, tgt = task.held_out()[0]
    out = greedy_decode(tr.model, np.asarray([src]), max_len=len(tgt) + 1)[0]
    assert mon.outputs[12] == task.decode_output(out)  # the output of the final weights
    with tr.model.eval_mode():
        tr.model(np.asarray([src]), np.asarray([[sf.core.tokens.BOS] + tgt]))
        for name, w in tr.model.attention_maps().items():
            np.testing.assert_array_equal(mon.snapshots[12][name], w[0])
            q, k = mon.modules[name]["query"], mon.modules[name]["key"]
            assert w[0].shape[1:] == (len(mon.probe.tokens[q]), len(mon.probe.tokens[k]))
    back = read_snapshots(tmp_path)  # the files: float16 copies of the same maps
    assert back["steps"] == sorted(mon.snapshots) and back["outputs"] == [mon.outputs[s] for s in back["steps"]]
    for s in back["steps"]:
        for name, w in mon.snapshots[s].items():
            np.testing.assert_allclose(back["maps"][s][name], w, atol=1e-3)
    index = json.loads((tmp_path / INDEX).read_text())
    assert index["tokens"]["src"] == task.vocab.tokens(src)
    assert index["tokens"]["tgt"] == task.vocab.tokens([sf.core.tokens.BOS] + tgt)
    assert len(read_safetensors(tmp_path / TENSORS)) == len(back["steps"]) * len(mon.modules)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # this test's own forward pass of a NaN weight
def test_a_snapshot_of_weights_that_overflow_records_that_instead_of_raising():
    """A step whose update blew the weights up: the probe's decoding meets NaN logits. The
    monitor, an observer, writes that into the snapshot's output and lets the trainer halt
    the run (its evaluation or next step names it)."""
    from scratchformer.training.monitor import NOT_FINITE

    tr = task_trainer(copy_task(), steps=12, dropout=0.0, monitor=True)
    tr.fit(until=2)
    tr.model.generator.weight.data[:] = np.nan
    tr.monitors[0].snapshot(tr.model, 3)
    assert tr.monitors[0].outputs[3] == NOT_FINITE
    assert tr.monitors[0].outputs[2] != NOT_FINITE


def test_snapshots_are_thinned_to_fit_max_bytes(tmp_path):
    task = copy_task()
    probe = monitor_for_task(task, task_trainer(task).model)  # its size per snapshot
    budget = 4 * probe.bytes_per_snapshot
    tr = task_trainer(task, steps=100, out_dir=tmp_path, monitor=True, max_bytes=budget, every=50)
    tr.fit()
    steps = sorted(tr.monitors[0].snapshots)
    assert len(steps) == 3 and steps[-1] == 100  # room for one more (an early stop's last)
    assert (tmp_path / TENSORS).stat().st_size <= budget + 4096  # + the JSON header


def test_a_stop_before_the_end_snapshots_the_last_step():
    tr = task_trainer(copy_task(), steps=12, monitor=True)
    tr.fit(until=7)
    assert sorted(tr.monitors[0].snapshots) == [1, 2, 5, 7]


def test_resume_keeps_the_snapshots_up_to_the_checkpoint(tmp_path):
    import shutil

    task = copy_task()
    straight = task_trainer(task, steps=12, monitor=True)
    straight.fit()
    first = task_trainer(task, steps=12, out_dir=tmp_path / "run", monitor=True)
    first.fit(until=5)
    shutil.copy(tmp_path / "run" / "checkpoint.safetensors", tmp_path / "at5.safetensors")
    first.fit(until=7)  # then "killed": its snapshot at 7 is newer than the checkpoint used
    assert read_snapshots(tmp_path / "run")["steps"] == [1, 2, 5, 7]
    second = task_trainer(task, steps=12, out_dir=tmp_path / "run", monitor=True)
    second.resume(tmp_path / "at5.safetensors")
    second.fit()
    mon, ref = second.monitors[0], straight.monitors[0]
    assert sorted(mon.snapshots) == sorted(ref.snapshots) == [1, 2, 5, 10, 12]
    back = read_snapshots(tmp_path / "run")
    assert back["steps"] == [1, 2, 5, 10, 12]
    for s in back["steps"]:  # bit-identical runs: the same maps (float16 in the file)
        assert back["outputs"][back["steps"].index(s)] == ref.outputs[s]
        for name, w in ref.snapshots[s].items():
            np.testing.assert_allclose(back["maps"][s][name], w, atol=1e-3)


def test_gpt_probe_is_the_prompt_with_causal_maps():
    tr, tok = gpt_trainer(steps=5, dropout=0.0)
    tr.fit()
    mon = tr.monitors[0]
    assert mon.probe.tokens == {"text": list(TEXT[:12])}
    assert set(mon.modules) == {"blocks.0.self_attn", "blocks.1.self_attn"}
    assert all(ax == {"query": "text", "key": "text", "causal": True} for ax in mon.modules.values())
    w = mon.snapshots[5]["blocks.1.self_attn"]  # (H, T, T)
    assert w.shape == (2, 12, 12) and np.all(w[:, np.triu_indices(12, 1)[0], np.triu_indices(12, 1)[1]] == 0)
    want = tr.model.generate(tok.encode(TEXT[:12])[None], 5, top_k=1)[0, 12:]
    assert mon.outputs[5] == tok.decode(want)


def test_translation_probe_is_labelled_with_bpe_pieces(make_transformer):
    src, ref = "To be, or not to be", "Ser o no ser"
    tok = BPETokenizer.train([TEXT, ref], vocab_size=40)
    model = make_transformer(tok.vocab_size, max_len=40)
    mon = monitor_for_translation(tok, model, src, ref)
    assert mon.probe.tokens["src"] == tok.pieces(src) + ["<eos>"]
    assert mon.probe.tokens["tgt"] == ["<bos>"] + tok.pieces(ref)
    assert mon.modules["decoder.layers.0.cross_attn"] == {"query": "tgt", "key": "src", "causal": False}
    mon.snapshot(model, 1)
    assert mon.snapshots[1]["decoder.layers.0.cross_attn"].shape == (
        2, len(mon.probe.tokens["tgt"]), len(mon.probe.tokens["src"]))
    assert isinstance(mon.outputs[1], str)


def test_the_torch_twin_is_watched_through_a_numpy_view(make_transformer):
    """torch-train's model: gradient statistics from the torch tensors, snapshots on
    ``to_numpy(model)`` (what a torch loop calling the two hooks gets)."""
    torch = pytest.importorskip("torch")
    from types import SimpleNamespace

    from scratchformer.torch_port import to_numpy, to_torch

    task = copy_task()
    ref = make_transformer(task.vocab_size, max_len=16)
    tm = to_torch(ref)
    mon = monitor_for_task(task, tm, every=1, model_view=to_numpy)
    trainer = SimpleNamespace(model=tm, out_dir=None, step=0, threads=1, history=[],
                              config=SimpleNamespace(steps=2))
    trainer.record = trainer.history.append
    src, tgt_in, tgt_out = task.batch(np.random.default_rng(0), 4)
    logits = tm(torch.from_numpy(src), torch.from_numpy(tgt_in))
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), torch.from_numpy(tgt_out).flatten(),
                                      ignore_index=0).backward()
    mon.before_update(trainer, 1)
    with torch.no_grad():
        for p in tm.parameters():
            p -= 1e-2 * p.grad
    trainer.step = 1
    mon.after_update(trainer, 1, 0.0)
    rec = [r for r in trainer.history if r["kind"] == "grads"][0]
    head = dict(tm.named_parameters())["generator.weight"]
    assert rec["grad_norm"]["head"] >= float(head.grad.norm()) > 0  # weight and bias
    assert rec["update_ratio"]["head"] > 0
    np_model = to_numpy(tm)
    src0, tgt0 = task.held_out()[0]
    out = greedy_decode(np_model, np.asarray([src0]), max_len=len(tgt0) + 1)
    assert mon.outputs[1] == task.decode_output(out[0])
    assert set(mon.snapshots[1]) == set(mon.modules) == {
        "encoder.layers.0.self_attn", "decoder.layers.0.self_attn", "decoder.layers.0.cross_attn"}
