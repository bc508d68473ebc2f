"""Attention records for the models that are not toy-task encoder–decoders: the character
GPT (causal self-attention over a prompt and its continuation) and the translation model
(BPE pieces; any tokenizer with ``encode(text, eos=True)``, ``decode``, ``itos``, ``bos_id``
and ``eos_id``).

    rec = attention_for_gpt(model, tokenizer, "ROMEO:", new_tokens=40)
    rec = attention_for_translation(model, bpe, "In the beginning God created")
    write_attention_html(rec, "attn.html")

Notation as in ``plots``: T text length, S source pieces, H heads.
"""

from __future__ import annotations

import numpy as np

from ..models.decoding import greedy_decode
from .plots import AttentionRecord, collect_attention


def attention_for_gpt(model, tokenizer, prompt: str, new_tokens: int = 40) -> AttentionRecord:
    """Continue ``prompt`` greedily by ``new_tokens`` characters, then run one forward pass
    over prompt + continuation (its last ``max_len`` characters) and keep every block's
    causal self-attention: maps ``blocks.{i}.self_attn`` (H, T, T), labels the characters.
    Row t is the step that predicts character t + 1; keys after t are masked (exactly 0)."""
    if not prompt:
        raise ValueError("prompt must hold at least one character, got ''")
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, (int, np.integer)) or new_tokens < 0:
        raise ValueError(f"new_tokens must be an integer >= 0, got {new_tokens!r}")
    ids = np.asarray(tokenizer.encode(prompt), dtype=np.int64)  # (P,)
    out = model.generate(ids[None], int(new_tokens), top_k=1)[0]  # (P + new,) greedy
    text_ids = out[-model.config.max_len:]  # (T,) what one forward pass can see
    with model.eval_mode():
        model(text_ids[None])
        maps = {name: np.array(a[0], dtype=np.float32)  # (H, T, T)
                for name, a in model.attention_maps().items()}
    labels = [tokenizer.decode(text_ids[i:i + 1]) for i in range(text_ids.size)]
    return AttentionRecord([], labels, maps, input_text=prompt,
                           output_text=tokenizer.decode(out[ids.size:]),
                           meta={"prompt_tokens": int(ids.size)})


def attention_for_translation(model, tokenizer, text: str, max_len: int | None = None) -> AttentionRecord:
    """Translate ``text`` greedily with a ``translate-train`` model, then collect the
    attention of the forward pass over the source pieces (+ ``<eos>``) and ``<bos>`` + the
    output pieces; labels are the BPE pieces (``▁`` marks a space before a piece)."""
    cap = model.config.max_len
    src = tokenizer.encode(text, eos=True)[:cap]  # (S,)
    if len(src) < 2:
        raise ValueError(f"input {text!r} holds no piece to translate")
    n = min(cap, max_len or 2 * len(src) + 10)
    out = greedy_decode(model, np.asarray([src]), n, bos_id=tokenizer.bos_id,
                        eos_id=tokenizer.eos_id)[0].tolist()
    if tokenizer.eos_id in out:
        out = out[:out.index(tokenizer.eos_id)]
    tgt = ([tokenizer.bos_id] + out)[:cap]  # (T,) the decoder input that produced the output
    label = lambda ids: [tokenizer.itos[i] for i in ids]  # noqa: E731
    return collect_attention(model, src, tgt, label(src), label(tgt), input_text=text,
                             output_text=tokenizer.decode(out),
                             meta={"predicted_tokens": label(out)})
