"""Exact global shuffle of line corpora far larger than memory (``tokenmill shuffle``).

Method (random scatter, see shuffle_reference.py for the plain-Python definition):

1. *Scatter*: read all inputs once, in order, and send line ``i`` to bucket
   ``mix64(key + (i + 1) * GAMMA) % K`` (a counter-based hash: independent of threads). Buckets
   are temporary files; K is chosen so an average bucket takes a third of the memory budget.
2. *Shuffle*: for each bucket in order, load it, Fisher-Yates its line offsets with a key derived
   from (seed, bucket), and write the lines in that order. A bucket too big for the budget is
   scattered again into sub-buckets with a derived key.

If the whole input fits in the budget, nothing is written to disk except the output.

Memory: input chunks, per-bucket write buffers, the bucket being shuffled (plus the next one
when both fit, so that reading overlaps writing) and the compressors are all counted in
``--memory``; the interpreter itself (about 30 MB) is not.
"""
from __future__ import annotations

import dataclasses
import errno as errno_mod
import mmap
import os
import queue
import shutil
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InputError, TokenmillError
from ..progress import Progress, format_bytes
from ..spec import ShuffleSpec
from . import io as tio
from . import shuffle_reference as ref

try:
    from . import _shuffle as _k
except ImportError as exc:  # pragma: no cover - broken build
    raise ImportError("tokenmill.corpus._shuffle is not compiled: reinstall with `pip install .`") from exc

MiB = 1 << 20
COMPRESSED_RATIO_GUESS = 4  # for planning only: a wrong guess costs an extra pass, never correctness
FSYNC = True  # fsync outputs before renaming them into place (tests turn it off for speed)


@dataclasses.dataclass
class ShuffleResult:
    """What :func:`shuffle` did. ``root_buckets``, ``max_bucket_cost`` and ``target_bucket_cost``
    are the plan that, with the seed, fixes the output (see ``shuffle_reference``)."""

    lines: int
    bytes: int
    outputs: list
    seconds: float
    root_buckets: int
    rescattered: int
    in_memory: bool
    max_bucket_cost: int
    target_bucket_cost: int
    seed: int


