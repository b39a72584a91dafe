"""Plain, readable pure-Python versions of the tokenizer's algorithms: the tests' oracle.

They are slow (a dictionary lookup per candidate piece) and follow the same rules as the
compiled core in ``_core.pyx``:

- the text is cut after every run of newlines when ``split_newlines`` is on;
- Viterbi: for each start position in increasing order, every vocabulary piece starting there
  updates the best score of its end position if it is *strictly* better, so on a tie the
  candidate with the earliest start (the longest last piece) wins.

Example::

    >>> vocab = {bytes([b]): (b, -10.0) for b in range(256)}
    >>> vocab[b"ab"] = (256, -1.0)
    >>> viterbi(vocab, b"abc")
    [256, 99]
"""
from __future__ import annotations

import math
import random


def chunks(data: bytes, split_newlines: bool = True) -> list[bytes]:
    """``b"a\\n\\nb\\nc"`` -> ``[b"a\\n\\n", b"b\\n", b"c"]`` (each chunk keeps its newlines)."""
    if not split_newlines:
        return [data] if data else []
    out, start, i, n = [], 0, 0, len(data)
    while i < n:
        if data[i] == 10:
            while i < n and data[i] == 10:
                i += 1
            out.append(data[start:i])
            start = i
        else:
            i += 1
    if start < n:
        out.append(data[start:])
    return out


def viterbi(vocab: dict, data: bytes, split_newlines: bool = True) -> list[int]:
    """Ids of the maximum-score segmentation; ``vocab`` maps piece bytes -> (id, score)."""
    max_len = max(map(len, vocab))
    ids: list[int] = []
    for chunk in chunks(data, split_newlines):
        n = len(chunk)
        best = [0.0] + [-math.inf] * n
        back = [None] * (n + 1)
        for i in range(n):
            for j in range(i + 1, min(n, i + max_len) + 1):
                entry = vocab.get(chunk[i:j])
                if entry is not None:
                    cand = best[i] + entry[1]
                    if cand > best[j]:
                        best[j], back[j] = cand, (i, entry[0])
        path, j = [], n
        while j > 0:
            i, pid = back[j]
            path.append(pid)
            j = i
        ids.extend(reversed(path))
    return ids


def segmentations(vocab: dict, data: bytes):
    """Every segmentation of ``data`` (no newline cutting) with its total score."""
    if not data:
        yield [], 0.0
        return
    for j in range(1, len(data) + 1):
        entry = vocab.get(data[:j])
        if entry is not None:
            for rest, score in segmentations(vocab, data[j:]):
                yield [entry[0]] + rest, entry[1] + score


def segmentation_distribution(vocab: dict, data: bytes, alpha: float) -> dict:
    """Exact probability of each segmentation under P(seg)**alpha, normalised."""
    weights = {tuple(ids): math.exp(alpha * score) for ids, score in segmentations(vocab, data)}
    total = sum(weights.values())
    return {ids: w / total for ids, w in weights.items()}


def sample(vocab: dict, data: bytes, alpha: float, rng: random.Random) -> list[int]:
    """Forward filtering, backward sampling: one segmentation drawn from P(seg)**alpha."""
    n = len(data)
    max_len = max(map(len, vocab))
    z = [0.0] + [-math.inf] * n  # log total weight of the prefixes
    cands: list[list] = [[] for _ in range(n + 1)]
    for i in range(n):
        for j in range(i + 1, min(n, i + max_len) + 1):
            entry = vocab.get(data[i:j])
            if entry is not None:
                w = z[i] + alpha * entry[1]
                cands[j].append((i, entry[0], w))
                hi = max(z[j], w)
                z[j] = hi + math.log(math.exp(z[j] - hi) + math.exp(w - hi))
    path, j = [], n
    while j > 0:
        r = rng.random() * sum(math.exp(w - z[j]) for _, _, w in cands[j])
        for i, pid, w in cands[j]:
            r -= math.exp(w - z[j])
            if r <= 0:
                break
        path.append(pid)
        j = i
    return path[::-1]
