"""The models: the encoder–decoder ``Transformer``, the decoder-only ``GPT``, and decoding
(greedy, beam search, sampling) for the encoder–decoder. Built from ``scratchformer.core``."""
