"""A plain, slow, pure-Python version of tokenmill's training algorithm: the tests' oracle.

It follows :mod:`tokenmill.trainer` step by step on small inputs (dicts instead of compiled
tables, one thread, no memory budget) and must produce the same vocabulary and counts. Read
this file to understand the algorithm; read ``trainer.py`` to see how it is made fast.

Example::

    >>> from tokenmill.reference_train import train_reference
    >>> vocab = train_reference([b"abcabc", b"abcab"], vocab_size=260, min_count=2)
    >>> sorted(p for p in vocab if len(p) > 1)   # doctest: +SKIP
    [b'abc', ...]
"""
from __future__ import annotations

import math

NEG = float("-inf")


def chunks(doc: bytes, split_newlines=True, isolate_digits=False, max_chunk=32768):
    """Cut a document: after runs of newlines, around ASCII digits, at most ``max_chunk`` bytes.

    >>> chunks(b"ab\\n\\ncd7e", True, True)
    [b'ab\\n\\n', b'cd', b'7', b'e']
    """
    out, start, i, n = [], 0, 0, len(doc)
    while i < n:
        c = doc[i]
        cut = -1
        if isolate_digits and 48 <= c <= 57:
            cut = i if i > start else i + 1
        elif split_newlines and c == 10 and (i + 1 == n or doc[i + 1] != 10):
            cut = i + 1
        elif i + 1 - start >= max_chunk:
            cut = i + 1
            for j in range(4):
                if cut - j > start and (cut - j == n or (doc[cut - j] & 0xC0) != 0x80):
                    cut -= j
                    break
        if cut >= 0:
            out.append(doc[start:cut])
            start = i = cut
        else:
            i += 1
    if start < n:
        out.append(doc[start:])
    return out


def count_ngrams(texts, order):
    """``{ngram: count}`` for every byte n-gram, 1 <= n <= order, inside each text; and the
    number of positions. ``count_ngrams([b"aba"], 2) -> ({b'a': 2, b'b': 1, b'ab': 1, b'ba': 1}, 3)``"""
    counts: dict = {}
    positions = 0
    for t in texts:
        positions += len(t)
        for i in range(len(t)):
            for n in range(1, order + 1):
                if i + n > len(t):
                    break
                g = t[i:i + n]
                counts[g] = counts.get(g, 0) + 1
    return counts, positions


def language_model(counts, positions, min_count):
    """Log-probabilities: ``lm[g] = log c(g) - log c(g[:-1])`` (n >= 2, count >= min_count),
    ``lm[b] = log c(b) - log N`` for every byte (unseen bytes count 1, N grows accordingly)."""
    counts = dict(counts)
    for b in range(256):
        if bytes([b]) not in counts:
            counts[bytes([b])] = 1
            positions += 1
    lm = {}
    for g, c in counts.items():
        if len(g) == 1:
            lm[g] = math.log(c) - math.log(positions)
        elif c >= min_count:
            lm[g] = math.log(c) - math.log(counts[g[:-1]])
    return lm


def lm_segment(text: bytes, lm, order, ensure_unicode=True):
    """BytePiece's order-state Viterbi; a piece starting on a UTF-8 continuation byte costs a
    penalty and paths compare by (penalties, -score); ties go to the lowest state."""
    L = len(text)
    if L == 0:
        return []
    # value[i][j] = (penalties, score); None = impossible
    val = [[None] * order for _ in range(L)]
    back = [[0] * order for _ in range(L)]

    def better(a, b):
        return b is None or (a is not None and (a[0] < b[0] or (a[0] == b[0] and a[1] > b[1])))

    def pen(i):
        return 1 if ensure_unicode and (text[i] & 0xC0) == 0x80 else 0

    val[0][0] = (pen(0), lm[text[0:1]])
    for i in range(1, L):
        best, bj = val[i - 1][0], 0
        for j in range(1, order):
            if better(val[i - 1][j], best) and val[i - 1][j] != best:
                best, bj = val[i - 1][j], j
        val[i][0] = (best[0] + pen(i), best[1] + lm[text[i:i + 1]])
        back[i][0] = bj
        for j in range(1, order):
            back[i][j] = j - 1
            if j > i:
                break
            g = text[i - j:i + 1]
            if g not in lm:
                break
            prev, pj = val[i - 1][j - 1], j - 1
            if j == order - 1 and val[i - 1][j] is not None and (prev is None or better(val[i - 1][j], prev) and val[i - 1][j] != prev):
                prev, pj = val[i - 1][j], j
            if prev is None:
                continue
            val[i][j] = (prev[0], prev[1] + lm[g])
            back[i][j] = pj
    j = 0
    for k in range(1, order):
        if val[L - 1][k] is not None and better(val[L - 1][k], val[L - 1][j]) and val[L - 1][k] != val[L - 1][j]:
            j = k
    states = [0] * L
    for i in range(L - 1, -1, -1):
        states[i] = j
        j = back[i][j]
    pieces, s = [], 0
    for i in range(1, L + 1):
        if i == L or states[i] == 0:
            pieces.append(text[s:i])
            s = i
    return pieces


