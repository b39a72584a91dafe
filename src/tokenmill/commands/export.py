"""``tokenmill export``: a tokenmill model as a Hugging Face tokenizer or a SentencePiece model."""
from __future__ import annotations

import sys

HELP = "export a model for Hugging Face (tokenizer.json folder) or SentencePiece (.model)"

DESCRIPTION = """\
--to huggingface writes OUT/tokenizer.json, tokenizer_config.json and special_tokens_map.json:
tokenizers.Tokenizer.from_file(OUT/tokenizer.json) and transformers.AutoTokenizer.from_pretrained(OUT)
give tokenmill's ids and decode back to the same text. (Hugging Face always turns the spelling of a
special token into that token; tokenmill only does with allowed_special.)

--to sentencepiece writes a unigram .model file that sentencepiece.SentencePieceProcessor loads;
the model's multi-byte pieces must be valid UTF-8 (trained with ensure_unicode, the default).
SentencePiece segments slightly differently in places (float32 sums, no newline cut,
a fixed penalty for characters no piece spells); the README, "Hugging Face and SentencePiece interop" has the measured rates.

examples:
  tokenmill export model.json --to huggingface -o hf-tokenizer/
  tokenmill export model.json --to sentencepiece -o model.model
"""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a tokenmill model file (or a BytePiece .model/.zip)")
    parser.add_argument("--to", required=True, choices=("huggingface", "sentencepiece"), help="target format")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output folder (huggingface) or .model file (sentencepiece)")


def run(args) -> int:
    from ._common import load_model

    tok = load_model(args.model)
    if args.to == "huggingface":
        from ..interop.huggingface import export_huggingface

        paths = export_huggingface(tok, args.output)
    else:
        from ..interop.sentencepiece import export_sentencepiece

        paths = [export_sentencepiece(tok, args.output)]
    print(f"tokenmill export: wrote {', '.join(paths)}", file=sys.stderr)
    return 0
