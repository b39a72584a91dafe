"""``tokenmill train`` with its passes over the corpus as tasks on an engine (``--engine ray``;
see :mod:`tokenmill.engine`).

The corpus is read only by tasks, one per input part (:mod:`tokenmill.corpus.splits`):

1. *count* (map): the byte n-grams of the part, as packed keys and counts, split by a hash of
   the key into partition files; (reduce) each partition's counts added up, those below
   ``min_count`` dropped. With ``order`` > 7, a second count of the 8..order-grams whose 7-byte
   windows were kept, the same way.
2. The driver gathers the kept n-grams (what a local run keeps) and the frequent n-grams that
   the refinement weighs, and writes them to one file that the next tasks read.
3. *segment* (map): each task builds the n-gram model from that file and cuts its part into
   pieces, counted and split into partition files by a hash of the piece; (reduce) each
   partition's counts added up.
4. The driver prunes and refines from the pieces, exactly as a local run (those phases read the
   pieces, not the corpus).

With ``--sample-bytes``, the documents of each part are first counted (the sample is drawn by a
hash of the seed and the document's number). The models equal a local run's byte for byte, as
long as the kept n-grams fit in ``--memory`` on both (otherwise a local run raises the LM's
min_count in steps between passes, and the engine once at the end: ``lm_min_count`` in the
summary says when that happened).
"""
from __future__ import annotations

import os
import struct
import tempfile
import time

import numpy as np

from . import _ngram, _spans
from .corpus.splits import count_documents, documents, plan_shards
from .errors import TokenmillError
from .spec import TrainerSpec, parse_size

PARTITIONS_PER_TASK = 2
ENTRY_BYTES_PER_INPUT_BYTE = 6  # n-gram entries the maps write, per byte of text (zh.train in 2 parts: 5.7)
_KEY_MIX = np.uint64(0x9E3779B97F4A7C15)
PIECE_SALT = 0x452821E638D01377


