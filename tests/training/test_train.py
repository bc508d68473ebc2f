"""The training loop: learning, bit-exact resume, determinism, NaN halt, metrics, stopping."""

import json
import math

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.data.tasks import get_task
from scratchformer.training.checkpoint import load
from scratchformer.training.recipes import Seq2SeqEvaluator, TaskTrainConfig, train_task
from scratchformer.training.trainer import (TrainConfig, Trainer, TrainingDiverged, lm_step,
                                            make_schedule, seq2seq_step, trainer_state)


@pytest.fixture(scope="module")
def tiny_model(make_transformer):
    """``tiny_model(task, **cfg)``: a pre-LN 1+1-layer, d_model 32 model for ``task``."""
    def make(task, **cfg):
        return make_transformer(task.vocab_size, **{"d_model": 32, "d_ff": 64, "max_len": 24,
                                                    "norm_first": True, **cfg})
    return make


def copy_task(**kw):
    return get_task("copy", max_len=6, held_out_size=50, **kw)


@pytest.fixture(scope="module")
def make_trainer(tiny_model):
    """``make_trainer(task, steps=20, seed=0, dropout=0.1, out_dir=None, **train_cfg)``."""
    def make(task, steps=20, seed=0, dropout=0.1, out_dir=None, **cfg):
        model = tiny_model(task, dropout=dropout, seed=seed)
        config = TrainConfig(**{"steps": steps, "batch_size": 16, "lr": 3e-3, "warmup": 5,
                                "seed": seed, "eval_every": 0, "log_every": 1, **cfg})
        return Trainer(model, lambda rng, step: task.batch(rng, 16), config, progress=False,
                       out_dir=out_dir)
    return make


def weights(model):
    return model.state_dict()


def test_copy_smoke_loss_halves_within_a_few_hundred_steps(tiny_model):
    task = copy_task()
    model = tiny_model(task)
    config = TrainConfig(steps=150, batch_size=32, lr=3e-3, warmup=20, eval_every=0, log_every=10)
    result = Trainer(model, lambda rng, step: task.batch(rng, 32), config, progress=False).fit()
    losses = [r["loss"] for r in result.history if r["kind"] == "train"]
    assert result.step == 150 and result.stop_reason == "steps"
    assert losses[-1] < 0.5 * losses[0], losses


def test_resume_continues_bit_for_bit(make_trainer, tiny_model, tmp_path):
    task = copy_task()
    n = 12
    full = make_trainer(task, steps=2 * n)  # dropout on: the dropout RNG must be restored too
    full.fit()

    first = make_trainer(task, steps=2 * n, out_dir=tmp_path / "a")
    first.fit(until=n)
    assert first.step == n
    ckpt = tmp_path / "a" / "checkpoint.safetensors"
    assert ckpt.exists()

    resumed = make_trainer(task, steps=2 * n, seed=0, out_dir=tmp_path / "b")
    resumed.model.load_state_dict(tiny_model(task, dropout=0.1, seed=7).state_dict())  # scramble
    resumed.resume(ckpt)
    assert resumed.step == n
    resumed.fit()

    assert resumed.step == full.step == 2 * n
    w_full, w_res = weights(full.model), weights(resumed.model)
    assert w_full.keys() == w_res.keys()
    for k in w_full:
        assert np.array_equal(w_full[k], w_res[k]), k
    o_full, o_res = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for k in o_full:
        assert np.array_equal(o_full[k], o_res[k]), k
    loss_full = [r["loss"] for r in full.history if r["kind"] == "train"]
    loss_res = [r["loss"] for r in first.history + resumed.history if r["kind"] == "train"]
    assert loss_full == loss_res


def test_resume_drops_metrics_logged_after_the_checkpoint(make_trainer, tmp_path):
    import shutil

    task = copy_task()
    t = make_trainer(task, steps=10, out_dir=tmp_path)
    t.fit(until=4)
    shutil.copy(tmp_path / "checkpoint.safetensors", tmp_path / "at4.npz")
    t.fit(until=7)  # logged steps 5..7, then "crashed"
    t2 = make_trainer(task, steps=10, out_dir=tmp_path)
    t2.resume(tmp_path / "at4.npz")
    t2.fit()
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 11))


def test_same_seed_gives_same_weights_batches_and_losses(make_trainer):
    task = copy_task()
    a, b = make_trainer(task, steps=10, seed=3), make_trainer(task, steps=10, seed=3)
    a.fit(), b.fit()
    for k, v in weights(a.model).items():
        assert np.array_equal(v, weights(b.model)[k]), k
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    c = make_trainer(task, steps=10, seed=4)
    c.fit()
    assert [r["loss"] for r in c.history] != [r["loss"] for r in a.history]


