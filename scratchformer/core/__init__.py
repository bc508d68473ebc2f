"""The core: Parameter and Module, the functional math with its derivatives, the layers
(Linear … MultiHeadAttention, KVCache) and the loss. Each layer's body reads like the
formula in its docstring; the tuned loops it calls live in ``scratchformer.kernels``."""
