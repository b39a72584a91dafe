"""One options schema for the CLI, the Python API and the model file.

Each option is a dataclass field whose ``metadata`` carries its help text (and, optionally,
the CLI flag and choices). :func:`add_arguments` turns a spec class into argparse options,
:func:`from_args` reads them back, and ``dataclasses.asdict`` is what a model file stores.

Example::

    >>> spec = NormalizerSpec(form="nfc")
    >>> spec.to_dict()
    {'form': 'nfc', 'split_newlines': True}
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import dataclass, field

from .errors import TokenmillError


def option(default, help, *, flag=None, choices=None, metavar=None, parse=None):
    """A dataclass field with the CLI information attached."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "parse": parse}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class Spec:
    """Mixin for option dataclasses: validation, dict round trip, argparse binding."""

    def validate(self) -> None:  # overridden where there is something to check
        pass

    def __post_init__(self):
        self.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "options"):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TokenmillError(f"{where}: unknown option(s) {', '.join(unknown)} for {cls.__name__}")
        return cls(**data)


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, spec_cls, *, skip=()) -> None:
    """Add one ``--option`` per field of ``spec_cls`` (booleans get ``--x/--no-x``)."""
    hints = typing.get_type_hints(spec_cls)
    for f in dataclasses.fields(spec_cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = hints[f.name]
        help_text = f.metadata["help"]
        kw = {"dest": f.name, "default": argparse.SUPPRESS}
        if kind is bool:
            parser.add_argument(
                _flag(f), action=argparse.BooleanOptionalAction,
                help=f"{help_text} (default: {'on' if default else 'off'})", **kw)
            continue
        parse = f.metadata.get("parse")
        if parse is None:
            origin = typing.get_origin(kind)
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            base = args[0] if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else kind
            parse = base if base in (int, float, str) else str
        parser.add_argument(
            _flag(f), type=parse, choices=f.metadata.get("choices"),
            metavar=f.metadata.get("metavar"),
            help=f"{help_text} (default: {default})", **kw)


def from_args(spec_cls, args: argparse.Namespace, **overrides):
    """Build ``spec_cls`` from parsed arguments; options not given keep their defaults."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(spec_cls) if hasattr(args, f.name)}
    values.update(overrides)
    return spec_cls(**values)


NORMALIZER_FORMS = ("none", "nfc", "nfkc")


@dataclass
class NormalizerSpec(Spec):
    """How text is prepared before segmentation; stored in every model file."""

    form: str = option("none", "Unicode normalization applied to str input: none (byte-exact), nfc or nfkc",
                       choices=NORMALIZER_FORMS)
    split_newlines: bool = option(True, "cut the input after every run of newlines, so no piece "
                                        "continues past a line end (as BytePiece does)")

    def validate(self):
        if self.form not in NORMALIZER_FORMS:
            raise TokenmillError(f"normalizer: unknown form {self.form!r} (choose from {', '.join(NORMALIZER_FORMS)})")


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text) -> int:
    """A memory or disk size in bytes, with binary units as in ``sort -S``: K, M, G, T = 2**10.. 2**40.

    Accepts an int, or a string with an optional unit and an optional trailing ``B``/``iB``
    (case-insensitive); fractions are allowed.

    Example::

        >>> parse_size("1G"), parse_size("512m"), parse_size("1.5K"), parse_size(4096)
        (1073741824, 536870912, 1536, 4096)
    """
    if isinstance(text, bool):
        raise TokenmillError(f"invalid size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise TokenmillError(f"invalid size {text!r}: must not be negative")
        return text
    s = str(text).strip().upper()
    for suffix in ("IB", "B"):
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[: -len(suffix)]
            break
    unit = s[-1:] if s[-1:] in _SIZE_UNITS and s[-1:] else ""
    number = s[: len(s) - len(unit)].strip()
    try:
        value = float(number)
    except ValueError:
        raise TokenmillError(f"invalid size {text!r} (examples: 4096, 512M, 1G, 1.5T)") from None
    if not value >= 0 or value == float("inf"):
        raise TokenmillError(f"invalid size {text!r}: must be a non-negative number")
    return int(value * _SIZE_UNITS[unit])


ENGINES = ("local", "ray")


def engine_option():
    return option("local", "where the job runs: local (this process), or ray (tasks on a Ray cluster, "
                           "pip install \"tokenmill[ray]\"; the inputs and the folders the job writes "
                           "to must be on storage that every node, and this machine, mount at the same "
                           "paths); the output is the same byte for byte", choices=ENGINES)


def ray_address_option():
    return option(None, "with --engine ray: the cluster (auto: the one this machine is part of; "
                        "ray://HOST:10001 for a remote one); default: $RAY_ADDRESS, else a local Ray "
                        "instance for the job", metavar="ADDR")


def check_engine(cmd: str, spec) -> None:
    if spec.engine not in ENGINES:
        raise TokenmillError(f"{cmd}: unknown engine {spec.engine!r} (choose from {', '.join(ENGINES)})")
    if spec.ray_address is not None and spec.engine != "ray":
        raise TokenmillError(f"{cmd}: --ray-address needs --engine ray")


@dataclass
class ShuffleSpec(Spec):
    """Options of ``tokenmill shuffle`` / :func:`tokenmill.shuffle` (exact out-of-core line shuffle)."""

    memory: str = option("1G", "memory budget: the peak RSS stays within it plus about 64 MB of "
                               "interpreter; sizes like 512M, 1G, 1.5G", metavar="SIZE")
    seed: int = option(0, "random seed; the same inputs, seed, --memory and shard options give the "
                          "same output byte for byte, whatever --workers is", metavar="N")
    tmp: str | None = option(None, "folder for the temporary bucket files (needs about the input "
                                   "size free; default: the output's folder)", metavar="DIR")
    shards: int | None = option(None, "write K output files of (nearly) equal line counts, named "
                                      "OUT-00000..., instead of one file", metavar="K")
    lines_per_shard: int | None = option(None, "write output files of N lines each (the last one "
                                               "shorter), named OUT-00000...", metavar="N")
    workers: int = option(0, "threads for reading/decompressing, scattering and bucket shuffles "
                             "(0 = number of CPUs, at most 4); never changes the output", metavar="N")
    buckets: int | None = option(None, "first-level bucket count (default: chosen from --memory and "
                                       "the input size); part of what fixes the output", metavar="K")
    engine: str = engine_option()
    ray_address: str | None = ray_address_option()
    progress: bool = option(True, "progress bar on stderr when it is a terminal, and a summary line")

    def validate(self):
        check_engine("shuffle", self)
        budget = parse_size(self.memory)
        if budget < (1 << 20):
            raise TokenmillError(f"shuffle: --memory {self.memory} is too small (at least 1M)")
        if self.shards is not None and self.lines_per_shard is not None:
            raise TokenmillError("shuffle: give --shards or --lines-per-shard, not both")
        for name in ("shards", "lines_per_shard", "buckets"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TokenmillError(f"shuffle: --{name.replace('_', '-')} must be at least 1")
        if self.workers < 0:
            raise TokenmillError("shuffle: --workers must be >= 0")

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)


def _parse_special_tokens(text) -> list:
    """``"<pad>,<s>,</s>"`` -> ``["<pad>", "<s>", "</s>"]`` (the CLI form of ``special_tokens``)."""
    if isinstance(text, (list, tuple)):
        return list(text)
    return [t for t in str(text).split(",") if t]


@dataclass
class TrainerSpec(Spec):
    """Options of ``tokenmill train`` / :class:`tokenmill.Trainer`; stored in every trained model.

    The algorithm is BytePiece's (order, min_count, max_piece_length, ensure_unicode,
    isolate_digits) followed by an optional likelihood refinement (``refine``).
    """

    vocab_size: list = option([8000], "vocabulary size(s), special tokens included; several sizes "
                                      "come from one run, largest first", metavar="N")
    order: int = option(7, "longest byte n-gram of the language model used to find pieces (1 to 15)",
                        metavar="N")
    min_count: int = option(4, "n-grams (n >= 2) and pieces seen fewer times are dropped", metavar="N")
    max_piece_length: int = option(36, "longest piece, in bytes", metavar="N")
    ensure_unicode: bool = option(True, "a multi-byte piece never starts inside a UTF-8 character, so "
                                        "every piece of valid UTF-8 text is valid UTF-8")
    isolate_digits: bool = option(False, "every ASCII digit 0-9 is a token of its own")
    split_newlines: bool = option(True, "text is cut after every run of newlines, so a piece may end "
                                        "with newlines but never continues past them (stored in the "
                                        "model's normalizer, which cuts the same way when encoding)")
    normalizer: str = option("none", "Unicode normalization of the text before training and encoding: "
                                     "none (byte-exact), nfc or nfkc", choices=NORMALIZER_FORMS)
    special_tokens: list = option([], "special tokens, comma-separated (ids 0, 1, ... in this order)",
                                  metavar="TOK,TOK", parse=_parse_special_tokens)
    refine: bool = option(True, "refinement after BytePiece's selection: re-estimate the scores on the "
                                "corpus and prune, from --refine-factor times the target size, the "
                                "pieces whose removal costs least")
    refine_factor: float = option(1.5, "the refinement starts from this many times the target vocabulary "
                                       "(chosen as BytePiece does)", metavar="X")
    refine_ngrams: float = option(1.0, "the refinement also weighs this many times the target size of "
                                       "the most frequent byte n-grams (2 to 7 bytes, whole UTF-8 "
                                       "characters with --ensure-unicode) as candidate pieces, besides "
                                       "those the n-gram model found; 0: none", metavar="X")
    refine_loss: str = option("tokens", "cost of removing a piece: tokens (frequency x extra tokens of its "
                                        "best split: compression) or likelihood (SentencePiece's)",
                              choices=("tokens", "likelihood"))
    refine_estimate: str = option("viterbi", "score re-estimation: viterbi (counts in the best "
                                             "segmentations) or em (expected counts, forward-backward)",
                                  choices=("viterbi", "em"))
    refine_iterations: int = option(1, "re-estimations before each pruning step of the refinement",
                                    metavar="N")
    sample_bytes: str | None = option(None, "train on a uniform random sample of about this many bytes "
                                            "of documents (e.g. 2G); default: everything", metavar="SIZE")
    memory: str = option("4G", "memory budget for the whole process; counting makes extra passes over "
                               "the input rather than exceed it (sizes like 512M, 4G)", metavar="SIZE")
    workers: int = option(0, "threads (0 = all cores); never changes the model", metavar="N")
    tmp: str | None = option(None, "folder for the pieces written to disk when they outgrow their share "
                                   "of --memory (default: the system's temporary folder); with --engine "
                                   "ray also for the files the tasks exchange (default there: the "
                                   "output's folder)", metavar="DIR")
    seed: int = option(0, "random seed (only --sample-bytes draws random numbers)", metavar="N")
    engine: str = engine_option()
    ray_address: str | None = ray_address_option()
    progress: bool = option(True, "progress bars on stderr when it is a terminal, and a summary")

    def validate(self):
        check_engine("train", self)
        sizes = self.vocab_size if isinstance(self.vocab_size, (list, tuple)) else [self.vocab_size]
        try:
            self.vocab_size = [int(v) for v in sizes]
        except (TypeError, ValueError):
            raise TokenmillError(f"train: --vocab-size must be integers, got {sizes!r}") from None
        if not self.vocab_size:
            raise TokenmillError("train: give at least one --vocab-size")
        self.special_tokens = _parse_special_tokens(self.special_tokens)
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise TokenmillError("train: duplicate special token")
        least = 256 + len(self.special_tokens)
        for v in self.vocab_size:
            if v < least:
                raise TokenmillError(f"train: --vocab-size {v} is below 256 bytes + "
                                     f"{len(self.special_tokens)} special tokens = {least}")
        if not 1 <= self.order <= 15:
            raise TokenmillError(f"train: --order must be between 1 and 15, got {self.order}")
        if self.min_count < 1:
            raise TokenmillError("train: --min-count must be at least 1")
        if self.max_piece_length < 1:
            raise TokenmillError("train: --max-piece-length must be at least 1")
        if self.normalizer not in NORMALIZER_FORMS:
            raise TokenmillError(f"train: unknown normalizer {self.normalizer!r}")
        if self.refine_factor < 1:
            raise TokenmillError("train: --refine-factor must be >= 1")
        if not self.refine_ngrams >= 0:
            raise TokenmillError("train: --refine-ngrams must be >= 0")
        if self.refine_iterations < 1:
            raise TokenmillError("train: --refine-iterations must be >= 1")
        if self.refine_loss not in ("tokens", "likelihood") or self.refine_estimate not in ("viterbi", "em"):
            raise TokenmillError("train: unknown --refine-loss or --refine-estimate")
        if self.workers < 0:
            raise TokenmillError("train: --workers must be >= 0")
        if parse_size(self.memory) < (64 << 20):
            raise TokenmillError(f"train: --memory {self.memory} is too small (at least 64M)")
        if self.sample_bytes is not None and parse_size(self.sample_bytes) < 1:
            raise TokenmillError("train: --sample-bytes must be positive")
        if self.tmp is not None and not os.path.isdir(self.tmp):
            raise TokenmillError(f"{self.tmp}: --tmp folder does not exist")


COUNT_UNITS = ("char", "byte", "word")


def _parse_pmi(text) -> list:
    """``"0,2,4,6"`` -> ``[0.0, 2.0, 4.0, 6.0]`` (the CLI form of ``min_pmi``)."""
    if isinstance(text, (list, tuple)):
        return [float(x) for x in text]
    try:
        return [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _check_common(cmd: str, spec) -> None:
    if spec.order < 1:
        raise TokenmillError(f"{cmd}: --order must be at least 1")
    if spec.min_count < 1:
        raise TokenmillError(f"{cmd}: --min-count must be at least 1")
    if spec.top is not None and spec.top < 1:
        raise TokenmillError(f"{cmd}: --top must be at least 1")
    if spec.workers < 0:
        raise TokenmillError(f"{cmd}: --workers must be >= 0")
    if parse_size(spec.memory) < (128 << 20):
        raise TokenmillError(f"{cmd}: --memory {spec.memory} is too small (at least 128M)")


@dataclass
class CountSpec(Spec):
    """Options of ``tokenmill count`` / :func:`tokenmill.count_ngrams` (exact n-gram counts)."""

    unit: str = option("char", "what an n-gram is made of: char (UTF-8 characters; an invalid byte "
                               "counts as a character of its own), byte, or word", choices=COUNT_UNITS)
    order: int = option(2, "count all n-grams of 1..N units", metavar="N")
    min_count: int = option(1, "write only n-grams seen at least C times; never changes a count "
                               "(memory is bounded by extra passes, not by dropping counts)", metavar="C")
    top: int | None = option(None, "write only the K most frequent n-grams", metavar="K")
    split: str | None = option(None, "with --unit word: a Python regular expression whose matches "
                                     "separate words (default: runs of ASCII whitespace)", metavar="REGEX")
    jieba: bool = option(False, "with --unit word: split Chinese text into words with jieba "
                                "(pip install jieba)")
    field: str | None = option(None, "inputs are JSON lines; count the text of this field", metavar="NAME")
    workers: int = option(0, "threads (0 = number of CPUs); never changes the output", metavar="N")
    memory: str = option("2G", "memory budget: peak RSS stays within it (with --engine ray: that of "
                               "each task); n-grams that do not fit are counted in further passes "
                               "over the input", metavar="SIZE")
    engine: str = engine_option()
    ray_address: str | None = ray_address_option()
    progress: bool = option(True, "progress bar on stderr when it is a terminal, and a summary line")

    def validate(self):
        check_engine("count", self)
        if self.unit not in COUNT_UNITS:
            raise TokenmillError(f"count: unknown unit {self.unit!r} (choose from {', '.join(COUNT_UNITS)})")
        _check_common("count", self)
        if (self.split is not None or self.jieba) and self.unit != "word":
            raise TokenmillError("count: --split and --jieba only apply to --unit word")
        if self.split is not None and self.jieba:
            raise TokenmillError("count: give --split or --jieba, not both")
        if self.split is not None:
            import re
            try:
                pattern = re.compile(self.split)
            except re.error as exc:
                raise TokenmillError(f"count: --split {self.split!r} is not a valid regular expression: {exc}") from None
            if pattern.match(""):
                raise TokenmillError(f"count: --split {self.split!r} matches the empty string")


@dataclass
class DiscoverSpec(Spec):
    """Options of ``tokenmill discover`` / :func:`tokenmill.discover_words` (Su's new-word discovery)."""

    order: int = option(4, "longest character n-gram whose cohesion is measured", metavar="N")
    min_count: int = option(32, "n-grams and words seen fewer times are dropped", metavar="C")
    min_pmi: list = option([0.0, 2.0, 4.0, 6.0],
                           "lowest ln(cohesion) an n-gram of length 1, 2, ... must reach to be kept "
                           "(comma-separated; the last value applies to longer n-grams)",
                           metavar="X,Y,...", parse=_parse_pmi)
    exclude_dict: str | None = option(None, "a dictionary file (one word per line, first column; e.g. "
                                             "jieba's dict.txt): list only words absent from it",
                                      metavar="FILE")
    top: int | None = option(None, "write only the K best words", metavar="K")
    field: str | None = option(None, "inputs are JSON lines; use the text of this field", metavar="NAME")
    workers: int = option(0, "threads (0 = number of CPUs); never changes the output", metavar="N")
    memory: str = option("2G", "memory budget: peak RSS stays within it (with --engine ray: that of "
                               "each task; extra passes over the input when the counts do not fit)",
                         metavar="SIZE")
    engine: str = engine_option()
    ray_address: str | None = ray_address_option()
    progress: bool = option(True, "progress bar on stderr when it is a terminal, and a summary line")

    def validate(self):
        check_engine("discover", self)
        _check_common("discover", self)
        if not self.min_pmi:
            raise TokenmillError("discover: --min-pmi needs at least one value")
        self.min_pmi = [float(x) for x in self.min_pmi]

    def pmi_for(self, length: int) -> float:
        """The ln-cohesion threshold for n-grams of ``length`` characters."""
        return self.min_pmi[min(length, len(self.min_pmi)) - 1]
