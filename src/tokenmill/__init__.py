"""tokenmill: a byte-level unigram tokenizer and corpus tools for language-model training data.

This module is the public API; everything else is an implementation detail. Everything that
needs numpy or the compiled core is imported on first use, so that ``import tokenmill`` stays
light.
"""
__version__ = "0.1.0"

import importlib

from .errors import InputError, ModelFileError, TokenmillError
from .spec import CountSpec, DiscoverSpec, NormalizerSpec, ShuffleSpec, TrainerSpec

_LAZY = {
    "Tokenizer": "tokenmill.tokenizer",
    "StreamDecoder": "tokenmill.tokenizer",
    "shuffle": "tokenmill.corpus.shuffle",
    "ShuffleResult": "tokenmill.corpus.shuffle",
    "Trainer": "tokenmill.trainer",
    "TokenShards": "tokenmill.corpus.shards",
    "encode_corpus": "tokenmill.corpus.shards",
    "EncodeCorpusSpec": "tokenmill.corpus.shards",
    "EncodeCorpusResult": "tokenmill.corpus.shards",
    "count_ngrams": "tokenmill.counting",
    "CountResult": "tokenmill.counting",
    "discover_words": "tokenmill.discovery",
    "DiscoverResult": "tokenmill.discovery",
}

__all__ = [
    "Tokenizer",
    "StreamDecoder",
    "NormalizerSpec",
    "Trainer",
    "TrainerSpec",
    "shuffle",
    "ShuffleResult",
    "ShuffleSpec",
    "encode_corpus",
    "EncodeCorpusSpec",
    "EncodeCorpusResult",
    "TokenShards",
    "count_ngrams",
    "CountResult",
    "CountSpec",
    "discover_words",
    "DiscoverResult",
    "DiscoverSpec",
    "TokenmillError",
    "ModelFileError",
    "InputError",
    "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tokenmill' has no attribute {name!r}")
