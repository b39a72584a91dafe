"""Reading corpora and writing outputs safely: the building blocks every corpus command shares.

* :func:`expand_inputs` turns command-line patterns (files, globs, folders, ``-``) into paths.
* :func:`open_input` opens one of them as a binary stream, decompressing by extension
  (``.gz``, ``.xz``, ``.zst``; anything else is read as is; ``-`` is standard input).
* :func:`iter_lines` / :func:`iter_documents` yield raw bytes.
* :func:`atomic_output` / :class:`AtomicOutputs` write under a temporary name in the final
  folder and rename only on success; :func:`clean_litter` removes what a killed run left behind.

Lines are split on ``b"\\n"`` only. Everything else (CR, NUL, invalid UTF-8, empty lines) is data
and is kept exactly. The last line of a file that does not end with a newline is given one, so
that every line yielded by :func:`iter_lines` ends with ``b"\\n"``.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import queue
import re
import threading
import shutil
import socket
import sys
import uuid
from typing import Iterable, Iterator

from ..errors import InputError, TokenmillError

COMPRESSED_SUFFIXES = (".gz", ".xz", ".zst")
_GLOB_CHARS = re.compile(r"[*?\[]")


# ----------------------------------------------------------------------------------- inputs
def expand_inputs(patterns: Iterable[str | os.PathLike]) -> list[str]:
    """Expand files, globs and folders into a list of paths, in a stable order.

    * ``-`` stays ``-`` (standard input);
    * an existing file is kept as given;
    * a folder contributes every file below it, recursively, sorted, skipping hidden
      entries (names starting with ``.``, which includes tokenmill's own temporary files);
    * a glob (``*``, ``?``, ``[...]``, and ``**`` for any depth) contributes its sorted matches;
    * a pattern that matches nothing raises :class:`InputError` naming it.

    Example::

        >>> expand_inputs(["corpus/", "extra/*.txt.gz", "-"])   # doctest: +SKIP
        ['corpus/a.txt', 'corpus/sub/b.txt', 'extra/c.txt.gz', 'extra/d.txt.gz', '-']
    """
    out: list[str] = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if pattern == "-":
            out.append("-")
            continue
        if os.path.isdir(pattern):
            files = _walk(pattern)
            if not files:
                raise InputError(pattern, "folder contains no files")
            out.extend(files)
        elif os.path.exists(pattern):
            out.append(pattern)
        elif _GLOB_CHARS.search(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            files = []
            for m in matches:
                files.extend(_walk(m) if os.path.isdir(m) else [m])
            if not files:
                raise InputError(pattern, "no file matches this pattern")
            out.extend(files)
        else:
            raise InputError(pattern, "no such file or directory")
    return out


def _walk(folder: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return found


def compression_of(path: str | os.PathLike) -> str | None:
    """``'gz'``, ``'xz'``, ``'zst'`` or ``None``, from the file name's extension."""
    name = os.fspath(path).lower()
    for suffix in COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            return suffix[1:]
    return None


def open_input(path: str | os.PathLike):
    """Open ``path`` for binary reading, decompressing by extension; ``-`` is standard input.

    The returned object supports ``read``, ``readinto``, iteration over lines and ``close``.
    A missing or unreadable file raises :class:`InputError`.
    """
    path = os.fspath(path)
    if path == "-":
        return sys.stdin.buffer
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    kind = compression_of(path)
    if kind == "gz":
        import gzip
        return _Closing(gzip.GzipFile(fileobj=raw, mode="rb"), raw)
    if kind == "xz":
        import lzma
        return _Closing(lzma.LZMAFile(raw, "rb"), raw)
    if kind == "zst":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - declared dependency
            raw.close()
            raise TokenmillError(f"{path}: reading .zst needs the zstandard package: pip install zstandard")
        dctx = zstandard.ZstdDecompressor()
        try:
            reader = dctx.stream_reader(raw, read_across_frames=True, closefd=True)
        except TypeError:  # pragma: no cover - older zstandard
            reader = dctx.stream_reader(raw)
        import io
        return io.BufferedReader(reader, buffer_size=1 << 20)
    return raw


class _Closing:
    """Wraps a decompressing reader so that closing it also closes the underlying file."""

    def __init__(self, inner, raw):
        self._inner = inner
        self._raw = raw

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __iter__(self):
        return iter(self._inner)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self._inner.close()
        finally:
            self._raw.close()


def _read_error(path, exc) -> InputError:
    return InputError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}")


