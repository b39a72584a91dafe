"""Training a byte-level unigram tokenizer: BytePiece's algorithm, compiled, parallel and
memory-bounded, followed by a likelihood (EM) refinement.

Phases (each a pass over the corpus or over the pieces found):

1. **count**: every byte n-gram of length 1..order inside a chunk is counted exactly
   (:class:`tokenmill._ngram.NgramTable`); beyond 7 bytes only the n-grams whose 7-byte
   windows all reached ``min_count`` are counted, in a second stage (the others cannot reach
   it). Chunks: one document per line, cut after runs of newlines (``split_newlines``) and
   around ASCII digits (``isolate_digits``).
2. **lm**: n-grams (n >= 2) seen fewer than ``min_count`` times are dropped; the rest become a
   byte n-gram language model ``log c(x1..xn) - log c(x1..xn-1)``.
3. **segment**: every chunk is cut into pieces by the order-state Viterbi of that model
   (:func:`tokenmill._ngram.lm_segment`), and the pieces are counted.
4. **prune**: as BytePiece: keep single bytes and pieces with count >= min_count and length <=
   max_piece_length, re-split the others with the kept vocabulary, remove "wasted" pieces that
   their own best segmentation does not use, then for each vocabulary size keep the most
   frequent pieces, re-split the rest and remove wasted pieces again. (Every size starts from
   the same pruned set, so several sizes from one run equal separate runs.)
5. **refine** (``refine``): start from ``refine_factor`` times the target size, chosen as in 4,
   plus ``refine_ngrams`` times the target size of the most frequent n-grams counted in 1 (as
   SentencePiece seeds its candidates with frequent substrings: the n-gram model's own
   segmentation never offers the general short pieces inside its longer ones); re-estimate
   the probabilities on the pieces counted in 3 (Viterbi counts, or EM expected counts over
   the unigram lattice), and prune the pieces whose removal costs least (tokens added, or
   likelihood lost as in SentencePiece's unigram trainer) until the target size.

Example::

    >>> from tokenmill import Trainer, TrainerSpec
    >>> [tok] = Trainer(TrainerSpec(vocab_size=[1000])).train(["corpus.txt"])   # doctest: +SKIP
    >>> tok.save("model.json")                                                  # doctest: +SKIP

Results never depend on ``workers``: every count is an exact integer sum (expected counts of
EM are summed in fixed point), and every list is sorted before it is used.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import _lattice, _ngram, _spans
from .corpus.io import prefetch
from .counting import TableSizer, concat_entries
from .errors import InputError, TokenmillError
from .memory import peak_rss
from .piece_store import PieceData
from .spec import NormalizerSpec, TrainerSpec, parse_size

BATCH_BYTES = 1 << 20          # documents are processed in batches of about this many bytes
MAX_CHUNK = 32768              # longest chunk (bytes) the n-gram Viterbi sees; longer ones are cut
_BASE_MEMORY = 48 << 20        # interpreter, numpy, batches in flight: not available to tables
_LM_BYTES_PER_KEY = 52         # kept n-gram arrays (16) + LM table (16 / 0.6) + its log values while built (8)
RUNTIME_OPTIONS = ("workers", "progress", "memory", "tmp", "engine", "ray_address")   # never change the model: not stored
SHARDS = 64                    # n-gram table shards (fixed: the model never depends on threads)


def _raise_min_count(counts_list, current):
    """The smallest count threshold above ``current`` that drops at least a tenth of the kept n-grams."""
    allc = np.concatenate(counts_list)
    q = int(np.quantile(allc, 0.1, method="lower")) + 1
    return max(current + 1, q)


def fit_kept(kept_keys, kept_counts, min_count, budget) -> int:
    """Raise the count threshold (from ``min_count``) until the kept n-grams (lists of arrays,
    filtered in place) and the LM made of them fit ``budget``; returns the threshold."""
    while sum(x.nbytes * 2 for x in kept_keys) * (_LM_BYTES_PER_KEY / 16) > budget:
        min_count = _raise_min_count(kept_counts, min_count)
        for i in range(len(kept_keys)):
            m = kept_counts[i] >= min_count
            kept_keys[i], kept_counts[i] = kept_keys[i][m], kept_counts[i][m]
    return min_count


# ----------------------------------------------------------------------------- inputs

class Corpus:
    """A re-readable sequence of documents (bytes), from files or from memory.

    ``source`` is a path, a list of paths/globs/folders (``-`` = standard input, which is
    copied to a temporary file so that it can be read several times), or a list of ``bytes``
    documents (encode ``str`` documents first). With ``field`` files are JSON lines and the document is that
    field. With ``sample`` (0 < p < 1) each document is kept with probability p, decided by a
    hash of (seed, document number), so every pass sees the same sample.
    """

    def __init__(self, source, field: str | None = None, normalizer: str = "none"):
        self.field = field
        self.normalizer = normalizer
        self.sample = 1.0
        self.seed = 0
        self.first = 0          # the number of the first document (the sample is drawn by number)
        self._tmp = None
        self.docs = None
        self.paths = None
        if isinstance(source, (str, os.PathLike, bytes, bytearray)):
            source = [source]
        source = list(source)
        if source and all(isinstance(s, (bytes, bytearray, memoryview)) for s in source):
            self.docs = [bytes(s) for s in source]
        elif all(isinstance(s, (str, os.PathLike)) for s in source):
            from .corpus.io import expand_inputs

            self.paths = expand_inputs(source)
            if "-" in self.paths:
                self._spool_stdin()
        else:
            raise TypeError("train(): give paths (str) or documents (bytes), not a mix")

    def _spool_stdin(self):
        from .corpus.io import spool_stdin

        name = spool_stdin()
        self._tmp = name
        self.paths = [name if p == "-" else p for p in self.paths]
        self._names = {name: "-"}

    def close(self):
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def total_bytes_hint(self) -> int | None:
        """Bytes on disk (compressed size for compressed files), for progress bars."""
        if self.docs is not None:
            return sum(len(d) for d in self.docs)
        from .corpus.io import input_size, compression_of

        total = 0
        for p in self.paths:
            n = input_size(p)
            if n is None or compression_of(p):
                return None
            total += n
        return total

    def _raw_documents(self):
        if self.docs is not None:
            yield from self.docs
            return
        from .corpus.io import iter_documents

        try:
            yield from iter_documents(self.paths, field=self.field)
        except InputError as exc:
            if self._tmp is not None and exc.path == self._tmp:
                raise InputError("-", exc.problem, exc.line) from None
            raise

    def documents(self):
        """Yield the documents (normalized, sampled)."""
        form = None if self.normalizer == "none" else self.normalizer.upper()
        if form is not None:
            import unicodedata
        sample, seed = self.sample, self.seed
        threshold = int(sample * (1 << 64)) if sample < 1 else None
        for i, doc in enumerate(self._raw_documents(), self.first):
            if threshold is not None and _doc_hash(seed, i) >= threshold:
                continue
            if form is not None:
                try:
                    doc = unicodedata.normalize(form, doc.decode("utf-8")).encode("utf-8")
                except UnicodeDecodeError:
                    pass
            yield doc

    def batches(self, batch_bytes: int = BATCH_BYTES):
        """Yield ``(buf, doc_ends)``: documents concatenated, and their end offsets."""
        docs, size = [], 0
        for doc in self.documents():
            if not doc:
                continue
            docs.append(doc)
            size += len(doc)
            if size >= batch_bytes:
                yield _pack(docs)
                docs, size = [], 0
        if docs:
            yield _pack(docs)


def _doc_hash(seed: int, i: int) -> int:
    x = (seed * 0x9E3779B97F4A7C15 + i * 0xD1B54A32D192ED03 + 1) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _pack(docs):
    buf = b"".join(docs)
    ends = np.cumsum(np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs)))
    return buf, ends


# ----------------------------------------------------------------------------- results

@dataclass
class TrainStats:
    """What a training run did: seconds per phase, peak RSS, pieces at each stage."""

    phases: dict = field(default_factory=dict)
    peak_rss: int = 0
    documents: int = 0
    bytes: int = 0
    ngrams: int = 0
    count_passes: int = 0
    lm_min_count: int = 0
    lm_pieces: int = 0
    candidates: int = 0          # frequent n-grams kept as candidates for the refinement
    piece_spills: int = 0        # times the piece tables were written to disk (0: all in memory)
    piece_spill_bytes: int = 0
    kept: dict = field(default_factory=dict)
    phase_peak_rss: dict = field(default_factory=dict)   # peak RSS so far at the end of each phase

    def summary(self) -> str:
        from .progress import format_bytes, format_count

        phases = ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items())
        kept = ", ".join(f"{k}: {v}" for k, v in self.kept.items())
        return (f"tokenmill train: {format_count(self.documents)} documents, {format_bytes(self.bytes)}; "
                f"{format_count(self.ngrams)} n-grams kept ({self.count_passes} counting pass"
                f"{'es' if self.count_passes != 1 else ''}), {format_count(self.lm_pieces)} distinct pieces, "
                f"{format_count(self.candidates)} n-gram candidates"
                + (f" ({format_bytes(self.piece_spill_bytes)} of pieces written to disk, "
                   f"{self.piece_spills} times)" if self.piece_spills else "") + "; "
                f"pieces kept per size: {kept}; {phases}; total {sum(self.phases.values()):.1f}s; "
                f"peak RSS {format_bytes(self.peak_rss)}")


# ----------------------------------------------------------------------------- trainer

class Trainer:
    """Train tokenizers: ``Trainer(TrainerSpec(vocab_size=[32000])).train(["corpus.txt"])``.

    :meth:`train` returns one :class:`~tokenmill.Tokenizer` per vocabulary size, in the order
    the sizes were given; :attr:`stats` then describes the run.
    """

    def __init__(self, spec: TrainerSpec | None = None, **options):
        if spec is None:
            spec = TrainerSpec(**options)
        elif options:
            spec = TrainerSpec(**{**spec.to_dict(), **options})
        self.spec = spec
        self.stats = TrainStats()
        self._progress_stream = None

    # ---------------------------------------------------------------- helpers
    @property
    def workers(self) -> int:
        return self.spec.workers or os.cpu_count() or 1

    def _bar(self, label, total_bytes=None, total_items=None, item_name="items"):
        from .progress import Progress

        enabled = None if self.spec.progress else False
        return Progress(label, total_bytes=total_bytes, total_items=total_items, item_name=item_name,
                        enabled=enabled, stream=self._progress_stream)

    def _phase(self, name, started):
        self.stats.phases[name] = self.stats.phases.get(name, 0.0) + time.monotonic() - started
        self.stats.peak_rss = max(self.stats.peak_rss, peak_rss())
        self.stats.phase_peak_rss[name] = self.stats.peak_rss

    # ---------------------------------------------------------------- main
    def train(self, source, field: str | None = None) -> list:
        """Train on ``source``: paths/globs/folders/``-`` (str), or a list of ``bytes`` documents."""
        spec = self.spec
        if spec.engine != "local":
            from .train_job import train_on_engine

            return train_on_engine(self, source, field)
        corpus = Corpus(source, field=field, normalizer=spec.normalizer)
        try:
            if spec.sample_bytes is not None:
                self._set_sample(corpus)
            lm = list(self._count_ngrams(corpus))
            data = self._segment(corpus, lm)      # frees the LM when done with it
            try:
                return self._build_models(data)
            finally:
                data.close()
        finally:
            corpus.close()

    def _set_sample(self, corpus):
        want = parse_size(self.spec.sample_bytes)
        t0 = time.monotonic()
        total = 0
        with self._bar("measure", total_bytes=corpus.total_bytes_hint(), item_name="docs") as bar:
            for doc in corpus.documents():
                total += len(doc)
                bar.update(len(doc), 1)
        if total > want:
            corpus.sample = want / total
            corpus.seed = self.spec.seed
        self._phase("measure", t0)

    # ---------------------------------------------------------------- 1-2: n-gram LM
    def _count_ngrams(self, corpus):
        """Count n-grams exactly in as many passes as the memory budget requires.

        The table has ``SHARDS`` shards, each with an equal share of the budget. A shard that
        would outgrow its share gives up the upper half of its key range (by a hash of the
        key) and a later pass over the input counts those keys, so every key is counted
        completely in exactly one pass: counts are exact, never estimated. If even the kept
        n-grams (count >= min_count) would not fit, min_count is raised until they do
        (reported in the summary as ``lm_min_count``).

        With ``order`` > 7 a second stage counts the n-grams of 8..order bytes, but only those
        whose 7-byte windows were all kept by the first (:func:`tokenmill._ngram.count_long`):
        the same counts for every n-gram that can reach ``min_count``, without storing the
        many that cannot.
        """
        spec = self.spec
        t0 = time.monotonic()
        budget = max(parse_size(spec.memory) - _BASE_MEMORY, 32 << 20)
        self._min_count = spec.min_count
        self._docs = self._nbytes = self._passes = 0
        self._candidates = (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        pool = ThreadPoolExecutor(self.workers)
        try:
            kept_keys, kept_counts = self._count_stage(corpus, pool, budget, min(spec.order, 7), None, [], [])
            if spec.order > 7:
                windows = _ngram.lm_from_counts(kept_keys, kept_counts, length=7)
                kept_keys, kept_counts = self._count_stage(corpus, pool, budget, spec.order, windows,
                                                           kept_keys, kept_counts)
                del windows
        finally:
            pool.shutdown()
        self.stats.documents, self.stats.bytes, self.stats.count_passes = self._docs, self._nbytes, self._passes
        self.stats.lm_min_count = self._min_count
        self._phase("count", t0)

        t0 = time.monotonic()
        self.stats.ngrams = sum(len(k) for k in kept_keys)
        lm = build_lm(kept_keys, kept_counts, self._unigrams, self._positions)   # empties the lists
        self._phase("lm", t0)
        return lm

    def _count_stage(self, corpus, pool, budget, order, windows, kept_keys, kept_counts):
        """One counting stage: n-grams of 2..``order`` bytes (``windows`` is None), or of
        8..``order`` bytes whose 7-byte windows are keys of ``windows``; appended to
        ``kept_keys``/``kept_counts`` (arrays, one per pass), which are returned."""
        spec = self.spec
        T = self.workers
        first_stage = windows is None
        starts = [0] * SHARDS
        npass = 0
        while min(starts) < _ngram.FULL_RANGE:
            npass += 1
            self._passes += 1
            kept_bytes = sum(k.nbytes * 2 for k in kept_keys) + (windows.nbytes if windows is not None else 0)
            limit = max(budget - kept_bytes, 8 << 20)
            table = _ngram.NgramTable(order, SHARDS, limit)
            table.set_starts(starts)
            what = "count n-grams" if first_stage else f"count 8..{order}-grams"
            label = what if npass == 1 else f"{what} (pass {npass})"
            total = corpus.total_bytes_hint() if corpus.sample == 1 else None
            sizer = TableSizer(total) if first_stage and npass == 1 and total and not corpus.field else None
            if first_stage:
                count = lambda buf, ends, part: table.count_bytes(buf, ends, part, T)
            else:
                count = lambda buf, ends, part: _ngram.count_long(table, buf, ends, windows, part, T)
            with self._bar(label, total_bytes=total, item_name="docs") as bar:
                for buf, doc_ends in prefetch(corpus.batches()):
                    ends = _ngram.chunk_ends(buf, doc_ends, spec.split_newlines, spec.isolate_digits, MAX_CHUNK)
                    list(pool.map(lambda part: count(buf, ends, part), range(T)))
                    if first_stage and npass == 1:
                        self._docs += len(doc_ends)
                        self._nbytes += len(buf)
                    bar.update(len(buf), len(doc_ends))
                    if sizer is not None:
                        keys = sizer.estimate(len(buf), len(table))
                        if keys:
                            list(pool.map(lambda part: table.reserve(keys, part, T), range(T)))
            if first_stage and npass == 1:
                self._unigrams = table.unigrams.copy()
                self._positions = table.positions
                if self._positions == 0:
                    raise TokenmillError(f"{_describe(corpus)}: no text to train on (empty corpus)")
            starts = [hi for _, hi in table.ranges()]
            k, c = table.export(self._min_count, free_tables=True)
            del table
            if first_stage and spec.refine:
                # every key is counted completely in one pass: the most frequent of all are
                # the most frequent of each pass's most frequent
                self._candidates = frequent_ngrams(k, c, self._candidate_budget(), spec.ensure_unicode,
                                                   spec.max_piece_length, self._candidates)
                self.stats.candidates = len(self._candidates[0])
            kept_keys.append(k)
            kept_counts.append(c)
            # the kept n-grams must leave room for the table of the next pass and the LM
            self._min_count = fit_kept(kept_keys, kept_counts, self._min_count, budget)
        return kept_keys, kept_counts

    def _candidate_budget(self) -> int:
        """How many frequent n-grams to keep for the refinement: enough for the largest size
        even when most of them are already among the pieces the refinement starts from."""
        spec = self.spec
        return 3 * int(math.ceil(max(spec.vocab_size) * spec.refine_ngrams))

    # ---------------------------------------------------------------- 3: segmentation
    piece_budget = None     # bytes of piece tables before they are spilled (None: from --memory)

    def _piece_budget(self, lm) -> int:
        """What the piece tables may take: half of what the budget leaves beside the LM (the
        other half is for exporting them, which copies their contents)."""
        if self.piece_budget is not None:
            return self.piece_budget
        budget = max(parse_size(self.spec.memory) - _BASE_MEMORY, 32 << 20)
        return max((budget - lm.nbytes) // 2, 8 << 20)

    def _segment(self, corpus, lm_holder):
        """Segment the corpus with the LM; return the distinct pieces and their counts as a
        :class:`~tokenmill.piece_store.PieceData` (order: arbitrary, everything downstream
        sums integers or sorts). When the counting tables outgrow their share of the budget
        they are written to temporary files and emptied."""
        spec = self.spec
        lm, unigram, unigram_log_counts = lm_holder
        t0 = time.monotonic()
        T = self.workers
        limit = self._piece_budget(lm)
        counters = [_spans.PieceCounter() for _ in range(T)]
        data = PieceData(spec.tmp)
        pool = ThreadPoolExecutor(T)
        try:
            with self._bar("segment", total_bytes=self.stats.bytes or None, item_name="docs") as bar:
                for buf, doc_ends in prefetch(corpus.batches()):
                    ends = _ngram.chunk_ends(buf, doc_ends, spec.split_newlines, spec.isolate_digits, MAX_CHUNK)
                    parts = _split_ranges(ends, T)
                    outs = list(pool.map(
                        lambda r: _ngram.lm_segment(lm, unigram, unigram_log_counts, buf, r, spec.order,
                                                    spec.ensure_unicode), parts))
                    piece_ends = np.concatenate([np.zeros(1, np.int64)] + outs)
                    del outs
                    list(pool.map(lambda s: counters[s].add_spans(buf, piece_ends, s, T), range(T)))
                    bar.update(len(buf), len(doc_ends))
                    if sum(c.nbytes for c in counters) > limit:
                        for c in counters:
                            data.spill(*c.export())
                            c.clear()
            del lm, unigram, unigram_log_counts
            lm_holder.clear()
            data.finish(*concat_entries(_exported(counters)))
            del counters
        except BaseException:
            data.close()
            raise
        finally:
            pool.shutdown()
        self.stats.lm_pieces = data.count
        self.stats.piece_spills = data.spills
        self.stats.piece_spill_bytes = data.spilled_bytes
        self._phase("segment", t0)
        return data

    # ---------------------------------------------------------------- 4-5: vocabularies
    def _build_models(self, data):
        from .tokenizer import Tokenizer

        spec = self.spec
        t0 = time.monotonic()
        nspecial = len(spec.special_tokens)
        sizes = sorted(set(spec.vocab_size), reverse=True)
        pruner = Pruner(spec, workers=self.workers)
        results = {}
        with self._bar("prune", item_name="passes") as bar:
            pruner.on_pass = lambda: bar.update(0, 1)
            base = pruner.initial(data)
        self._phase("prune", t0)
        for size in sizes:
            # every size starts from the same pruned vocabulary: a run with several sizes
            # gives exactly the models of separate runs
            t0 = time.monotonic()
            target = size - nspecial
            if spec.refine:
                with self._bar(f"vocab {size}: prune", item_name="passes") as bar:
                    pruner.on_pass = lambda: bar.update(0, 1)
                    start = pruner.shrink(base, int(math.ceil(target * spec.refine_factor)))
                start = with_candidates(start, self._candidates, int(math.ceil(target * spec.refine_ngrams)))
                with self._bar(f"vocab {size}: refine", total_items=refine_rounds(len(start), target),
                               item_name="rounds") as bar:
                    final = refine(start, data, target, spec, workers=self.workers,
                                   on_round=lambda: bar.update(0, 1))
            else:
                with self._bar(f"vocab {size}: prune", item_name="passes") as bar:
                    pruner.on_pass = lambda: bar.update(0, 1)
                    final = pruner.shrink(base, target)
            self._phase(f"vocab {size}", t0)
            results[size] = final
        t0 = time.monotonic()
        normalizer = NormalizerSpec(form=spec.normalizer, split_newlines=spec.split_newlines)
        specials = {tok: i for i, tok in enumerate(spec.special_tokens)}
        models = []
        for size in spec.vocab_size:
            vocab = results[size]
            options = {k: v for k, v in spec.to_dict().items() if k not in RUNTIME_OPTIONS}
            options["vocab_size"] = [size]
            if self.stats.lm_min_count != spec.min_count:
                options["lm_min_count"] = self.stats.lm_min_count
            models.append(Tokenizer.from_pieces(vocab.model_pieces(), special_tokens=specials,
                                                normalizer=normalizer, trainer=options))
            self.stats.kept[size] = len(vocab)
        self._phase("write", t0)
        return models


def _exported(counters):
    """The contents of each piece counter in turn, each emptied once exported."""
    for c in counters:
        out = c.export()
        c.clear()
        yield out


def _describe(corpus) -> str:
    if corpus.paths:
        return corpus.paths[0] if len(corpus.paths) == 1 else f"{corpus.paths[0]} (and {len(corpus.paths) - 1} more)"
    return "<documents>"


def _split_ranges(ends, parts):
    """Cut chunk ends into ``parts`` contiguous ranges, each given with its start offset first."""
    n = len(ends)
    bounds = [n * i // parts for i in range(parts + 1)]
    out = []
    for i in range(parts):
        a, b = bounds[i], bounds[i + 1]
        start = 0 if a == 0 else ends[a - 1]
        out.append(np.concatenate([np.array([start], np.int64), ends[a:b]]))
    return out


def build_lm(keys, counts, unigrams, positions):
    """The byte n-gram LM: ``(KeyMap of log c(x1..xn) for n >= 2, unigram log-probs, unigram
    log counts)`` from the kept n-grams (lists of arrays, emptied as the map fills); :func:`tokenmill._ngram.lm_segment` scores byte xn after x1..xn-1 by
    ``log c(x1..xn) - log c(x1..xn-1)``.

    Every byte is given count 1 if it was never seen (BytePiece's fill), which also adds to the
    number of positions.
    """
    uni = unigrams.astype(np.float64)
    missing = uni == 0
    uni[missing] = 1
    total = float(positions + int(missing.sum()))
    uni_log = np.log(uni)
    return _ngram.lm_from_counts(keys, counts), uni_log - math.log(total), uni_log


def frequent_ngrams(keys, counts, n, whole_chars=True, max_length=7, previous=None):
    """The ``n`` most frequent n-grams among packed ``keys`` (2 to 7 bytes, with ``counts``)
    and the ``previous`` result, as ``(keys, counts)`` arrays, most frequent first, ties by
    bytes (packed keys sort as their bytes do). With ``whole_chars`` only n-grams that are
    valid UTF-8 are kept; none longer than ``max_length``.

    >>> k = np.array([_ngram.pack(b) for b in (b"ab", b"b\\xe4", b"ba", b"c")], np.uint64)
    >>> got = frequent_ngrams(k, np.array([5, 9, 5, 7], np.uint64), 2)
    >>> _ngram.unpack_many(got[0]), got[1].tolist()
    ([b'ab', b'ba'], [5, 5])
    """
    if previous is None:
        previous = (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    if n <= 0:
        return previous
    keys = np.asarray(keys, dtype=np.uint64)
    counts = np.asarray(counts, dtype=np.uint64)
    lengths = keys & np.uint64(0xFF)
    usable = np.flatnonzero((lengths >= 2) & (lengths <= min(max_length, 7)))
    keys, counts = keys[usable], counts[usable]
    found_k, found_c = [], []
    want, done = n, 0            # ``done``: how many of the best (all ties included) were looked at
    while len(found_k) < n and done < len(keys):
        want *= 2
        if want >= len(keys):
            best = np.arange(len(keys))
        else:   # every key as frequent as the want-th most frequent, ties included: deterministic
            cut = np.partition(counts, len(counts) - want)[len(counts) - want]
            best = np.flatnonzero(counts >= cut)
        best = best[np.lexsort((keys[best], -counts[best].astype(np.int64)))][done:]
        done += len(best)
        for key, count, piece in zip(keys[best].tolist(), counts[best].tolist(), _ngram.unpack_many(keys[best])):
            if whole_chars:
                try:
                    piece.decode("utf-8")
                except UnicodeDecodeError:
                    continue
            found_k.append(key)
            found_c.append(count)
            if len(found_k) == n:
                break
    all_k = np.concatenate([previous[0], np.array(found_k, np.uint64)])
    all_c = np.concatenate([previous[1], np.array(found_c, np.uint64)])
    order = np.lexsort((all_k, -all_c.astype(np.int64)))[:n]
    return all_k[order], all_c[order]


def with_candidates(vocab, candidates, n):
    """``vocab`` plus the first ``n`` n-grams of ``candidates`` (``(keys, counts)`` from
    :func:`frequent_ngrams`) that it lacks, each counted as often as it occurs."""
    keys, counts = candidates
    if n <= 0 or len(keys) == 0:
        return vocab
    have = set(vocab.pieces)
    extra = []
    for piece, count in zip(_ngram.unpack_many(keys), counts.tolist()):
        if piece not in have:
            extra.append((piece, float(count)))
            if len(extra) == n:
                break
    merged = sorted(list(zip(vocab.pieces, vocab.counts.tolist())) + extra)
    return Vocab([p for p, _ in merged], np.array([c for _, c in merged], dtype=np.float64))


# ----------------------------------------------------------------------------- pruning

class Vocab:
    """A vocabulary under construction: pieces (bytes, sorted) and their counts (float64)."""

    def __init__(self, pieces, counts, scores=None):
        self.pieces = pieces
        self.counts = np.asarray(counts, dtype=np.float64)
        self.scores = scores  # log-probabilities when refined, else derived from counts

    def __len__(self):
        return len(self.pieces)

    def log_probs(self):
        if self.scores is not None:
            return self.scores
        return np.log(self.counts) - math.log(self.counts.sum())

    def model_pieces(self):
        """``(bytes, score)`` in id order: the 256 bytes first (by value), then by score, then bytes."""
        scores = self.log_probs()
        singles = sorted((p, float(s)) for p, s in zip(self.pieces, scores) if len(p) == 1)
        rest = sorted(((p, float(s)) for p, s in zip(self.pieces, scores) if len(p) > 1),
                      key=lambda t: (-t[1], t[0]))
        return singles + rest


def _strings(pieces):
    buf = b"".join(pieces)
    ends = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=ends[1:])
    return buf, ends


class Pruner:
    """BytePiece's pruning: keep frequent pieces, re-split the rest, drop wasted pieces."""

    def __init__(self, spec: TrainerSpec, workers: int = 1):
        self.spec = spec
        self.workers = workers

    on_pass = staticmethod(lambda: None)   # called after every segmentation pass (progress)

    def split_into(self, keep_pieces, keep_counts, batches):
        """Counts of the kept pieces after adding ``weights[k]`` to the pieces of the best
        segmentation (by the kept pieces, scores log(count/total)) of each string k of every
        ``(buf, ends, weights)`` of ``batches``."""
        out = np.asarray(keep_counts, dtype=np.int64).copy()
        lat = scores = None
        added = np.zeros(len(out), dtype=np.int64)
        for buf, ends, weights in batches:
            if len(ends) < 2:
                continue
            if lat is None:
                lat = _lattice.Lattice(keep_pieces)
                scores = np.log(out.astype(np.float64)) - math.log(float(out.sum()))
            added += _viterbi_freq(lat, scores, buf, ends, weights, len(keep_pieces), self.workers)
        if lat is not None:
            self.on_pass()
        return out + added

    def remove_wasted(self, pieces, counts):
        """Re-segment every piece with the vocabulary itself until no piece disappears."""
        counts = np.asarray(counts, dtype=np.int64)
        for _ in range(1000):
            buf, ends = _strings(pieces)
            lat = _lattice.Lattice(pieces)
            scores = np.log(counts.astype(np.float64)) - math.log(float(counts.sum()))
            new = _viterbi_freq(lat, scores, buf, ends, counts, len(pieces), self.workers)
            self.on_pass()
            alive = new > 0
            if alive.all():
                return pieces, new
            pieces = [p for p, a in zip(pieces, alive) if a]
            counts = new[alive]
        return pieces, counts

    def _kept(self, ends, counts):
        lengths = np.diff(ends)
        return (lengths == 1) | ((lengths <= self.spec.max_piece_length) & (counts >= self.spec.min_count))

    def initial(self, data: PieceData) -> Vocab:
        """Keep bytes and pieces with count >= min_count and length <= max_piece_length,
        re-split the others, remove wasted pieces. ``data``: the pieces the LM found."""
        kept = {}
        for buf, ends, counts in data.batches():
            for i in np.flatnonzero(self._kept(ends, counts)).tolist():
                kept[buf[ends[i]:ends[i + 1]]] = int(counts[i])
        for b in range(256):
            kept.setdefault(bytes([b]), 1)     # every byte is a piece (count 1 if never seen)
        kp = sorted(kept)
        kc = np.array([kept[p] for p in kp], dtype=np.int64)
        del kept
        dropped = ((buf, ends, np.where(self._kept(ends, counts), 0, counts).astype(np.int64))
                   for buf, ends, counts in data.batches())
        kc = self.split_into(kp, kc, dropped)
        kp, kc = self.remove_wasted(kp, kc)
        return Vocab(kp, kc)

    def shrink(self, vocab: Vocab, size: int) -> Vocab:
        """Keep ``size`` pieces: bytes, then by count (desc), longer first, then bytes."""
        if len(vocab) <= size:
            return vocab
        counts = vocab.counts.astype(np.int64)
        order = sorted(range(len(vocab)),
                       key=lambda i: (len(vocab.pieces[i]) > 1, -counts[i], -len(vocab.pieces[i]), vocab.pieces[i]))
        keep_idx = sorted(order[:size], key=lambda i: vocab.pieces[i])
        drop_idx = order[size:]
        kp = [vocab.pieces[i] for i in keep_idx]
        dbuf, dends = _strings([vocab.pieces[i] for i in drop_idx])
        kc = self.split_into(kp, counts[np.asarray(keep_idx)],
                             [(dbuf, dends, counts[np.asarray(drop_idx, dtype=np.int64)])])
        kp, kc = self.remove_wasted(kp, kc)
        return Vocab(kp, kc)


def _blocks(n, workers, min_block=2048):
    k = max(1, min(workers * 4, n // min_block))
    return [(n * i // k, n * (i + 1) // k) for i in range(k)]


# ----------------------------------------------------------------------------- refinement

def _parallel_expected_counts(lat, scores, buf, ends, weights, npieces, workers):
    """Forward-backward expected counts over all strings, in fixed point (int64: divide by
    ``_lattice.FIXED``), and the log-likelihood."""
    blocks = _blocks(len(ends) - 1, workers)
    partial = [np.zeros(npieces, dtype=np.int64) for _ in blocks]
    logliks = [0.0] * len(blocks)

    def run(i):
        a, b = blocks[i]
        logliks[i] = lat.expected_counts(scores, buf, ends[a:b + 1], weights[a:b], partial[i])

    if len(blocks) == 1:
        run(0)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, range(len(blocks))))
    total = partial[0]
    for p in partial[1:]:
        total += p
    return total, logliks


def _viterbi_freq(lat, scores, buf, ends, weights, npieces, workers):
    """Integer counts of each piece in the best segmentations of the strings (threads)."""
    out = np.zeros(npieces, dtype=np.int64)
    blocks = _blocks(len(ends) - 1, workers)
    if len(blocks) == 1:
        lat.viterbi_counts(scores, buf, ends, weights, out)
        return out
    partial = [np.zeros(npieces, dtype=np.int64) for _ in blocks]

    def run(i):
        a, b = blocks[i]
        lat.viterbi_counts(scores, buf, ends[a:b + 1], weights[a:b], partial[i])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(len(blocks))))
    for p in partial:
        out += p
    return out


def refine_rounds(start: int, target: int, shrink: float = 0.75) -> int:
    """How many rounds :func:`refine` makes from ``start`` pieces down to ``target``."""
    rounds, n = 1, start
    while n > target:
        n = max(target, int(n * shrink))
        rounds += 1
    return rounds


def refine(start: Vocab, data, target: int, spec: TrainerSpec, workers: int = 1,
           loss_kind: str | None = None, estimate: str | None = None, shrink: float = 0.75,
           on_round=None) -> Vocab:
    """Re-estimate scores on the corpus and prune by the cost of removing each piece, down to ``target``.

    ``data`` (a :class:`~tokenmill.piece_store.PieceData`): the distinct pieces found by the
    n-gram LM and how often.
    Each round re-estimates the probabilities ``refine_iterations`` times (``estimate="em"``:
    expected counts by forward-backward; ``"viterbi"``: counts in the best segmentations),
    then, while above ``target``, drops the pieces (never single bytes) whose removal costs
    least, shrinking by at most ``1 - shrink`` per round. The cost of piece w with Viterbi
    frequency f and best segmentation without it a1..ak: ``"likelihood"``: f * (log p(w) -
    sum log p(ai)) (SentencePiece's criterion); ``"tokens"``: f * (k - 1), the tokens it saves.
    """
    loss_kind = loss_kind or spec.refine_loss
    estimate = estimate or spec.refine_estimate
    pieces = list(start.pieces)
    counts = start.counts.astype(np.float64)
    scores = np.log(counts) - math.log(counts.sum())
    while True:
        lat = _lattice.Lattice(pieces)
        for _ in range(spec.refine_iterations):
            # Viterbi frequencies of the current scores: the re-estimate (hard EM) and the
            # usage counts the pruning cost needs, from one pass
            freq = np.zeros(len(pieces), dtype=np.int64)
            fixed = np.zeros(len(pieces), dtype=np.int64)
            for buf, ends, weights in data.batches():
                freq += _viterbi_freq(lat, scores, buf, ends, weights, len(pieces), workers)
                if estimate == "em":
                    fixed += _parallel_expected_counts(lat, scores, buf, ends, weights, len(pieces), workers)[0]
            freq = freq.astype(np.float64)
            expected = fixed.astype(np.float64) / _lattice.FIXED if estimate == "em" else freq
            expected = np.maximum(expected, 0.5)   # keep every piece reachable (bytes included)
            scores = np.log(expected) - math.log(expected.sum())
        if on_round is not None:
            on_round()
        if len(pieces) <= target:
            break
        size = max(target, int(len(pieces) * shrink))
        pbuf, pends = _strings(pieces)
        ids = np.arange(len(pieces), dtype=np.int32)
        alt_ids, alt_starts = lat.split(scores, pbuf, pends, ids)
        nalt = np.diff(alt_starts)
        single = np.fromiter((len(p) == 1 for p in pieces), dtype=bool, count=len(pieces))
        if loss_kind == "likelihood":
            alt_sum = np.add.reduceat(np.append(scores[alt_ids], 0.0), alt_starts[:-1])
            loss = np.where(nalt > 0, freq * (scores - alt_sum), 0.0)
        else:
            loss = freq * (nalt - 1)
        loss[single] = np.inf
        # keep the `size` largest losses; ties: higher score, then bytes (deterministic)
        order = sorted(range(len(pieces)), key=lambda i: (-loss[i], -scores[i], pieces[i]))
        keep = sorted(order[:size], key=pieces.__getitem__)
        pieces = [pieces[i] for i in keep]
        scores = scores[np.asarray(keep)]
        scores = scores - np.log(np.exp(scores).sum())
    return Vocab(pieces, np.exp(scores) * data.total, scores=scores)
