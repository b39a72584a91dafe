"""The distinct pieces that the n-gram model cuts a corpus into (training phase 3), with their
counts: in memory, or, when they outgrow their share of the memory budget, in temporary files.

The later phases read them as batches of ``(buf, ends, counts)``: piece k of a batch is
``buf[ends[k]:ends[k+1]]`` (``buf`` is bytes, ``ends`` and ``counts`` int64 arrays). Every piece
comes exactly once, in some batch. What the phases compute only sums integers over the batches
and sorts, so a model never depends on whether the pieces were spilled, nor on how.

Spilling: :meth:`PieceData.spill` appends the contents of the counting tables (which the
trainer then empties) to ``PARTS`` files, each piece to the file chosen by a hash of its bytes,
so all the partial counts of one piece land in the same file. :meth:`PieceData.finish` then
adds up each file in a table of its own (a part holds about 1/``PARTS`` of the distinct pieces)
and rewrites it with one entry per piece; reading it back is one sequential pass per phase.

Example::

    data = PieceData(tmp_dir="/scratch")
    data.spill(buf1, ends1, counts1)          # tables full: out to disk
    data.finish(buf2, ends2, counts2)         # the rest; merges the parts
    for buf, ends, counts in data.batches():  # each piece once, its count complete
        ...
    data.close()                              # removes the files
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile

import numpy as np

from . import _spans
from .corpus.io import clean_litter, temp_name

PARTS = 64                   # files the spilled pieces are spread over (by a hash of their bytes)
_HEAD = struct.Struct("<qq")  # a chunk: number of pieces, bytes of text; then lengths, counts, text


def sum_pieces(chunks):
    """``(buf, ends, counts)`` (the layout of :meth:`tokenmill._spans.PieceCounter.export`): the
    pieces of ``chunks`` (batches of that layout), each once, with its counts added up.

    The table is sized for every entry up front: chunks hold a table's contents in slot order,
    and adding them in that order to a smaller table of the same hash piles them into a few
    long probe runs (8 us per entry instead of 0.1 on zh.train's pieces)."""
    counter = _spans.PieceCounter(sum(len(c[2]) for c in chunks) + 1)
    for text, ends, counts in chunks:
        counter.add_counted(text, ends, counts)
    return counter.export()


class PieceData:
    """Distinct pieces and their counts (see the module docstring)."""

    def __init__(self, tmp_dir: str | None = None):
        self.tmp_dir = tmp_dir or tempfile.gettempdir()
        self._memory = None       # (buf, ends, counts) when nothing was spilled
        self._folder = None
        self._files: list[str] = []
        self.spills = 0           # times the tables were written out
        self.spilled_bytes = 0    # bytes written to the part files, before merging
        self.count = 0            # distinct pieces (known after finish)
        self.total = 0            # sum of the counts (known after finish)

    @classmethod
    def in_memory(cls, buf, ends, counts) -> "PieceData":
        """Pieces already in memory (``ends`` has one more entry than ``counts``)."""
        data = cls()
        data.finish(buf, ends, counts)
        return data

    @property
    def spilled(self) -> bool:
        return self._folder is not None

    # ---------------------------------------------------------------- writing
    def _open_folder(self) -> None:
        clean_litter(self.tmp_dir)         # what a killed run left there
        folder = os.path.join(self.tmp_dir, temp_name("pieces"))
        os.mkdir(folder, 0o700)
        self._folder = folder
        self._files = [os.path.join(folder, f"part{p:02d}") for p in range(PARTS)]

    def spill(self, buf, ends, counts) -> None:
        """Append pieces (the layout of :meth:`tokenmill._spans.PieceCounter.export`) to the
        part files."""
        if self._folder is None:
            self._open_folder()
        counts = np.asarray(counts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        if len(counts) == 0:
            return
        parts = _spans.span_parts(buf, ends, PARTS)
        order = np.argsort(parts, kind="stable").astype(np.int64)
        bounds = np.searchsorted(parts[order], np.arange(PARTS + 1))
        for p in range(PARTS):
            lo, hi = int(bounds[p]), int(bounds[p + 1])
            if lo < hi:
                text, lengths = _spans.gather(buf, ends, order, lo, hi)
                self._append(self._files[p], text, lengths, counts[order[lo:hi]])
        self.spills += 1

    def _append(self, path: str, text: bytes, lengths, counts) -> None:
        with open(path, "ab") as f:
            f.write(_HEAD.pack(len(lengths), len(text)))
            f.write(np.ascontiguousarray(lengths, dtype="<i8").tobytes())
            f.write(np.ascontiguousarray(counts, dtype="<i8").tobytes())
            f.write(text)
        self.spilled_bytes += _HEAD.size + 16 * len(lengths) + len(text)

    def finish(self, buf, ends, counts) -> None:
        """The last pieces. Without an earlier :meth:`spill` they simply stay in memory;
        otherwise they are spilled too and every part is added up and rewritten."""
        counts = np.asarray(counts, dtype=np.int64)
        if self._folder is None:
            self._memory = (bytes(buf), np.asarray(ends, dtype=np.int64), counts)
            self.count = len(counts)
            self.total = int(counts.sum())
            return
        self.spill(buf, ends, counts)
        for path in self._files:
            if not os.path.exists(path):
                continue
            text, part_ends, part_counts = sum_pieces(list(_read_chunks(path)))
            os.unlink(path)
            self._append(path, bytes(text), np.diff(part_ends), part_counts)
            self.count += len(part_counts)
            self.total += int(part_counts.sum())

    # ---------------------------------------------------------------- reading
    def batches(self):
        """``(buf, ends, counts)`` batches holding every piece once."""
        if self._memory is not None:
            yield self._memory
            return
        for path in self._files:
            if os.path.exists(path):
                yield from _read_chunks(path)

    def close(self) -> None:
        """Forget the pieces and remove the files."""
        self._memory = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __len__(self):
        return self.count


def _read_chunks(path: str):
    with open(path, "rb") as f:
        while True:
            head = f.read(_HEAD.size)
            if not head:
                return
            n, size = _HEAD.unpack(head)
            lengths = np.frombuffer(f.read(8 * n), dtype="<i8")
            counts = np.frombuffer(f.read(8 * n), dtype="<i8").astype(np.int64)
            text = f.read(size)
            if len(text) != size or len(counts) != n:
                raise OSError(f"{path}: temporary piece file is shorter than written")
            ends = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lengths, out=ends[1:])
            yield text, ends, counts
