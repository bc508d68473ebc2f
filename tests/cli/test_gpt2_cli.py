"""GPT-2 from the command line: ``gpt sample --hf``, ``gpt train --init-from`` (fine-tuning
with the spine's checkpoints and resume) and ``gpt export-hf``, on a tiny random GPT-2
folder made with ``transformers`` (nothing downloaded); every bad input one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

sys.path.insert(0, str(Path(__file__).parents[1] / "interop"))
from hf_oracle import make_hf_folder  # noqa: E402

from scratchformer.cli import main  # noqa: E402
from scratchformer.training.lm import load_gpt  # noqa: E402

CORPUS = "Hello world! The quick brown fox jumps over the lazy dog.\n" * 60
VOCAB = 300


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A GPT-2 folder: random perturbed weights (D 32, 2 layers, 64 positions) and a byte-level
    BPE tokenizer of VOCAB tokens trained on CORPUS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = tmp_path_factory.mktemp("gpt2")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([CORPUS], trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    make_hf_folder(path, n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=VOCAB)
    tok.save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "c.txt"
    path.write_text(CORPUS * 3, encoding="utf-8")
    return path


TRAIN = ["--block-size", "32", "--batch-size", "4", "--eval-every", "3", "--eval-batches", "2",
         "--optimizer", "adamw", "--lr", "1e-3", "--no-progress", "--sample-tokens", "0",
         "--threads", "1"]


def test_sample_from_a_folder_is_greedy_deterministic_and_reports_tokens_per_s(folder, capsys):
    argv = ["gpt", "sample", "--hf", str(folder), "--prompt", "Hello", "--tokens", "8",
            "--top-k", "1"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.out.startswith("Hello") and "tokens/s" in out.err
    assert main(argv) == 0
    assert capsys.readouterr().out == out.out


def test_fine_tune_resume_and_export_round_trip_through_transformers(folder, corpus, tmp_path,
                                                                     capsys):
    run = tmp_path / "run"
    argv = ["gpt", "train", "--init-from", str(folder), "--corpus", str(corpus), *TRAIN,
            "--out", str(run)]
    assert main([*argv, "--steps", "4"]) == 0
    assert main(["gpt", "train", "--out", str(run), "--resume", "--steps", "6",
                 "--no-progress", "--sample-tokens", "0", "--threads", "1"]) == 0
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records if r["kind"] == "train") == 6
    model, tok = load_gpt(run / "checkpoint.safetensors")
    assert tok.vocab_size == VOCAB and model.config.positions == "learned"
    capsys.readouterr()

    out = tmp_path / "hf"
    assert main(["gpt", "export-hf", str(run), str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors",
                                                "tokenizer.json"}
    hf = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    idx = tok.encode("The quick brown fox")[None]
    with torch.no_grad():
        want = hf(torch.from_numpy(idx)).logits.numpy()
    got = model.eval()(idx)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    start = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        before = start(torch.from_numpy(idx)).logits.numpy()
    assert np.abs(got - before).max() > 1e-3  # the fine-tuning moved the weights
    assert main(["gpt", "export-hf", str(run), str(out)]) == 2  # DIR holds files: refused
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "not-gpt2", "bigger-tokenizer", "short-corpus",
                                  "sizes-given"])
def test_bad_inputs_fail_early_in_one_line(case, folder, corpus, tmp_path, capsys):
    src, text = folder, corpus
    extra = []
    if case == "missing":
        src = tmp_path / "nothing-here"
    elif case == "not-gpt2":
        src = tmp_path / "bert"
        src.mkdir()
        cfg = json.loads((folder / "config.json").read_text())
        (src / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
        (src / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        (src / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    elif case == "bigger-tokenizer":
        src = tmp_path / "small-vocab"
        src.mkdir()
        make_hf_folder(src, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                       vocab_size=VOCAB - 10)
        (src / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    elif case == "short-corpus":
        text = tmp_path / "short.txt"
        text.write_text("Hello world!", encoding="utf-8")
    else:
        extra = ["--d-model", "64"]
    out = tmp_path / "run"
    capsys.readouterr()  # what making the folders printed
    rc = main(["gpt", "train", "--init-from", str(src), "--corpus", str(text), *TRAIN, *extra,
               "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("scratchformer: error:") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not (out / "checkpoint.safetensors").exists()
