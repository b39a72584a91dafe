"""New-word discovery (Su Jianlin, 2017/2019): ``tokenmill discover`` / :func:`discover_words`.

1. **count** the character n-grams of 1..``order`` characters inside runs of letters and
   digits (``str.isalnum``: Chinese characters, Latin letters, digits; everything else, such
   as punctuation and spaces, separates runs), exactly (:class:`tokenmill.counting.PassCounter`).
2. **keep** the n-grams (2 or more characters) seen at least ``min_count`` times whose
   cohesion reaches ``min_pmi`` for their length, where
   ``ln cohesion(w) = min over split points of ln(N * c(w) / (c(left) * c(right)))`` and N is
   the number of characters counted.
3. **cut** the text: two neighbouring characters stay together when some kept n-gram covers
   both; every other boundary is cut. Count the pieces (a second pass, same counter).
4. **back-check**: keep the pieces seen at least ``min_count`` times; a piece longer than
   ``order`` characters must have every window of ``order`` characters among the kept n-grams.

Output rows ``word<TAB>count<TAB>cohesion``, by count (highest first), then by the word's
bytes. The cohesion column is the word's ln cohesion (for a word longer than ``order``, the
lowest of its windows'; 0 for a single character). With ``exclude_dict`` only words absent
from that dictionary are listed.

:mod:`tokenmill.reference_count` holds the same algorithm in plain Python (the tests' oracle).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import _spans
from .counting import SHARDS, PassCounter, TextSource, _tmp_dir, merged, remove_runs
from .errors import InputError
from .spec import DiscoverSpec


@dataclass
class DiscoverResult:
    """What :func:`discover_words` did. ``words`` holds ``(word, count, cohesion)`` rows when no
    output file was given."""

    output: str | None
    written: int
    candidates: int          # n-grams kept in step 2
    pieces: int              # distinct pieces after the cut (step 3)
    characters: int
    lines: int
    bytes: int
    passes: int
    seconds: float
    words: list | None = field(default=None, repr=False)


def load_dictionary(path) -> set[str]:
    """The words of a dictionary file: the first whitespace-separated field of each line
    (jieba's ``dict.txt``, a plain word list, or a ``discover`` TSV)."""
    words = set()
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(path, "not UTF-8 text", line=number) from None
                parts = line.split()
                if parts:
                    words.add(parts[0])
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    return words


def _alnum_chars(part, ws=None):
    return part, _spans.char_units(part, True, ws)


def discover_words(inputs, output=None, spec: DiscoverSpec | None = None, **options) -> DiscoverResult:
    """Find the words of a (Chinese) corpus without a dictionary; see the module docstring.

    ``output``: a TSV path (``word<TAB>count<TAB>cohesion``; ``-`` for stdout), or None to get
    the rows back in ``result.words``.
    """
    if spec is None:
        spec = DiscoverSpec(**options)
    elif options:
        spec = DiscoverSpec(**{**spec.to_dict(), **options})
    exclude = load_dictionary(spec.exclude_dict) if spec.exclude_dict else None
    order = spec.order
    t0 = time.monotonic()
    tmp_dir = _tmp_dir(output)
    counter = _Counter(inputs, spec, tmp_dir)
    runs, piece_runs = [], []
    try:
        # 1. n-gram counts
        runs, st1 = counter.count(_alnum_chars, order, "discover: count n-grams", ("alnum", order))
        total = st1["units"]
        counts = {s.decode("utf-8", "surrogateescape"): c for c, s in merged(runs)}
        remove_runs(runs)

        # 2. cohesive n-grams
        cohesion = {}
        for g, c in counts.items():
            if len(g) < 2:
                continue
            coh = _ln_cohesion(g, c, counts, total)
            if coh is not None and coh >= spec.pmi_for(len(g)):
                cohesion[g] = coh
        kept = _spans.SpanCounter(SHARDS)
        enc = [g.encode("utf-8", "surrogateescape") for g in cohesion]
        offs = np.zeros(len(enc) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in enc], out=offs[1:])
        blob = b"".join(enc)
        if cohesion:
            kept.add_counts(blob, offs, np.ones(len(enc), dtype=np.int64))

        # 3. cut and count the pieces
        piece_runs, st2 = counter.count(piece_cutter(kept, order), 1, "discover: count words",
                                        ("cut", order), kept=(blob, offs))
        npieces = st2["distinct"]
        counter.finish()

        # 4. back-check
        rows = []
        for c, s in merged(piece_runs):
            w = s.decode("utf-8", "surrogateescape")
            if len(w) > order:
                windows = [w[i:i + order] for i in range(len(w) - order + 1)]
                if not all(x in cohesion for x in windows):
                    continue
                coh = min(cohesion[x] for x in windows)
            elif len(w) >= 2:
                coh = cohesion.get(w)
                if coh is None:
                    coh = _ln_cohesion(w, counts.get(w, c), counts, total)
            else:
                coh = 0.0
            if exclude is not None and w in exclude:
                continue
            rows.append((w, c, coh))
            if spec.top is not None and len(rows) >= spec.top:
                break
        if output is not None:
            from .corpus.io import atomic_output

            with atomic_output(output) as out:
                for k in range(0, len(rows), 65536):
                    out.write("".join(f"{_escape(w)}\t{c}\t{coh:.3f}\n" for w, c, coh in rows[k:k + 65536])
                              .encode("utf-8", "surrogateescape"))
    finally:
        remove_runs(runs)
        remove_runs(piece_runs)
        counter.close()
    return DiscoverResult(output=None if output is None else os.fspath(output), written=len(rows),
                          candidates=len(cohesion), pieces=npieces, characters=total,
                          lines=st1["lines"], bytes=st1["bytes"], passes=st1["passes"] + st2["passes"],
                          seconds=time.monotonic() - t0, words=rows if output is None else None)