# ------------------------------------------------------------------------------ memory plan
@dataclasses.dataclass
class _Plan:
    budget: int
    chunk: int          # scatter read chunk
    gather: int         # output staging buffer
    max_cost: int       # largest bucket shuffled in memory (bytes + 8 per line)
    target: int         # expected bucket cost when choosing K
    max_line: int

    xz_preset: int = 3

    @classmethod
    def make(cls, budget: int, output: str, inputs: list[str]) -> "_Plan":
        # (De)compressor memory, counted in the budget up to an eighth of it each (the rest fits
        # the interpreter allowance): zstd/xz decoders up to ~9 MB for usual files, an xz
        # encoder 32 MB at preset 3 (preset 0, 3 MB, under a 256M budget), zstd level 3 ~2 MB.
        xz_preset = 3 if budget >= 256 * MiB else 0
        out_kind = tio.compression_of(output)
        reserve_out = {"xz": (32 if xz_preset == 3 else 3) * MiB, "zst": 2 * MiB, "gz": MiB // 4}.get(out_kind, 0)
        kinds = {tio.compression_of(p) for p in inputs}
        reserve_in = 9 * MiB if kinds & {"xz", "zst"} else (MiB // 4 if "gz" in kinds else 0)
        reserve_out = min(reserve_out, budget // 8)
        reserve_in = min(reserve_in, budget // 8)
        gather = min(4 * MiB, max(64 << 10, budget // 32))
        chunk = min(32 * MiB, max(64 << 10, budget // 16))
        max_cost = int(budget * 0.85) - gather - reserve_out
        max_line = int(budget * 0.4)
        return cls(budget, chunk, gather, max_cost, max(1, max_cost // 3), max_line, xz_preset)


# ----------------------------------------------------------------------------- reading
class _ChunkReader:
    """Yields ``(buffer, n, segments)``: ``buffer[:n]`` holds complete lines (each ending with a
    newline), and ``segments`` says where they come from: ``(position, file, offset)`` for
    each file the chunk holds lines of, ``buffer[position:]`` being bytes of the ``file``-th
    input from ``offset`` on (until the next segment's position).

    Lines run across chunk boundaries and file boundaries are respected: a file whose last line
    lacks a newline gets one. The consumer must call :meth:`release` with each buffer when done;
    there are only two buffers, so memory stays at two chunks (a line longer than a chunk grows
    one buffer, up to ``max_line``). ``files``: the number of each path among the job's inputs
    (default: its place in ``paths``).
    """

    def __init__(self, paths, chunk: int, max_line: int, budget_text: str = "", stop=None, files=None,
                 buffers=()):
        self.stop = stop if stop is not None else threading.Event()
        self.paths = list(paths)
        self.files = list(files) if files is not None else list(range(len(self.paths)))
        self.chunk = chunk
        self.max_line = max_line
        self.budget_text = budget_text
        self.free: queue.Queue = queue.Queue()
        for buf in (list(buffers) + [None, None])[:2]:     # arrays of ``chunk`` bytes to use, else fresh ones
            self.free.put(buf)
        self.bytes_in = 0

    def release(self, buf) -> None:
        self.free.put(buf if buf is not None and buf.size <= self.chunk else None)

    def _get(self):
        while True:
            try:
                buf = self.free.get(timeout=0.05)
                break
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped() from None
        return buf if buf is not None else np.empty(self.chunk, np.uint8)

    def __iter__(self):
        buf = self._get()
        filled = 0
        segs: list = []
        for source, number in zip(self.paths, self.files):
            f, step, path, offset = self._open(source)   # offset: of buf[filled] in this file
            if segs and segs[-1][0] == filled:
                segs.pop()                                # the previous file added nothing
            segs.append((filled, number, offset))
            last_byte = 10
            try:
                while True:
                    if filled == buf.size:
                        buf, filled, out, segs = self._emit(buf, filled, path, segs, number, offset)
                        if out is not None:
                            yield out
                        continue
                    end = buf.size if step is None else min(buf.size, filled + step)
                    try:
                        n = f.readinto(memoryview(buf)[filled:end])
                    except Exception as exc:  # corrupt stream, I/O error
                        raise InputError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
                    if not n:
                        break
                    filled += n
                    offset += n
                    self.bytes_in += n
                    last_byte = int(buf[filled - 1])
            finally:
                if path != "-":
                    f.close()
            if last_byte != 10:  # the documented newline rule
                if filled == buf.size:
                    buf, filled, out, segs = self._emit(buf, filled, path, segs, number, offset)
                    if out is not None:
                        yield out
                buf[filled] = 10
                filled += 1
                offset += 1
                self.bytes_in += 1
        if filled:
            yield buf, filled, segs
        else:
            self.release(buf)

    def _open(self, path):
        """``(file, step, name, offset)``: the input to read, how much of it to read at a time
        (None: as much as the buffer takes), its name for error messages and the offset in it
        of the first byte read."""
        step = None if path == "-" or tio.compression_of(path) is None else 4 * MiB
        return tio.open_input(path), step, path, 0

    def _emit(self, buf, filled, path, segs, number, offset):
        """The buffer is full: hand over its complete lines, keep the partial last line (of
        file ``number``, whose byte ``offset`` would come next)."""
        last = _k.last_newline(buf, filled)
        if last < 0:  # one line fills the whole buffer: grow it
            if buf.size > self.max_line:
                raise InputError(path, f"a line is longer than {format_bytes(self.max_line)}, the "
                                       f"limit for --memory {self.budget_text} (40% of it); "
                                       f"raise --memory")
            bigger = np.empty(min(2 * buf.size, self.max_line + 1), np.uint8)
            bigger[:filled] = buf[:filled]
            return bigger, filled, None, segs
        nxt = self._get()
        tail = filled - (last + 1)
        if tail > nxt.size:
            nxt = np.empty(max(tail * 2, self.chunk), np.uint8)
        nxt[:tail] = buf[last + 1:filled]
        # every file ends with a newline, so the partial line is the current file's
        return nxt, tail, (buf, last + 1, [g for g in segs if g[0] <= last]), [(0, number, offset - tail)]


def _threaded(iterable, stop: threading.Event, depth: int = 1):
    """Run ``iterable`` in a background thread, ``depth`` items ahead; exceptions are re-raised.

    Setting ``stop`` (done when the consumer leaves, normally or not) makes the thread give up."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in iterable:
                if not put(("item", item)):
                    return
            put(("end", None))
        except _Stopped:
            return
        except BaseException as exc:  # forwarded to the consumer
            put(("error", exc))
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=work, name="tokenmill-shuffle-reader", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "item":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        deadline = time.monotonic() + 5.0  # a read blocked on a pipe cannot be interrupted
        while t.is_alive() and time.monotonic() < deadline:
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(0.05)


class _Stopped(Exception):
    """The consumer of a background reader has gone away."""


# --------------------------------------------------------------------------- writing helpers
WRITE_PIECE = tio.WRITE_PIECE    # the most one write() call copies (see corpus.io)


def _write_all(fd: int, view, path: str) -> None:
    """Write all of ``view`` to ``fd``; an error names ``path``. Tests replace this to inject faults."""
    view = memoryview(view)
    while len(view):
        try:
            n = os.write(fd, view[:WRITE_PIECE])
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None
        view = view[n:]


def _write_file(f, view, path: str) -> None:
    try:
        tio.write_all(f, view)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None


def _read_file(path: str, n_bytes: int, buf: np.ndarray | None = None) -> np.ndarray:
    """The first ``n_bytes`` of ``path``, read into ``buf`` (at least that large) or a new array."""
    if buf is None:
        buf = np.empty(max(1, n_bytes), np.uint8)
    view = memoryview(buf)[:n_bytes]
    try:
        with open(path, "rb", buffering=0) as f:
            got = 0
            while got < n_bytes:
                r = f.readinto(view[got:])
                if not r:
                    raise OSError(errno_mod.EIO, "temporary bucket file is shorter than written", path)
                got += r
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, exc.filename or path) from None
    return buf


# ----------------------------------------------------------------------------- the buckets
@dataclasses.dataclass
class _Node:
    path: tuple
    file: str | None
    n_bytes: int
    n_lines: int

    @property
    def cost(self) -> int:
        return ref.bucket_cost(self.n_bytes, self.n_lines)


class _Scatter:
    """Writes the chunks of a reader into ``k`` bucket files named after ``path``."""

    def __init__(self, folder: str, path: tuple, k: int):
        self.folder = folder
        self.path = path
        self.k = k
        name = "b" + ".".join(str(p) for p in path) if path else "b"
        self.files = [os.path.join(folder, f"{name}.{b}" if path else f"b{b}") for b in range(k)]
        self.fds: list[int] = []
        self.bytes = np.zeros(k, np.int64)
        self.lines = np.zeros(k, np.int64)
        try:
            for p in self.files:
                self.fds.append(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            self.close()
            raise OSError(exc.errno, exc.strerror, exc.filename) from None

    def write_chunk(self, out, offsets, lines) -> None:
        offs = offsets.tolist()
        for b in range(self.k):
            if offs[b + 1] > offs[b]:
                _write_all(self.fds[b], memoryview(out)[offs[b]:offs[b + 1]], self.files[b])
        self.bytes += np.diff(offsets[: self.k + 1])
        self.lines += lines[: self.k]

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def nodes(self) -> list[_Node]:
        return [_Node(self.path + (b,), self.files[b], int(self.bytes[b]), int(self.lines[b]))
                for b in range(self.k)]


def _scatter(chunks, reader: _ChunkReader, scatter: _Scatter, key: int, plan: _Plan,
             bar: Progress | None, writer_threads: bool, stop: threading.Event, staging=()) -> int:
    """Scatter every chunk under the node key ``key`` (each file under its
    :func:`~tokenmill.corpus.shuffle_reference.file_key`); returns the number of lines. With
    ``writer_threads``, bucket writes of chunk i overlap the scatter of chunk i + 1 (two staging
    buffers). ``staging``: arrays of ``plan.chunk`` bytes to use as such, else fresh ones."""
    k = scatter.k
    total = 0
    pending = None
    pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-shuffle-writer") if writer_threads else None
    spare = (list(staging) + [np.empty(0, np.uint8), np.empty(0, np.uint8)])[:2]
    scratch = np.zeros(max(1024, plan.chunk // 64), np.int64)  # 8 B per noted line: 1/8 of a chunk
    try:
        for buf, n, segs in chunks:
            out = spare.pop()
            if out.size < n:
                out = np.empty(max(n, plan.chunk), np.uint8)
            offsets = np.empty(k + 1, np.int64)
            lines = np.empty(k, np.int64)
            keys = np.array([ref.file_key(key, f) for _, f, _ in segs], np.uint64)
            starts = np.array([g[0] for g in segs], np.int64)
            bases = np.array([g[2] for g in segs], np.int64)
            m = _k.scatter_chunk(buf, n, keys, starts, bases, k, out, offsets, lines, scratch)
            reader.release(buf)
            total += m
            if pending is not None:
                spare.append(pending.result())
                pending = None
            if pool is None:
                scatter.write_chunk(out, offsets, lines)
                spare.append(out if out.size <= plan.chunk else np.empty(0, np.uint8))
            else:
                def job(out=out, offsets=offsets, lines=lines):
                    scatter.write_chunk(out, offsets, lines)
                    return out if out.size <= plan.chunk else np.empty(0, np.uint8)
                pending = pool.submit(job)
            if bar is not None:
                bar.update(n, m)
        if pending is not None:
            pending.result()
            pending = None
    finally:
        if pool is not None:
            if pending is not None:
                try:
                    pending.result()
                except BaseException:
                    pass
            pool.shutdown(wait=True)
    return total


# ------------------------------------------------------------------------------ the output
def shard_name(output: str, index: int, width: int = 5) -> str:
    """``shard_name("out/corpus.txt.gz", 3) -> 'out/corpus-00003.txt.gz'``."""
    folder, name = os.path.split(output)
    suffix = ""
    lower = name.lower()
    for comp in tio.COMPRESSED_SUFFIXES:
        if lower.endswith(comp) and len(name) > len(comp):
            suffix = name[-len(comp):]
            name = name[: -len(comp)]
            break
    stem, dot, ext = name.rpartition(".")
    if dot and stem:
        name, suffix = stem, "." + ext + suffix
    return os.path.join(folder, f"{name}-{index:0{width}d}{suffix}")


class _Sink:
    """Writes lines in shuffled order to one output or to shards, all committed atomically."""

    def __init__(self, output: str, total_lines: int, spec: ShuffleSpec, gather: int, outs: tio.AtomicOutputs,
                 level: int | None = None):
        self.outs = outs
        if spec.shards is not None:
            n = spec.shards
            self.bounds = [(s + 1) * total_lines // n for s in range(n)]
        elif spec.lines_per_shard is not None:
            n = max(1, -(-total_lines // spec.lines_per_shard))
            self.bounds = [min(total_lines, (s + 1) * spec.lines_per_shard) for s in range(n)]
        else:
            self.bounds = [total_lines]
        if len(self.bounds) == 1 and spec.shards is None and spec.lines_per_shard is None:
            self.names = [output]
        else:
            width = max(5, len(str(len(self.bounds) - 1)))
            self.names = [shard_name(output, s, width) for s in range(len(self.bounds))]
        self.files = [outs.open(p, level) for p in self.names]
        self.shard = 0
        self.written = 0
        self.staging = np.empty(gather, np.uint8)

    def write_leaf(self, buf, n_bytes: int, starts, n_lines: int, bar: Progress | None) -> None:
        i = 0
        while i < n_lines:
            while self.written >= self.bounds[self.shard]:
                self.shard += 1
            stop = min(n_lines, i + self.bounds[self.shard] - self.written)
            f, name = self.files[self.shard], self.names[self.shard]
            j, used = _k.gather(buf, n_bytes, starts, i, stop, self.staging)
            if used == 0:  # a line bigger than the staging buffer: write it in place
                s, e = _k.line_span(buf, n_bytes, int(starts[i]))
                j, used = i + 1, e - s
                _write_file(f, memoryview(buf)[s:e], name)
            else:
                _write_file(f, memoryview(self.staging)[:used], name)
            self.written += j - i
            if bar is not None:
                bar.update(used, j - i)
            i = j


def _shuffle_leaf(buf, node: _Node, seed: int, starts: np.ndarray | None = None):
    """Index and Fisher-Yates the lines of a loaded bucket; returns the shuffled start offsets
    (in ``starts`` if given: at least ``node.n_lines`` long)."""
    if starts is None:
        starts = np.empty(max(1, node.n_lines), np.int64)
    count = _k.index_lines(buf, node.n_bytes, starts)
    if count != node.n_lines:
        raise OSError(errno_mod.EIO, "temporary bucket file changed under us", node.file)
    _k.fisher_yates(starts, count, ref.derive_key(seed, ref.SHUFFLE, node.path))
    return starts


class _LeafBuffers:
    """Arrays for loaded buckets (bytes and line offsets), reused from bucket to bucket.

    A fresh array per bucket would be paged in and zeroed by the kernel every time, all the
    input once more; reused arrays keep their pages. Buckets in use at once (the one being
    written and the one loaded ahead) never cost more than ``limit`` together, and neither do
    the arrays: one taken for a bucket is cut down to that bucket's size when keeping it
    larger would exceed ``limit`` alongside the arrays in use (callers load a bucket ahead only
    if ``in_use`` plus its cost is within ``limit``).
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.lock = threading.Lock()
        self.spare: list = []        # (bytes array, offsets array) not in use
        self.in_use = 0              # capacity, in bytes, of the arrays handed out

    @staticmethod
    def _cost(pair) -> int:
        return pair[0].nbytes + pair[1].nbytes

    def take(self, n_bytes: int, n_lines: int):
        n_bytes, n_lines = max(1, n_bytes), max(1, n_lines)
        with self.lock:
            pair = self.spare.pop() if self.spare else None
            self.spare.clear()       # at most one spare is ever kept
            if pair is not None:
                fits = pair[0].size >= n_bytes and pair[1].size >= n_lines
                if not fits or self.in_use + self._cost(pair) > self.limit:
                    pair = None      # dropped before the new arrays are made
            if pair is None:
                pair = (np.empty(n_bytes, np.uint8), np.empty(n_lines, np.int64))
            self.in_use += self._cost(pair)
            return pair

    def give_back(self, pair) -> None:
        with self.lock:
            self.in_use -= self._cost(pair)
            self.spare.append(pair)


def _load_leaf(node: _Node, seed: int, buffers: _LeafBuffers):
    pair = buffers.take(node.n_bytes, node.n_lines)
    try:
        buf = _read_file(node.file, node.n_bytes, pair[0])
        try:
            os.unlink(node.file)  # frees temp space as the output grows
        except OSError:
            pass
        return pair, _shuffle_leaf(buf, node, seed, pair[1])
    except BaseException:
        buffers.give_back(pair)
        raise


def _close_mapping(mm) -> None:
    """Unmap now, or, while an array of it is still referenced (say by the traceback of the
    error being raised), when the last one goes."""
    try:
        mm.close()
    except BufferError:
        pass


# ------------------------------------------------------------------------------ safety checks
def _raise_fd_limit(needed: int) -> int:
    """Raise the soft open-file limit towards ``needed`` if allowed; returns the usable limit."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # pragma: no cover
        return 1024
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (OSError, ValueError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _check_space(folder: str, need: int, what: str) -> None:
    free = tio.free_space(folder)
    if free is not None and need > free:
        raise TokenmillError(f"{folder}: not enough free space for {what}: need about "
                             f"{format_bytes(need)}, {format_bytes(free)} free")


def _estimate(inputs: list[str]) -> int | None:
    total = 0
    for p in inputs:
        size = tio.input_size(p)
        if size is None:
            return None
        total += size * (COMPRESSED_RATIO_GUESS if tio.compression_of(p) else 1)
    return total


# ------------------------------------------------------------------------------------- API
def shuffle(inputs, output, **options) -> ShuffleResult:
    """Write a uniformly random permutation of all lines of ``inputs`` to ``output``.

    ``inputs``: a path or a list of paths, globs, folders or ``"-"`` (plain, .gz, .xz, .zst).
    ``output``: a path (compressed by its extension; ``"-"`` for standard output); with
    ``shards`` / ``lines_per_shard``, the shards are ``OUT-00000.ext``, ``OUT-00001.ext``, ...
    Options are the fields of :class:`tokenmill.spec.ShuffleSpec` (``memory="1G"``, ``seed=0``,
    ``tmp=None``, ``shards=None``, ``lines_per_shard=None``, ``workers=0``, ``buckets=None``,
    ``progress=True``).

    Lines are raw bytes split on ``b"\\n"``; a last line without a newline gets one. The output
    appears only when complete; on any error or interruption, no output and no temporary
    files are left. Same inputs, seed, memory and shard options -> same bytes.

    Example::

        >>> shuffle(["a.txt", "b.txt.gz"], "mixed.txt.zst", memory="2G", seed=7)  # doctest: +SKIP
        ShuffleResult(lines=..., ...)
    """
    spec = options.pop("spec", None) or ShuffleSpec(**options)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if spec.engine != "local":
        from .shuffle_job import shuffle_on_engine

        return shuffle_on_engine(tio.expand_inputs(inputs), os.fspath(output), spec)
    return _Shuffle(tio.expand_inputs(inputs), os.fspath(output), spec).run()


class _Shuffle:
    def __init__(self, inputs: list[str], output: str, spec: ShuffleSpec):
        self.inputs = inputs
        self.output = output
        self.spec = spec
        self.seed = int(spec.seed)
        self.plan = _Plan.make(spec.memory_bytes, output, inputs)
        self.workers = spec.workers or min(4, os.cpu_count() or 1)
        self.stop = threading.Event()
        self.tempdir: str | None = None
        self.rescattered = 0
        if output != "-" and os.path.isdir(output):
            raise TokenmillError(f"{output}: output is a folder")
        if output != "-" and os.path.abspath(output) in {os.path.abspath(p) for p in inputs if p != "-"}:
            raise TokenmillError(f"{output}: output is also an input")
        self.out_dir = os.path.dirname(os.path.abspath(output)) if output != "-" else os.getcwd()
        self.tmp_root = os.path.abspath(spec.tmp) if spec.tmp else self.out_dir
        for folder, what in ((self.out_dir, "output"), (self.tmp_root, "--tmp")):
            if not os.path.isdir(folder):
                raise TokenmillError(f"{folder}: {what} folder does not exist")
        if inputs.count("-") > 1:
            raise TokenmillError("-: standard input given more than once")

    def _bar(self, label, total=None):
        return Progress(label, total_bytes=total, item_name="lines",
                        enabled=None if self.spec.progress else False)

    def root_plan(self) -> tuple:
        """``(k, estimate)``: the number of first-level buckets (part of what fixes the
        output) and the estimated input size; checks free space and the open-file limit, and
        removes what killed runs left behind."""
        tio.clean_litter(self.tmp_root)
        if self.output != "-":
            tio.clean_litter(self.out_dir)
        est = _estimate(self.inputs)
        plan = self.plan
        est_cost = None if est is None else int(est * 1.1) + 8
        if self.spec.buckets is not None:
            k = self.spec.buckets
        elif est_cost is None or est_cost <= plan.max_cost:
            k = 1  # try in memory; spill to one bucket (then re-scatter) if it does not fit
        else:
            k = -(-est_cost // plan.target)
        if k > 1:
            limit = _raise_fd_limit(k + 64)
            if limit - 32 < k:
                if limit < 48:
                    raise TokenmillError(f"shuffle: open-file limit ({limit}) too low; raise it with ulimit -n")
                k = limit - 32  # oversized buckets are simply scattered again
        if est is not None:
            if k > 1 and self.spec.buckets is None:
                need_tmp = est
            else:
                need_tmp = est if est_cost > plan.max_cost else 0
            need_out = est if self.output != "-" else 0
            if need_tmp and tio.same_filesystem(self.tmp_root, self.out_dir):
                _check_space(self.out_dir, need_tmp + need_out, "the temporary buckets and the output")
            else:
                if need_tmp:
                    _check_space(self.tmp_root, need_tmp, "the temporary buckets")
                if need_out:
                    _check_space(self.out_dir, need_out, "the output")
        self.root_k = k
        return k, est

    def run(self) -> ShuffleResult:
        t0 = time.monotonic()
        k, est = self.root_plan()
        plan = self.plan
        if k == 1 and self.spec.buckets is None:
            mapped = self._map_single_input()
            if mapped is not None:
                return self._shuffle_mapped(mapped, t0)
        reader = _ChunkReader(self.inputs, plan.chunk, plan.max_line, self.spec.memory, self.stop)
        chunks = _threaded(iter(reader), self.stop) if self.workers > 1 else iter(reader)
        total_plain = est if est is not None and all(tio.compression_of(p) is None for p in self.inputs) else None
        try:
            with tio.AtomicOutputs(fsync=FSYNC) as outs:
                if k == 1:
                    nodes, mem = self._read_in_memory(chunks, reader, total_plain)
                else:
                    mem = None
                    nodes = self._scatter_root(chunks, reader, k, total_plain)
                total_lines = sum(n.n_lines for n in nodes)
                total_bytes = sum(n.n_bytes for n in nodes)
                level = plan.xz_preset if tio.compression_of(self.output) == "xz" else None
                sink = _Sink(self.output, total_lines, self.spec, plan.gather, outs, level)
                with self._bar("shuffle", total_bytes) as bar:
                    if mem is not None:
                        starts = _shuffle_leaf(mem, nodes[0], self.seed)
                        sink.write_leaf(mem, nodes[0].n_bytes, starts, nodes[0].n_lines, bar)
                        del mem, starts
                    else:
                        self._shuffle_nodes(nodes, sink, bar)
                names = sink.names
        except BaseException:
            self.stop.set()
            raise
        finally:
            self.stop.set()
            if hasattr(chunks, "close"):
                chunks.close()
            if self.tempdir is not None:
                shutil.rmtree(self.tempdir, ignore_errors=True)
        seconds = time.monotonic() - t0
        result = ShuffleResult(
            lines=total_lines, bytes=total_bytes, outputs=names, seconds=seconds, root_buckets=k,
            rescattered=self.rescattered, in_memory=self.tempdir is None, max_bucket_cost=plan.max_cost,
            target_bucket_cost=plan.target, seed=self.seed)
        return result

    # -- in memory, straight from the page cache
    def _map_single_input(self):
        """``[mmap, array, lines]`` when the input is one plain regular file that ends with a
        newline and fits the budget, else None (the general path then reads it).

        Shuffling from a read-only mapping of the file skips copying it into fresh memory
        (which the kernel would first have to zero); the output is the same bytes, since the
        same buffer is shuffled with the same keys.
        """
        if len(self.inputs) != 1 or self.inputs[0] == "-" or tio.compression_of(self.inputs[0]):
            return None
        path = self.inputs[0]
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > self.plan.max_cost:
                    return None
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None  # the general path reports unreadable inputs
        buf = np.frombuffer(mm, np.uint8)
        n = buf.size
        lines = _k.count_lines(buf, n) if buf[n - 1] == 10 else -1
        if lines < 0 or ref.bucket_cost(n, lines) > self.plan.max_cost:
            del buf
            _close_mapping(mm)
            return None
        return [mm, buf, lines]

    def _shuffle_mapped(self, mapped: list, t0) -> ShuffleResult:
        mm, buf, lines = mapped
        mapped.clear()  # the mapping closes only when no array refers to it
        node = _Node((0,), None, buf.size, lines)
        try:
            with tio.AtomicOutputs(fsync=FSYNC) as outs:
                level = self.plan.xz_preset if tio.compression_of(self.output) == "xz" else None
                sink = _Sink(self.output, lines, self.spec, self.plan.gather, outs, level)
                with self._bar("shuffle", buf.size) as bar:
                    starts = _shuffle_leaf(buf, node, self.seed)
                    sink.write_leaf(buf, node.n_bytes, starts, lines, bar)
                    del starts
                names = sink.names
        finally:
            del buf
            _close_mapping(mm)
        return ShuffleResult(
            lines=lines, bytes=node.n_bytes, outputs=names, seconds=time.monotonic() - t0, root_buckets=1,
            rescattered=0, in_memory=True, max_bucket_cost=self.plan.max_cost,
            target_bucket_cost=self.plan.target, seed=self.seed)

    # -- phase 1
    def _make_tempdir(self) -> str:
        if self.tempdir is None:
            path = os.path.join(self.tmp_root, tio.temp_name("shuffle"))
            os.mkdir(path, 0o700)
            self.tempdir = path
        return self.tempdir

    def _scatter_root(self, chunks, reader, k, total):
        scatter = _Scatter(self._make_tempdir(), (), k)
        try:
            with self._bar("scatter", total) as bar:
                _scatter(chunks, reader, scatter, ref.derive_key(self.seed, ref.SCATTER, ()), self.plan,
                         bar, self.workers > 1, self.stop)
        finally:
            scatter.close()
        return scatter.nodes()

    def _read_in_memory(self, chunks, reader, total):
        """Root with one bucket: keep everything in memory if it fits, else spill it to disk."""
        plan = self.plan
        cap = plan.max_cost
        mem = np.empty(cap, np.uint8)  # virtual: only the pages written count
        used = 0
        lines = 0
        spill_fd = None
        spill_path = None
        with self._bar("read", total) as bar:
            try:
                for buf, n, _ in chunks:
                    if spill_fd is None and used + n <= cap:
                        mem[used:used + n] = buf[:n]
                        m = _k.count_lines(buf, n)
                        used += n
                        lines += m
                        reader.release(buf)
                        if ref.bucket_cost(used, lines) > cap:
                            spill_fd, spill_path = self._spill(mem, used)
                            mem = None
                    else:
                        if spill_fd is None:
                            spill_fd, spill_path = self._spill(mem, used)
                            mem = None
                        m = _k.count_lines(buf, n)
                        _write_all(spill_fd, memoryview(buf)[:n], spill_path)
                        reader.release(buf)
                        used += n
                        lines += m
                    bar.update(n, m)
            finally:
                if spill_fd is not None:
                    os.close(spill_fd)
        return [_Node((0,), spill_path, used, lines)], mem

    def _spill(self, mem, used):
        path = os.path.join(self._make_tempdir(), "b0")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, memoryview(mem)[:used], path)
        except BaseException:
            os.close(fd)
            raise
        return fd, path

    # -- phase 2
    def _rescatter(self, node: _Node) -> list[_Node]:
        if len(node.path) > ref.MAX_DEPTH:  # pragma: no cover - probability ~0
            raise TokenmillError("shuffle: bucket tree too deep; raise --memory")
        self.rescattered += 1
        k = ref.fanout(node.cost, self.plan.target)
        _raise_fd_limit(k + 64)
        scatter = _Scatter(self._make_tempdir(), node.path, k)
        reader = _ChunkReader([node.file], self.plan.chunk, self.plan.max_cost, self.spec.memory)
        try:
            _scatter(iter(reader), reader, scatter, ref.derive_key(self.seed, ref.SCATTER, node.path),
                     self.plan, None, self.workers > 1, self.stop)
        finally:
            scatter.close()
        os.unlink(node.file)
        return scatter.nodes()

    def _shuffle_nodes(self, nodes: list[_Node], sink: _Sink, bar) -> None:
        todo = list(nodes)
        todo.reverse()  # a stack: pop() takes the next node in output order
        pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-shuffle-loader") if self.workers > 1 else None
        ahead = None  # (node, future) being loaded in the background
        buffers = _LeafBuffers(self.plan.max_cost)
        try:
            while todo:
                node = todo.pop()
                if node.n_lines == 0:
                    if node.file:
                        os.unlink(node.file)
                    continue
                if node.cost > self.plan.max_cost:
                    todo.extend(reversed(self._rescatter(node)))
                    continue
                if ahead is not None and ahead[0] is node:
                    pair, starts = ahead[1].result()
                    ahead = None
                else:
                    pair, starts = _load_leaf(node, self.seed, buffers)
                if pool is not None and todo:
                    nxt = todo[-1]
                    if 0 < nxt.n_lines and buffers.in_use + nxt.cost <= self.plan.max_cost:
                        ahead = (nxt, pool.submit(_load_leaf, nxt, self.seed, buffers))
                try:
                    sink.write_leaf(pair[0], node.n_bytes, starts, node.n_lines, bar)
                finally:
                    buffers.give_back(pair)
                del pair, starts
        finally:
            if pool is not None:
                if ahead is not None:
                    try:
                        ahead[1].result()
                    except BaseException:
                        pass
                pool.shutdown(wait=True)
