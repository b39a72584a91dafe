"""Exact, parallel, memory-bounded n-gram counting: ``tokenmill count`` / :func:`count_ngrams`.

The input is read in batches of whole lines. Each batch is cut into one part per thread at
line boundaries; every thread turns its part into units (bytes, characters or words, in
compiled code) and files the n-grams under the thread that owns their hash shard
(:meth:`tokenmill._spans.SpanCounter.collect`); then every thread adds the n-grams filed
under it to its own tables (:meth:`~tokenmill._spans.SpanCounter.add`). This is the
batch-then-merge pattern of ALGORITHMS.md §3 with the merge itself split by hash, so both
steps run on all cores without locks.

Memory: the tables get what ``memory`` leaves after a fixed allowance for the interpreter and
the batch in flight. When they would need more, they give up part of the hash range and the
n-grams of that part are counted by a further pass over the input. Every n-gram is therefore
counted completely in one pass: counts are exact, ``min_count`` only filters what is written.

The same :class:`PassCounter` drives the new-word discovery (:mod:`tokenmill.discovery`).
"""
from __future__ import annotations

import heapq
import math
import os
import re
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import _spans
from .corpus.io import (compression_of, expand_inputs, input_size, iter_documents, open_input, prefetch,
                        spool_stdin, temp_name, write_all)
from .errors import InputError, TokenmillError
from .memory import peak_rss
from .spec import CountSpec, parse_size

SHARDS = 64                   # hash tables (fixed: the pass structure never depends on threads)
RECORDS_PER_BATCH = 1 << 20   # n-gram occurrences per batch (16 bytes each while in flight)
PARTS_PER_THREAD = 4          # a batch is cut into this many parts per thread (see PassCounter.run)
BASE_MEMORY = 96 << 20        # interpreter, numpy, batches and records in flight
WORD_SEP = 0xFF               # joins words split by --split/--jieba (never in UTF-8 text)


# ------------------------------------------------------------------------------- input