def iter_lines(paths: Iterable[str | os.PathLike]) -> Iterator[bytes]:
    """Yield every line of every file as raw bytes, each ending with ``b"\\n"``.

    The last line of a file gets a newline if it lacks one; an empty file yields nothing.
    A corrupt compressed file raises :class:`InputError` naming it.

    Example: a file holding ``b"a\\r\\n\\nb"`` yields ``b"a\\r\\n"``, ``b"\\n"``, ``b"b\\n"``.
    """
    for path in paths:
        path = os.fspath(path)
        f = open_input(path)
        try:
            line = None
            for line in f:
                if not line.endswith(b"\n"):
                    line += b"\n"
                yield line
        except (OSError, EOFError, ValueError) as exc:
            raise _read_error(path, exc) from None
        except Exception as exc:
            if type(exc).__module__.startswith(("zstd", "zstandard", "lzma", "gzip", "zlib")):
                raise _read_error(path, exc) from None
            raise
        finally:
            if path != "-":
                f.close()


def iter_documents(paths: Iterable[str | os.PathLike], field: str | None = None) -> Iterator[bytes]:
    """Yield one ``bytes`` document per line.

    Without ``field``: the line without its final ``b"\\n"`` (a ``\\r`` before it is kept).
    With ``field``: each line is a JSON object and the document is the UTF-8 of
    ``record[field]`` (lone surrogates are kept as with ``surrogatepass``); blank lines are
    skipped; a bad JSON line, a missing field or a non-string value raises :class:`InputError`
    naming the file and the line number.

    Example::

        {"text": "héllo", "id": 1}   ->   b"h\\xc3\\xa9llo"     (field="text")
    """
    for path in paths:
        path = os.fspath(path)
        for number, line in enumerate(iter_lines([path]), 1):
            line = line[:-1]
            if field is None:
                yield line
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InputError(path, f"invalid JSON: {exc}", line=number) from None
            if not isinstance(record, dict):
                raise InputError(path, f"expected a JSON object, got {type(record).__name__}", line=number)
            if field not in record:
                raise InputError(path, f"no field {field!r}", line=number)
            value = record[field]
            if not isinstance(value, str):
                raise InputError(path, f"field {field!r} is {type(value).__name__}, not a string", line=number)
            yield value.encode("utf-8", "surrogatepass")


def prefetch(iterator, depth: int = 2):
    """Run ``iterator`` in a background thread, ``depth`` items ahead."""
    q: queue.Queue = queue.Queue(depth)
    stop = object()
    failure = []
    halt = threading.Event()

    def run():
        try:
            for item in iterator:
                while not halt.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if halt.is_set():
                    return
        except BaseException as exc:  # re-raised in the consumer
            failure.append(exc)
        finally:
            while not halt.is_set():
                try:
                    q.put(stop, timeout=0.1)
                    break
                except queue.Full:
                    continue

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is stop:
                break
            yield item
    finally:
        halt.set()
        t.join()
    if failure:
        raise failure[0]