def test_nan_loss_halts_naming_the_step_and_keeps_the_weights(make_trainer):
    task = copy_task()
    t = make_trainer(task, steps=10)

    def poisoned(model, batch, crit):
        loss, n = seq2seq_step(model, batch, crit)
        return (float("nan") if t.step + 1 == 4 else loss), n

    t.step_fn = poisoned
    t.fit(until=3)
    before = weights(t.model)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 4") as info:
        t.fit()
    assert info.value.step == 4 and t.step == 3
    for k, v in weights(t.model).items():
        assert np.array_equal(v, before[k]), k


def test_inf_gradient_halts_naming_the_step(make_trainer):
    task = copy_task()
    t = make_trainer(task, steps=10)

    def poisoned(model, batch, crit):
        out = seq2seq_step(model, batch, crit)
        if t.step + 1 == 2:
            model.parameters()[0].grad[0, 0] = np.inf
        return out

    t.step_fn = poisoned
    with pytest.raises(TrainingDiverged, match=r"gradient norm became inf at step 2"):
        t.fit()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "decoding"])
def test_a_non_finite_evaluation_halts_and_saves_nothing_of_that_step(make_trainer, tmp_path,
                                                                    value):
    """Weights that overflow the model show first in an evaluation after the update (the
    run's last step, say): a NaN/inf loss, or NaN logits met by the evaluator's decoding.
    The run halts there naming it, and no checkpoint holds those weights."""
    from scratchformer.models.sampling import NonFiniteLogits

    task = copy_task()
    t = make_trainer(task, steps=10, out_dir=tmp_path, eval_every=2, checkpoint_every=2)

    def evaluate(model):
        if t.step == 4 and value == "decoding":
            raise NonFiniteLogits("logits of row 0 hold NaN")
        return {"val_loss": value if t.step == 4 else 1.0, "exact_match": 0.0}

    t.evaluate = evaluate
    what = ("the model's output became NaN or inf" if value == "decoding"
            else f"val_loss became {value}")
    with pytest.raises(TrainingDiverged, match=rf"{what} when evaluated after step 4 .*not saved") as info:
        t.fit()
    assert info.value.step == 4 and t.step == 4
    saved = trainer_state(load(tmp_path / "checkpoint.safetensors")[2])
    assert saved["step"] == 2  # the one before: nothing of step 4
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "diverged" and records[-1]["step"] == 4


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the overflow on the way: no warning
def test_huge_learning_rate_halts_instead_of_training_on_garbage(make_trainer):
    task = copy_task()
    t = make_trainer(task, steps=200, lr=1e6, clip_norm=None, warmup=0, dropout=0.0)
    with pytest.raises(TrainingDiverged, match=r"at step \d+"):
        t.fit()
    assert all(np.isfinite(v).all() for v in weights(t.model).values())


def test_metrics_jsonl_and_checkpoint_written(tiny_model, tmp_path):
    task = copy_task()
    model = tiny_model(task)
    config = TrainConfig(steps=20, batch_size=16, eval_every=10, log_every=5)
    t = Trainer(model, lambda rng, step: task.batch(rng, 16), config, progress=False,
                evaluate=Seq2SeqEvaluator(task.held_out()), out_dir=tmp_path)
    t.fit()
    records = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "time_s"} <= train[0].keys()
    assert [r["step"] for r in evals] == [10, 20]
    for r in evals:
        assert 0 <= r["exact_match"] <= 1 and 0 <= r["token_accuracy"] <= 1 and r["n"] == 50
    _, _, state = sf.load(tmp_path / "checkpoint.safetensors")
    assert state["trainer"]["step"] == 20


def test_stops_once_the_target_metric_is_reached(tiny_model):
    task = copy_task()
    calls = []

    def evaluate(model):
        calls.append(1)
        return {"exact_match": 0.5 if len(calls) < 2 else 1.0}

    config = TrainConfig(steps=100, batch_size=8, eval_every=3, target=0.99)
    t = Trainer(tiny_model(task), lambda rng, step: task.batch(rng, 8), config, progress=False,
                evaluate=evaluate)
    result = t.fit()
    assert result.stop_reason == "target" and result.step == 6


