"""How often do the exported tokenizers give tokenmill's ids? (the tables of the README, "Hugging Face and SentencePiece interop")

For every line of ../shared/corpus's zh, en and code test files (unpacked to /tmp/corpus):
Hugging Face ``tokenizers`` and ``transformers`` on the ``--to huggingface`` export (ids and
decode), and ``sentencepiece`` on the ``--to sentencepiece`` export (ids; for each differing
line, whether SentencePiece's segmentation has the same score within 1e-6, i.e. is a tie).
Not run by CI. Example::

    python bench/interop_match.py tests/data/small-model.json ../shared/models/bytepiece.eu.plus.80k.zip
"""
from __future__ import annotations

import math
import os
import sys
import tempfile

CORPUS = "/tmp/corpus"


def load(path):
    from tokenmill import Tokenizer

    return Tokenizer.load(path) if path.endswith(".json") else Tokenizer.from_bytepiece(path)


def main(models):
    import sentencepiece as spm
    import tokenizers
    import transformers

    from tokenmill.interop.huggingface import export_huggingface
    from tokenmill.interop.sentencepiece import export_sentencepiece

    for model in models:
        tok = load(model)
        print(f"== {os.path.basename(model)} ({tok.vocab_size} ids)")
        with tempfile.TemporaryDirectory() as d:
            export_huggingface(tok, d)
            hf = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            at = transformers.AutoTokenizer.from_pretrained(d)
            export_sentencepiece(tok, os.path.join(d, "m.model"))
            sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "m.model"))
            for name in ("zh", "en", "code"):
                with open(os.path.join(CORPUS, f"{name}.test.txt"), "rb") as f:
                    lines = [x.decode("utf-8") for x in f.read().split(b"\n")]
                ours = tok.encode_batch(lines)
                plain = [not any(s in x for s in tok.special_tokens) for x in lines]
                h = [e.ids for e in hf.encode_batch(lines, add_special_tokens=False)]
                a = at(lines)["input_ids"]
                s = sp.encode(lines)
                hf_bad = sum(o != t for o, t, p in zip(ours, h, plain) if p)
                at_bad = sum(o != t for o, t, p in zip(ours, a, plain) if p)
                hf_dec = sum(hf.decode(t, skip_special_tokens=False) != x for t, x in zip(h, lines))
                at_dec = sum(x != y for x, y in zip(at.batch_decode(a), lines))
                sp_bad = [i for i in range(len(lines)) if ours[i] != s[i]]
                ties = sum(1 for i in sp_bad if all(t < tok.vocab_size for t in s[i]) and math.isclose(
                    math.fsum(map(tok.score, s[i])), math.fsum(map(tok.score, ours[i])), rel_tol=1e-6))
                print(f"{name:5s} {len(lines):6d} lines ({sum(plain)} without special spellings): "
                      f"tokenizers {hf_bad} differ, transformers {at_bad} differ, decode {hf_dec}/{at_dec} differ; "
                      f"sentencepiece {len(sp_bad)} differ ({len(sp_bad) / len(lines):.2%}), "
                      f"{ties} of them equal-score ties", flush=True)


if __name__ == "__main__":
    if not os.path.exists(os.path.join(CORPUS, "zh.test.txt")):
        raise SystemExit(f"needs {CORPUS}/{{zh,en,code}}.test.txt: sh ../shared/corpus/unpack.sh {CORPUS}")
    main(sys.argv[1:] or ["tests/data/small-model.json"])
