"""``tokenmill shuffle`` as tasks on an engine (``--engine ray``; see :mod:`tokenmill.engine`).

The local shuffle sends the line that starts at byte ``o`` of input ``f`` to bucket
``mix64(file_key(key, f) + (o + 1) * GAMMA) % K`` and shuffles each bucket with a key of its own
(see ``shuffle_reference``). A line's bucket depends on where it starts only, so the same
steps run as tasks without a pass to count lines first:

1. *Scatter*, one task per input shard (:mod:`tokenmill.corpus.splits`): its lines into K
   bucket files of its own.
2. *Shuffle*, one task per bucket: the bucket's files of every shard, in shard order, are the
   local run's bucket file line for line; the task shuffles it in memory with the bucket's key
   (or, when it outgrows the budget, scatters it again, as a local run does) and writes it out.
   As each bucket task ends, the driver removes the files it read (a local run removes a
   bucket file once loaded), so their space and page cache take the next buckets' output.
3. Into one plain output, each bucket task writes in place, at the offset the bucket sizes
   give (the driver made the file at its final size and renames it when all are done); into
   shards or a compressed output, the driver writes the shuffled buckets in order.

The plan (K and the bucket limits) is computed once, by the driver, exactly as for a local run;
so the output is the local run's byte for byte, whatever the number of tasks, nodes and retries.
An input that fits in the budget (K = 1) is shuffled by one task, as a local run would.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time

import numpy as np

from ..errors import InputError, TokenmillError
from ..spec import ShuffleSpec
from . import io as tio
from . import shuffle as sh
from . import shuffle_reference as ref
from .splits import byte_range, plan_shards

COPY_CHUNK = 8 << 20


class _Range:
    """``readinto`` over ``n`` bytes of an open file, from where it stands."""

    def __init__(self, f, n: int):
        self.f = f
        self.left = n

    def readinto(self, view) -> int:
        if self.left <= 0:
            return 0
        got = self.f.readinto(memoryview(view)[:self.left])
        self.left -= got or 0
        return got or 0

    def close(self) -> None:
        self.f.close()


class _ShardReader(sh._ChunkReader):
    """The shuffle's chunk reader over :class:`~tokenmill.corpus.splits.Shard` objects."""

    def _open(self, shard):
        if shard.end is None:
            return super()._open(shard.path)
        try:
            f = open(shard.path, "rb", buffering=0)
            a, b = byte_range(f, shard)
            f.seek(a)
        except OSError as exc:
            raise InputError(shard.path, f"cannot read: {exc.strerror or exc}") from None
        return _Range(f, b - a), None, shard.path, a


# ------------------------------------------------------------------------------- tasks

def scatter_shard(task) -> dict:
    """Task: scatter one shard into K bucket files in a fresh folder of the work folder.
    Returns ``{"folder", "files", "bytes", "lines"}``."""
    from ..engine import fault_point

    shard, key, k, plan, memory, work = task
    folder = os.path.join(work, tio.temp_name("scatter"))
    os.mkdir(folder, 0o700)
    scatter = sh._Scatter(folder, (), k)
    try:
        arrays = _kept(("scatter", plan.chunk), lambda: [np.empty(plan.chunk, np.uint8) for _ in range(3)])
        reader = _ShardReader([shard], plan.chunk, plan.max_line, memory, threading.Event(), files=[shard.file],
                              buffers=arrays[:2])
        sh._scatter(iter(reader), reader, scatter, key, plan, None, False, threading.Event(), staging=arrays[2:])
    finally:
        scatter.close()
    fault_point("shuffle-scatter")     # tests: a task killed with its buckets written
    return {"folder": folder, "files": scatter.files, "bytes": scatter.bytes.tolist(),
            "lines": scatter.lines.tolist()}


class _InPlace:
    """Stands in for :class:`tio.AtomicOutputs` where a task writes its bucket straight into
    the output file the driver made, at the bucket's offset."""

    def __init__(self, path: str, offset: int):
        self.path, self.offset = path, offset
        self.file = None

    def open(self, path, level=None):
        # its writeback starts as it goes, as for any output, so that the driver's fsync has
        # little left to write
        self.file = tio.WritebackFile(self.path, "r+b", at=self.offset)
        return self.file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        # no fsync here: the driver's, before the rename, covers the file (on NFS the close
        # sends this node's writes to the server)
        if self.file is not None:
            self.file.close()


