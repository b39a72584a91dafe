# cython: language_level=3
"""The unigram lattice used while training: a byte trie over a vocabulary, Viterbi counts,
re-splitting of strings, and forward-backward expected counts (EM). Releases the GIL.

Every function takes a batch of strings as one buffer ``buf`` and offsets ``ends`` where
string ``k`` is ``buf[ends[k]:ends[k+1]]`` (so ``len(ends)`` = number of strings + 1).

Counts are accumulated as int64 (expected counts in fixed point, ``FIXED`` units per unit
count), so sums do not depend on how the strings were split over threads.

    >>> lat = Lattice([bytes([b]) for b in range(256)] + [b"ab"])
    >>> ids, starts = lat.split(np.log(np.full(257, 1 / 257)), b"abc", np.array([0, 3]))
    >>> [int(i) for i in ids]   # "ab" then "c": 2 pieces beat 3
    [256, 99]
"""
from libc.stdint cimport uint64_t, int64_t, int32_t
from libc.stdlib cimport calloc, malloc, free, realloc
from libc.math cimport exp, log, log1p, INFINITY

from ._hash cimport mix64

import numpy as np

FIXED = 1 << 20
cdef double CFIXED = <double> (1 << 20)


cdef inline double logaddexp(double x, double y) noexcept nogil:
    if x == -INFINITY:
        return y
    if y == -INFINITY:
        return x
    if x < y:
        x, y = y, x
    return x + log1p(exp(y - x))


cdef struct DNode:
    int32_t base      # children of this node live at base + byte + 1
    int32_t check     # parent node, -1 if the cell is free
    int32_t pid       # id of the piece ending here, or -1


