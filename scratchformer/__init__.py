"""ScratchFormer: a Transformer from scratch in NumPy, every backward written by hand.

    import scratchformer as sf
    model = sf.Transformer(sf.TransformerConfig(src_vocab_size=13, tgt_vocab_size=13))

Only NumPy and the standard library are imported here; torch (``scratchformer.torch_port``),
matplotlib (``scratchformer.viz``) and tqdm are imported lazily where they are used.
"""

from .attention import KVCache, MultiHeadAttention
from .checkpoint import CheckpointError, load, save
from .decoding import beam_search, greedy_decode, sample_decode
from .functional import causal_mask, padding_mask
from .loss import CrossEntropyLoss
from .module import Module, ModuleList, Parameter
from .gpt import GPT, GPTConfig
from .nn import Dropout, Embedding, FeedForward, LayerNorm, Linear, PositionalEncoding
from .optim import SGD, Adam, AdamW, ConstantLR, NoamSchedule, WarmupCosine, clip_grad_norm
from .transformer import (
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    Transformer,
    TransformerConfig,
)

__version__ = "0.1.0"

__all__ = [
    "TransformerConfig", "Transformer", "Encoder", "Decoder", "EncoderLayer", "DecoderLayer",
    "GPTConfig", "GPT", "CrossEntropyLoss", "padding_mask", "causal_mask",
    "SGD", "Adam", "AdamW", "clip_grad_norm", "ConstantLR", "NoamSchedule", "WarmupCosine",
    "greedy_decode", "beam_search", "sample_decode", "save", "load", "CheckpointError",
    "Parameter", "Module", "ModuleList", "Linear", "Embedding", "PositionalEncoding", "LayerNorm",
    "Dropout", "FeedForward", "MultiHeadAttention", "KVCache",
]