_KEPT: dict = {}


def _kept(kind: tuple, make):
    """What ``make()`` returns (arrays), kept by the worker process from task to task, as a local
    run keeps its arrays from chunk to chunk and from bucket to bucket: fresh memory is paged
    in and zeroed by the kernel every time (fresh bucket arrays made the bucket step twice as
    slow; fresh read buffers cost the scatter as much zeroing as it read). One ``kind`` at a
    time, so that a worker never holds more than one task's budget."""
    got = _KEPT.get(kind)
    if got is None:
        _KEPT.clear()
        got = _KEPT[kind] = make()
    return got


def shuffle_bucket(task) -> dict:
    """Task: shuffle bucket ``b`` (its pieces: ``(path, bytes, lines)`` per shard, in shard
    order) as a local run shuffles its bucket file, into a fresh file of the work folder, or,
    with ``target`` = ``(path, offset)``, into that file at that offset. Returns ``{"file",
    "bytes", "lines", "rescattered"}``."""
    from ..engine import fault_point

    b, pieces, seed, plan, memory, work, target = task
    n_bytes = sum(p[1] for p in pieces)
    n_lines = sum(p[2] for p in pieces)
    out_path = os.path.join(work, tio.temp_name(f"bucket{b}"))
    spec = ShuffleSpec(memory=memory, seed=seed, tmp=work, workers=1, progress=False)
    job = sh._Shuffle([], out_path, spec)
    job.plan = plan                    # the driver's plan: it decides when a bucket is re-scattered
    node = sh._Node((b,), None, n_bytes, n_lines)
    try:
        with (tio.AtomicOutputs(fsync=False) if target is None else _InPlace(*target)) as outs:
            sink = sh._Sink(out_path, n_lines, spec, plan.gather, outs)
            if node.cost <= plan.max_cost:
                buffers = _kept(("bucket", plan.max_cost), lambda: sh._LeafBuffers(plan.max_cost))
                pair = buffers.take(n_bytes, n_lines)
                try:
                    buf, at = pair[0], 0
                    for path, size, _ in pieces:
                        if size:
                            sh._read_file(path, size, buf[at:])
                            at += size
                    starts = sh._shuffle_leaf(buf, node, seed, pair[1])
                    fault_point("shuffle-bucket")
                    sink.write_leaf(buf, n_bytes, starts, n_lines, None)
                finally:
                    buffers.give_back(pair)
                del buf, starts, pair
            else:
                joined = os.path.join(job._make_tempdir(), f"b{b}")
                with open(joined, "xb") as f:
                    for path, size, _ in pieces:
                        if size:
                            with open(path, "rb") as src:
                                shutil.copyfileobj(src, f, COPY_CHUNK)
                job._shuffle_nodes([dataclasses.replace(node, file=joined)], sink, None)
    finally:
        if job.tempdir is not None:
            shutil.rmtree(job.tempdir, ignore_errors=True)
    return {"file": out_path if target is None else None, "bytes": n_bytes, "lines": n_lines,
            "rescattered": job.rescattered}


def shuffle_whole(task) -> dict:
    """Task: the whole shuffle in one process (the input fits the budget)."""
    inputs, output, spec_dict = task
    r = sh.shuffle(inputs, output, spec=ShuffleSpec(**spec_dict))
    return dataclasses.asdict(r)


# ------------------------------------------------------------------------------ the job

