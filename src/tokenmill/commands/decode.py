"""tokenmill decode: lines of token ids in, the original bytes out."""
from __future__ import annotations

import sys

from ..errors import InputError
from ._common import add_model_argument, load_model

HELP = "decode lines of token ids back into text"
DESCRIPTION = """\
Read lines of space-separated token ids (as `tokenmill encode` prints them) and write each
line's bytes followed by a newline. The output is the exact bytes the ids stand for (invalid
UTF-8 included), so `tokenmill encode | tokenmill decode` reproduces its input.
"""


def add_arguments(p):
    add_model_argument(p)
    p.add_argument("inputs", nargs="*", default=["-"], metavar="FILE",
                   help="files of ids (plain/.gz/.xz/.zst) or '-' for stdin (default: stdin)")
    p.add_argument("--skip-special", action="store_true",
                   help="leave special tokens out of the output")


def run(args) -> int:
    from ..corpus.io import expand_inputs, open_input

    tok = load_model(args.model)
    out = sys.stdout.buffer
    for path in expand_inputs(args.inputs):
        with open_input(path) as f:
            for lineno, line in enumerate(f, 1):
                try:
                    ids = [int(x) for x in line.split()]
                    data = tok.decode_bytes(ids, skip_special=args.skip_special)
                except ValueError as exc:
                    problem = str(exc) if "out of range" in str(exc) else "not a line of integer token ids"
                    raise InputError(path, problem, lineno) from None
                out.write(data + b"\n")
    out.flush()
    return 0