class _Counter:
    """The two counting steps of the discovery, in this process or as tasks on an engine
    (``spec.engine``, see :mod:`tokenmill.count_job`): the same counts either way."""

    def __init__(self, inputs, spec: DiscoverSpec, tmp_dir: str):
        self.spec = spec
        self.tmp_dir = tmp_dir
        self.engine = self.work = self.source = None
        if spec.engine == "local":
            self.source = TextSource(inputs, spec.field)
            return
        from .engine import WorkFolder, make_engine, task_inputs

        self.paths = task_inputs("discover", spec.engine, inputs)
        self.engine = make_engine(spec.engine, spec.ray_address, spec.workers)
        self.work = WorkFolder(tmp_dir, "discover-job")

    def count(self, units, order: int, label: str, task_units: tuple, kept=None):
        """``(runs, stats)``: the entries with count >= min_count of the n-grams of 1..order
        ``units`` (``task_units``: the same, described for a task; ``kept``: the ``(blob,
        offs)`` of the n-grams that the ``cut`` units need)."""
        spec = self.spec
        if self.engine is None:
            c = PassCounter(self.source, units, order, memory=spec.memory, workers=spec.workers,
                            progress=spec.progress, label=label, tmp_dir=self.tmp_dir)
            runs = c.run(spec.min_count)
            st = c.stats
            return runs, {"units": st.units, "lines": st.lines, "bytes": st.bytes, "passes": st.passes,
                          "distinct": st.distinct}
        from . import count_job

        kind, n = task_units
        path = None
        if kept is not None:
            blob, offs = kept
            path = self.work.file("kept")
            m = len(offs) - 1
            count_job.write_entries(path, np.frombuffer(blob, dtype=np.uint8), offs,
                                    np.ones(m, dtype=np.int64), np.arange(m, dtype=np.int64), 0, m)
        what = count_job.Units(kind, n, spec.field, kept=path)
        return count_job.run_counting(self.engine, self.paths, what, spec.memory, spec.min_count, None,
                                      self.work.path, spec.progress, label=label)

    def finish(self):
        """No more counting: an engine may let go of its cluster while the job ends."""
        if self.engine is not None:
            self.engine.finish_maps()

    def close(self):
        if self.source is not None:
            self.source.close()
        if self.work is not None:
            self.work.remove()
        if self.engine is not None:
            self.engine.close(report=self.spec.progress)


def piece_cutter(kept, order: int):
    """The unit function of step 3: the pieces of the alphanumeric runs, cut between
    neighbouring characters that no n-gram of ``kept`` (a SpanCounter) covers together."""
    def cut_pieces(part, ws=None):
        us, ue, se = _spans.char_units(part, True, ws)
        ps, pe = _spans.cut_units(kept, part, us, ue, se, order)
        return part, (ps, pe, np.array([len(ps)], dtype=np.int64))

    return cut_pieces


def _ln_cohesion(g: str, c: int, counts: dict, total: int):
    """``min over splits of ln(N c(g) / (c(left) c(right)))``; None if a part is unknown."""
    best = None
    for k in range(1, len(g)):
        left, right = counts.get(g[:k]), counts.get(g[k:])
        if not left or not right:
            return None
        v = math.log(total * c / (left * right))
        if best is None or v < best:
            best = v
    return best


def _escape(w: str) -> str:
    return w.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r")