def shuffle_on_engine(inputs: list[str], output: str, spec: ShuffleSpec) -> "sh.ShuffleResult":
    """:func:`tokenmill.shuffle` with ``spec.engine``: the same output, made by tasks."""
    from ..engine import WorkFolder, make_engine, task_inputs

    t0 = time.monotonic()
    inputs = task_inputs("shuffle", spec.engine, inputs)
    if output == "-":
        raise TokenmillError(f"shuffle: --engine {spec.engine} writes to a file, not to standard output")
    output = os.path.abspath(output)
    job = sh._Shuffle(inputs, output, spec)     # checks the paths
    k, _ = job.root_plan()
    plan = job.plan
    engine = make_engine(spec.engine, spec.ray_address, spec.workers)
    progress = spec.progress
    try:
        if k == 1:
            local = dataclasses.replace(spec, engine="local", ray_address=None, progress=False)
            r = engine.map(shuffle_whole, [(inputs, output, local.to_dict())], label="shuffle",
                           progress=progress)[0]
            return sh.ShuffleResult(**{**r, "seconds": time.monotonic() - t0})
        with WorkFolder(job.tmp_root, "shuffle-job") as work:
            shards = plan_shards(inputs, None, engine.parallel_tasks)
            key = ref.derive_key(job.seed, ref.SCATTER, ())
            scattered = engine.map(scatter_shard, [(s, key, k, plan, spec.memory, work.path) for s in shards],
                                   label="shuffle (scatter)", progress=progress, sizes=[s.size for s in shards])
            buckets = [[(m["files"][b], m["bytes"][b], m["lines"][b]) for m in scattered] for b in range(k)]
            sizes = [sum(p[1] for p in pieces) for pieces in buckets]
            total_lines = sum(p[2] for pieces in buckets for p in pieces)
            total_bytes = sum(sizes)

            def drop(b, _):
                # a shuffled bucket's pieces, as a local run removes a bucket file once loaded:
                # the space and page cache they free takes the next buckets' output
                for path, _, _ in buckets[b]:
                    tio.remove_file(path)

            if spec.shards is None and spec.lines_per_shard is None and tio.compression_of(output) is None:
                # one plain output: each bucket task writes its bytes in place, at its offset
                with tio.AtomicOutputs(fsync=sh.FSYNC) as outs:
                    f = outs.open(output)
                    os.ftruncate(f.fileno(), total_bytes)
                    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
                    target = outs.temp_paths[-1]
                    done = engine.map(shuffle_bucket, [(b, buckets[b], job.seed, plan, spec.memory, work.path,
                                                        (target, offsets[b])) for b in range(k)],
                                      label="shuffle (buckets)", progress=progress, sizes=sizes, done=drop)
                    engine.finish_maps()      # Ray disconnects while the output is synced
                names = [output]
            else:
                done = engine.map(shuffle_bucket, [(b, buckets[b], job.seed, plan, spec.memory, work.path, None)
                                                   for b in range(k)],
                                  label="shuffle (buckets)", progress=progress, sizes=sizes, done=drop)
                engine.finish_maps()
                names = _write_outputs(output, [d["file"] for d in done], total_lines, spec, plan, job)
            for m in scattered:
                shutil.rmtree(m["folder"], ignore_errors=True)
    finally:
        engine.close(report=spec.progress)
    return sh.ShuffleResult(
        lines=total_lines, bytes=total_bytes, outputs=names, seconds=time.monotonic() - t0, root_buckets=k,
        rescattered=sum(d["rescattered"] for d in done), in_memory=False, max_bucket_cost=plan.max_cost,
        target_bucket_cost=plan.target, seed=job.seed)


def _write_outputs(output: str, pieces: list[str], total_lines: int, spec: ShuffleSpec, plan, job) -> list:
    """The shuffled buckets, in order, into the output or its shards (cut by line counts as a
    local run cuts them), committed together."""
    level = plan.xz_preset if tio.compression_of(output) == "xz" else None
    with tio.AtomicOutputs(fsync=sh.FSYNC) as outs, job._bar("write", None) as bar:
        sink = sh._Sink(output, total_lines, spec, plan.gather, outs, level)
        shard, written = 0, 0
        for piece in pieces:
            with open(piece, "rb", buffering=0) as f:
                while True:
                    chunk = f.read(COPY_CHUNK)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while len(view):
                        while written >= sink.bounds[shard]:
                            shard += 1
                        room = sink.bounds[shard] - written
                        ends = np.flatnonzero(np.frombuffer(view, np.uint8) == 10)
                        if len(ends) > room:           # the shard ends inside this chunk
                            cut = int(ends[room - 1]) + 1
                            lines = room
                        else:
                            cut, lines = len(view), len(ends)
                        sh._write_file(sink.files[shard], view[:cut], sink.names[shard])
                        written += lines
                        bar.update(cut, lines)
                        view = view[cut:]
            tio.remove_file(piece)
        return sink.names

