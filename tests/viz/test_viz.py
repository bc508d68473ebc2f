"""Attention plots, attention records, training curves and the ``attention`` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.training.checkpoint import save
from scratchformer.data.tasks import get_task
from scratchformer.viz import (attention_for_text, attention_name,
                               collect_attention, load_model_and_task)

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from scratchformer.viz import plot_attention, plot_loss  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return get_task("dates", held_out_size=0)


@pytest.fixture(scope="module")
def model(task):
    cfg = sf.TransformerConfig(src_vocab_size=task.vocab_size, tgt_vocab_size=task.vocab_size,
                               d_model=16, n_heads=2, d_ff=32, n_encoder_layers=2,
                               n_decoder_layers=3, dropout=0.1, max_len=48, seed=3)
    return sf.Transformer(cfg)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model, task):
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.safetensors"
    save(path, model, task=task.to_dict())
    return path


def test_record_has_every_kind_and_layer_with_token_labels(model, task):
    rec = attention_for_text(model, task, "Nov 27, 2026", max_len=6)
    assert rec.n_layers("enc") == 2 and rec.n_layers("dec") == 3 and rec.n_layers("cross") == 3
    assert rec.src_tokens == list("Nov 27, 2026")
    assert rec.tgt_tokens[0] == "<bos>"
    # row t of the decoder maps is the step that predicted output token t
    assert rec.tgt_tokens[1:] == rec.meta["predicted_tokens"][:len(rec.tgt_tokens) - 1]
    S, T = len(rec.src_tokens), len(rec.tgt_tokens)
    assert rec.get("enc", 0).shape == (2, S, S)
    assert rec.get("dec", -1).shape == (2, T, T)
    assert rec.get("cross", 2).shape == (2, T, S)
    for w in rec.maps.values():
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)  # each query row is a distribution


def test_decoder_self_attention_never_looks_ahead(model, task):
    rec = attention_for_text(model, task, "27 Nov 2026", max_len=8)
    for layer in range(3):
        w = rec.get("dec", layer)  # (H, T, T)
        assert np.all(np.triu(w, k=1) == 0.0)


def test_collect_attention_is_eval_mode_and_restores_training(model, task):
    model.train()
    src, tgt = task.encode_input("Nov 27, 2026"), [1, 5, 6, 7]
    a = collect_attention(model, src, tgt)
    b = collect_attention(model, src, tgt)  # dropout is off: identical maps
    for name in a.maps:
        np.testing.assert_array_equal(a.maps[name], b.maps[name])
    assert model.training and all(m.training for m in model.modules())
    assert a.src_tokens == [str(i) for i in src]


def test_record_maps_equal_model_attention_maps(model, task):
    src = np.asarray([task.encode_input("Jan 5, 1999")])
    tgt = np.asarray([[1, 6, 14, 14, 13]])
    rec = collect_attention(model, src[0], tgt[0])
    model.eval()
    model(src, tgt)
    model.train()
    for name, w in model.attention_maps().items():
        np.testing.assert_allclose(rec.maps[name], w[0], rtol=1e-6)
    assert attention_name("cross", 1) == "decoder.layers.1.cross_attn"
    assert attention_name("enc", 0) == "encoder.layers.0.self_attn"


def test_plot_attention_draws_one_panel_per_head_with_tokens(model, task, tmp_path):
    rec = attention_for_text(model, task, "Nov 27, 2026", max_len=5)
    out = tmp_path / "cross.png"
    fig = plot_attention(rec, kind="cross", layer=-1, path=out)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2  # one heatmap per head
    ax = images[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "␣" if c == " " else c for c in "Nov 27, 2026"]
    assert [t.get_text() for t in ax.get_yticklabels()] == rec.tgt_tokens
    np.testing.assert_allclose(ax.images[0].get_array(), rec.get("cross", -1)[0])
    assert "layer 2" in fig._suptitle.get_text()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    matplotlib.pyplot.close(fig)


def test_plot_attention_takes_raw_maps_and_arrays(model, task):
    src = np.asarray([task.encode_input("Nov 27, 2026")] * 2)
    model.eval()
    model(src, np.asarray([[1, 5, 6]] * 2))
    fig = plot_attention(model.attention_maps(), kind="enc", layer=1, index=1)
    assert sum(1 for ax in fig.axes if ax.images) == 2
    fig2 = plot_attention(np.random.default_rng(0).random((3, 4, 5)), heads=[2])
    assert sum(1 for ax in fig2.axes if ax.images) == 1
    matplotlib.pyplot.close("all")
    model.train()


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="self"), "kind must be one of"),
    (dict(kind="enc", layer=2), "layer must be in [-2, 1]"),
    (dict(heads=[5]), "heads must be"),
    (dict(query_tokens=["a"]), "token labels must match"),
])
def test_plot_attention_bad_arguments_name_what_was_expected(model, task, kwargs, message):
    rec = attention_for_text(model, task, "Nov 27, 2026", max_len=4)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plot_attention(rec, **kwargs)


def test_plot_loss_draws_train_and_eval_curves(tmp_path):
    lines = [{"kind": "train", "step": s, "loss": 3.0 / s, "lr": 1e-3} for s in (10, 20, 30)]
    lines += [{"kind": "eval", "step": 30, "loss": 0.2, "token_accuracy": 0.9,
               "exact_match": 0.5, "n": 100}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    fig = plot_loss(path, path=tmp_path / "curves.png")
    labels = {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}
    assert labels == {"train loss", "eval loss", "eval token accuracy", "eval exact match"}
    train = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "train loss"][0]
    np.testing.assert_allclose(train.get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(train.get_ydata(), [0.3, 0.15, 0.1])
    assert (tmp_path / "curves.png").stat().st_size > 1000
    matplotlib.pyplot.close(fig)


def test_plot_loss_reports_the_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        plot_loss(path)


def test_importing_viz_does_not_import_matplotlib():
    code = ("import sys, scratchformer, scratchformer.viz, scratchformer.viz.explorer, "
            "scratchformer.cli.attention; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_load_model_and_task_from_checkpoint(checkpoint, task):
    model, t = load_model_and_task(checkpoint)
    assert t.name == "dates" and t.vocab == task.vocab


def test_load_without_task_says_so(tmp_path, model):
    path = tmp_path / "bare.npz"
    save(path, model)
    with pytest.raises(ValueError, match="no task stored"):
        load_model_and_task(path)


# ---- the command line ---------------------------------------------------------------------
@pytest.fixture
def cli():
    return pytest.importorskip("scratchformer.cli")


def test_cli_attention_writes_png_and_html(cli, checkpoint, tmp_path, capsys):
    png, page = tmp_path / "attn.png", tmp_path / "attn.html"
    rc = cli.main(["attention", "--checkpoint", str(checkpoint), "--input", "Nov 27, 2026",
                   "--out", str(png), "--html", str(page), "--kind", "enc", "--layer", "0",
                   "--max-len", "5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "'Nov 27, 2026' ->" in out and "enc attention, layer 0, 2 heads" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '"n_heads":2' in text


@pytest.mark.parametrize("argv, message", [
    (["--out", "x.png", "--layer", "3"], "--layer must be in [-3, 2] for --kind cross"),
    (["--out", "x.png", "--kind", "enc", "--layer", "-3"], "--layer must be in [-2, 1]"),
    ([], "give --out PNG and/or --html HTML"),
    (["--html", "x.html", "--input", "Nov 27 @"], "unknown symbol '@'"),
])
def test_cli_attention_errors_are_one_line(cli, checkpoint, tmp_path, capsys, argv, message):
    args = ["attention", "--checkpoint", str(checkpoint), "--input", "Nov 27, 2026"] + argv
    args = [a if not a.endswith((".png", ".html")) else str(tmp_path / a) for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_attention_missing_checkpoint(cli, tmp_path, capsys):
    rc = cli.main(["attention", "--checkpoint", str(tmp_path / "none.npz"), "--input", "x",
                   "--html", str(tmp_path / "a.html")])
    assert rc == 2 and "checkpoint not found" in capsys.readouterr().err