def partitions(input_bytes: int, budget: int, tasks: int) -> int:
    """How many partitions the reduce tasks get: 2 per CPU, or more when the maps' entries
    (about 6 bytes of them per byte of text; a reduce holds its partition, and more than as
    much again while it sorts) would not fit in half of ``budget`` per task."""
    need = -(-ENTRY_BYTES_PER_INPUT_BYTE * 2 * input_bytes // max(budget // 2, 1))
    return max(PARTITIONS_PER_TASK * tasks, need)


# ----------------------------------------------------------------------- arrays in files

def write_arrays(path: str, *arrays) -> None:
    """Append arrays (each with its dtype and length) to ``path``."""
    with open(path, "ab") as f:
        for a in arrays:
            a = np.ascontiguousarray(a)
            code = a.dtype.str.encode()
            f.write(struct.pack("<q8s", len(a), code))
            f.write(a.tobytes())


def read_arrays(path: str):
    """The arrays written by :func:`write_arrays`, in order."""
    out = []
    with open(path, "rb") as f:
        while True:
            head = f.read(16)
            if not head:
                return out
            n, code = struct.unpack("<q8s", head)
            dtype = np.dtype(code.rstrip(b"\0").decode())
            out.append(np.frombuffer(f.read(n * dtype.itemsize), dtype=dtype))


def _key_parts(keys, nparts: int):
    return ((keys * _KEY_MIX) >> np.uint64(40)) % np.uint64(nparts)


# --------------------------------------------------------------------------- documents

def _corpus(shard, spec: TrainerSpec, field, first: int, sample: float):
    """The trainer's :class:`~tokenmill.trainer.Corpus` over one input part whose first
    document has number ``first`` (the sample is drawn by document number)."""
    from .trainer import Corpus

    class PartCorpus(Corpus):
        def _raw_documents(self):
            for batch in documents(shard, field):
                yield from batch

    corpus = PartCorpus([shard.path], field=field, normalizer=spec.normalizer)
    corpus.first = first
    if sample < 1:
        corpus.sample, corpus.seed = sample, spec.seed
    return corpus


# ------------------------------------------------------------------------------- count

def count_map(task) -> dict:
    """Task: the n-grams of one part (2..7 bytes, or with a windows file the 8..order-grams
    whose 7-byte windows are in it), all of them, in partition files of the work folder."""
    from .corpus.io import temp_name
    from .engine import fault_point
    from .trainer import MAX_CHUNK, SHARDS

    shard, first, sample, spec, field, order, windows_file, folder, nparts, budget = task
    windows = None
    if windows_file is not None:
        keys, counts = read_arrays(windows_file)[:2]
        windows = _ngram.lm_from_counts([keys.copy()], [counts.copy()], length=7)
    corpus = _corpus(shard, spec, field, first, sample)
    files = [None] * nparts
    tag = temp_name("train-count")
    starts = [0] * SHARDS
    unigrams, positions, docs, nbytes, passes = None, 0, 0, 0, 0
    limit = max(parse_size(budget) // 2, 8 << 20)
    while min(starts) < _ngram.FULL_RANGE:
        passes += 1
        table = _ngram.NgramTable(order, SHARDS, limit)
        table.set_starts(starts)
        for buf, doc_ends in corpus.batches():
            ends = _ngram.chunk_ends(buf, doc_ends, spec.split_newlines, spec.isolate_digits, MAX_CHUNK)
            if windows is None:
                table.count_bytes(buf, ends, 0, 1)
            else:
                _ngram.count_long(table, buf, ends, windows, 0, 1)
            if passes == 1:
                docs += len(doc_ends)
                nbytes += len(buf)
        if passes == 1:
            unigrams, positions = table.unigrams.copy(), int(table.positions)
        starts = [hi for _, hi in table.ranges()]
        keys, counts = table.export(1, free_tables=True)
        del table
        parts = _key_parts(keys, nparts)
        for r in range(nparts):
            m = parts == r
            if m.any():
                if files[r] is None:
                    files[r] = os.path.join(folder, f"{tag}-{r}")
                write_arrays(files[r], keys[m], counts[m])
        fault_point("train-count")        # tests: a task killed with its files half written
    corpus.close()
    return {"files": files, "unigrams": unigrams, "positions": positions, "documents": docs,
            "bytes": nbytes, "passes": passes}


def count_reduce(task) -> dict:
    """Task: add up one partition's n-gram counts; keep those >= min_count, in a file."""
    from .corpus.io import temp_name

    paths, min_count, folder = task
    keys, counts = [], []
    for p in paths:
        arrays = read_arrays(p)
        keys.extend(arrays[0::2])
        counts.extend(arrays[1::2])
    keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    counts = np.concatenate(counts) if counts else np.zeros(0, np.uint64)
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]])) if len(keys) else np.zeros(0, np.int64)
    keys = keys[first]
    counts = np.add.reduceat(counts, first) if len(first) else counts[:0]
    m = counts >= np.uint64(min_count)
    out = os.path.join(folder, temp_name("train-kept"))
    write_arrays(out, keys[m], counts[m].astype(np.uint64))
    return {"file": out, "kept": int(m.sum()), "distinct": len(keys)}


# ----------------------------------------------------------------------------- segment

