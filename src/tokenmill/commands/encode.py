"""tokenmill encode: text in, one line of token ids per input line out."""
from __future__ import annotations

import json
import sys

from ._common import add_model_argument, batched, load_model, parse_allowed_special

HELP = "encode text into token ids (one output line per input line)"
DESCRIPTION = """\
Encode each input line (without its newline) into token ids, printed as one line of
space-separated ids per input line. Inputs may be plain, .gz, .xz or .zst files, or '-' for
stdin (the default). Bytes are encoded exactly as they are: invalid UTF-8, NUL and CR are kept,
and `tokenmill decode` gives the input back byte for byte.

examples:
  tokenmill encode -m model.json corpus.txt > ids.txt
  echo 'hello world' | tokenmill encode -m model.json --pieces
"""


def add_arguments(p):
    add_model_argument(p)
    p.add_argument("inputs", nargs="*", default=["-"], metavar="FILE",
                   help="input files (plain/.gz/.xz/.zst) or '-' for stdin (default: stdin)")
    p.add_argument("--pieces", action="store_true",
                   help="print each line's pieces as a JSON array of strings instead of ids "
                        "(bytes that are not UTF-8 are shown as <0xNN>)")
    p.add_argument("--alpha", type=float, default=None,
                   help="sample a segmentation with probability proportional to P**ALPHA "
                        "(subword regularization) instead of the best one")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for --alpha; line i of the run uses SEED + i (default: random)")
    p.add_argument("--allow-special", default=None, metavar="LIST",
                   help="comma-separated special tokens (or 'all') whose spelling in the input "
                        "becomes the special id; by default they are plain text")
    p.add_argument("--threads", type=int, default=None,
                   help="encoding threads (default: all cores)")


def _show_piece(piece) -> str:
    if isinstance(piece, str):
        return piece
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        out = []
        for ch in piece.decode("utf-8", "surrogateescape"):
            out.append(f"<0x{ord(ch) - 0xDC00:02X}>" if 0xDC80 <= ord(ch) <= 0xDCFF else ch)
        return "".join(out)


def run(args) -> int:
    from ..corpus.io import expand_inputs, open_input

    tok = load_model(args.model)
    allowed = parse_allowed_special(args.allow_special)
    out = sys.stdout.buffer
    seed = args.seed
    if args.alpha is not None and seed is None:
        import random
        seed = random.SystemRandom().getrandbits(63)
    index = 0
    for path in expand_inputs(args.inputs):
        with open_input(path) as f:
            lines = (line[:-1] if line.endswith(b"\n") else line for line in f)
            for batch in batched(lines, 4096):
                ids = tok.encode_batch(batch, num_threads=args.threads, alpha=args.alpha,
                                       seed=None if seed is None else seed + index,
                                       allowed_special=allowed)
                index += len(batch)
                if args.pieces:
                    text = "".join(json.dumps([_show_piece(tok.id_to_piece(i)) for i in row],
                                              ensure_ascii=False) + "\n" for row in ids)
                    out.write(text.encode("utf-8"))
                else:
                    out.write("".join(" ".join(map(str, row)) + "\n" for row in ids).encode("ascii"))
    out.flush()
    return 0
