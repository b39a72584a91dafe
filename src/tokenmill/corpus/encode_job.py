"""``tokenmill encode-corpus`` as tasks on an engine (``--engine ray``; see :mod:`tokenmill.engine`).

1. *Count* (only with ``--alpha``, whose seeds follow the document numbers): the documents of
   each input part (:mod:`tokenmill.corpus.splits`), so that each part knows the number of its
   first document.
2. *Encode*, one task per part, each taking the CPUs of the smallest node (``cpus=
   engine.node_threads``): the task reads its part while that many threads encode it, as a
   local run does, and writes its documents' tokens (with ``--bos`` / ``--eos``) to a file of
   the work folder and the length of each document to another.
3. As the parts arrive, the driver reads their lengths, part after part in order, and cuts
   the documents into shards exactly where a local run does (a shard closes after the
   document that brings it to ``--shard-tokens``).
4. *Write*, one task per shard, started as soon as the parts it takes documents from are in
   (``engine.submit``, with no CPU of its own: a copy waits on storage), so that shards are
   written while later parts are encoded: copies its documents' tokens out of the parts'
   files into ``shard-NNNNN.bin`` / ``.idx`` (under temporary names, renamed when complete).
   When all are written the driver writes the manifest, which lists the shards, as the last
   step.

The folder is the local run's byte for byte. A run on an engine always encodes everything: it
does not continue a partial folder (it rewrites the same shards), but it still refuses a folder
made with another model, other inputs or other options.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import io as tio
from .splits import count_documents, documents, plan_shards

COPY_TOKENS = 1 << 22          # tokens copied at a time when a shard is written without copy_file_range


_LOADED: dict = {}


def _tokenizer(model_text: str):
    """The tokenizer of a model file's text, built once per worker process (a worker runs
    many tasks of a job: building a 32k model takes a tenth of a second)."""
    import hashlib

    from .. import model_file
    from ..tokenizer import Tokenizer

    key = hashlib.sha256(model_text.encode("utf-8")).hexdigest()
    tok = _LOADED.get(key)
    if tok is None:
        _LOADED.clear()               # one model at a time
        tok = _LOADED[key] = Tokenizer(model_file.loads(model_text))
    return tok


def encode_split(task) -> dict:
    """Task: encode one input part (documents numbered from ``first``) into a token file and a
    file of document lengths in the work folder, on ``threads`` encoding threads while this one
    reads (as a local run does). Returns ``{"tokens", "lengths", "documents", "n_tokens",
    "bytes"}``."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    from ..engine import fault_point
    from ..tokenizer import _seed_state
    from .shards import with_specials

    split, first, model_text, field, alpha, seed, bos, eos, dtype, work, threads = task
    tok = _tokenizer(model_text)
    np_dtype = np.dtype(dtype)
    seg = tok._seg
    normalize = tok._normal_form is not None
    tokens_path = os.path.join(work, tio.temp_name("tokens"))
    lengths_path = os.path.join(work, tio.temp_name("lengths"))
    index, n_tokens, n_bytes = first, 0, 0
    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="tokenmill-encode")
    try:
        with open(tokens_path, "xb") as ft, open(lengths_path, "xb") as fl:
            def finish(future):
                out, ends = with_specials(future.result(), bos, eos, np_dtype)
                ft.write(out)
                fl.write(np.diff(ends, prepend=0).astype("<i8"))
                return len(out)

            for batch in documents(split, field):
                if normalize:
                    batch = [tok._to_bytes(d) for d in batch]
                seeds = [_seed_state(seed + index + k) for k in range(len(batch))] if alpha >= 0 else None
                pending.append(pool.submit(seg.encode_many, batch, alpha, seeds))
                index += len(batch)
                n_bytes += sum(map(len, batch)) + len(batch)
                while len(pending) > 2 * threads:
                    n_tokens += finish(pending.popleft())
                fault_point("encode-split")     # tests: a task killed with its files half written
            while pending:
                n_tokens += finish(pending.popleft())
    except BaseException:
        for future in pending:
            future.cancel()
        for p in (tokens_path, lengths_path):
            try:
                os.unlink(p)
            except OSError:
                pass
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return {"tokens": tokens_path, "lengths": lengths_path, "documents": index - first,
            "n_tokens": n_tokens, "bytes": n_bytes}


