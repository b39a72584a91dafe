"""tokenmill: a byte-level unigram tokenizer and corpus tools for language-model training data.

This module is the public API; everything else is an implementation detail.
"""
__version__ = "0.1.0"

from .errors import InputError, ModelFileError, TokenmillError
from .spec import NormalizerSpec
from .tokenizer import StreamDecoder, Tokenizer

__all__ = [
    "Tokenizer",
    "StreamDecoder",
    "NormalizerSpec",
    "TokenmillError",
    "ModelFileError",
    "InputError",
    "__version__",
]