class TextSource:
    """Re-readable input: ``(buf, lines)`` batches of whole lines (``buf`` holds the lines
    separated by ``\\n``). Standard input is copied to a temporary file on the first pass."""

    def __init__(self, inputs, field: str | None = None):
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        self.paths = expand_inputs(inputs)
        self.field = field
        self._tmp = None
        if "-" in self.paths:
            self._tmp = spool_stdin()
            self.paths = [self._tmp if p == "-" else p for p in self.paths]

    def close(self):
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def name(self, path):
        return "-" if path == self._tmp else path

    def total_bytes(self) -> int | None:
        total = 0
        for p in self.paths:
            n = input_size(p)
            if n is None or compression_of(p) or self.field:
                return None
            total += n
        return total

    def batches(self, batch_bytes: int):
        """Yield ``(buf, lines)``; ``buf`` ends at a line end (no final newline)."""
        if self.field is not None:
            docs, size = [], 0
            try:
                for doc in iter_documents(self.paths, field=self.field):
                    docs.append(doc)
                    size += len(doc) + 1
                    if size >= batch_bytes:
                        yield b"\n".join(docs), len(docs)
                        docs, size = [], 0
            except InputError as exc:
                raise InputError(self.name(exc.path), exc.problem, exc.line) from None
            if docs:
                yield b"\n".join(docs), len(docs)
            return
        for path in self.paths:
            f = open_input(path)
            try:
                yield from line_blocks(f, batch_bytes)
            except (OSError, EOFError, ValueError) as exc:
                raise InputError(self.name(path), f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
            except Exception as exc:
                if type(exc).__module__.startswith(("zstd", "zstandard", "lzma", "gzip", "zlib")):
                    raise InputError(self.name(path), f"cannot read: {exc}") from None
                raise
            finally:
                f.close()


def line_blocks(f, batch_bytes: int, limit: int | None = None):
    """``(buf, lines)`` batches of the whole lines read from ``f`` (at most ``limit`` bytes of
    it): ``buf`` holds about ``batch_bytes``, its lines separated by ``\\n`` (no final one)."""
    carry = b""
    left = limit
    while left is None or left > 0:
        block = f.read(batch_bytes if left is None else min(batch_bytes, left))
        if not block:
            break
        if left is not None:
            left -= len(block)
        block = carry + block if carry else block
        cut = block.rfind(b"\n")
        if cut < 0:
            carry = block
            continue
        carry = block[cut + 1:]
        yield block[:cut], block.count(b"\n", 0, cut) + 1
    if carry:
        yield carry, 1


def split_lines(buf: bytes, parts: int) -> list[memoryview]:
    """``buf`` cut into at most ``parts`` pieces of about equal size, at line ends."""
    view = memoryview(buf)
    out, start, n = [], 0, len(buf)
    for k in range(1, parts):
        target = n * k // parts
        if target <= start:
            continue
        cut = buf.find(b"\n", target)
        if cut < 0:
            break
        out.append(view[start:cut])
        start = cut + 1
    out.append(view[start:])
    return out


# ------------------------------------------------------------------------------- units

class WordSplitter:
    """Words of a line, as a caller of ``--split REGEX`` or ``--jieba`` expects them."""

    def __init__(self, regex: str | None = None, use_jieba: bool = False):
        self.regex = re.compile(regex) if regex is not None else None
        self.jieba = _load_jieba() if use_jieba else None

    def words(self, text: str) -> list[str]:
        if self.jieba is not None:
            parts = self.jieba.lcut(text)
        else:
            parts = self.regex.split(text)
        return [w for w in parts if w and not w.isspace()]

    def units(self, part, ws=None):
        """``(buf, (ustart, uend, seg_ends))``: the words of each line joined by byte 0xFF."""
        lines = bytes(part).split(b"\n")
        sep = bytes([WORD_SEP])
        buf = b"\n".join(sep.join(w.encode("utf-8") for w in self.words(line.decode("utf-8", "replace")))
                         for line in lines)
        return buf, _spans.split_units(buf, WORD_SEP, ws)


def _load_jieba():
    try:
        import jieba
    except ImportError:
        raise TokenmillError("--jieba needs the jieba package: pip install jieba "
                             "(or pip install \"tokenmill[jieba]\")") from None
    import logging

    jieba.setLogLevel(logging.WARNING)
    cache = os.path.join(os.path.expanduser(os.environ.get("XDG_CACHE_HOME", "~/.cache")), "tokenmill")
    try:
        os.makedirs(cache, exist_ok=True)
        jieba.dt.tmp_dir = cache      # its dictionary cache, instead of a file in /tmp
    except OSError:
        pass
    return jieba


def unit_function(unit: str, split: str | None = None, use_jieba: bool = False):
    """``(part, workspace) -> (buf, (ustart, uend, seg_ends))`` for the given unit, and
    ``space_byte``, the byte written as a space in the output (-1: none). The workspace is a
    :class:`tokenmill._spans.UnitBuffer` reused from batch to batch (or None)."""
    if unit == "byte":
        return (lambda part, ws=None: (part, _spans.byte_units(part, ws))), -1
    if unit == "char":
        return (lambda part, ws=None: (part, _spans.char_units(part, False, ws))), -1
    if unit != "word":
        raise TokenmillError(f"unknown unit {unit!r}")
    if split is None and not use_jieba:
        def words(part, ws=None):
            buf = _spans.squeeze_spaces(part)
            return buf, _spans.split_units(buf, 32, ws)
        return words, -1
    splitter = WordSplitter(split, use_jieba)
    return splitter.units, WORD_SEP


# ----------------------------------------------------------------- files of counted strings

ENTRIES_PER_BLOCK = 1 << 16


def write_entries(path: str, blob, offs, counts, order, lo: int, hi: int) -> None:
    """Append entries ``order[lo:hi]`` (string ``blob[offs[k]:offs[k+1]]`` with ``counts[k]``)
    to ``path``, in blocks of: ``<qq`` (entries, bytes), lengths (int64), counts (int64), the
    strings. Read back by :func:`read_entries`."""
    with open(path, "ab") as f:
        for a in range(lo, hi, ENTRIES_PER_BLOCK):
            b = min(a + ENTRIES_PER_BLOCK, hi)
            strings, lens = _spans.gather(blob, offs, order, a, b)
            f.write(struct.pack("<qq", b - a, len(strings)))
            f.write(lens.tobytes())
            f.write(np.asarray(counts)[order[a:b]].astype(np.int64).tobytes())
            f.write(strings)


def read_entries(path: str):
    """Yield ``(blob, offs, counts)`` blocks of a file written by :func:`write_entries`."""
    with open(path, "rb") as f:
        while True:
            head = f.read(16)
            if not head:
                return
            m, size = struct.unpack("<qq", head)
            lens = np.frombuffer(f.read(8 * m), dtype=np.int64)
            counts = np.frombuffer(f.read(8 * m), dtype=np.int64)
            blob = np.frombuffer(f.read(size), dtype=np.uint8)
            offs = np.zeros(m + 1, dtype=np.int64)
            np.cumsum(lens, out=offs[1:])
            yield blob, offs, counts


def concat_entries(chunks):
    """``(blob, offs, counts)``: batches of that layout (string k of a batch is
    ``blob[offs[k]:offs[k+1]]``; ``blob`` bytes or uint8 array) joined into one, ``blob`` as
    ``bytes``. The batches are taken one at a time (a generator may free each source)."""
    blobs, ends, counts, pos = [], [np.zeros(1, dtype=np.int64)], [], 0
    for blob, offs, c in chunks:
        blobs.append(blob)
        ends.append(np.asarray(offs[1:], dtype=np.int64) + pos)
        counts.append(np.asarray(c, dtype=np.int64))
        pos += len(blob)
    return b"".join(blobs), np.concatenate(ends), (np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64))


