"""Make tests/data/small-model.json, the small committed model the tests use for golden ids.

It is cut from the released BytePiece model (../shared/models/bytepiece.eu.plus.80k.zip,
Apache-2.0, by Su Jianlin): the 256 single bytes plus the 1,744 most frequent multi-byte
pieces, with scores log(count / total) over the kept pieces, and four special tokens.
Run once from the repository root: python bench/make_small_model.py
"""
import math
import sys
from pathlib import Path

from tokenmill import Tokenizer
from tokenmill.model_file import read_bytepiece

SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "models" / "bytepiece.eu.plus.80k.zip"
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "small-model.json"


def main():
    items, _ = read_bytepiece(sys.argv[1] if len(sys.argv) > 1 else SOURCE)
    singles = sorted((p, c) for p, _, c in items if len(p) == 1)
    multi = sorted(((p, c) for p, _, c in items if len(p) > 1), key=lambda t: (-t[1], t[0]))[:1744]
    kept = singles + sorted(multi)
    total = sum(c for _, c in kept)
    pieces = [(p, math.log(c) - math.log(total)) for p, c in kept]
    tok = Tokenizer.from_pieces(
        pieces,
        special_tokens={"<pad>": 0, "<bos>": 1, "<eos>": 2, "<|endoftext|>": 2003},
        origin={"made_by": "bench/make_small_model.py",
                "source": "bytepiece.eu.plus.80k (Apache-2.0, Su Jianlin): top 1744 multi-byte pieces"},
    )
    tok.save(OUT)
    print(OUT, tok.vocab_size)


if __name__ == "__main__":
    main()
