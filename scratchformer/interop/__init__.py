"""Other formats: Hugging Face GPT-2 folders in and out.

    from scratchformer.interop import load_hf_gpt2, load_hf_tokenizer, save_hf_gpt2

    model = load_hf_gpt2("gpt2")                 # config.json + model.safetensors → sf.GPT
    tok = load_hf_tokenizer("gpt2", vocab_size=model.config.vocab_size)
    out = model.generate(tok.encode("Hello, I'm a language model,")[None], 20, top_k=1)
    print(tok.decode(out[0]))
    save_hf_gpt2(model, "gpt2-tuned")            # transformers.GPT2LMHeadModel.from_pretrained opens it

Importing this package imports NumPy and the standard library only: the ``tokenizers``
library is imported when a tokenizer is loaded, and ``transformers`` never (the tests use
it as the oracle). Nothing here downloads anything: the folder is the user's.
"""

from .hf_gpt2 import (gpt2_arrays_from_hf, gpt2_config_from_hf, hf_arrays_from_gpt2,
                      hf_config_from_gpt2, iter_hf_gpt2_arrays, load_hf_gpt2, read_hf_gpt2_config,
                      save_hf_gpt2)
from .tokenizer import HFTokenizer, load_hf_tokenizer

__all__ = ["load_hf_gpt2", "save_hf_gpt2", "load_hf_tokenizer", "HFTokenizer", "read_hf_gpt2_config",
           "iter_hf_gpt2_arrays", "gpt2_config_from_hf", "hf_config_from_gpt2", "gpt2_arrays_from_hf",
           "hf_arrays_from_gpt2"]
