"""GPT-2's byte-level BPE tokenizer from a Hugging Face folder, through the ``tokenizers`` library.

    tok = load_hf_tokenizer("gpt2")          # gpt2/tokenizer.json, or vocab.json + merges.txt
    ids = tok.encode("Hello world")          # int64 array: [15496, 995] with GPT-2's files
    tok.decode(ids)                          # "Hello world"

Why the library and not a hand-written copy: byte-level BPE is a lookup procedure, not a
model — there is no gradient to teach, and the reference implementation is the one the
weights were trained with, so any difference would be ours. ``tokenizers`` is an optional
extra (``pip install scratchformer[gpt2]``), imported when a tokenizer is loaded, never
at ``import scratchformer.interop``.

``tokenizer.json`` carries the whole pipeline (byte-level pre-tokenizer, BPE, decoder);
from ``vocab.json`` + ``merges.txt`` the GPT-2 pipeline is assembled: the byte-level
pre-tokenizer with GPT-2's regex and no prefix space, BPE, the byte-level decoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INSTALL_HINT = "the GPT-2 tokenizer needs the tokenizers library: pip install 'tokenizers>=0.19'"
EOT = "<|endoftext|>"


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return tokenizers


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with the project's tokenizer API: ``encode(text) -> int64
    array``, ``decode(ids) -> str``, ``vocab_size``; ``eot_id`` is ``<|endoftext|>``'s id (or
    None); ``path`` the file it came from."""

    def __init__(self, tokenizer, path: Path):
        self.tokenizer, self.path = tokenizer, Path(path)
        self.eot_id = tokenizer.token_to_id(EOT)

    @property
    def vocab_size(self) -> int:
        """Number of ids (added tokens included): every id is < vocab_size."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must be token ids in [0, {self.vocab_size}), got "
                             f"{ids.dtype} values in [{ids.min()}, {ids.max()}]")
        return self.tokenizer.decode([int(i) for i in ids.reshape(-1)], skip_special_tokens=False)

    def check_vocab(self, vocab_size: int) -> None:
        """ValueError when this tokenizer can make ids the model has no row for."""
        if self.vocab_size > vocab_size:
            raise ValueError(f"{self.path}: the tokenizer has {self.vocab_size:,} tokens but the "
                             f"model's vocab_size is {vocab_size:,}: they do not belong together")

    def __repr__(self) -> str:
        return f"HFTokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def tokenizer_from_json(text: str, where="tokenizer.json") -> HFTokenizer:
    """An ``HFTokenizer`` from the text of a tokenizer.json (e.g. kept in a checkpoint)."""
    try:
        return HFTokenizer(_tokenizers().Tokenizer.from_str(text), Path(where))
    except ImportError:
        raise
    except Exception as e:  # the library raises its own Exception subclasses
        raise ValueError(f"{where}: not a readable tokenizer ({str(e).splitlines()[0][:200]})") from None


def load_hf_tokenizer(path, vocab_size: int | None = None) -> HFTokenizer:
    """GPT-2's tokenizer from a folder (``tokenizer.json``, else ``vocab.json`` + ``merges.txt``)
    or from one of those files. ``vocab_size``: the model's, checked (``check_vocab``).

    A missing file is a FileNotFoundError naming it; an unreadable one a ValueError naming it.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            path = path / "tokenizer.json"
        elif not ((path / "vocab.json").is_file() and (path / "merges.txt").is_file()):
            raise FileNotFoundError(f"{path}: no tokenizer.json, nor vocab.json + merges.txt")
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder (expected GPT-2's tokenizer.json, "
                                f"or a folder with vocab.json + merges.txt)")
    tk = _tokenizers()
    try:
        if path.is_file():
            where, tok = path, tk.Tokenizer.from_file(str(path))
        else:
            where = path / "vocab.json"
            tok = tk.Tokenizer(tk.models.BPE.from_file(str(where), str(path / "merges.txt")))
            tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = tk.decoders.ByteLevel()
    except Exception as e:  # the library raises its own Exception subclasses
        raise ValueError(f"{path}: not a readable GPT-2 tokenizer ({str(e).splitlines()[0][:200]})") from None
    out = HFTokenizer(tok, where)
    if vocab_size is not None:
        out.check_vocab(vocab_size)
    return out
