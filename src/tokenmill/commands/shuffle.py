"""``tokenmill shuffle``: exact global shuffle of the lines of corpora far larger than memory."""
from __future__ import annotations

import sys

from ..spec import ShuffleSpec, add_arguments as add_spec_arguments, from_args

HELP = "shuffle the lines of files far larger than memory (exact, uniform, reproducible)"

DESCRIPTION = """\
Write a uniformly random permutation of all lines of all INPUTs to OUT.

Method: every line is sent to one of K temporary bucket files chosen by a hash of the seed, its
input file and the offset where it starts in it; each bucket is then shuffled in memory
(Fisher-Yates) and the buckets are written one after the other. This is exact: every
permutation is equally likely (unlike a round-robin merge of shuffled chunks, or sort -R, which
puts equal lines together). K is chosen so that a bucket
fits the memory budget; a bucket that comes out too big is scattered again. If everything fits
in the budget, no temporary file is written.

Inputs: files, globs, folders (recursively) and - for standard input; .gz, .xz and .zst are
decompressed. OUT is compressed by its extension. Lines are raw bytes split on \\n only: CR, NUL,
invalid UTF-8 and empty lines are kept exactly; a last line without a newline gets one.

Memory: the process stays within --memory plus about 64 MB for the interpreter, whatever the
input size. A single line longer than 40% of --memory is an error, reported before any output
is written. Disk: the temporary folder needs about the input size, the output folder as much.

Reproducible: the same inputs, --seed, --memory and shard options give the same output byte for
byte; --workers and --engine never change it.

Safety: outputs are written under a temporary name (.tokenmill-tmp-...) and renamed only when
complete. Temporary files are removed on success, on errors and on Ctrl-C / SIGTERM. A run that
was killed outright (SIGKILL, power loss) leaves them behind; the next tokenmill run using the
same folders removes them (only those of processes that no longer exist on this host).

--engine ray runs the same steps as tasks on a Ray cluster (pip install "tokenmill[ray]"): each
input part is scattered into K buckets of its own, each bucket is shuffled by one task and
written in order into OUT (in place, at its offset, for one plain file; otherwise by this
process): the same bytes as a local run. Inputs, OUT's folder and
--tmp must be visible to every node; --memory bounds each task.
"""


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs, folders or - (stdin)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file (.gz/.xz/.zst compress; - for stdout); with shards, the "
                             "name pattern OUT-00000.ext")
    add_spec_arguments(parser, ShuffleSpec)


def run(args) -> int:
    from ..corpus.shuffle import shuffle
    from ..progress import format_bytes

    spec = from_args(ShuffleSpec, args)
    result = shuffle(args.inputs, args.output, spec=spec)
    if spec.progress:
        where = result.outputs[0] if len(result.outputs) == 1 else f"{len(result.outputs)} shards ({result.outputs[0]}, ...)"
        how = "in memory" if result.in_memory else (
            f"{result.root_buckets} buckets" + (f", {result.rescattered} scattered again" if result.rescattered else ""))
        rate = result.bytes / max(result.seconds, 1e-9)
        print(f"tokenmill shuffle: {result.lines:,} lines, {format_bytes(result.bytes)} -> {where} "
              f"in {result.seconds:.1f} s ({format_bytes(rate)}/s, {how}, seed {result.seed})",
              file=sys.stderr)
    return 0