def write_shard(task) -> dict:
    """Task: write shard ``name`` of the output folder: ``pieces`` are ``(tokens file, lengths
    file, first document, end document, first token)`` of the parts it takes documents from.
    Its files are written in the work folder (so that a killed attempt's are removed with it)
    and renamed into the output folder when complete."""
    from ..engine import fault_point
    from .shards import AtomicOutputs, write_all

    name, pieces, dtype, folder, work = task
    np_dtype = np.dtype(dtype)
    documents = tokens = 0
    with AtomicOutputs(temp_dir=work) as outs:
        fbin = outs.open(os.path.join(folder, name + ".bin"))
        fidx = outs.open(os.path.join(folder, name + ".idx"))
        write_all(fidx, np.zeros(1, "<u8").tobytes())
        for tokens_path, lengths_path, d0, d1, t0 in pieces:
            lengths = np.fromfile(lengths_path, dtype="<i8", count=d1 - d0, offset=8 * d0)
            n = int(lengths.sum())
            write_all(fidx, (np.cumsum(lengths) + tokens).astype("<u8").tobytes())
            _copy_range(tokens_path, t0 * np_dtype.itemsize, n * np_dtype.itemsize, fbin)
            documents += d1 - d0
            tokens += n
            fault_point("encode-write")     # tests: a task killed with its shard half written
    return {"name": name, "documents": documents, "tokens": tokens}


def _copy_range(path: str, offset: int, size: int, out) -> None:
    """Append ``size`` bytes of ``path`` from ``offset`` to the file object ``out``: in the
    kernel (``copy_file_range``) where it can, else through a buffer. The copy goes in steps of
    ``tio.WRITEBACK_STEP``, each told to ``out`` (a :class:`tio.WritebackFile` starts their
    writeback, so the fsync before the rename finds little left to write)."""
    from .shards import write_all

    with open(path, "rb", buffering=0) as f:
        done = 0
        raw = getattr(out, "fileno", None)
        if raw is not None and hasattr(os, "copy_file_range"):
            try:
                out.flush()
                fd = out.fileno()
                wrote = getattr(out, "wrote", None)
                while done < size:
                    got = os.copy_file_range(f.fileno(), fd, min(size - done, tio.WRITEBACK_STEP), offset + done)
                    if got <= 0:
                        break
                    done += got
                    if wrote is not None:
                        wrote(got)
            except OSError as exc:
                if exc.errno not in (18, 22, 38, 95):      # EXDEV EINVAL ENOSYS EOPNOTSUPP
                    raise
        f.seek(offset + done)
        while done < size:
            data = f.read(min(size - done, COPY_TOKENS * 4))
            if not data:
                raise OSError(f"{path}: shorter than its task wrote")
            write_all(out, data)
            done += len(data)


# ------------------------------------------------------------------------------ the job

class ShardCutter:
    """Cuts the documents of the encoded parts, fed in order, into shards as a local run does:
    a shard closes after the document that brings it to ``shard_tokens``. A shard is a list of
    pieces ``(tokens file, lengths file, first document, end document, first token)`` of the
    parts it takes documents from; :meth:`add` returns the shards that a part closes, so they
    can be written while later parts are still being encoded. Reads one part's lengths at a
    time."""

    def __init__(self, shard_tokens: int):
        self.shard_tokens = shard_tokens
        self.current: list = []
        self.filled = 0

    def add(self, part: dict) -> list[list]:
        closed = []
        if not part["documents"]:
            return closed
        lengths = np.fromfile(part["lengths"], dtype="<i8")
        ends = np.cumsum(lengths)
        d, t = 0, 0                  # next document of the part, its first token
        n = len(lengths)
        while d < n:
            room = self.shard_tokens - self.filled
            # the first document from d whose end brings the shard to the limit closes it
            k = int(np.searchsorted(ends[d:], t + room, side="left")) + d
            last = min(k, n - 1)
            stop = int(ends[last])
            self.current.append((part["tokens"], part["lengths"], d, last + 1, t))
            self.filled += stop - t
            d, t = last + 1, stop
            if self.filled >= self.shard_tokens:
                closed.append(self.current)
                self.current, self.filled = [], 0
        return closed

    def finish(self) -> list[list]:
        """The last shard, if it has documents."""
        last = [self.current] if self.current else []
        self.current, self.filled = [], 0
        return last


