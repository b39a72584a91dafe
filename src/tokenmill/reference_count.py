"""Plain-Python reference of n-gram counting and new-word discovery: the oracle the tests
compare the compiled, parallel, multi-pass versions against. Slow; for small inputs only.
"""
from __future__ import annotations

import math
import re
from collections import Counter


def units_of_line(line: bytes, unit: str, split: str | None = None) -> tuple[list[bytes], bytes]:
    """The units of one line and the joiner placed between them in an n-gram."""
    if unit == "byte":
        return [line[i:i + 1] for i in range(len(line))], b""
    if unit == "char":
        return [ch.encode("utf-8", "surrogateescape") for ch in line.decode("utf-8", "surrogateescape")], b""
    if unit == "word":
        if split is None:
            return line.split(), b" "
        words = [w for w in re.split(split, line.decode("utf-8", "replace")) if w and not w.isspace()]
        return [w.encode("utf-8") for w in words], b"\xff"
    raise ValueError(unit)


def count_reference(text: bytes, unit: str = "char", order: int = 2, min_count: int = 1,
                    top: int | None = None, split: str | None = None) -> list[tuple[bytes, int]]:
    """``[(ngram, count)]`` sorted by count descending then bytes; lines split on ``\\n``."""
    counts: Counter = Counter()
    for line in text.split(b"\n"):
        units, joiner = units_of_line(line, unit, split)
        for i in range(len(units)):
            for n in range(1, order + 1):
                if i + n > len(units):
                    break
                counts[joiner.join(units[i:i + n])] += 1
    items = sorted(((k, c) for k, c in counts.items() if c >= min_count), key=lambda kc: (-kc[1], kc[0]))
    return items if top is None else items[:top]


def alnum_segments(line: str) -> list[str]:
    """Maximal runs of letters and digits (``str.isalnum``): the text discovery looks at."""
    out, cur = [], []
    for ch in line:
        if ch.isalnum():
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def discover_reference(text: str, order: int = 4, min_count: int = 32,
                       min_pmi=(0.0, 2.0, 4.0, 6.0)) -> list[tuple[str, int, float]]:
    """Su's new-word discovery, step by step (see :mod:`tokenmill.discovery`)."""
    segments = [s for line in text.split("\n") for s in alnum_segments(line)]
    grams: Counter = Counter()
    for s in segments:
        for i in range(len(s)):
            for n in range(1, order + 1):
                if i + n <= len(s):
                    grams[s[i:i + n]] += 1
    total = sum(c for g, c in grams.items() if len(g) == 1)

    def pmi_for(length):
        return min_pmi[min(length, len(min_pmi)) - 1]

    cohesion = {}
    for g, c in grams.items():
        if c < min_count or len(g) < 2:
            continue
        coh = min(math.log(total * c / (grams[g[:k]] * grams[g[k:]])) for k in range(1, len(g)))
        if coh >= pmi_for(len(g)):
            cohesion[g] = coh

    pieces: Counter = Counter()
    for s in segments:
        joined = [False] * len(s)
        for i in range(len(s)):
            for n in range(2, order + 1):
                if i + n <= len(s) and s[i:i + n] in cohesion:
                    for j in range(i, i + n - 1):
                        joined[j] = True
        start = 0
        for j in range(len(s)):
            if not joined[j]:
                pieces[s[start:j + 1]] += 1
                start = j + 1

    words = []
    for w, c in pieces.items():
        if c < min_count:
            continue
        if len(w) > order:
            windows = [w[i:i + order] for i in range(len(w) - order + 1)]
            if not all(x in cohesion for x in windows):
                continue
            coh = min(cohesion[x] for x in windows)
        elif len(w) >= 2:
            coh = cohesion.get(w)
            if coh is None:
                coh = min(math.log(total * grams[w] / (grams[w[:k]] * grams[w[k:]])) for k in range(1, len(w)))
        else:
            coh = 0.0
        words.append((w, c, coh))
    words.sort(key=lambda x: (-x[1], x[0].encode("utf-8")))
    return words
