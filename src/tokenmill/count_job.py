"""``tokenmill count`` as tasks on an engine (``--engine ray``; see :mod:`tokenmill.engine`).

1. *Map*, one task per group of input shards (a plain file is cut into byte ranges, each owning
   the lines that start in it; a compressed file or a JSON-lines file with ``--field`` is one
   shard), with as many groups as the cluster runs tasks of a node's CPUs at once
   (``engine.node_tasks``): each task counts its group with the same compiled counter as a
   local run, on the node's threads, within ``--memory``, and writes its counts to one file per
   *partition* (a hash of the n-gram picks the partition).
2. *Reduce*, one task per partition: the counts of that partition from every group are added
   up (in further passes over its files if they do not fit), ``--min-count`` is applied, and
   the result is sorted and written (``--top`` of it at most: the overall top K is among them).
3. The driver merges the sorted partitions into the TSV, exactly as a local run with several
   passes merges its passes.

When there is one group (a cluster of one node, or inputs that make one shard), its counts are
already complete: the map task applies ``--min-count``, sorts and writes each pass's result
itself, as a local run does, and there is no reduce.

The counts are exact, so the output is the local run's byte for byte, whatever the number of
shards, groups, partitions, nodes and retries.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import _spans
from .corpus.io import remove_file
from .corpus.splits import ShardSource, plan_shards
from .counting import read_entries, write_entries
from .spec import CountSpec, parse_size

PARTITIONS_PER_TASK = 2       # reduce partitions per CPU of the cluster
PARTITION_SALT = 0x243F6A8885A308D3


class Partitions:
    """Counted strings split into ``nparts`` files of ``folder`` (``tag-0``, ``tag-1``, ...) by
    a hash of the string (with ``salt``); appended to, batch after batch."""

    def __init__(self, folder: str, tag: str, nparts: int, salt: int):
        self.folder, self.tag, self.nparts, self.salt = folder, tag, nparts, salt
        self.files = [None] * nparts
        self.entries = [0] * nparts

    def write(self, blob, offs, counts, fault: str | None = None) -> None:
        """Append strings ``blob[offs[k]:offs[k+1]]`` with ``counts[k]``, each to its file."""
        from .engine import fault_point

        parts = _spans.span_parts(blob, offs, self.nparts, self.salt)
        order = np.argsort(parts, kind="stable").astype(np.int64)
        bounds = np.searchsorted(parts[order], np.arange(self.nparts + 1))
        for r in range(self.nparts):
            lo, hi = int(bounds[r]), int(bounds[r + 1])
            if hi > lo:
                if self.files[r] is None:
                    self.files[r] = os.path.join(self.folder, f"{self.tag}-{r}")
                write_entries(self.files[r], blob, offs, counts, order, lo, hi)
                self.entries[r] += hi - lo
                if fault:
                    fault_point(fault)      # tests: a task killed with its files half written

    def remove(self) -> None:
        for p in self.files:
            if p is not None:
                remove_file(p)


def partition_files(maps: list[dict], nparts: int) -> list[list[str]]:
    """Per partition, the files that map tasks (results with ``"files"``, one path or None per
    partition) wrote to it."""
    return [[m["files"][r] for m in maps if m["files"][r] is not None] for r in range(nparts)]


def remove_map_files(maps: list[dict]) -> None:
    """Delete the partition files of map tasks, once reduced."""
    for m in maps:
        for p in m["files"]:
            if p is not None:
                remove_file(p)


# ------------------------------------------------------------------------------- tasks

@dataclass(frozen=True)
class Units:
    """What a map task counts: the n-grams of 1..``order`` units of ``kind``, read from the
    documents (lines, or the JSON ``field``). Kinds: ``char``, ``byte``, ``word`` (with
    ``split`` / ``jieba``), as ``tokenmill count`` has them; ``alnum`` (characters in runs of
    letters and digits) and ``cut`` (the pieces of that text cut between characters that no
    n-gram of the file ``kept`` joins; ``order``: the longest n-gram of the file) for the
    new-word discovery, whose pieces are counted as single units."""

    kind: str
    order: int
    field: str | None = None
    split: str | None = None
    jieba: bool = False
    kept: str | None = None


def make_units(what: Units):
    """The unit function (see :func:`tokenmill.counting.unit_function`) that ``what`` describes."""
    from .counting import SHARDS, unit_function

    if what.kind in ("char", "byte", "word"):
        return unit_function(what.kind, what.split, what.jieba)[0]
    if what.kind == "alnum":
        from .discovery import _alnum_chars

        return _alnum_chars
    if what.kind == "cut":
        from .discovery import piece_cutter

        kept = _spans.SpanCounter(SHARDS)
        for blob, offs, counts in read_entries(what.kept):
            kept.add_counts(blob, offs, counts)
        return piece_cutter(kept, what.order)
    raise ValueError(f"unknown units {what.kind!r}")


class GroupSource:
    """A :class:`tokenmill.counting.TextSource` for a group of shards, read one after the other."""

    def __init__(self, shards: list, field: str | None = None):
        self.sources = [ShardSource(sh, field) for sh in shards]

    def total_bytes(self):
        sizes = [src.total_bytes() for src in self.sources]
        return None if None in sizes else sum(sizes)

    def close(self):
        pass

    def batches(self, batch_bytes: int):
        for src in self.sources:
            yield from src.batches(batch_bytes)


def count_group(task) -> dict:
    """Map task: count a group of shards on ``threads`` threads. With ``final`` None, write its
    counts, split into partitions, to fresh files in the work folder, and return ``{"files":
    [path or None per partition], "entries": [how many per partition], "lines", "bytes",
    "units", "passes"}``. With ``final = (min_count, top, None)`` (the only group: its counts
    are complete), write each pass's entries with count >= min_count, sorted (``top`` at most),
    and return ``{"runs": [(file, entries)], "distinct", ...}`` as :func:`reduce_partition`
    does; with ``final = (min_count, top, (path, space_byte))``, write the job's TSV to
    ``path`` instead (compressed by its extension; the driver moves it into place) and return
    ``{"runs": [], "written": lines, ...}``."""
    from .counting import PassCounter, Run, remove_runs
    from .corpus.io import temp_name
    from .engine import fault_point

    shards, what, folder, nparts, budget, threads, final = task
    units = make_units(what)
    order = 1 if what.kind == "cut" else what.order       # a cut piece is one unit
    counter = PassCounter(GroupSource(shards, what.field), units, order, memory=budget,
                          workers=threads, progress=False, label="count", tmp_dir=folder)
    if final is not None:
        min_count, top, tsv = final
        runs, written = [], None
        try:
            runs = counter.run(min_count, top)
            if tsv is None:
                runs = [r.spill(folder) if isinstance(r, Run) else r for r in runs]
            else:
                # the job's output, as a local count writes it: no run file for the driver to
                # read back and write out again
                from .corpus.io import atomic_output
                from .counting import write_tsv

                with atomic_output(tsv[0]) as out:
                    written = write_tsv(out, runs, top, tsv[1], workers=threads)
                remove_runs(runs)
                runs = []
            fault_point("count-map")        # tests: a task killed with its runs (or TSV) written
        except BaseException:
            remove_runs(runs)
            raise
        st = counter.stats
        return {"runs": [(r.path, len(r)) for r in runs], "written": written, "distinct": st.distinct,
                "lines": st.lines, "bytes": st.bytes, "units": st.units, "passes": st.passes}
    out = Partitions(folder, temp_name("count-map"), nparts, PARTITION_SALT)
    try:
        for blob, offs, counts in counter.passes(1):
            out.write(blob, offs, counts, fault="count-map")
            del blob, offs, counts
    except BaseException:
        out.remove()
        raise
    st = counter.stats
    return {"files": out.files, "entries": out.entries, "lines": st.lines, "bytes": st.bytes,
            "units": st.units, "passes": st.passes}


def group_shards(shards: list, groups: int) -> list[list]:
    """``shards`` dealt into at most ``groups`` groups of about equal bytes (largest first,
    each to the lightest group; ties to the first), each group in input order."""
    load = [0] * max(1, min(groups, len(shards)))
    members: list[list[int]] = [[] for _ in load]
    for k in sorted(range(len(shards)), key=lambda k: -shards[k].size):
        g = load.index(min(load))
        members[g].append(k)
        load[g] += shards[k].size
    return [[shards[k] for k in sorted(m)] for m in members if m]


def reduce_partition(task) -> dict:
    """Reduce task: add up one partition's counts from every group (``entries``: how many
    there are in its files), keep those >= min_count, sort them and write them (at most
    ``top``) to fresh files: one per pass, when they do not fit the budget at once. Returns
    ``{"runs": [(file, entries)], "distinct", "passes"}``."""
    from .counting import SHARDS, Run, remove_runs, sort_entries

    paths, entries, folder, budget, min_count, top = task
    table_budget = max(parse_size(budget) * 6 // 10, 4 << 20)
    starts = [0] * SHARDS
    runs, distinct, passes = [], 0, 0
    try:
        while min(starts) < _spans.FULL_RANGE:
            passes += 1
            table = _spans.SpanCounter(SHARDS, table_budget)
            table.set_starts(starts)
            # At most this many distinct strings: grow the tables once, within the budget. (The
            # files hold the maps' tables in slot order; adding them to smaller tables of the
            # same hash would pile them into long probe runs.)
            table.reserve(entries)
            for path in paths:
                for blob, offs, counts in read_entries(path):
                    table.add_counts(blob, offs, counts)
            starts = [hi for _, hi in table.ranges()]
            distinct += len(table)
            blob, offs, counts = table.export(min_count, free_tables=True)
            del table
            order = sort_entries(blob, offs, counts)
            if top is not None and len(order) > top:
                order = order[:top].copy()
            runs.append(Run(blob, offs, counts, order).spill(folder))
    except BaseException:
        remove_runs(runs)
        raise
    return {"runs": [(r.path, len(r)) for r in runs], "distinct": distinct, "passes": passes}


# ------------------------------------------------------------------------------ the job

def run_count(engine, paths: list[str], spec: CountSpec, folder: str, progress: bool, tsv=None):
    """``tokenmill count`` on ``engine``: see :func:`run_counting`."""
    what = Units(spec.unit, spec.order, spec.field, spec.split, spec.jieba)
    return run_counting(engine, paths, what, spec.memory, spec.min_count, spec.top, folder, progress, tsv=tsv)


def run_counting(engine, paths: list[str], what: Units, memory, min_count: int, top: int | None,
                 folder: str, progress: bool, label: str = "count", tsv=None):
    """Count ``what`` on ``engine``; return ``(runs, stats)``: the sorted partitions (entries
    with count >= ``min_count``, ``top`` at most) as :class:`tokenmill.counting.SpilledRun` (or
    one in-memory :class:`~tokenmill.counting.Run`) objects, ready for
    :func:`tokenmill.counting.merged`, and the figures of the job. Every task stays within
    ``memory``; the files the tasks exchange go to ``folder``.

    ``tsv = (path, space_byte)``: when one map task counts everything (one group), it writes
    the TSV to ``path`` itself; ``runs`` is then empty and ``stats["written"]`` its lines."""
    from .counting import SpilledRun, remove_runs

    budget = task_budget = parse_size(memory)     # each task stays within --memory
    groups = group_shards(plan_shards(paths, what.field, engine.node_tasks), engine.node_tasks)
    nparts = max(1, PARTITIONS_PER_TASK * engine.parallel_tasks)
    final = (min_count, top, tsv) if len(groups) == 1 else None
    maps = engine.map(count_group, [(g, what, folder, nparts, task_budget, engine.node_threads, final)
                                    for g in groups],
                      label=f"{label} (map)", progress=progress, sizes=[sum(sh.size for sh in g) for g in groups],
                      cpus=engine.node_threads)
    stats = {"lines": sum(m["lines"] for m in maps), "bytes": sum(m["bytes"] for m in maps),
             "units": sum(m["units"] for m in maps), "shards": sum(map(len, groups)), "groups": len(groups),
             "partitions": 0 if final else nparts, "passes": max([m["passes"] for m in maps], default=1)}
    if final:
        reduced = maps
    else:
        reduced = _reduce(engine, maps, nparts, folder, task_budget, min_count, top, label, progress)
    stats["written"] = reduced[0].get("written") if final else None
    stats["distinct"] = sum(r["distinct"] for r in reduced)
    stats["passes"] = max([stats["passes"]] + [r["passes"] for r in reduced])
    runs = [SpilledRun(path, n) for r in reduced for path, n in r["runs"]]
    remove_runs([r for r in runs if not len(r)])
    runs = [r for r in runs if len(r)]
    # Sorted runs that fit a quarter of the budget are merged in memory, by the same compiled
    # sort as a local run; larger ones are merged from their files.
    if runs and sum(os.path.getsize(r.path) for r in runs) <= budget // 4:
        runs = [_load_all(runs)]
    return runs, stats


def _reduce(engine, maps, nparts, folder, task_budget, min_count, top, label, progress):
    """The reduce tasks' results, one per partition that any map wrote to."""
    jobs = [(files, sum(m["entries"][r] for m in maps), folder, task_budget, min_count, top)
            for r, files in enumerate(partition_files(maps, nparts)) if files]
    reduced = engine.map(reduce_partition, jobs, label=f"{label} (reduce)", progress=progress)
    remove_map_files(maps)
    return reduced


def _load_all(runs):
    """One in-memory :class:`~tokenmill.counting.Run` of the entries of spilled runs."""
    from concurrent.futures import ThreadPoolExecutor

    from .counting import Run, concat_entries, remove_runs, sort_entries

    blob, offs, counts = concat_entries(c for r in runs for c in read_entries(r.path))
    blob = np.frombuffer(blob, dtype=np.uint8)
    remove_runs(runs)
    if len(runs) == 1:                  # already in order
        return Run(blob, offs, counts, np.arange(len(counts), dtype=np.int64))
    threads = os.cpu_count() or 1
    with ThreadPoolExecutor(threads) as pool:
        order = sort_entries(blob, offs, counts, threads, pool)
    return Run(blob, offs, counts, order)