def spool_stdin() -> str:
    """Copy standard input to a temporary file (so that it can be read several times); return
    its path. The name is one :func:`clean_litter` recognises if the process dies."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix=temp_name("stdin") + "-")
    with os.fdopen(fd, "wb") as out:
        while True:
            block = sys.stdin.buffer.read(1 << 20)
            if not block:
                break
            out.write(block)
    return name


def input_size(path: str | os.PathLike) -> int | None:
    """Size in bytes on disk, or None for standard input / unknown."""
    path = os.fspath(path)
    if path == "-":
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None


# ------------------------------------------------------------------------ temporary names
#
# Every temporary file or folder tokenmill creates is named
#     .tokenmill-tmp-<host>-<pid>-<tag>-<name>
# where <host> is 8 hex digits of a hash of the host name, <pid> the creating process and <tag>
# random. A crashed (SIGKILLed, power cut) run leaves such names behind; clean_litter removes
# those created on this host by a process that no longer exists.

# Each write() call copies at most this much: on the machine measured, copying into the page
# cache ran 2-6x slower in calls of 1-4 MB than in calls of 64-256 KB (same bytes, same buffers).
WRITE_PIECE = 256 << 10


def write_all(f, data) -> None:
    """Write all of ``data`` (bytes or any contiguous buffer) to the binary file ``f``, at most
    :data:`WRITE_PIECE` bytes per call, without copying it; a raw file may take a call in part."""
    view = memoryview(data).cast("B")
    while view:
        piece = view[:WRITE_PIECE]
        n = f.write(piece)
        view = view[len(piece) if n is None else n:]


TEMP_PREFIX = ".tokenmill-tmp-"
_TEMP_RE = re.compile(r"^\.tokenmill-tmp-([0-9a-f]{8})-(\d+)-([0-9a-f]{8})(?:-|$)")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_name(name: str = "") -> str:
    """A fresh temporary base name that :func:`clean_litter` can recognise once its owner is dead."""
    base = f"{TEMP_PREFIX}{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return f"{base}-{name}" if name else base


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover
        return True
    return True


def clean_litter(folder: str | os.PathLike) -> list[str]:
    """Remove temporary files and folders left in ``folder`` by dead tokenmill processes.

    Only names created on this host (see :func:`temp_name`) whose process id is no longer
    running are removed; a live process's files are never touched. Returns the removed paths.
    Errors (permissions, races with another cleaner) are ignored: cleanup is best effort.
    """
    removed = []
    host = _host_tag()
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for name in entries:
        m = _TEMP_RE.match(name)
        if not m or m.group(1) != host or _pid_alive(int(m.group(2))):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------------- outputs
WRITEBACK_STEP = 8 << 20     # an output asks the kernel to start writing it back every 8 MB


def _sync_file_range():
    """libc's ``sync_file_range`` (Linux), or None where there is no such call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, ImportError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_START_WRITEBACK = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


class WritebackFile(io.FileIO):
    """An output file that has the kernel start writing its pages to disk after every
    :data:`WRITEBACK_STEP` bytes, without waiting for them (``sync_file_range`` with
    ``SYNC_FILE_RANGE_WRITE``, the way databases bound their dirty pages). The disk then works
    while the program goes on, and the fsync before the final rename finds little left to do,
    instead of writing the whole output at the end. Where the call does not exist it is a
    plain file.
    """

    def __init__(self, path, mode="xb", at: int = 0):
        super().__init__(path, mode)
        if at:
            self.seek(at)      # writes go on from byte ``at`` (mode ``r+b``: into a file made before)
        self._pos = at
        self._started = at     # where the bytes whose writeback is not started yet begin

    def write(self, data):
        n = super().write(data)
        if n:
            self.wrote(n)
        return n

    def wrote(self, n: int) -> None:
        """Count ``n`` bytes written at the file's position by :meth:`write` or by other means
        (``copy_file_range`` on :meth:`fileno`), and start their writeback in steps."""
        self._pos += n
        if _START_WRITEBACK is not None and self._pos - self._started >= WRITEBACK_STEP:
            # a hint: if it fails, the fsync at the end still writes everything
            _START_WRITEBACK(self.fileno(), self._started, self._pos - self._started, _SYNC_FILE_RANGE_WRITE)
            self._started = self._pos


def _open_compressed_writer(raw, final_path: str, level: int | None = None):
    kind = compression_of(final_path)
    if kind == "gz":
        import gzip
        # filename="" and mtime=0: the same content gives the same bytes, and the temporary
        # name does not leak into the header.
        return gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=level or 6, mtime=0)
    if kind == "xz":
        import lzma
        return lzma.LZMAFile(raw, "wb", preset=level if level is not None else 3)
    if kind == "zst":
        import zstandard
        return zstandard.ZstdCompressor(level=level or 3).stream_writer(raw, closefd=False)
    return None