# ------------------------------------------------------------------------------ passes

@dataclass
class Run:
    """Sorted results of one pass: strings ``blob[offs[k]:offs[k+1]]`` with ``counts[k]``, in
    the order ``order`` (count descending, then bytes)."""

    blob: np.ndarray              # uint8
    offs: np.ndarray
    counts: np.ndarray
    order: np.ndarray

    @property
    def nbytes(self) -> int:
        return len(self.blob) + self.offs.nbytes + self.counts.nbytes + self.order.nbytes

    def __len__(self):
        return len(self.order)

    def entries(self):
        b, o, c = self.blob, self.offs, self.counts
        for k in self.order.tolist():
            yield int(c[k]), bytes(b[o[k]:o[k + 1]])

    def spill(self, folder: str) -> "SpilledRun":
        """Write the run, in order, to a temporary file in ``folder``; free the memory."""
        path = os.path.join(folder, temp_name("count-run"))
        n = len(self.order)
        write_entries(path, self.blob, self.offs, self.counts, self.order, 0, n)
        self.blob = np.zeros(0, dtype=np.uint8)
        self.offs = self.counts = self.order = np.zeros(0, dtype=np.int64)
        return SpilledRun(path, n)


@dataclass
class SpilledRun:
    """A :class:`Run` written to disk by :meth:`Run.spill`; read back in chunks."""

    path: str
    n: int
    nbytes: int = 0

    def __len__(self):
        return self.n

    def entries(self):
        for blob, offs, counts in read_entries(self.path):
            strings = blob.tobytes()
            ends = offs.tolist()
            for k, c in enumerate(counts.tolist()):
                yield c, strings[ends[k]:ends[k + 1]]

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass


@dataclass
class PassStats:
    passes: int = 0
    bytes: int = 0
    lines: int = 0
    units: int = 0
    distinct: int = 0
    seconds: float = 0.0
    sort_seconds: float = 0.0      # export and sort of the counts (part of ``seconds``)
    reserved: int = 0              # keys the tables were pre-sized for (0: not pre-sized)


class TableSizer:
    """Predicts, early in the first pass, how many distinct n-grams the whole input has, so
    that the tables grow once to about their final size instead of by half again and again
    (each growth re-inserts every entry into fresh memory: a third to a half of the adding
    time on zh.train).

    Distinct n-grams grow with the text read like ``bytes ** beta`` (Heaps' law), with
    ``beta`` measured between two points early in the input (the first after 2.5 % of it,
    the second at twice as many bytes). ``beta`` falls as the text grows, so the
    extrapolation overshoots (by 16-23 % on zh.train); the estimate is 85 % of it, and the
    tables still grow as usual if it falls short. Inputs of unknown size (compressed, JSON
    lines, stdin) are not pre-sized.
    """

    def __init__(self, total: int):
        self.total = total
        self.seen = 0
        self.first = None       # (bytes, distinct) at the first point
        self.done = False

    def estimate(self, nbytes: int, distinct: int) -> int:
        """After a batch of ``nbytes``, with ``distinct`` keys so far: 0 (not yet, or not at
        all), or, once, the number of keys to make room for."""
        self.seen += nbytes
        if self.done:
            return 0
        if self.first is None:
            if self.seen >= self.total // 40:
                self.first = (self.seen, distinct)
            return 0
        b0, d0 = self.first
        if self.seen < 2 * b0:
            return 0
        self.done = True
        if self.seen * 2 > self.total or d0 == 0 or distinct <= d0:
            return 0        # too late to help, or nothing to go by
        beta = min(1.0, max(0.3, math.log(distinct / d0) / math.log(self.seen / b0)))
        return int(0.85 * distinct * (self.total / self.seen) ** beta)


