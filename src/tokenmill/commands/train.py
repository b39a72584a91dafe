"""``tokenmill train``: train byte-level unigram tokenizers (one model file per vocabulary size)."""
from __future__ import annotations

import os
import sys

from ..spec import TrainerSpec, add_arguments as add_spec_arguments, from_args

HELP = "train byte-level unigram tokenizers on text files (BytePiece's algorithm + EM refinement)"

DESCRIPTION = """\
Train a byte-level unigram tokenizer on INPUTs and write one tokenmill model file per
--vocab-size.

Inputs: files, globs, folders (recursively) and - for standard input (copied to a temporary
file, since training reads its input twice); .gz, .xz and .zst are decompressed. Every line
is a document (the newline that ends it is not part of it); with --field, every line is a JSON
object and the document is that field's string, in which newlines are text.

Newlines: with --split-newlines (default) text is cut after every run of newlines, so a piece
may end with newlines but never continues past them; the model's normalizer cuts the same way
when encoding. With --no-split-newlines a newline inside a document is an ordinary byte.

Algorithm: BytePiece's (byte n-grams up to --order, an n-gram language model, Viterbi
segmentation, piece counting, pruning by count with re-segmentation of dropped pieces,
removal of pieces that can never be chosen), then, with --refine (default), a refinement that
starts from --refine-factor times the target size, re-estimates the scores on the corpus and
prunes the pieces whose removal costs least (by default: fewest extra tokens; with
--refine-loss likelihood --refine-estimate em, SentencePiece's EM criterion). Every size is
made from the same pruned set, so several sizes from one run equal separate runs.

Output names: with one --vocab-size, OUT itself; with several, the size is inserted before
OUT's extension: -o zh.json --vocab-size 32000 64000 writes zh.32000.json and zh.64000.json
(OUT may instead contain {size}: -o zh-{size}.json). All models are written at the end and
atomically: on any error nothing is written.

Memory: --memory bounds the whole process. Counting is exact: when the n-gram table would
outgrow the budget, half of the key space is set aside for a further pass over the input, so
a corpus many times larger than the budget trains (with more passes). --sample-bytes trains on
a uniform random sample of the documents instead.

Reproducible: the same inputs, options and --seed give the same models byte for byte, whatever
--workers is.

--engine ray runs the passes over the corpus as tasks on a Ray cluster (pip install
"tokenmill[ray]"): each part of the inputs is counted, and later cut into pieces, by a task;
the counts are added up by partition in further tasks. This process builds the n-gram model
and prunes and refines the vocabularies, as a local run does: the same models byte for byte.
The inputs and --tmp (default: OUT's folder), where the tasks exchange their files, must be
visible to every node; --memory bounds each task.
"""


def output_paths(output: str, sizes) -> list[str]:
    """Model file names for ``sizes`` (see DESCRIPTION).

    >>> output_paths("zh.json", [32000, 64000])
    ['zh.32000.json', 'zh.64000.json']
    >>> output_paths("zh.json", [32000])
    ['zh.json']
    """
    if "{size}" in output:
        return [output.replace("{size}", str(s)) for s in sizes]
    if len(sizes) == 1:
        return [output]
    folder, name = os.path.split(output)
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    return [os.path.join(folder, f"{stem}.{s}" + (f".{ext}" if ext else "")) for s in sizes]


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs, folders or - (stdin)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="model file; with several sizes, OUT with the size before its extension")
    parser.add_argument("--vocab-size", dest="vocab_size", nargs="+", type=int, metavar="N",
                        default=[8000], help="vocabulary size(s), special tokens included (default: 8000)")
    parser.add_argument("--field", metavar="NAME", default=None,
                        help="inputs are JSON lines; train on this string field")
    add_spec_arguments(parser, TrainerSpec, skip=("vocab_size",))


def run(args) -> int:
    from ..corpus.io import AtomicOutputs
    from ..trainer import Trainer

    spec = from_args(TrainerSpec, args)
    paths = output_paths(args.output, spec.vocab_size)
    if len(set(paths)) != len(paths):
        from ..errors import TokenmillError

        raise TokenmillError(f"{args.output}: the same output name for several sizes")
    for p in paths:
        folder = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(folder):
            from ..errors import TokenmillError

            raise TokenmillError(f"{p}: no such directory {folder}")
    if spec.engine != "local" and spec.tmp is None:
        import dataclasses

        # the tasks exchange their files next to the output, not in this machine's /tmp
        spec = dataclasses.replace(spec, tmp=os.path.dirname(os.path.abspath(paths[0])))
    trainer = Trainer(spec)
    models = trainer.train(args.inputs, field=args.field)
    with AtomicOutputs() as outs:
        for path, tok in zip(paths, models):
            outs.open(path).write(tok.to_json().encode("utf-8"))
    if spec.progress:
        print(trainer.stats.summary(), file=sys.stderr)
        for path, size in zip(paths, spec.vocab_size):
            print(f"tokenmill train: wrote {path} ({trainer.stats.kept.get(size, size)} pieces"
                  f" + {len(spec.special_tokens)} special tokens)", file=sys.stderr)
    return 0