def unigram_segment(text: bytes, scores: dict, exclude: bytes | None = None):
    """Max-score segmentation by the pieces of ``scores`` (ties: the longest last piece)."""
    L = len(text)
    best = [0.0] + [NEG] * L
    back = [None] * (L + 1)
    maxlen = max(map(len, scores))
    for s in range(L):
        if best[s] == NEG:
            continue
        for e in range(s + 1, min(L, s + maxlen) + 1):
            p = text[s:e]
            if p in scores and p != exclude:
                sc = best[s] + scores[p]
                if sc > best[e]:
                    best[e], back[e] = sc, s
    if L and back[L] is None:
        return None
    out, e = [], L
    while e > 0:
        s = back[e]
        out.append(text[s:e])
        e = s
    return out[::-1]


def _scores(counts):
    total = math.log(sum(counts.values()))
    return {p: math.log(c) - total for p, c in counts.items()}


def split_into(keep: dict, drop: dict) -> dict:
    """Add each dropped piece's count to the pieces of its best segmentation by ``keep``."""
    scores = _scores(keep)
    out = dict(keep)
    for p, c in sorted(drop.items()):
        for q in unigram_segment(p, scores):
            out[q] += c
    return out


def remove_wasted(keep: dict) -> dict:
    """Re-segment every piece with the vocabulary itself until no piece disappears."""
    while True:
        scores = _scores(keep)
        new: dict = {}
        for p, c in sorted(keep.items()):
            for q in unigram_segment(p, scores):
                new[q] = new.get(q, 0) + c
        if len(new) == len(keep):
            return new
        keep = new


def shrink(keep: dict, size: int) -> dict:
    """Keep ``size`` pieces (bytes first, then count desc, longer first, then bytes)."""
    if len(keep) <= size:
        return keep
    ranked = sorted(keep.items(), key=lambda t: (len(t[0]) > 1, -t[1], -len(t[0]), t[0]))
    kept = dict(ranked[:size])
    return remove_wasted(split_into(kept, dict(ranked[size:])))


def train_reference(docs, vocab_size, order=6, min_count=2, max_piece_length=36, ensure_unicode=True,
                    isolate_digits=False, split_newlines=True, n_special=0):
    """BytePiece's selection (no refinement) for each size in ``vocab_size``: ``{size: {piece: count}}``
    (or one dict if ``vocab_size`` is an int)."""
    texts = [c for d in docs for c in chunks(d, split_newlines, isolate_digits)]
    counts, positions = count_ngrams(texts, order)
    lm = language_model(counts, positions, min_count)
    pieces: dict = {}
    for t in texts:
        for p in lm_segment(t, lm, order, ensure_unicode):
            pieces[p] = pieces.get(p, 0) + 1
    for b in range(256):
        pieces.setdefault(bytes([b]), 1)
    keep = {p: c for p, c in pieces.items() if len(p) == 1 or (len(p) <= max_piece_length and c >= min_count)}
    drop = {p: c for p, c in pieces.items() if p not in keep}
    current = remove_wasted(split_into(keep, drop))
    sizes = [vocab_size] if isinstance(vocab_size, int) else list(vocab_size)
    result = {}
    for size in sorted(sizes, reverse=True):   # every size from the same pruned set, as the trainer
        result[size] = shrink(current, size - n_special)
    return result[vocab_size] if isinstance(vocab_size, int) else result