cdef class Lattice:
    """A double-array trie over ``pieces`` (bytes; piece ``i`` has id ``i``); scores are
    passed per call. Built from the pieces in sorted order, one node's children at a time."""
    cdef DNode *nodes
    cdef int32_t ncells
    cdef readonly int32_t npieces
    cdef readonly int32_t maxlen
    cdef int32_t *_lens

    def __cinit__(self, list pieces):
        cdef Py_ssize_t n = len(pieces), i
        self.npieces = <int32_t> n
        self.maxlen = 0
        self._lens = <int32_t *> malloc((n + 1) * sizeof(int32_t))
        if self._lens == NULL:
            raise MemoryError()
        for i in range(n):
            if len(pieces[i]) == 0:
                raise ValueError("empty piece")
            self._lens[i] = <int32_t> len(pieces[i])
            if self._lens[i] > self.maxlen:
                self.maxlen = self._lens[i]
        order = sorted(range(n), key=pieces.__getitem__)
        for i in range(1, n):
            if pieces[order[i]] == pieces[order[i - 1]]:
                raise ValueError(f"duplicate piece {pieces[order[i]]!r}")
        self._build([pieces[k] for k in order], order)

    cdef int _reserve(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = self.ncells, i
        cdef DNode *p
        if need <= cap:
            return 0
        while cap < need:
            cap = cap * 2 if cap else 1024
        p = <DNode *> realloc(self.nodes, cap * sizeof(DNode))
        if p == NULL:
            raise MemoryError()
        for i in range(self.ncells, cap):
            p[i].base = 0
            p[i].check = -1
            p[i].pid = -1
        self.nodes = p
        self.ncells = <int32_t> cap
        return 0

    def _build(self, list spieces, list ids):
        cdef Py_ssize_t first_free = 1, base, k, lo, hi, d, node, i, j, nchild
        cdef bint ok
        cdef int c
        cdef int children[256]
        cdef Py_ssize_t child_lo[257]
        cdef bytes p
        self._reserve(1024)
        self.nodes[0].check = -2
        stack = [(0, 0, len(spieces), 0)]
        while stack:
            node, lo, hi, d = stack.pop()
            if lo < hi and len(<bytes> spieces[lo]) == d:
                self.nodes[node].pid = <int32_t> ids[lo]
                lo += 1
            if lo >= hi:
                continue
            nchild = 0
            i = lo
            while i < hi:
                p = spieces[i]
                c = p[d]
                children[nchild] = c
                child_lo[nchild] = i
                nchild += 1
                j = i + 1
                while j < hi and (<bytes> spieces[j])[d] == c:
                    j += 1
                i = j
            child_lo[nchild] = hi
            while first_free < self.ncells and self.nodes[first_free].check != -1:
                first_free += 1
            base = first_free - children[0] - 1
            if base < 0:
                base = 0
            while True:
                self._reserve(base + 258)
                ok = True
                for k in range(nchild):
                    if self.nodes[base + children[k] + 1].check != -1:
                        ok = False
                        break
                if ok:
                    break
                base += 1
            self.nodes[node].base = <int32_t> base
            for k in range(nchild):
                self.nodes[base + children[k] + 1].check = <int32_t> node
            for k in range(nchild):
                stack.append((base + children[k] + 1, child_lo[k], child_lo[k + 1], d + 1))

    def __dealloc__(self):
        free(self.nodes)
        free(self._lens)

    cdef inline int32_t child(self, int32_t node, unsigned char c) noexcept nogil:
        cdef int32_t t = self.nodes[node].base + c + 1
        if t < self.ncells and self.nodes[t].check == node:
            return t
        return -1

    cdef inline int32_t value_of(self, int32_t node) noexcept nogil:
        return self.nodes[node].pid

    cdef inline int32_t _len(self, int32_t pid) noexcept nogil:
        return self._lens[pid]

    cdef int viterbi(self, const double *score, const unsigned char *s, Py_ssize_t L, int32_t exclude,
                     double *best, int32_t *back, int32_t *ids) noexcept nogil:
        """Best segmentation of s[:L] into pieces (not ``exclude``); writes the ids reversed
        into ``ids`` and returns how many (-1 if no segmentation exists)."""
        cdef Py_ssize_t st, e
        cdef int32_t node, pid, n = 0
        cdef double sc
        best[0] = 0.0
        for e in range(1, L + 1):
            best[e] = -INFINITY
            back[e] = -1
        for st in range(L):
            if best[st] == -INFINITY:
                continue
            node = 0
            for e in range(st, L):
                node = self.child(node, s[e])
                if node < 0:
                    break
                pid = self.value_of(node)
                if pid >= 0 and pid != exclude:
                    sc = best[st] + score[pid]
                    if sc > best[e + 1]:          # strict: the earliest start (longest piece) wins ties
                        best[e + 1] = sc
                        back[e + 1] = pid
        if back[L] < 0 and L > 0:
            return -1
        e = L
        while e > 0:
            pid = back[e]
            ids[n] = pid
            n += 1
            e -= self._len(pid)
        return n


    def viterbi_counts(self, const double[:] score, const unsigned char[:] buf, const int64_t[:] ends,
                       const int64_t[:] weights, int64_t[:] counts, const int32_t[:] exclude=None):
        """Add ``weights[k]`` to ``counts[id]`` for every piece of string k's best segmentation;
        return the summed weighted log-likelihood. With ``exclude``, string k may not use piece
        ``exclude[k]``; a string with no segmentation adds nothing (see :meth:`split`)."""
        cdef Py_ssize_t k, L, maxL = 0, n, i
        cdef double total = 0.0
        for k in range(ends.shape[0] - 1):
            if ends[k + 1] - ends[k] > maxL:
                maxL = ends[k + 1] - ends[k]
        cdef double *best = <double *> malloc((maxL + 1) * sizeof(double))
        cdef int32_t *back = <int32_t *> malloc((maxL + 1) * sizeof(int32_t))
        cdef int32_t *ids = <int32_t *> malloc((maxL + 1) * sizeof(int32_t))
        cdef int32_t ex
        with nogil:
            for k in range(ends.shape[0] - 1):
                L = ends[k + 1] - ends[k]
                ex = exclude[k] if exclude is not None else -1
                n = self.viterbi(&score[0], &buf[ends[k]], L, ex, best, back, ids)
                if n < 0:
                    continue
                for i in range(n):
                    counts[ids[i]] += weights[k]
                total += best[L] * weights[k]
        free(best); free(back); free(ids)
        return total

    def split(self, const double[:] score, const unsigned char[:] buf, const int64_t[:] ends,
              const int32_t[:] exclude=None):
        """Best segmentation of every string: ``(ids, starts)`` with string k's piece ids in
        ``ids[starts[k]:starts[k+1]]``; a string with no segmentation gets no ids."""
        cdef Py_ssize_t k, L, maxL = 0, n, i, m = 0, nstr = ends.shape[0] - 1
        for k in range(nstr):
            if ends[k + 1] - ends[k] > maxL:
                maxL = ends[k + 1] - ends[k]
        out = np.empty(max(ends[nstr] - ends[0], 0) + 1, dtype=np.int32)
        starts = np.empty(nstr + 1, dtype=np.int64)
        cdef int32_t[:] ov = out
        cdef int64_t[:] sv = starts
        cdef double *best = <double *> malloc((maxL + 1) * sizeof(double))
        cdef int32_t *back = <int32_t *> malloc((maxL + 1) * sizeof(int32_t))
        cdef int32_t *ids = <int32_t *> malloc((maxL + 1) * sizeof(int32_t))
        cdef int32_t ex
        with nogil:
            for k in range(nstr):
                sv[k] = m
                L = ends[k + 1] - ends[k]
                ex = exclude[k] if exclude is not None else -1
                n = self.viterbi(&score[0], &buf[ends[k]], L, ex, best, back, ids)
                for i in range(n - 1, -1, -1):
                    ov[m] = ids[i]
                    m += 1
            sv[nstr] = m
        free(best); free(back); free(ids)
        return out[:m].copy(), starts

    def expected_counts(self, const double[:] score, const unsigned char[:] buf, const int64_t[:] ends,
                        const int64_t[:] weights, int64_t[:] counts):
        """Forward-backward: add ``weights[k] * P(piece used at a position | string k) * FIXED``
        (rounded) to ``counts[id]``; return the summed weighted log marginal likelihood."""
        cdef Py_ssize_t k, L, maxL = 0, st, e
        cdef double total = 0.0, z, sc, p
        cdef int32_t node, pid
        for k in range(ends.shape[0] - 1):
            if ends[k + 1] - ends[k] > maxL:
                maxL = ends[k + 1] - ends[k]
        cdef double *alpha = <double *> malloc((maxL + 1) * sizeof(double))
        cdef double *beta = <double *> malloc((maxL + 1) * sizeof(double))
        cdef const unsigned char *s
        with nogil:
            for k in range(ends.shape[0] - 1):
                L = ends[k + 1] - ends[k]
                if L == 0:
                    continue
                s = &buf[ends[k]]
                alpha[0] = 0.0
                for e in range(1, L + 1):
                    alpha[e] = -INFINITY
                    beta[e - 1] = -INFINITY
                beta[L] = 0.0
                for st in range(L):
                    if alpha[st] == -INFINITY:
                        continue
                    node = 0
                    for e in range(st, L):
                        node = self.child(node, s[e])
                        if node < 0:
                            break
                        pid = self.value_of(node)
                        if pid >= 0:
                            alpha[e + 1] = logaddexp(alpha[e + 1], alpha[st] + score[pid])
                z = alpha[L]
                if z == -INFINITY:
                    continue
                for st in range(L - 1, -1, -1):
                    node = 0
                    for e in range(st, L):
                        node = self.child(node, s[e])
                        if node < 0:
                            break
                        pid = self.value_of(node)
                        if pid >= 0 and beta[e + 1] != -INFINITY:
                            sc = score[pid] + beta[e + 1]
                            beta[st] = logaddexp(beta[st], sc)
                            if alpha[st] != -INFINITY:
                                p = exp(alpha[st] + sc - z)
                                counts[pid] += <int64_t> (p * weights[k] * CFIXED + 0.5)
                total += z * weights[k]
        free(alpha); free(beta)
        return total