class PassCounter:
    """Counts the n-grams of ``order`` units made by ``units`` over a :class:`TextSource` in
    as many passes as ``memory`` requires, on ``workers`` threads."""

    def __init__(self, source: TextSource, units, order: int, *, memory: str | int = "2G",
                 workers: int = 0, progress: bool = True, label: str = "count",
                 min_order: int = 1, batch_bytes: int | None = None, table_budget: int | None = None,
                 tmp_dir: str | None = None):
        self.source = source
        self.units = units
        self.order = order
        self.min_order = min_order
        self.budget = max(parse_size(memory) - BASE_MEMORY, 8 << 20)
        self.workers = workers or os.cpu_count() or 1
        self.progress = progress
        self.label = label
        self.batch_bytes = batch_bytes or max(64 << 10, min(4 << 20, 2 * RECORDS_PER_BATCH // max(order, 1)))
        self.table_budget = table_budget      # fixed table size (tests force several passes)
        self.tmp_dir = tmp_dir or tempfile.gettempdir()
        self.stats = PassStats()
        self.last_pass = False
        self._pool = None

    def run(self, min_count: int = 1, top: int | None = None) -> list:
        """Count; return the sorted results of each pass (entries with count >= ``min_count``,
        at most ``top`` per pass): :class:`Run` objects, or :class:`SpilledRun` files (in
        ``tmp_dir``) when keeping them would take more than a quarter of the budget. Call
        :func:`remove_runs` when done."""
        runs: list = []
        for blob, offs, counts in self.passes(min_count, kept=lambda: sum(r.nbytes for r in runs)):
            t_sort = time.monotonic()
            order = sort_entries(blob, offs, counts, self.workers, self._pool)
            self.stats.sort_seconds += time.monotonic() - t_sort
            if top is not None and len(order) > top:
                order = order[:top].copy()
            runs.append(Run(blob, offs, counts, order))
            if sum(r.nbytes for r in runs) > self.budget // 4 and not self.last_pass:
                runs = [r.spill(self.tmp_dir) if isinstance(r, Run) else r for r in runs]
        return runs

    def passes(self, min_count: int = 1, kept=lambda: 0):
        """Count, and yield ``(blob, offs, counts)`` after each pass: the strings with count >=
        ``min_count`` of the hash range that pass counted, unsorted (string k is
        ``blob[offs[k]:offs[k+1]]``). ``kept()`` tells how much memory the caller holds on to
        between passes (taken from the next pass's tables); ``self.last_pass`` is true while
        the last one is handled."""
        from .progress import Progress

        t0 = time.monotonic()
        T = self.workers
        starts = [0] * SHARDS
        total = self.source.total_bytes()
        self.last_pass = False
        # Each batch is cut into PARTS_PER_THREAD parts per thread, claimed by the threads as
        # they go: the work per byte varies (an ASCII byte is a character, a Chinese character
        # takes three), so one equal-sized part per thread would leave one of them waiting.
        # Per part, reused from batch to batch: unit arrays and n-gram records.
        P = T * PARTS_PER_THREAD if T > 1 else 1
        spaces = [_spans.UnitBuffer() for _ in range(P)]
        records = [_spans.Records(SHARDS) for _ in range(P)]
        with ThreadPoolExecutor(T) as pool:
            self._pool = pool
            while min(starts) < _spans.FULL_RANGE:
                self.stats.passes += 1
                passes = self.stats.passes
                # the tables are emptied while they are exported; their export and its sort
                # take about as much again
                table_budget = self.table_budget or max((self.budget - kept()) * 8 // 10, 4 << 20)
                table = _spans.SpanCounter(SHARDS, table_budget)
                table.set_starts(starts)
                label = self.label if passes == 1 else f"{self.label} (pass {passes})"
                sizer = TableSizer(total) if passes == 1 and total and not self.table_budget else None
                with Progress(label, total_bytes=total, item_name="lines", enabled=None if self.progress else False) as bar:
                    for buf, lines in prefetch(self.source.batches(self.batch_bytes)):
                        parts = split_lines(buf, P)

                        def collect(k):
                            b, (us, ue, se) = self.units(parts[k], spaces[k])
                            return table.collect(b, us, ue, se, self.order, 0, len(se), self.min_order,
                                                 records[k]), len(us)

                        got = list(pool.map(collect, range(len(parts))))
                        used = records[:len(parts)]
                        list(pool.map(lambda p: table.add(used, p, T), range(T)))
                        if passes == 1:
                            self.stats.bytes += len(buf) + 1
                            self.stats.lines += lines
                            self.stats.units += sum(n for _, n in got)
                        del got, used
                        for r in records:
                            r.clear()
                        bar.update(len(buf) + 1, lines)
                        if sizer is not None:
                            keys = sizer.estimate(len(buf) + 1, len(table))
                            if keys:
                                list(pool.map(lambda p: table.reserve(keys, p, T), range(T)))
                                self.stats.reserved = keys
                starts = [hi for _, hi in table.ranges()]
                self.last_pass = min(starts) >= _spans.FULL_RANGE
                self.stats.distinct += len(table)
                t_sort = time.monotonic()
                export = table.exporter(min_count, free_tables=True)
                list(pool.map(lambda k: export.size_part(k, T), range(T)))
                export.allocate()
                list(pool.map(lambda k: export.copy_part(k, T), range(T)))
                result = export.result()
                del table, export
                self.stats.sort_seconds += time.monotonic() - t_sort
                yield result
                del result
            self._pool = None
        self.stats.seconds = time.monotonic() - t0


def sort_entries(blob, offs, counts, threads: int = 1, pool=None) -> np.ndarray:
    """The order of the entries by count (highest first), then by their bytes."""
    sorter = _spans.EntrySorter(blob, offs, counts, threads)
    if pool is None or threads <= 1:
        for k in range(threads):
            sorter.fill_part(k)
        sorter.partition()
        for k in range(threads):
            sorter.scatter_part(k)
        for k in range(threads):
            sorter.sort_part(k)
    else:
        list(pool.map(sorter.fill_part, range(threads)))
        sorter.partition()
        list(pool.map(sorter.scatter_part, range(threads)))
        list(pool.map(sorter.sort_part, range(threads)))
    return sorter.finish()


def remove_runs(runs) -> None:
    """Delete the files of spilled runs."""
    for r in runs:
        if isinstance(r, SpilledRun):
            r.remove()


def merged(runs: list, top: int | None = None):
    """``(count, bytes)`` of all runs in output order (count descending, then bytes)."""
    if len(runs) == 1:
        it = runs[0].entries()
    else:
        it = heapq.merge(*(r.entries() for r in runs), key=lambda e: (-e[0], e[1]))
    for k, entry in enumerate(it):
        if top is not None and k >= top:
            break
        yield entry


def write_tsv(out, runs: list[Run], top: int | None = None, space_byte: int = -1, chunk: int = 1 << 16,
              workers: int = 1) -> int:
    """Write ``string<TAB>count`` lines; return how many."""
    written = 0
    if len(runs) == 1 and isinstance(runs[0], Run):
        r = runs[0]
        n = len(r) if top is None else min(len(r), top)
        with ThreadPoolExecutor(max(workers, 1)) as pool:
            fmt = lambda lo: _spans.format_tsv(r.blob, r.offs, r.counts, r.order, lo, min(lo + chunk, n), space_byte)
            for lo in range(0, n, chunk * 8):
                for text in pool.map(fmt, range(lo, min(lo + chunk * 8, n), chunk)):
                    write_all(out, text)
        return n
    batch_blob, batch_counts = [], []
    for count, s in merged(runs, top):
        batch_blob.append(s)
        batch_counts.append(count)
        if len(batch_blob) == chunk:
            written += _write_batch(out, batch_blob, batch_counts, space_byte)
            batch_blob, batch_counts = [], []
    if batch_blob:
        written += _write_batch(out, batch_blob, batch_counts, space_byte)
    return written


def _write_batch(out, strings, counts, space_byte):
    offs = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=offs[1:])
    out.write(_spans.format_tsv(b"".join(strings), offs, np.asarray(counts, dtype=np.int64),
                                np.arange(len(strings), dtype=np.int64), 0, len(strings), space_byte))
    return len(strings)


# ------------------------------------------------------------------------------ the job

@dataclass
class CountResult:
    """What :func:`count_ngrams` did. ``items`` holds ``(ngram, count)`` pairs when no output
    file was given (``str`` n-grams for char and word units, ``bytes`` for byte units)."""

    output: str | None
    written: int
    distinct: int
    lines: int
    bytes: int
    passes: int
    seconds: float
    peak_rss: int
    items: list | None = field(default=None, repr=False)


def count_ngrams(inputs, output=None, spec: CountSpec | None = None, **options) -> CountResult:
    """Exact counts of all 1..``order``-grams of the inputs, sorted by count then n-gram.

    ``inputs``: paths, globs, folders or ``-`` (plain, .gz, .xz, .zst; JSON lines with
    ``field``). ``output``: a TSV path (``ngram<TAB>count``; compressed by extension; ``-`` for
    stdout), or None to get the pairs back in ``result.items``. Options: see
    :class:`tokenmill.spec.CountSpec`.

    >>> import tokenmill, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.txt")
    >>> _ = open(path, "w").write("abab\\n")
    >>> tokenmill.count_ngrams([path], order=2, progress=False).items
    [('a', 2), ('ab', 2), ('b', 2), ('ba', 1)]
    """
    if spec is None:
        spec = CountSpec(**options)
    elif options:
        spec = CountSpec(**{**spec.to_dict(), **options})
    units, space_byte = unit_function(spec.unit, spec.split, spec.jieba)
    if spec.engine != "local":
        return _count_on_engine(inputs, output, spec, space_byte)
    tmp_dir = _tmp_dir(output)
    source = TextSource(inputs, spec.field)
    t0 = time.monotonic()
    runs = []
    try:
        counter = PassCounter(source, units, spec.order, memory=spec.memory, workers=spec.workers,
                              progress=spec.progress, label="count", tmp_dir=tmp_dir)
        runs = counter.run(spec.min_count, spec.top)
        written, items = _write_result(output, runs, spec, space_byte, counter.workers)
    finally:
        remove_runs(runs)
        source.close()
    st = counter.stats
    result = CountResult(output=None if output is None else os.fspath(output), written=written,
                         distinct=st.distinct, lines=st.lines, bytes=st.bytes, passes=st.passes,
                         seconds=time.monotonic() - t0, peak_rss=peak_rss(), items=items)
    return result


def _write_result(output, runs, spec: CountSpec, space_byte: int, workers: int):
    """``(written, items)``: the runs merged into ``output``, or into a list when it is None."""
    if output is None:
        items = [(_to_item(s, spec.unit, space_byte), c) for c, s in merged(runs, spec.top)]
        return len(items), items
    from .corpus.io import atomic_output

    with atomic_output(output) as out:
        return write_tsv(out, runs, spec.top, space_byte, workers=workers), None


def _count_on_engine(inputs, output, spec: CountSpec, space_byte: int) -> CountResult:
    """The same count as map and reduce tasks on ``spec.engine`` (see :mod:`tokenmill.count_job`)."""
    from .count_job import run_count
    from .engine import WorkFolder, make_engine, task_inputs

    paths = task_inputs("count", spec.engine, inputs)
    t0 = time.monotonic()
    engine = make_engine(spec.engine, spec.ray_address, spec.workers)
    runs = []
    try:
        with WorkFolder(_tmp_dir(output), "count-job") as work:
            tsv = None
            if output is not None and os.fspath(output) != "-":
                # a map task that counts everything writes the TSV itself (in the work folder,
                # compressed by the output's extension); it is moved into place here
                out = os.path.abspath(os.fspath(output))
                tsv = (work.file("counts-" + os.path.basename(out)), space_byte)
            runs, st = run_count(engine, paths, spec, work.path, spec.progress, tsv=tsv)
            engine.finish_maps()       # Ray disconnects while the counts are written out
            if st["written"] is not None:
                os.replace(tsv[0], out)
                written, items = st["written"], None
            else:
                written, items = _write_result(output, runs, spec, space_byte, os.cpu_count() or 1)
            remove_runs(runs)
    finally:
        engine.close(report=spec.progress)
    return CountResult(output=None if output is None else os.fspath(output), written=written,
                       distinct=st["distinct"], lines=st["lines"], bytes=st["bytes"], passes=st["passes"],
                       seconds=time.monotonic() - t0, peak_rss=peak_rss(), items=items)


def _tmp_dir(output) -> str:
    """Where spilled runs go: the output's folder (else the system's temporary folder), after
    removing what a killed earlier run left there."""
    from .corpus.io import clean_litter

    if output is None or os.fspath(output) == "-":
        folder = tempfile.gettempdir()
    else:
        folder = os.path.dirname(os.path.abspath(os.fspath(output)))
    clean_litter(folder)
    return folder


def _to_item(s: bytes, unit: str, space_byte: int):
    if unit == "byte":
        return s
    if space_byte >= 0:
        s = s.replace(bytes([space_byte]), b" ")
    return s.decode("utf-8", "surrogateescape")
