"""Test-suite set-up shared by every test module.

Tests marked ``slow`` (GPT-2 small, 124 M parameters, against transformers: about a minute
and 3.5 GB) run by default — CI runs everything — and are skipped with ``pytest
--skip-slow`` or ``SCRATCHFORMER_SKIP_SLOW=1`` for a quick local run.

One BLAS thread: the suite's matrices are small, and OpenBLAS threads that spin while
another process holds the second core made single steps 10× slower on a busy 2-core
machine. Set before NumPy is first imported (pytest imports conftest.py first), and only
as a default, so a caller's own setting wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402  (after the thread settings above)

import scratchformer as sf  # noqa: E402

def pytest_addoption(parser):
    parser.addoption("--skip-slow", action="store_true",
                     help="skip the tests marked slow (or set SCRATCHFORMER_SKIP_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    if not (config.getoption("--skip-slow") or os.environ.get("SCRATCHFORMER_SKIP_SLOW") == "1"):
        return
    skip = pytest.mark.skip(reason="slow: skipped by --skip-slow / SCRATCHFORMER_SKIP_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# The model factories every test module builds on: small, float32, no dropout, seed 0.
SMALL_TRANSFORMER = dict(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1,
                         dropout=0.0, max_len=16, seed=0)


@pytest.fixture(scope="session")
def make_transformer():
    """``make_transformer(vocab=13, **cfg)``: a small ``sf.Transformer`` with source and target
    vocabulary ``vocab``; ``cfg`` overrides any TransformerConfig field (``SMALL_TRANSFORMER``)."""
    def make(vocab: int = 13, **cfg) -> sf.Transformer:
        kw = {"src_vocab_size": vocab, "tgt_vocab_size": vocab, **SMALL_TRANSFORMER, **cfg}
        return sf.Transformer(sf.TransformerConfig(**kw))
    return make


@pytest.fixture(scope="session")
def make_gpt():
    """``make_gpt(vocab=11, **cfg)``: a small ``sf.GPT``; ``cfg`` overrides GPTConfig fields."""
    def make(vocab: int = 11, **cfg) -> sf.GPT:
        kw = dict(d_model=16, n_heads=2, d_ff=32, n_layers=2, max_len=16, seed=0)
        return sf.GPT(sf.GPTConfig(vocab, **{**kw, **cfg}))
    return make


@pytest.fixture(scope="session")
def interrupt_at():
    """``with interrupt_at(step): ...``: Ctrl-C (SIGINT to this process) arrives in the middle
    of that optimizer step of any run started inside the block — the NumPy ``Trainer``'s, or
    with ``twin=True`` the PyTorch twin's ``TorchTrainer``'s (imports torch)."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def arm(step: int, twin: bool = False):
        from scratchformer.training import trainer

        targets = [(trainer.Trainer, "train_step")]
        if twin:
            from scratchformer.torch_port import train as torch_train

            targets.append((torch_train.TorchTrainer, "_one_step"))
        with pytest.MonkeyPatch.context() as mp:
            for cls, name in targets:
                def wrapped(self, n, *args, _real=getattr(cls, name), **kwargs):
                    if n == step:  # the handler only flags it: the step under way finishes
                        os.kill(os.getpid(), signal.SIGINT)
                    return _real(self, n, *args, **kwargs)

                mp.setattr(cls, name, wrapped)
            yield

    return arm