class AtomicOutputs:
    """A group of output files that appear under their final names only if all succeed.

    Each :meth:`open` creates ``.tokenmill-tmp-...-<name>`` in the final folder (or in
    ``temp_dir``, on the same filesystem: a job's work folder, removed with whatever a killed
    task left in it) and returns a
    binary writer that compresses by the *final* name's extension. :meth:`commit` flushes,
    fsyncs and renames them all; :meth:`abort` (or leaving the ``with`` block by an exception,
    including ``KeyboardInterrupt``) closes and deletes every temporary file. ``-`` writes to
    standard output directly (no atomicity possible).

    Example::

        with AtomicOutputs() as outs:
            f = outs.open("out-00000.txt.gz")
            f.write(b"line\\n")
        # committed here; on an exception nothing named out-00000.txt.gz exists
    """

    def __init__(self, fsync: bool = True, temp_dir: str | None = None):
        self.fsync = fsync
        self.temp_dir = temp_dir    # where the temporary files go (same filesystem), else beside
        self._items: list[tuple[str, str, object, object]] = []  # final, temp, writer, raw
        self._done = False

    def open(self, path: str | os.PathLike, level: int | None = None):
        path = os.fspath(path)
        if path == "-":
            out = sys.stdout.buffer
            self._items.append(("-", "-", out, None))
            return out
        folder = self.temp_dir or os.path.dirname(os.path.abspath(path))
        temp = os.path.join(folder, temp_name(os.path.basename(path)))
        raw = WritebackFile(temp, "xb") if self.fsync else open(temp, "xb", buffering=0)
        try:
            writer = _open_compressed_writer(raw, path, level)
        except BaseException:
            raw.close()
            os.unlink(temp)
            raise
        self._items.append((path, temp, writer, raw))
        return writer if writer is not None else raw

    @property
    def temp_paths(self) -> list[str]:
        return [t for _, t, _, _ in self._items if t != "-"]

    def commit(self) -> None:
        if self._done:
            return
        try:
            for final, temp, writer, raw in self._items:
                if final == "-":
                    writer.flush()
                    continue
                if writer is not None:
                    writer.close()  # finishes the compressed stream; raw stays open
                    if not raw.closed:
                        raw.flush()
                if self.fsync and not raw.closed:
                    os.fsync(raw.fileno())
                raw.close()
            for final, temp, _, _ in self._items:
                if final != "-":
                    os.replace(temp, final)
            self._done = True
        except OSError as exc:
            self.abort()
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror or str(exc), self._items[0][0] if self._items else None) from None
            raise

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        for final, temp, writer, raw in self._items:
            if final == "-":
                continue
            for f in (writer, raw):
                try:
                    if f is not None:
                        f.close()
                except Exception:
                    pass
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, level: int | None = None):
    """Context manager: a binary writer for ``path`` that is renamed into place only on success.

    Compression follows ``path``'s extension (``.gz``, ``.xz``, ``.zst``). On any exception,
    including ``KeyboardInterrupt``, the temporary file is removed and ``path`` is untouched.

    Example::

        with atomic_output("counts.tsv.zst") as f:
            f.write(b"the\\t42\\n")
    """
    with AtomicOutputs() as outs:
        yield outs.open(path, level)


def remove_file(path: str | os.PathLike) -> None:
    """Remove ``path`` if it can be removed (a temporary file that may be gone already)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def free_space(folder: str | os.PathLike) -> int | None:
    """Free bytes in the file system holding ``folder`` (None if unknown)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def same_filesystem(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


__all__ = [
    "AtomicOutputs", "atomic_output", "clean_litter", "compression_of", "expand_inputs",
    "free_space", "input_size", "iter_documents", "iter_lines", "open_input", "same_filesystem",
    "temp_name",
]
