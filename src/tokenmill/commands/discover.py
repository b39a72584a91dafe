"""``tokenmill discover``: new-word discovery in Chinese (or any) text, without a dictionary."""
from __future__ import annotations

import sys

from ..spec import DiscoverSpec, add_arguments as add_spec_arguments, from_args

HELP = "discover the words of a corpus without a dictionary (Su's cohesion-and-cut method)"

DESCRIPTION = """\
Find the words of a corpus from statistics alone and write OUT as TSV lines
word<TAB>count<TAB>cohesion, most frequent first.

Method (Su Jianlin's new-word discovery): count the character n-grams of 1..--order
characters inside runs of letters and digits; keep those seen at least --min-count times whose
ln cohesion, min over split points of ln(N*c(w)/(c(left)*c(right))), reaches --min-pmi for
their length; cut the text wherever no kept n-gram holds two neighbouring characters together;
count the pieces; keep pieces seen at least --min-count times whose every --order-character
window is a kept n-gram. The cohesion column is the word's ln cohesion (the lowest of its
windows' for longer words; 0 for single characters).

With --exclude-dict (e.g. jieba's dict.txt) only words absent from that dictionary are
listed: the new words. Load the output into jieba (jieba.Tokenizer(dictionary=...)) or any
dictionary-based segmenter; bench/discover.py scores such a lexicon on SIGHAN 2005 MSR.

Counting is exact and memory-bounded as in `tokenmill count` (extra passes over the input if
the counts do not fit in --memory); --workers never changes the output.

--engine ray runs both counting steps as tasks on a Ray cluster, as `tokenmill count --engine
ray` does (pip install "tokenmill[ray]"); this process keeps the cohesive n-grams and writes
OUT: the same file as a local run. Inputs and OUT's folder must be visible to every node.
"""


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs, folders or - (stdin)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.tsv",
                        help="output TSV (word<TAB>count<TAB>cohesion); .gz/.xz/.zst compress; - for stdout")
    add_spec_arguments(parser, DiscoverSpec)


def run(args) -> int:
    from ..discovery import discover_words
    from ..progress import format_bytes

    spec = from_args(DiscoverSpec, args)
    r = discover_words(args.inputs, args.output, spec=spec)
    if spec.progress:
        print(f"tokenmill discover: {r.lines:,} lines, {format_bytes(r.bytes)}, {r.characters:,} characters: "
              f"{r.candidates:,} cohesive n-grams, {r.pieces:,} distinct pieces, {r.written:,} words written "
              f"to {r.output} in {r.seconds:.1f} s", file=sys.stderr)
    return 0
