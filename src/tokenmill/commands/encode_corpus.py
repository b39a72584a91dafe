"""``tokenmill encode-corpus``: documents in, memory-mappable token shards out."""
from __future__ import annotations

import sys

HELP = "encode a corpus into token shards (uint16/uint32 .bin + .idx + manifest.json) for training"

DESCRIPTION = """\
Encode every document of the INPUTs (each line, or with --field the given string field of
each JSONL record) with MODEL and write the ids into shards in the folder OUT:

  shard-00000.bin   token ids, little-endian uint16 (vocabulary <= 65536 ids) or uint32
  shard-00000.idx   little-endian uint64 offsets: document k is bin[idx[k]:idx[k+1]]
  manifest.json     format version, model sha256, vocab size, dtype, counts, inputs, options

Read them with tokenmill.TokenShards(OUT) or plain numpy.memmap (see the README, "Token shards").

Resumable: a shard is written under a temporary name and renamed when complete, then the
manifest records it. Rerunning the same command continues after the last completed shard,
and the result is byte for byte that of an uninterrupted run. A rerun with another model,
other inputs or other options is refused. --workers never changes the output; with --alpha,
document i (counted from 0 over all inputs) is sampled with seed SEED + i.

--engine ray encodes the parts of the inputs as tasks on a Ray cluster (pip install
"tokenmill[ray]"), cuts the documents into shards where a local run would and writes each
shard in a task of its own: the same folder byte for byte. It does not continue a partial
folder (it writes every shard again); inputs and OUT must be visible to every node.

examples:
  tokenmill encode-corpus data/*.txt.gz -m model.json -o shards/ --eos
  tokenmill encode-corpus dump.jsonl --field text -m model.json -o shards/ --alpha 0.1 --seed 1
"""


def add_arguments(parser) -> None:
    from ..corpus.shards import EncodeCorpusSpec
    from ..spec import add_arguments as add_spec_arguments

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs or folders (plain/.gz/.xz/.zst)")
    parser.add_argument("-m", "--model", required=True, metavar="MODEL",
                        help="a tokenmill model file; a BytePiece .model/.zip is imported on the fly")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    add_spec_arguments(parser, EncodeCorpusSpec)


def run(args) -> int:
    from ..corpus.shards import EncodeCorpusSpec, encode_corpus
    from ..progress import format_bytes, format_count
    from ..spec import from_args

    spec = from_args(EncodeCorpusSpec, args)
    result = encode_corpus(args.inputs, args.model, args.output, spec=spec)
    if spec.progress:
        if result.bytes == 0 and result.resumed_documents:
            print(f"tokenmill encode-corpus: {args.output} is already complete "
                  f"({result.documents:,} documents, {result.tokens:,} tokens)", file=sys.stderr)
            return 0
        resumed = f", resumed after {result.resumed_documents:,} documents" if result.resumed_documents else ""
        print(f"tokenmill encode-corpus: {result.documents:,} documents, {result.tokens:,} tokens in "
              f"{result.shards} shard(s) -> {args.output} in {result.seconds:.1f} s "
              f"({format_bytes(result.bytes / max(result.seconds, 1e-9))}/s, "
              f"{format_count(result.tokens_per_second)} tokens/s{resumed})", file=sys.stderr)
    return 0
