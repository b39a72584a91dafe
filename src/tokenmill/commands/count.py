"""``tokenmill count``: exact n-gram frequencies of characters, bytes or words."""
from __future__ import annotations

import sys

from ..spec import CountSpec, add_arguments as add_spec_arguments, from_args

HELP = "count all 1..N-grams of characters, bytes or words exactly (parallel, memory-bounded)"

DESCRIPTION = """\
Count every n-gram of 1 to --order units in all INPUTs and write OUT as TSV lines
ngram<TAB>count, sorted by count (highest first), then by the n-gram's bytes.

Units: char (UTF-8 characters; a byte that is not valid UTF-8 is a character of its own),
byte, or word (runs of non-blank bytes; or the pieces between matches of --split REGEX; or
jieba's words with --jieba). A word n-gram is written with its words joined by one space.
Lines are the documents: no n-gram spans a line break (with --field, a newline inside the
JSON text also ends the run).

In the n-gram column backslash, tab, newline and CR are written \\\\, \\t, \\n and \\r.

Exact: counts are never estimated or pruned. --min-count and --top only choose what is
written. When the counts do not fit in --memory, tokenmill counts one part of the n-grams
(chosen by a hash) per pass over the input and makes as many passes as needed; standard input
is first copied to a temporary file for that. --workers never changes the output.

Inputs: files, globs, folders and - (standard input); .gz, .xz and .zst are decompressed;
JSON lines with --field. OUT is written under a temporary name and renamed when complete;
.gz/.xz/.zst compress it; - writes to standard output.

--engine ray runs the count as tasks on a Ray cluster (pip install "tokenmill[ray]"): plain
files are cut into byte ranges (a compressed file or a JSON-lines file is one part), each task
counts a group of parts on the CPUs of a node within --memory, the counts are added up per hash
partition, and this process merges the sorted partitions into OUT (on a one-node cluster the
single task's counts are final, and it writes OUT itself): the same file as a local run. The
inputs and OUT's folder (where the tasks exchange their files) must be visible to every node;
standard input is not accepted there.
"""


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs, folders or - (stdin)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.tsv",
                        help="output TSV (ngram<TAB>count); .gz/.xz/.zst compress; - for stdout")
    add_spec_arguments(parser, CountSpec)


def run(args) -> int:
    from ..counting import count_ngrams
    from ..progress import format_bytes

    spec = from_args(CountSpec, args)
    r = count_ngrams(args.inputs, args.output, spec=spec)
    if spec.progress:
        print(f"tokenmill count: {r.lines:,} lines, {format_bytes(r.bytes)}: {r.distinct:,} distinct "
              f"{spec.unit} 1..{spec.order}-grams, {r.written:,} written to {r.output} in {r.seconds:.1f} s "
              f"({format_bytes(r.bytes / max(r.seconds, 1e-9))}/s, {r.passes} pass{'es' if r.passes > 1 else ''}, "
              f"peak {format_bytes(r.peak_rss)})", file=sys.stderr)
    return 0
