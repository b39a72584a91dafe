"""``tokenmill import``: a SentencePiece or Hugging Face unigram model as a tokenmill model.

(The module is named ``import``, a Python keyword: the CLI loads it with importlib.)
"""
from __future__ import annotations

import os
import sys

HELP = "import a SentencePiece unigram .model or a Hugging Face byte-level Unigram tokenizer.json"

DESCRIPTION = """\
Convert SOURCE into a tokenmill model file OUT, only when tokenmill will then give exactly the
same ids (otherwise the error says what prevents it):

  * a SentencePiece .model: unigram, byte_fallback on, identity normalizer, no dummy prefix, no
    extra-whitespace removal, no user-defined pieces (what `tokenmill export --to sentencepiece`
    writes, or spm_train --model_type=unigram --byte_fallback --normalization_rule_name=identity
    --add_dummy_prefix=false --remove_extra_whitespaces=false). The whitespace escape U+2581 is
    read as a space. Byte scores are set so that tokenmill's byte path costs what
    SentencePiece's unknown-character fallback costs; control pieces become special tokens.
    SentencePiece sums scores in float32: segmentations that tie there may come out in another
    order (the README, "Hugging Face and SentencePiece interop").
  * a Hugging Face tokenizer.json (or the folder holding it): a Unigram model behind a
    ByteLevel(use_regex=false) pre-tokenizer, optionally after Split(/\\n+/), as `tokenmill export
    --to huggingface` writes; added tokens must be special.

examples:
  tokenmill import model.model -o model.json
  tokenmill import hf-tokenizer/ -o model.json
"""


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="SOURCE", help="a SentencePiece .model, or a tokenizer.json or its folder")
    parser.add_argument("--from", dest="source_format", choices=("auto", "sentencepiece", "huggingface"),
                        default="auto", help="format of SOURCE (default: auto: a folder or .json is "
                                             "Hugging Face, anything else SentencePiece)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="tokenmill model file to write")


def run(args) -> int:
    from ..interop import huggingface, sentencepiece
    from ..tokenizer import Tokenizer

    kind = args.source_format
    if kind == "auto":
        kind = "huggingface" if os.path.isdir(args.source) or args.source.endswith(".json") else "sentencepiece"
    data = (huggingface.read_tokenizer_json(args.source) if kind == "huggingface"
            else sentencepiece.read_sentencepiece(args.source))
    tok = Tokenizer(data)
    tok.save(args.output)
    print(f"tokenmill import: {args.source} ({kind}) -> {args.output}: {tok.vocab_size} ids, "
          f"{len(tok.special_tokens)} special", file=sys.stderr)
    return 0
