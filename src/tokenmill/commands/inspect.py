"""tokenmill inspect: what a model file holds."""
from __future__ import annotations

import json
from collections import Counter

HELP = "show a model's vocabulary size, special tokens, piece lengths and training options"
DESCRIPTION = """\
Print a summary of a model: vocabulary size, special tokens and their ids, the normalizer, a
histogram of piece lengths in bytes, the options it was trained with and where it came from.
--json prints the same as one JSON object.
"""


def add_arguments(p):
    p.add_argument("model", metavar="MODEL", help="model file (tokenmill .json, or BytePiece .model/.zip)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="also list the N most probable multi-byte pieces (default: 10)")


def summary(tok, top: int) -> dict:
    lengths = Counter(len(p) for p, _ in tok.pieces)
    multi = sorted(((s, p) for p, s in tok.pieces if len(p) > 1), reverse=True)[:top]
    return {
        "vocab_size": tok.vocab_size,
        "special_tokens": tok.special_tokens,
        "normalizer": tok.normalizer.to_dict(),
        "pieces": len(tok.pieces),
        "piece_length_histogram": {str(k): lengths[k] for k in sorted(lengths)},
        "trainer": tok.trainer_options,
        "origin": tok.origin,
        "top_pieces": [[p.decode("utf-8", "backslashreplace"), round(s, 4)] for s, p in multi],
    }


def run(args) -> int:
    from ._common import load_model

    tok = load_model(args.model)
    info = summary(tok, args.top)
    if args.json:
        print(json.dumps(info, ensure_ascii=False, indent=1))
        return 0
    print(f"model:           {args.model}")
    print(f"vocab size:      {info['vocab_size']} ({info['pieces']} pieces + {len(info['special_tokens'])} special)")
    specials = ", ".join(f"{s}={i}" for s, i in sorted(info["special_tokens"].items(), key=lambda t: t[1]))
    print(f"special tokens:  {specials or '(none)'}")
    norm = info["normalizer"]
    print(f"normalizer:      {norm['form']}, split after newlines: {'yes' if norm['split_newlines'] else 'no'}")
    print("piece lengths (bytes: count):")
    hist = info["piece_length_histogram"]
    peak = max(hist.values())
    for length, count in hist.items():
        bar = "#" * max(1, round(40 * count / peak))
        print(f"  {length:>3}: {count:>7}  {bar}")
    if info["top_pieces"]:
        print("most probable multi-byte pieces: " + "  ".join(repr(p) for p, _ in info["top_pieces"]))
    if info["trainer"]:
        print("trained with:")
        for k, v in info["trainer"].items():
            print(f"  {k}: {v}")
    else:
        print("trained with:    (not recorded: imported model)")
    if info["origin"]:
        print("origin:          " + ", ".join(f"{k}={v}" for k, v in info["origin"].items()))
    return 0
