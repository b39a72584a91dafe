"""Input splits for tasks: a plain file is cut into byte ranges, each owning the lines that
start in it; a compressed file (or one read as JSON lines) is read whole by one task.

Tasks find their own line boundaries (:func:`line_start`), so the driver reads nothing. They
read their part as batches of lines (:class:`ShardSource`) or of documents
(:func:`documents`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError
from .io import compression_of, input_size, iter_documents

SHARD_BYTES = 64 << 20        # a plain file is cut into ranges of at most this size
MIN_SHARD_BYTES = 1 << 20     # ... and at least this size


@dataclass(frozen=True)
class Shard:
    """Lines of ``path`` that start in ``[start, end)`` (``end`` None: the whole file)."""

    path: str
    start: int = 0
    end: int | None = None
    size: int = 0              # bytes, for progress (0: unknown)
    file: int = 0              # the number of ``path`` among the job's inputs


def plan_shards(paths: list[str], field: str | None, parts: int, shard_bytes: int | None = None,
                min_bytes: int | None = None) -> list[Shard]:
    """Cut the inputs into shards: ``parts`` of them in all, or a multiple of ``parts`` when a
    plain file would otherwise give shards of more than ``shard_bytes``; none smaller than
    ``min_bytes``. With ``field`` (JSON lines) every file is one shard."""
    shard_bytes = shard_bytes or SHARD_BYTES
    min_bytes = min_bytes or MIN_SHARD_BYTES
    sizes = {p: input_size(p) for p in paths}
    plain = [p for p in paths if sizes[p] is not None and not compression_of(p) and field is None]
    total = sum(sizes[p] for p in plain)
    parts = max(parts, 1)
    # a multiple of ``parts`` in all, so that the last round of tasks keeps every CPU busy
    rounds = max(1, -(-total // (shard_bytes * parts))) if total else 1
    step = max(min_bytes, -(-total // (rounds * parts)) if total else shard_bytes)
    out = []
    for f, p in enumerate(paths):
        if p not in plain:
            out.append(Shard(p, 0, None, sizes[p] or 0, f))
            continue
        n = max(1, -(-sizes[p] // step))
        for k in range(n):
            a, b = sizes[p] * k // n, sizes[p] * (k + 1) // n
            out.append(Shard(p, a, b, b - a, f))
    return out


def line_start(f, pos: int, size: int) -> int:
    """Offset in the open binary file ``f`` (of ``size`` bytes) of the first line that starts
    at or after ``pos``."""
    if pos <= 0:
        return 0
    if pos >= size:
        return size
    f.seek(pos - 1)
    at = pos - 1
    while True:
        block = f.read(1 << 16)
        if not block:
            return size
        k = block.find(b"\n")
        if k >= 0:
            return at + k + 1
        at += len(block)


def byte_range(f, shard: Shard) -> tuple:
    """``(a, b)``: the bytes of the open file ``f`` that hold ``shard``'s lines."""
    size = os.fstat(f.fileno()).st_size
    a = line_start(f, shard.start, size)
    b = line_start(f, shard.end, size) if shard.end < size else size
    return a, b


class ShardSource:
    """A :class:`tokenmill.counting.TextSource` for one shard: ``(buf, lines)`` batches of its
    whole lines, read by the task itself."""

    def __init__(self, shard: Shard, field: str | None = None):
        self.shard = shard
        self.field = field

    def total_bytes(self):
        """The shard's size for a byte range (lets the counter size its tables early)."""
        return self.shard.size if self.shard.end is not None else None

    def close(self):
        pass

    def batches(self, batch_bytes: int):
        from ..counting import TextSource, line_blocks

        sh = self.shard
        if sh.end is None:
            source = TextSource([sh.path], self.field)
            try:
                yield from source.batches(batch_bytes)
            finally:
                source.close()
            return
        from ..engine import task_progress

        try:
            with open(sh.path, "rb") as f:
                a, b = byte_range(f, sh)
                f.seek(a)
                for buf, lines in line_blocks(f, batch_bytes, b - a):
                    yield buf, lines
                    task_progress(len(buf) + 1)     # the job's bar, when a task reads this
        except OSError as exc:
            raise InputError(sh.path, f"cannot read: {exc.strerror or exc}") from None


def documents(shard: Shard, field: str | None = None, batch_bytes: int = 1 << 19):
    """Batches (lists of ``bytes``) of the documents of ``shard``, as
    :func:`tokenmill.corpus.io.iter_documents` reads them from the whole file: every line
    without its newline, or with ``field`` that field of each JSON line."""
    if field is not None:
        from .shards import _batches

        yield from _batches(iter_documents([shard.path], field), batch_bytes)
        return
    for buf, _ in ShardSource(shard).batches(batch_bytes):
        yield buf.split(b"\n")


def count_documents(task) -> tuple:
    """Task: ``(documents, bytes)`` of ``shard`` (``task`` is ``(shard, field)``)."""
    shard, field = task
    n = size = 0
    for batch in documents(shard, field):
        n += len(batch)
        size += sum(map(len, batch))
    return n, size
