"""ScratchFormer: a Transformer from scratch in NumPy, every backward written by hand.

    import scratchformer as sf
    model = sf.Transformer(sf.TransformerConfig(src_vocab_size=13, tgt_vocab_size=13))

The package's parts, in the direction their imports point: ``cli`` → ``training`` →
``models`` → ``core`` → ``kernels`` (with ``data``, ``translation``, ``viz`` and the PyTorch
twin ``torch_port`` beside them); docs/architecture.md draws the map. Only NumPy and the
standard library are imported here; torch (``scratchformer.torch_port``), matplotlib
(``scratchformer.viz``) and tqdm are imported lazily where they are used.
"""

from .core.attention import KVCache, MultiHeadAttention
from .core.functional import causal_mask, padding_mask
from .core.layers import Dropout, Embedding, FeedForward, LayerNorm, Linear, PositionalEncoding
from .core.loss import CrossEntropyLoss
from .core.module import Module, ModuleList, Parameter
from .models.decoding import beam_search, greedy_decode, sample_decode
from .models.gpt import GPT, GPTConfig
from .models.transformer import (Decoder, DecoderLayer, Encoder, EncoderLayer, Transformer,
                                 TransformerConfig)
from .training.checkpoint import CheckpointError, load, save
from .training.optim import SGD, Adam, AdamW, clip_grad_norm
from .training.muon import Muon
from .training.schedules import ConstantLR, NoamSchedule, WarmupCosine

__version__ = "0.1.0"

__all__ = [
    "TransformerConfig", "Transformer", "Encoder", "Decoder", "EncoderLayer", "DecoderLayer",
    "GPTConfig", "GPT", "CrossEntropyLoss", "padding_mask", "causal_mask",
    "SGD", "Adam", "AdamW", "Muon", "clip_grad_norm", "ConstantLR", "NoamSchedule", "WarmupCosine",
    "greedy_decode", "beam_search", "sample_decode", "save", "load", "CheckpointError",
    "Parameter", "Module", "ModuleList", "Linear", "Embedding", "PositionalEncoding", "LayerNorm",
    "Dropout", "FeedForward", "MultiHeadAttention", "KVCache",
]