def test_evaluator_scores_a_perfect_model_as_exact(monkeypatch):
    task = copy_task()
    pairs = task.held_out()

    class Oracle(sf.Module):  # logits put all mass on the right token, in teacher forcing and decoding
        def __call__(self, src, tgt_in):
            B, T = tgt_in.shape
            out = np.full((B, T), 2)
            out[:, :src.shape[1]] = np.where(src[:, :T] > 0, src[:, :T], 2)
            return np.eye(task.vocab_size, dtype=np.float32)[out] * 10

    ev = Seq2SeqEvaluator(pairs)
    from scratchformer.training import recipes

    def fake_greedy(model, src, max_len, bos_id=1, eos_id=2):
        lengths = (src > 0).sum(1)
        out = np.zeros((len(src), max_len), dtype=np.int64)
        out[:, :src.shape[1]] = src
        out[np.arange(len(src)), lengths] = eos_id
        return out

    monkeypatch.setattr(recipes, "greedy_decode", fake_greedy)
    m = ev.evaluate(Oracle())
    assert m["exact_match"] == 1.0 and m["n"] == len(pairs)
    assert m["loss"] < 1e-3
    assert 0.5 < m["token_accuracy"] <= 1.0  # positions past a short row's EOS are pads (ignored)


def test_quick_evaluation_escalates_to_the_full_set(tiny_model):
    task = copy_task()
    model = tiny_model(task)
    ev = Seq2SeqEvaluator(task.held_out(), quick=10, escalate_at=0.0)
    assert ev(model)["n"] == 50
    ev = Seq2SeqEvaluator(task.held_out(), quick=10, escalate_at=None, batch_size=4)
    quick = ev(model)
    assert quick["n"] == 10 and 0 <= quick["exact_match"] <= 1
    whole = Seq2SeqEvaluator(task.held_out()[:10]).evaluate(model)
    assert quick == pytest.approx(whole, rel=1e-5)  # batching does not change the numbers


def test_generic_loop_trains_a_gpt_with_lm_step():
    cfg = sf.GPTConfig(vocab_size=8, d_model=32, n_heads=2, d_ff=64, n_layers=1, max_len=16,
                       dropout=0.0)
    model = sf.GPT(cfg)

    def batch_fn(rng, step):  # a cyclic sequence: next token = current + 1 (mod 8)
        start = rng.integers(0, 8, size=(16, 1))
        seq = (start + np.arange(13)) % 8
        return seq[:, :-1], seq[:, 1:]

    config = TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup=5, eval_every=0, log_every=10)
    result = Trainer(model, batch_fn, config, step_fn=lm_step, progress=False).fit()
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]


def test_schedules_peak_at_lr_after_warmup():
    for name in ("cosine", "noam", "constant"):
        sched = make_schedule(TrainConfig(lr=1e-3, warmup=50, steps=500, schedule=name), 64)
        assert sched(50) == pytest.approx(1e-3), name
        assert sched(10) < sched(50), name
    cos = make_schedule(TrainConfig(lr=1e-3, warmup=50, steps=500, min_lr_ratio=0.1))
    assert cos(500) == pytest.approx(1e-4)


@pytest.mark.parametrize("field,value", [("steps", 0), ("lr", -1.0), ("lr", math.nan),
                                         ("schedule", "linear"), ("optimizer", "lamb"),
                                         ("target", 1.5), ("label_smoothing", 1.0)])
def test_bad_train_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_plain_progress_when_tqdm_is_missing(tiny_model, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    task = copy_task()
    config = TrainConfig(steps=20, batch_size=8, eval_every=0, log_every=5)
    Trainer(tiny_model(task), lambda rng, step: task.batch(rng, 8), config, progress=True).fit()
    err = capsys.readouterr().err
    assert "step     20/20" in err and "tok/s" in err


def test_task_model_config_fits_the_task():
    task = get_task("dates", held_out_size=10)
    cfg = TaskTrainConfig(task="dates", d_model=32, n_layers=1).model_config(task)
    assert cfg.src_vocab_size == task.vocab_size and cfg.n_encoder_layers == 1
    assert cfg.max_len >= task.max_src_len
    assert cfg.n_heads == 4 and cfg.d_ff == 256  # the rest: the dates preset


def test_train_task_reaches_its_target_on_a_small_copy_task():
    result = train_task(TaskTrainConfig(
        task="copy", progress=False, max_len=3, num_symbols=4, held_out_size=5, d_model=32,
        d_ff=64, n_layers=1, steps=400, lr=1e-2, eval_every=25, target=1.0))
    final = result.metrics
    assert result.stop_reason == "target", final
    assert final["exact_match"] == 1.0 and final["n"] == 5
    assert result.out is None and result.extras["task"].name == "copy"