def segment_map(task) -> dict:
    """Task: cut one part into pieces with the n-gram model (built from the LM file), count
    them, and write them in partition files."""
    from .corpus.io import temp_name
    from .count_job import Partitions
    from .engine import fault_point
    from .trainer import MAX_CHUNK, _split_ranges, build_lm

    shard, first, sample, spec, field, lm_file, folder, nparts, budget = task
    arrays = read_arrays(lm_file)
    unigrams, positions = arrays[0], int(arrays[1][0])
    keys = [a.copy() for a in arrays[2::2]]
    counts = [a.copy() for a in arrays[3::2]]
    del arrays
    lm, unigram, unigram_log_counts = build_lm(keys, counts, unigrams, positions)
    limit = max((parse_size(budget) - lm.nbytes) // 2, 8 << 20)
    corpus = _corpus(shard, spec, field, first, sample)
    counter = _spans.PieceCounter()
    out = Partitions(folder, temp_name("train-pieces"), nparts, PIECE_SALT)

    def flush():
        buf, ends, cnt = counter.export()
        counter.clear()
        out.write(np.frombuffer(bytes(buf), dtype=np.uint8), ends, cnt)

    for buf, doc_ends in corpus.batches():
        ends = _ngram.chunk_ends(buf, doc_ends, spec.split_newlines, spec.isolate_digits, MAX_CHUNK)
        piece_ends = np.concatenate([np.zeros(1, np.int64),
                                     _ngram.lm_segment(lm, unigram, unigram_log_counts, buf,
                                                       _split_ranges(ends, 1)[0], spec.order,
                                                       spec.ensure_unicode)])
        counter.add_spans(buf, piece_ends, 0, 1)
        if counter.nbytes > limit:
            flush()
    flush()
    fault_point("train-segment")
    corpus.close()
    return {"files": out.files}


def pieces_reduce(task) -> dict:
    """Task: add up one partition's piece counts, into a file."""
    from .corpus.io import temp_name
    from .counting import read_entries, write_entries
    from .piece_store import sum_pieces

    paths, folder = task
    buf, ends, counts = sum_pieces([c for p in paths for c in read_entries(p)])
    out = os.path.join(folder, temp_name("train-pieces-sum"))
    n = len(counts)
    write_entries(out, np.frombuffer(bytes(buf), dtype=np.uint8), ends, counts, np.arange(n, dtype=np.int64), 0, n)
    return {"file": out, "pieces": n}


def _load_kept(kept: list, keys: list, counts: list) -> None:
    """Append the kept n-grams of the reduce tasks' files to ``keys`` / ``counts``; remove the
    files."""
    for k in kept:
        a = read_arrays(k["file"])
        keys.append(a[0].copy())
        counts.append(a[1].copy())
        os.unlink(k["file"])


# ------------------------------------------------------------------------------ the job

def train_on_engine(trainer, source, field):
    """:meth:`tokenmill.Trainer.train` with ``trainer.spec.engine``: the same models."""
    from .count_job import partition_files, remove_map_files
    from .engine import WorkFolder, make_engine, task_inputs
    from .piece_store import PieceData
    from .counting import concat_entries, read_entries
    from .trainer import _BASE_MEMORY, fit_kept, frequent_ngrams

    spec = trainer.spec
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    if not all(isinstance(s, (str, os.PathLike)) for s in source):
        raise TokenmillError(f"train: --engine {spec.engine} reads the corpus from files; give paths")
    paths = task_inputs("train", spec.engine, source)
    stats = trainer.stats
    progress = spec.progress
    budget = spec.memory
    engine = make_engine(spec.engine, spec.ray_address, spec.workers)
    work_parent = os.path.abspath(spec.tmp or tempfile.gettempdir())
    t0 = time.monotonic()
    try:
        with WorkFolder(work_parent, "train-job") as work:
            shards = plan_shards(paths, field, engine.parallel_tasks)
            sizes = [s.size for s in shards]
            firsts, sample = [0] * len(shards), 1.0
            if spec.sample_bytes is not None:
                counted = engine.map(count_documents, [(s, field) for s in shards], label="measure",
                                     progress=progress, sizes=sizes)
                firsts = np.concatenate([[0], np.cumsum([c[0] for c in counted])]).tolist()[:-1]
                total = sum(c[1] for c in counted)
                want = parse_size(spec.sample_bytes)
                if total > want:
                    sample = want / total
                trainer._phase("measure", t0)
            nparts = partitions(sum(sizes), parse_size(spec.memory), engine.parallel_tasks)

            def count_stage(order, windows_file, label):
                maps = engine.map(count_map, [(s, firsts[i], sample, spec, field, order, windows_file,
                                               work.path, nparts, budget) for i, s in enumerate(shards)],
                                  label=f"{label} (map)", progress=progress, sizes=sizes)
                jobs = [(files, spec.min_count, work.path) for files in partition_files(maps, nparts)]
                kept = engine.map(count_reduce, jobs, label=f"{label} (reduce)", progress=progress)
                remove_map_files(maps)
                return maps, kept

            t0 = time.monotonic()
            maps, kept = count_stage(min(spec.order, 7), None, "count n-grams")
            unigrams = sum(m["unigrams"] for m in maps)
            positions = sum(m["positions"] for m in maps)
            stats.documents = sum(m["documents"] for m in maps)
            stats.bytes = sum(m["bytes"] for m in maps)
            stats.count_passes = max(m["passes"] for m in maps)
            if positions == 0:
                raise TokenmillError(f"{paths[0]}: no text to train on (empty corpus)")
            kept_keys, kept_counts = [], []
            _load_kept(kept, kept_keys, kept_counts)
            candidates = (np.zeros(0, np.uint64), np.zeros(0, np.uint64))
            if spec.refine:
                candidates = frequent_ngrams(np.concatenate(kept_keys), np.concatenate(kept_counts),
                                             trainer._candidate_budget(), spec.ensure_unicode,
                                             spec.max_piece_length)
            if spec.order > 7:
                windows_file = work.file("windows")
                write_arrays(windows_file, np.concatenate(kept_keys), np.concatenate(kept_counts))
                maps2, kept2 = count_stage(spec.order, windows_file, f"count 8..{spec.order}-grams")
                stats.count_passes += max(m["passes"] for m in maps2)
                _load_kept(kept2, kept_keys, kept_counts)
            lm_budget = max(parse_size(spec.memory) - _BASE_MEMORY, 32 << 20)
            stats.lm_min_count = fit_kept(kept_keys, kept_counts, spec.min_count, lm_budget)
            stats.candidates = len(candidates[0]) if spec.refine else 0
            stats.ngrams = sum(len(k) for k in kept_keys)
            trainer._candidates = candidates
            lm_file = work.file("lm")
            arrays = [unigrams.astype(np.uint64), np.array([positions], np.int64)]
            for k, c in zip(kept_keys, kept_counts):
                arrays += [k, c]
            write_arrays(lm_file, *arrays)
            del kept_keys, kept_counts, arrays
            trainer._phase("count", t0)

            t0 = time.monotonic()
            maps = engine.map(segment_map, [(s, firsts[i], sample, spec, field, lm_file, work.path, nparts,
                                             budget) for i, s in enumerate(shards)],
                              label="segment (map)", progress=progress, sizes=sizes)
            jobs = [(files, work.path) for files in partition_files(maps, nparts) if files]
            summed = engine.map(pieces_reduce, jobs, label="segment (reduce)", progress=progress)
            engine.finish_maps()      # the rest (pruning, refining) runs in the driver
            remove_map_files(maps)
            data = PieceData(spec.tmp)
            try:
                # the pieces stay in memory if they fit the trainer's share for them, as locally
                total = sum(os.path.getsize(s["file"]) for s in summed)
                piece_budget = trainer.piece_budget or max((parse_size(spec.memory) - _BASE_MEMORY) // 2, 8 << 20)
                chunks = (c for s in summed for c in read_entries(s["file"]))
                if total > piece_budget:
                    for blob, offs, c in chunks:
                        data.spill(blob.tobytes(), offs, c)
                    data.finish(b"", np.zeros(1, np.int64), np.zeros(0, np.int64))
                else:
                    data.finish(*concat_entries(chunks))
                for s in summed:
                    os.unlink(s["file"])
                stats.lm_pieces = data.count
                stats.piece_spills = data.spills
                stats.piece_spill_bytes = data.spilled_bytes
                trainer._phase("segment", t0)
                return trainer._build_models(data)
            finally:
                data.close()
    finally:
        engine.close(report=spec.progress)