def encode_on_engine(job, spec, started: float):
    """:func:`tokenmill.encode_corpus` with ``spec.engine``: the same folder, made by tasks."""
    from ..engine import WorkFolder, make_engine, task_inputs
    from .shards import EncodeCorpusResult, _remove_unlisted, _write_manifest

    manifest, output = job.manifest, job.output
    paths = task_inputs("encode-corpus", spec.engine, job.paths)
    if manifest.get("complete"):
        return EncodeCorpusResult(output, manifest["documents"], manifest["tokens"], len(manifest["shards"]),
                                  0, manifest["documents"], time.monotonic() - started)
    manifest.update(complete=False, documents=0, tokens=0, shards=[])
    _write_manifest(output, manifest)      # claims the folder before any shard is written
    dtype = np.dtype(job.np_dtype).str
    alpha = -1.0 if spec.alpha is None else float(spec.alpha)
    engine = make_engine(spec.engine, spec.ray_address, spec.workers)
    progress = spec.progress
    try:
        with WorkFolder(os.path.abspath(output), "encode-job") as work:
            splits = plan_shards(paths, spec.field, engine.node_tasks)
            sizes = [s.size for s in splits]
            firsts = [0] * len(splits)
            if alpha >= 0:
                counted = engine.map(count_documents, [(s, spec.field) for s in splits],
                                     label="encode-corpus (count documents)", progress=progress, sizes=sizes)
                firsts = np.concatenate([[0], np.cumsum([c[0] for c in counted])]).tolist()[:-1]
            model_text = job.tok.to_json()
            cutter = ShardCutter(spec.shard_tokens)
            arrived: dict = {}          # parts that ended before one ahead of them
            writes = []                 # a task per shard, started as soon as its parts are in
            folder = os.path.abspath(output)

            def write(shards):
                for shard in shards:
                    # a copy waits on storage more than it uses a CPU: it runs beside the
                    # encoding tasks (cpus=0) instead of taking a CPU from them
                    task = (f"shard-{len(writes):05d}", shard, dtype, folder, work.path)
                    writes.append(engine.submit(write_shard, task, cpus=0))

            fed = 0                     # parts given to the cutter, which takes them in order

            def encoded(k, part):
                nonlocal fed
                arrived[k] = part
                while fed in arrived:
                    write(cutter.add(arrived.pop(fed)))
                    fed += 1

            # node-wide tasks: each reads its part while the node's other CPUs encode it
            parts = engine.map(encode_split, [(s, firsts[i], model_text, spec.field, alpha, spec.seed,
                                               job.bos, job.eos, dtype, work.path, engine.node_threads)
                                              for i, s in enumerate(splits)],
                               label="encode-corpus (encode)", progress=progress, sizes=sizes,
                               cpus=engine.node_threads, done=encoded)
            write(cutter.finish())
            written = engine.results(writes, label="encode-corpus (write shards)", progress=progress)
            engine.finish_maps()       # Ray disconnects while the manifest is written
        first = 0
        for w in written:
            manifest["shards"].append({"name": w["name"], "first_document": first,
                                       "documents": w["documents"], "tokens": w["tokens"]})
            first += w["documents"]
        manifest["documents"] = first
        manifest["tokens"] = sum(w["tokens"] for w in written)
        manifest["complete"] = True
        _write_manifest(output, manifest)
        _remove_unlisted(output, manifest)
    finally:
        engine.close(report=spec.progress)
    return EncodeCorpusResult(output, manifest["documents"], manifest["tokens"], len(manifest["shards"]),
                              sum(p["bytes"] for p in parts), 0, time.monotonic() - started,
                              manifest["tokens"])
