"""Input splits for tasks: a plain file is cut into byte ranges, each owning the lines that
start in it; a compressed file (or one read as JSON lines) is read whole by one task.

Tasks find their own line boundaries (:func:`line_start`), so the driver reads nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from .io import compression_of, input_size

SHARD_BYTES = 64 << 20        # a plain file is cut into ranges of at most this size
MIN_SHARD_BYTES = 1 << 20     # ... and at least this size


@dataclass(frozen=True)
class Shard:
    """Lines of ``path`` that start in ``[start, end)`` (``end`` None: the whole file)."""

    path: str
    start: int = 0
    end: int | None = None
    size: int = 0              # bytes, for progress (0: unknown)


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
    for p in paths:
        if p not in plain:
            out.append(Shard(p, 0, None, sizes[p] or 0))
            continue
        n = max(1, -(-sizes[p] // step))
        for k in range(n):
            a, b = sizes[p] * k // n, sizes[p] * (k + 1) // n
            out.append(Shard(p, a, b, b - a))
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
    import os

    size = os.fstat(f.fileno()).st_size
    a = line_start(f, shard.start, size)
    b = line_start(f, shard.end, size) if shard.end < size else size
    return a, b
