# cython: language_level=3
"""Compiled core of the tokenizer: a double-array trie over the vocabulary, the Viterbi
(maximum-probability) segmentation, and random segmentation (subword regularization).

Everything that touches input bytes runs without the GIL, so threads encode in parallel.
The readable pure-Python version of the same algorithms is ``tokenmill.reference``; the tests
check that both give the same ids.

Example::

    >>> seg = Segmenter([bytes([b]) for b in range(256)] + [b"ab"],
    ...                 [-10.0] * 256 + [-1.0], list(range(257)))
    >>> seg.encode(b"abc")            # "ab" (score -1) beats "a"+"b" (-20)
    [256, 99]
"""
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memcpy
from libc.math cimport INFINITY, exp, log1p, isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_FromStringAndSize, PyByteArray_AS_STRING
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport PyObject, Py_INCREF
from cpython.long cimport PyLong_FromLong
from posix.unistd cimport usleep

cdef extern from *:
    """
    static inline long tm_fetch_add(long* p, long v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
    static inline int tm_load(int* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void tm_store(int* p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    long tm_fetch_add(long* p, long v) nogil
    int tm_load(int* p) nogil
    void tm_store(int* p, int v) nogil

cdef enum:
    FREE = -1
    ROOT_CHECK = -2


cdef struct Node:
    int32_t base    # children of this node live at base + byte + 1
    int32_t check   # index of the parent node, FREE if the cell is unused
    double score    # score of the piece that ends at this node, -inf if none


cdef struct Model:
    Node* nodes
    int32_t* cell_id    # id of the piece that ends at each cell, or -1
    Py_ssize_t n_cells
    double* scores      # by id
    int32_t* lens       # by id (0 for ids that are not pieces)
    Py_ssize_t n_ids
    int split_newlines


cdef struct IntBuf:
    int32_t* data
    Py_ssize_t size
    Py_ssize_t cap


cdef struct Work:       # per-call scratch space, so that calls share nothing
    double* score
    int32_t* back
    int32_t* path
    Py_ssize_t cap
    int64_t steps       # trie transitions taken (the unit of work)
    uint64_t rng        # splitmix64 state for sampling
    uint8_t* text       # UTF-8 of the str being encoded (see encode_item)
    Py_ssize_t text_cap


# ---------------------------------------------------------------- small helpers

cdef inline int buf_reserve(IntBuf* b, Py_ssize_t need) noexcept nogil:
    cdef Py_ssize_t cap
    cdef int32_t* p
    if need <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 256
    while cap < need:
        cap *= 2
    p = <int32_t*> realloc(b.data, cap * sizeof(int32_t))
    if p == NULL:
        return -1
    b.data = p
    b.cap = cap
    return 0


cdef inline int work_reserve(Work* w, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t cap
    cdef void* p
    if n + 1 <= w.cap:
        return 0
    cap = w.cap * 2 if w.cap else 1024
    while cap < n + 1:
        cap *= 2
    p = realloc(w.score, cap * sizeof(double))
    if p == NULL:
        return -1
    w.score = <double*> p
    p = realloc(w.back, cap * sizeof(int32_t))
    if p == NULL:
        return -1
    w.back = <int32_t*> p
    p = realloc(w.path, cap * sizeof(int32_t))
    if p == NULL:
        return -1
    w.path = <int32_t*> p
    w.cap = cap
    return 0


cdef inline void work_init(Work* w) noexcept nogil:
    w.score = NULL; w.back = NULL; w.path = NULL; w.cap = 0; w.steps = 0; w.rng = 0
    w.text = NULL; w.text_cap = 0


cdef inline void work_free(Work* w) noexcept nogil:
    free(w.score)
    free(w.back)
    free(w.path)
    free(w.text)
    w.score = NULL
    w.back = NULL
    w.path = NULL
    w.text = NULL
    w.cap = 0
    w.text_cap = 0


cdef inline uint64_t splitmix64(uint64_t* state) noexcept nogil:
    cdef uint64_t z
    state[0] += <uint64_t> 0x9E3779B97F4A7C15
    z = state[0]
    z = (z ^ (z >> 30)) * <uint64_t> 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t> 0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline double uniform01(uint64_t* state) noexcept nogil:
    return (splitmix64(state) >> 11) * (1.0 / 9007199254740992.0)


def mix_seed(uint64_t seed, uint64_t index):
    """A well-mixed 64-bit seed for item ``index`` of a run seeded with ``seed``.

    >>> mix_seed(1, 0) != mix_seed(1, 1)
    True
    """
    cdef uint64_t s = seed ^ (index * <uint64_t> 0xD1B54A32D192ED03)
    splitmix64(&s)
    return splitmix64(&s)


# ---------------------------------------------------------------- segmentation

cdef inline int emit_path(const Model* m, Py_ssize_t n, Work* w, IntBuf* out) noexcept nogil:
    """Backtrack from position n and append the ids, in text order, to ``out``."""
    cdef Py_ssize_t j = n, k = 0, r
    cdef int32_t pid
    cdef int32_t* back = w.back
    cdef int32_t* path = w.path
    while j > 0:
        pid = m.cell_id[back[j]]
        path[k] = pid
        k += 1
        j -= m.lens[pid]
    if buf_reserve(out, out.size + k) < 0:
        return -1
    for r in range(k):
        out.data[out.size + r] = path[k - 1 - r]
    out.size += k
    return 0


cdef int viterbi_chunk(const Model* m, const uint8_t* p, Py_ssize_t n, Work* w,
                       IntBuf* out) noexcept nogil:
    """Maximum-score path over all vocabulary matches of p[0:n].

    Candidates for an end position arrive in order of increasing start (longest piece
    first) and only a strictly better score replaces the current one, so on a tie the
    longest last piece wins (as BytePiece's Aho-Corasick order does).
    """
    cdef Py_ssize_t i, j
    cdef int32_t s, t, pid
    cdef double bi, cand
    cdef const Node* nodes = m.nodes
    cdef double* best
    cdef int32_t* back
    cdef int64_t steps = 0
    if work_reserve(w, n) < 0:
        return -1
    best = w.score
    back = w.back
    best[0] = 0.0
    for i in range(1, n + 1):
        best[i] = -INFINITY
    for i in range(n):
        bi = best[i]
        # The single byte is always a piece (a child of the root); a leaf there (base 0:
        # the root's 256 children fill cells 1..256, so no inner node can have base 0)
        # means no longer piece starts with this byte, e.g. a UTF-8 continuation byte.
        t = nodes[0].base + p[i] + 1
        j = i + 1
        cand = bi + nodes[t].score
        if cand > best[j]:
            best[j] = cand
            back[j] = t
        s = t
        if nodes[s].base != 0:
            while j < n:
                t = nodes[s].base + p[j] + 1
                if nodes[t].check != s:
                    break
                s = t
                j += 1
                # non-terminal cells score -inf, which never wins: no branch on "is a piece"
                cand = bi + nodes[t].score
                if cand > best[j]:
                    best[j] = cand
                    back[j] = t
        steps += j - i
    w.steps += steps
    return emit_path(m, n, w, out)


cdef int sample_chunk(const Model* m, const uint8_t* p, Py_ssize_t n, double alpha,
                      Work* w, IntBuf* out) noexcept nogil:
    """Draw a segmentation of p[0:n] with probability proportional to P(segmentation)**alpha.

    Forward pass: Z[j] = log of the total weight of all segmentations of p[0:j]; each
    candidate (piece ending at j) replaces the current back-pointer with probability
    weight / running total, which leaves back[j] distributed as weight / Z[j]. Backtracking
    then draws a whole path with the right probability at the cost of one Viterbi.
    """
    cdef Py_ssize_t i, j
    cdef int32_t s, t, pid
    cdef double zi, zj, cand, total
    cdef const Node* nodes = m.nodes
    cdef double* z
    cdef int32_t* back
    cdef int64_t steps = 0
    if work_reserve(w, n) < 0:
        return -1
    z = w.score
    back = w.back
    z[0] = 0.0
    for i in range(1, n + 1):
        z[i] = -INFINITY
    for i in range(n):
        zi = z[i]
        s = 0
        j = i
        while j < n:
            t = nodes[s].base + p[j] + 1
            if nodes[t].check != s:
                break
            s = t
            j += 1
            if nodes[t].score != -INFINITY:
                cand = zi + alpha * nodes[t].score
                zj = z[j]
                if zj == -INFINITY:
                    z[j] = cand
                    back[j] = t
                else:
                    if cand > zj:
                        total = cand + log1p(exp(zj - cand))
                    else:
                        total = zj + log1p(exp(cand - zj))
                    z[j] = total
                    if uniform01(&w.rng) < exp(cand - total):
                        back[j] = t
        steps += j - i + 1
    w.steps += steps
    return emit_path(m, n, w, out)


cdef int encode_text(const Model* m, const uint8_t* p, Py_ssize_t n, double alpha,
                     Work* w, IntBuf* out) noexcept nogil:
    """Segment a whole text: cut after every run of newlines (if the model says so), then
    Viterbi (alpha < 0) or sampling (alpha >= 0) on each chunk."""
    cdef Py_ssize_t start = 0, end
    cdef const uint8_t* q
    cdef int rc
    while start < n:
        end = n
        if m.split_newlines:
            q = <const uint8_t*> memchr(p + start, 10, n - start)
            if q != NULL:
                end = (q - p) + 1
                while end < n and p[end] == 10:
                    end += 1
        if alpha < 0:
            rc = viterbi_chunk(m, p + start, end - start, w, out)
        else:
            rc = sample_chunk(m, p + start, end - start, alpha, w, out)
        if rc < 0:
            return -1
        start = end
    return 0


# ---------------------------------------------------------------- texts given as str

cdef extern from "Python.h":
    int PyUnicode_IS_ASCII(object o)
    unsigned int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)


cdef Py_ssize_t utf8_of(int kind, const void* data, Py_ssize_t n, Work* w) noexcept nogil:
    """Write the UTF-8 of ``n`` code points (1, 2 or 4 bytes each, by ``kind``) to ``w.text``;
    return its length, or -1 without memory. A lone surrogate becomes its 3-byte form, as
    ``str.encode("utf-8", "surrogatepass")`` does."""
    cdef Py_ssize_t need = n * (2 if kind == 1 else 3 if kind == 2 else 4), i, o = 0
    cdef Py_ssize_t cap
    cdef uint32_t c
    cdef void* q
    cdef uint8_t* t
    if need > w.text_cap:
        cap = w.text_cap * 2 if w.text_cap else 4096
        while cap < need:
            cap *= 2
        q = realloc(w.text, cap)
        if q == NULL:
            return -1
        w.text = <uint8_t*> q
        w.text_cap = cap
    t = w.text
    for i in range(n):
        if kind == 1:
            c = (<const uint8_t*> data)[i]
        elif kind == 2:
            c = (<const uint16_t*> data)[i]
        else:
            c = (<const uint32_t*> data)[i]
        if c < 0x80:
            t[o] = <uint8_t> c
            o += 1
        elif c < 0x800:
            t[o] = <uint8_t> (0xC0 | (c >> 6))
            t[o + 1] = <uint8_t> (0x80 | (c & 0x3F))
            o += 2
        elif c < 0x10000:
            t[o] = <uint8_t> (0xE0 | (c >> 12))
            t[o + 1] = <uint8_t> (0x80 | ((c >> 6) & 0x3F))
            t[o + 2] = <uint8_t> (0x80 | (c & 0x3F))
            o += 3
        else:
            t[o] = <uint8_t> (0xF0 | (c >> 18))
            t[o + 1] = <uint8_t> (0x80 | ((c >> 12) & 0x3F))
            t[o + 2] = <uint8_t> (0x80 | ((c >> 6) & 0x3F))
            t[o + 3] = <uint8_t> (0x80 | (c & 0x3F))
            o += 4
    return o


cdef int text_ref(list texts, Py_ssize_t k, object convert, list keep,
                  const uint8_t** ptr, Py_ssize_t* length, uint8_t* kind) except -1:
    """Where the bytes of ``texts[k]`` are, read without the GIL later: bytes as they are; a
    str by its code points (kind 1, 2 or 4; ASCII as UTF-8 already, kind 0), converted while
    encoding; anything else through ``convert`` (kept alive in ``keep``). The list must not
    change while it is encoded."""
    item = texts[k]
    if type(item) is bytes:
        ptr[0] = <const uint8_t*> PyBytes_AS_STRING(item)
        length[0] = PyBytes_GET_SIZE(item)
        kind[0] = 0
    elif type(item) is str:
        ptr[0] = <const uint8_t*> PyUnicode_DATA(item)
        length[0] = PyUnicode_GET_LENGTH(item)
        kind[0] = 0 if PyUnicode_IS_ASCII(item) else <uint8_t> PyUnicode_KIND(item)
    else:
        if convert is None:
            raise TypeError(f"texts[{k}] is {type(item).__name__}, expected bytes or str")
        item = convert(item)
        if type(item) is not bytes:
            raise TypeError(f"texts[{k}]: the converter returned {type(item).__name__}, expected bytes")
        keep.append(item)
        ptr[0] = <const uint8_t*> PyBytes_AS_STRING(item)
        length[0] = PyBytes_GET_SIZE(item)
        kind[0] = 0
    return 0


cdef inline Py_ssize_t max_ids(Py_ssize_t length, uint8_t kind) noexcept nogil:
    """Most ids a text located by :func:`text_ref` can give: one per UTF-8 byte (every piece
    has at least one byte), i.e. ``length`` for bytes and ASCII, up to 2, 3 or 4 per code point
    for str of kind 1, 2 or 4."""
    return length * (1 if kind == 0 else 2 if kind == 1 else 3 if kind == 2 else 4)


cdef int32_t* alloc_ids(Py_ssize_t n) noexcept nogil:
    """An id buffer allocated once for a whole batch: growing it in steps, or one per block,
    makes the threads fault pages in and give them back concurrently, which the kernel
    serializes. (Not huge pages: the buffer is sized for the worst case and only the pages
    actually written should cost anything.)"""
    return <int32_t*> malloc(<size_t>(n if n > 0 else 1) * sizeof(int32_t))


cdef inline int encode_item(const Model* m, const uint8_t* p, Py_ssize_t n, uint8_t kind, double alpha,
                            Work* w, IntBuf* out) noexcept nogil:
    """:func:`encode_text` of a text located by :func:`text_ref`."""
    cdef Py_ssize_t length
    if kind == 0:
        return encode_text(m, p, n, alpha, w, out)
    length = utf8_of(kind, p, n, w)
    if length < 0:
        return -1
    return encode_text(m, w.text, length, alpha, w, out)


# ---------------------------------------------------------------- the trie

cdef class Segmenter:
    """A vocabulary of byte pieces with scores, compiled into a double-array trie.

    ``Segmenter(pieces, scores, ids, split_newlines=True)``: ``pieces[k]`` (bytes) has id
    ``ids[k]`` and log-probability ``scores[k]``. All 256 single bytes must be present, so
    that every input has a segmentation. Ids not used by a piece (e.g. special tokens) are
    never produced.
    """
    cdef Model m
    cdef PyObject** int_objs     # cached Python ints for every id
    cdef object _int_list
    cdef readonly Py_ssize_t max_id
    cdef readonly Py_ssize_t n_pieces
    cdef readonly Py_ssize_t max_piece_length
    cdef readonly bint split_newlines
    cdef int32_t* spare_ids      # the id buffer of an earlier batch, kept for the next one
    cdef Py_ssize_t spare_cap

    def __cinit__(self):
        self.m.nodes = NULL
        self.m.cell_id = NULL
        self.m.n_cells = 0
        self.m.scores = NULL
        self.m.lens = NULL
        self.int_objs = NULL
        self.spare_ids = NULL
        self.spare_cap = 0

    cdef int32_t* take_ids(self, Py_ssize_t need, Py_ssize_t* cap):
        """A buffer for ``need`` ids (its size in ``cap``): the one kept from an earlier batch
        if it is large enough, whose pages are already mapped, else a new one. GIL held."""
        cdef int32_t* p
        if need < 1:
            need = 1
        if self.spare_ids != NULL and self.spare_cap >= need:
            p = self.spare_ids
            cap[0] = self.spare_cap
            self.spare_ids = NULL
            self.spare_cap = 0
            return p
        cap[0] = need
        return alloc_ids(need)

    cdef void give_ids(self, int32_t* p, Py_ssize_t cap):
        """Take back a buffer from :meth:`take_ids`: the largest one up to 16M ids (64 MB) is
        kept for the next batch, the rest freed. GIL held."""
        if p == NULL:
            return
        if cap <= (16 << 20) and cap > self.spare_cap:
            free(self.spare_ids)
            self.spare_ids = p
            self.spare_cap = cap
        else:
            free(p)

    def __dealloc__(self):
        free(self.spare_ids)
        free(self.m.nodes)
        free(self.m.cell_id)
        free(self.m.scores)
        free(self.m.lens)
        free(self.int_objs)

    def __init__(self, pieces, scores, ids, bint split_newlines=True):
        cdef Py_ssize_t k, n = len(pieces)
        if len(scores) != n or len(ids) != n:
            raise ValueError("pieces, scores and ids must have the same length")
        if n == 0:
            raise ValueError("empty vocabulary")
        pieces = [bytes(x) for x in pieces]
        ids = [int(x) for x in ids]
        scores = [float(x) for x in scores]
        if min(ids) < 0:
            raise ValueError("negative piece id")
        if len(set(ids)) != n:
            raise ValueError("duplicate piece id")
        max_id = max(ids)
        if max_id >= 2 ** 31 - 1:
            raise ValueError("piece id too large")
        self.max_id = max_id
        self.n_pieces = n
        self.split_newlines = split_newlines
        self.m.split_newlines = split_newlines
        self.m.n_ids = max_id + 1
        self.m.scores = <double*> malloc(self.m.n_ids * sizeof(double))
        self.m.lens = <int32_t*> malloc(self.m.n_ids * sizeof(int32_t))
        self.int_objs = <PyObject**> malloc(self.m.n_ids * sizeof(PyObject*))
        if self.m.scores == NULL or self.m.lens == NULL or self.int_objs == NULL:
            raise MemoryError()
        for k in range(self.m.n_ids):
            self.m.scores[k] = -INFINITY
            self.m.lens[k] = 0
        self.max_piece_length = 0
        for k in range(n):
            if len(pieces[k]) == 0:
                raise ValueError("empty piece")
            if not isfinite(scores[k]):
                raise ValueError(f"score of piece {pieces[k]!r} is not finite")
            self.m.scores[ids[k]] = scores[k]
            self.m.lens[ids[k]] = len(pieces[k])
            if len(pieces[k]) > self.max_piece_length:
                self.max_piece_length = len(pieces[k])
        # The Python ints handed out for ids are made once, most probable piece first, so
        # that the ones in constant use sit together in memory (list building touches them).
        by_score = sorted(range(n), key=lambda k: -scores[k])
        ints = [None] * self.m.n_ids
        for k in by_score:
            ints[ids[k]] = PyLong_FromLong(ids[k])
        for k in range(self.m.n_ids):
            if ints[k] is None:
                ints[k] = PyLong_FromLong(k)
        self._int_list = ints
        for k in range(self.m.n_ids):
            self.int_objs[k] = <PyObject*> ints[k]
        order = sorted(range(n), key=pieces.__getitem__)
        for k in range(1, n):
            if pieces[order[k]] == pieces[order[k - 1]]:
                raise ValueError(f"duplicate piece {pieces[order[k]]!r}")
        singles = sum(1 for x in pieces if len(x) == 1)
        if singles != 256:
            missing = sorted(set(range(256)) - {x[0] for x in pieces if len(x) == 1})
            raise ValueError(f"{len(missing)} single bytes missing from the vocabulary "
                             f"(first: 0x{missing[0]:02x}); all 256 must be present")
        self._build([pieces[k] for k in order], [ids[k] for k in order])

    cdef _build(self, list keys, list kids):
        """Darts-style construction from sorted keys: each node's children get the smallest
        base where all their cells are free (scan starts at a moving "dense up to here" mark).
        """
        cdef Py_ssize_t n_keys = len(keys)
        cdef Py_ssize_t total = 0, k
        for key in keys:
            total += len(key)
        cdef bytes blob = b"".join(keys)
        cdef const uint8_t* kb = <const uint8_t*> PyBytes_AS_STRING(blob)
        cdef int64_t* off = <int64_t*> malloc((n_keys + 1) * sizeof(int64_t))
        cdef int32_t* kid = <int32_t*> malloc(n_keys * sizeof(int32_t))
        if off == NULL or kid == NULL:
            free(off)
            free(kid)
            raise MemoryError()
        off[0] = 0
        for k in range(n_keys):
            off[k + 1] = off[k] + len(keys[k])
            kid[k] = kids[k]
        try:
            if self._build_c(kb, off, kid, n_keys) < 0:
                raise MemoryError()
        finally:
            free(off)
            free(kid)

    cdef int _grow(self, Py_ssize_t need) noexcept nogil:
        cdef Py_ssize_t cap = self.m.n_cells, i
        cdef Node* p
        cdef int32_t* q
        if need < cap:
            return 0
        if cap == 0:
            cap = 1024
        while cap <= need:
            cap *= 2
        p = <Node*> realloc(self.m.nodes, cap * sizeof(Node))
        if p == NULL:
            return -1
        self.m.nodes = p
        q = <int32_t*> realloc(self.m.cell_id, cap * sizeof(int32_t))
        if q == NULL:
            return -1
        self.m.cell_id = q
        for i in range(self.m.n_cells, cap):
            p[i].base = 0
            p[i].check = FREE
            p[i].score = -INFINITY
            q[i] = -1
        self.m.n_cells = cap
        return 0

    cdef int _build_c(self, const uint8_t* kb, const int64_t* off, const int32_t* kid,
                      Py_ssize_t n_keys) noexcept nogil:
        # a FIFO of (node, lo, hi, depth): nodes are placed breadth first, so the shallow
        # nodes every walk goes through sit together at the front of the array (cache)
        cdef Py_ssize_t stack_cap = 1024, sp = 0, head = 0
        cdef int64_t* stack = <int64_t*> malloc(stack_cap * 4 * sizeof(int64_t))
        cdef int64_t* ns
        cdef int32_t labels[256]
        cdef int64_t bounds[257]
        cdef int n_children, c
        cdef int64_t s, lo, hi, depth, k, g
        cdef Py_ssize_t pos, next_check = 1, nonzero, base, t, max_base = 0
        cdef bint first, ok
        if stack == NULL or self._grow(1024) < 0:
            free(stack)
            return -1
        self.m.nodes[0].check = ROOT_CHECK
        stack[0] = 0
        stack[1] = 0
        stack[2] = n_keys
        stack[3] = 0
        sp = 1
        while head < sp:
            s = stack[4 * head]
            lo = stack[4 * head + 1]
            hi = stack[4 * head + 2]
            depth = stack[4 * head + 3]
            head += 1
            if lo < hi and off[lo + 1] - off[lo] == depth:
                self.m.cell_id[s] = kid[lo]
                self.m.nodes[s].score = self.m.scores[kid[lo]]
                lo += 1
            if lo >= hi:
                self.m.nodes[s].base = 0
                continue
            # group the remaining keys by their byte at `depth` (they are sorted)
            n_children = 0
            k = lo
            while k < hi:
                c = kb[off[k] + depth]
                labels[n_children] = c
                bounds[n_children] = k
                n_children += 1
                k += 1
                while k < hi and kb[off[k] + depth] == c:
                    k += 1
            bounds[n_children] = hi
            # find a base where every child cell is free
            pos = next_check
            if pos < labels[0] + 1:
                pos = labels[0] + 1
            nonzero = 0
            first = True
            while True:
                if self._grow(pos + 257) < 0:
                    free(stack)
                    return -1
                if self.m.nodes[pos].check != FREE:
                    nonzero += 1
                    pos += 1
                    continue
                if first:
                    next_check = pos
                    first = False
                base = pos - labels[0] - 1
                ok = True
                for g in range(1, n_children):
                    if self.m.nodes[base + labels[g] + 1].check != FREE:
                        ok = False
                        break
                if ok:
                    break
                pos += 1
            if nonzero * 20 >= (pos - next_check + 1) * 19:
                next_check = pos
            self.m.nodes[s].base = <int32_t> base
            if base > max_base:
                max_base = base
            # claim the cells, then queue the children
            for g in range(n_children):
                t = base + labels[g] + 1
                self.m.nodes[t].check = <int32_t> s
            if sp + n_children >= stack_cap:
                while sp + n_children >= stack_cap:
                    stack_cap *= 2
                ns = <int64_t*> realloc(stack, stack_cap * 4 * sizeof(int64_t))
                if ns == NULL:
                    free(stack)
                    return -1
                stack = ns
            for g in range(n_children):
                t = base + labels[g] + 1
                stack[4 * sp] = t
                stack[4 * sp + 1] = bounds[g]
                stack[4 * sp + 2] = bounds[g + 1]
                stack[4 * sp + 3] = depth + 1
                sp += 1
        free(stack)
        # every transition base + byte + 1 must stay inside the array
        if self._grow(max_base + 258) < 0:
            return -1
        return 0

    # ------------------------------------------------------------ info

    @property
    def trie_cells(self):
        """Number of cells in the double array (memory = 12 bytes per cell)."""
        return self.m.n_cells

    def score(self, Py_ssize_t pid):
        if pid < 0 or pid >= self.m.n_ids or self.m.lens[pid] == 0:
            raise KeyError(pid)
        return self.m.scores[pid]

    def matches(self, bytes data, Py_ssize_t start=0):
        """Ids of all vocabulary pieces that occur in ``data`` at ``start`` (shortest first)."""
        cdef const uint8_t* p = <const uint8_t*> PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), j = start
        cdef int32_t s = 0, t
        out = []
        while j < n:
            t = self.m.nodes[s].base + p[j] + 1
            if self.m.nodes[t].check != s:
                break
            s = t
            j += 1
            if self.m.cell_id[t] >= 0:
                out.append(self.m.cell_id[t])
        return out

    # ------------------------------------------------------------ encode

    cdef list _to_list(self, const int32_t* ids, Py_ssize_t n):
        cdef list out = PyList_New(n)
        cdef Py_ssize_t i
        cdef PyObject* o
        for i in range(n):
            o = self.int_objs[ids[i]]
            Py_INCREF(<object> o)
            PyList_SET_ITEM(out, i, <object> o)
        return out

    def encode(self, bytes data, double alpha=-1.0, uint64_t seed=0):
        """Ids of the best segmentation of ``data`` (``alpha < 0``), or of a random
        segmentation drawn with probability proportional to P**alpha (``alpha >= 0``)."""
        cdef const uint8_t* p = <const uint8_t*> PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Work w
        cdef IntBuf out
        cdef int rc
        work_init(&w)
        w.rng = seed
        out.data = NULL; out.size = 0; out.cap = 0
        if n >= 2048:
            with nogil:
                rc = encode_text(&self.m, p, n, alpha, &w, &out)
        else:
            rc = encode_text(&self.m, p, n, alpha, &w, &out)
        work_free(&w)
        try:
            if rc < 0:
                raise MemoryError()
            return self._to_list(out.data, out.size)
        finally:
            free(out.data)

    def encode_array(self, bytes data, double alpha=-1.0, uint64_t seed=0):
        """Like :meth:`encode` but returns the ids as a bytearray of native uint32."""
        cdef const uint8_t* p = <const uint8_t*> PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Work w
        cdef IntBuf out
        cdef int rc
        work_init(&w)
        w.rng = seed
        out.data = NULL; out.size = 0; out.cap = 0
        with nogil:
            rc = encode_text(&self.m, p, n, alpha, &w, &out)
        work_free(&w)
        try:
            if rc < 0:
                raise MemoryError()
            return PyByteArray_FromStringAndSize(<char*> out.data, out.size * sizeof(int32_t))
        finally:
            free(out.data)

    def count_work(self, bytes data):
        """Trie transitions the Viterbi makes on ``data``: the unit of work, for tests of
        linearity (it must grow in proportion to the input, whatever the line lengths)."""
        cdef Work w
        cdef IntBuf out
        cdef Py_ssize_t peak
        cdef const uint8_t* p = <const uint8_t*> PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        work_init(&w)
        out.data = NULL; out.size = 0; out.cap = 0
        with nogil:
            encode_text(&self.m, p, n, -1.0, &w, &out)
        free(out.data)
        peak = w.cap
        work_free(&w)
        return {"steps": w.steps, "scratch_positions": peak, "tokens": out.size}

    def encode_many(self, list texts, double alpha=-1.0, seeds=None, convert=None):
        """Encode a list of texts without the GIL; returns an :class:`EncodedBatch`.

        Items are bytes or str (a str is encoded as its UTF-8, lone surrogates as with
        ``"surrogatepass"``); others go through ``convert`` (e.g. a normalizer) if given. With
        ``alpha >= 0``, ``seeds[k]`` seeds the draw for ``texts[k]``.
        """
        cdef Py_ssize_t n = len(texts), k
        cdef const uint8_t** ptrs = <const uint8_t**> malloc((n + 1) * sizeof(uint8_t*))
        cdef Py_ssize_t* lens = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
        cdef uint8_t* kinds = <uint8_t*> malloc(n + 1)
        cdef uint64_t* sd = <uint64_t*> malloc((n + 1) * sizeof(uint64_t))
        cdef EncodedBatch batch = EncodedBatch.__new__(EncodedBatch)
        cdef list keep = []
        cdef Py_ssize_t total
        cdef Work w
        cdef int rc = 0
        if ptrs == NULL or lens == NULL or sd == NULL or kinds == NULL:
            free(ptrs); free(lens); free(sd); free(kinds)
            raise MemoryError()
        batch.seg = self
        batch.n = n
        batch.offsets = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
        if batch.offsets == NULL:
            free(ptrs); free(lens); free(sd); free(kinds)
            raise MemoryError()
        try:
            if alpha >= 0 and seeds is not None and len(seeds) != n:
                raise ValueError("need one seed per text")
            for k in range(n):
                text_ref(texts, k, convert, keep, &ptrs[k], &lens[k], &kinds[k])
                sd[k] = seeds[k] if (alpha >= 0 and seeds is not None) else 0
            if len(texts) != n:
                raise RuntimeError("the list of texts changed while it was read")
            total = 0
            for k in range(n):
                total += max_ids(lens[k], kinds[k])
            batch.ids.data = self.take_ids(total, &batch.ids.cap)   # never grown: no text gives more
            if batch.ids.data == NULL:
                raise MemoryError()
            work_init(&w)
            with nogil:
                batch.offsets[0] = 0
                for k in range(n):
                    w.rng = sd[k]
                    rc = encode_item(&self.m, ptrs[k], lens[k], kinds[k], alpha, &w, &batch.ids)
                    if rc < 0:
                        break
                    batch.offsets[k + 1] = batch.ids.size
                work_free(&w)
            if rc < 0:
                raise MemoryError()
            return batch
        finally:
            free(ptrs); free(lens); free(sd); free(kinds)

    def count_ids(self, list texts, int64_t[::1] counts not None, weights=None):
        """Add to ``counts[id]`` how often each id occurs in the best segmentation of each
        text (times ``weights[k]`` when given). Releases the GIL while segmenting."""
        cdef Py_ssize_t n = len(texts), k, r
        cdef const uint8_t** ptrs
        cdef Py_ssize_t* lens
        cdef int64_t* wts
        cdef Work w
        cdef IntBuf out
        cdef int rc = 0
        if counts.shape[0] < self.m.n_ids:
            raise ValueError(f"counts has {counts.shape[0]} entries, need {self.m.n_ids}")
        if weights is not None and len(weights) != n:
            raise ValueError("need one weight per text")
        ptrs = <const uint8_t**> malloc((n + 1) * sizeof(uint8_t*))
        lens = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
        wts = <int64_t*> malloc((n + 1) * sizeof(int64_t))
        if ptrs == NULL or lens == NULL or wts == NULL:
            free(ptrs); free(lens); free(wts)
            raise MemoryError()
        try:
            for k in range(n):
                item = texts[k]
                if type(item) is not bytes:
                    raise TypeError(f"texts[{k}] is {type(item).__name__}, expected bytes")
                ptrs[k] = <const uint8_t*> PyBytes_AS_STRING(item)
                lens[k] = PyBytes_GET_SIZE(item)
                wts[k] = 1 if weights is None else weights[k]
            work_init(&w)
            out.data = NULL; out.size = 0; out.cap = 0
            with nogil:
                for k in range(n):
                    out.size = 0
                    rc = encode_text(&self.m, ptrs[k], lens[k], -1.0, &w, &out)
                    if rc < 0:
                        break
                    for r in range(out.size):
                        counts[out.data[r]] += wts[k]
                work_free(&w)
                free(out.data)
            if rc < 0:
                raise MemoryError()
        finally:
            free(ptrs); free(lens); free(wts)


cdef class EncodedBatch:
    """Ids of several texts in one flat buffer (made by :meth:`Segmenter.encode_many`)."""
    cdef Segmenter seg
    cdef IntBuf ids
    cdef Py_ssize_t* offsets
    cdef readonly Py_ssize_t n

    def __cinit__(self):
        self.ids.data = NULL
        self.ids.size = 0
        self.ids.cap = 0
        self.offsets = NULL
        self.n = 0

    def __dealloc__(self):
        if self.seg is not None:
            self.seg.give_ids(self.ids.data, self.ids.cap)
        else:
            free(self.ids.data)
        free(self.offsets)

    def __len__(self):
        return self.n

    @property
    def n_tokens(self):
        return self.ids.size

    def tolists(self):
        """One list of ids per text."""
        cdef list out = PyList_New(self.n)
        cdef Py_ssize_t k
        cdef object item
        for k in range(self.n):
            item = self.seg._to_list(self.ids.data + self.offsets[k],
                                     self.offsets[k + 1] - self.offsets[k])
            Py_INCREF(item)
            PyList_SET_ITEM(out, k, item)
        return out

    def ids_bytes(self):
        """All ids, concatenated, as a bytearray of native uint32."""
        return PyByteArray_FromStringAndSize(<char*> self.ids.data, self.ids.size * sizeof(int32_t))

    def offsets_list(self):
        """Token offsets: text k has ids[offsets[k]:offsets[k+1]]."""
        return [self.offsets[k] for k in range(self.n + 1)]


cdef class ParallelEncode:
    """Encode a list of texts on the calling thread and helper threads that never take the GIL.

    The texts are cut into blocks; each helper repeatedly claims the next block (an atomic
    counter) and encodes it into the block's own region of one id buffer. The calling thread
    turns finished blocks into Python lists, in order, and while the next one is not finished
    it claims and encodes a block itself, so the GIL-bound list building overlaps with
    encoding and no thread polls idly::

        job = ParallelEncode(seg, texts, n, alpha, seeds)
        threads = [threading.Thread(target=job.work) for _ in range(n - 1)]   # + this thread
        for t in threads: t.start()
        lists = job.collect()
        for t in threads: t.join()
    """
    cdef Segmenter seg
    cdef object texts
    cdef list keep
    cdef const uint8_t** ptrs
    cdef Py_ssize_t* lens
    cdef uint8_t* kinds
    cdef uint64_t* seeds
    cdef double alpha
    cdef Py_ssize_t n
    cdef Py_ssize_t n_blocks
    cdef Py_ssize_t* block_lo
    cdef IntBuf* bufs           # views into ids_all, one region per block
    cdef int32_t* ids_all
    cdef Py_ssize_t ids_cap
    cdef Py_ssize_t* starts
    cdef int* state
    cdef long next_block

    def __cinit__(self):
        self.ptrs = NULL
        self.lens = NULL
        self.seeds = NULL
        self.kinds = NULL
        self.block_lo = NULL
        self.bufs = NULL
        self.ids_all = NULL
        self.starts = NULL
        self.state = NULL
        self.n_blocks = 0

    def __dealloc__(self):
        if self.seg is not None:
            self.seg.give_ids(self.ids_all, self.ids_cap)
        else:
            free(self.ids_all)
        free(self.bufs)
        free(self.ptrs)
        free(self.lens)
        free(self.kinds)
        free(self.seeds)
        free(self.block_lo)
        free(self.starts)
        free(self.state)

    def __init__(self, Segmenter seg, list texts, int num_threads, double alpha=-1.0, seeds=None,
                 Py_ssize_t max_block=1 << 18, Py_ssize_t min_block=1 << 14, convert=None):
        """Cut ``texts`` into contiguous blocks of about equal size (text length + 16 per
        text), several per thread so that the threads finish together: ``total / (32 *
        num_threads)`` each (the calling thread also builds every list, in order, so the
        last blocks must be short for the helpers not to idle at the end), clamped to ``[min_block, max_block]``. Items are bytes, str or
        anything ``convert`` turns into bytes (as in :meth:`Segmenter.encode_many`); a str is
        turned into UTF-8 by the thread that encodes it. ``seeds``: one per text (used when
        ``alpha >= 0``)."""
        cdef Py_ssize_t k, i, n = len(texts), total = 0, target, size, nb
        self.seg = seg
        self.texts = texts
        self.keep = []
        self.alpha = alpha
        self.n = n
        if num_threads < 1:
            raise ValueError("num_threads must be >= 1")
        if alpha >= 0 and seeds is not None and len(seeds) != n:
            raise ValueError("need one seed per text")
        self.ptrs = <const uint8_t**> malloc((n + 1) * sizeof(uint8_t*))
        self.lens = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
        self.kinds = <uint8_t*> malloc(n + 1)
        self.seeds = <uint64_t*> malloc((n + 1) * sizeof(uint64_t))
        self.starts = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
        self.block_lo = <Py_ssize_t*> malloc((n + 2) * sizeof(Py_ssize_t))
        if (self.ptrs == NULL or self.lens == NULL or self.seeds == NULL or self.starts == NULL
                or self.block_lo == NULL or self.kinds == NULL):
            raise MemoryError()
        for k in range(n):
            text_ref(texts, k, convert, self.keep, &self.ptrs[k], &self.lens[k], &self.kinds[k])
            total += self.lens[k] + 16
            self.seeds[k] = seeds[k] if (alpha >= 0 and seeds is not None) else 0
        if len(texts) != n:
            raise RuntimeError("the list of texts changed while it was read")
        target = total // (num_threads * 32) + 1
        target = min(target, max_block)
        target = max(target, min_block)
        nb = 0
        self.block_lo[0] = 0
        size = 0
        for k in range(n):
            size += self.lens[k] + 16
            if size >= target:
                nb += 1
                self.block_lo[nb] = k + 1
                size = 0
        if self.block_lo[nb] != n:
            nb += 1
            self.block_lo[nb] = n
        self.bufs = <IntBuf*> malloc((nb + 1) * sizeof(IntBuf))
        self.state = <int*> malloc((nb + 1) * sizeof(int))
        if self.bufs == NULL or self.state == NULL:
            raise MemoryError()
        self.n_blocks = nb
        total = 0
        for k in range(n):
            total += max_ids(self.lens[k], self.kinds[k])
        self.ids_all = seg.take_ids(total, &self.ids_cap)
        if self.ids_all == NULL:
            raise MemoryError()
        # block k writes its ids, text after text, into its own region, sized so that it
        # never has to grow
        size = 0
        for k in range(nb):
            self.bufs[k].data = self.ids_all + size
            self.bufs[k].size = 0
            for i in range(self.block_lo[k], self.block_lo[k + 1]):
                size += max_ids(self.lens[i], self.kinds[i])
            self.bufs[k].cap = (self.ids_all + size) - self.bufs[k].data
            self.state[k] = 0
        self.state[nb] = 0
        self.bufs[nb].data = NULL
        self.bufs[nb].size = 0
        self.bufs[nb].cap = 0
        self.next_block = 0

    @property
    def blocks(self):
        """Number of blocks (units of work)."""
        return self.n_blocks

    def work(self):
        """Run by each worker thread: encode blocks until none is left (without the GIL)."""
        with nogil:
            self._work()

    cdef bint _claim_and_encode(self, Work* w) noexcept nogil:
        """Claim the next unclaimed block and encode it; False when none is left."""
        cdef long b = tm_fetch_add(&self.next_block, 1)
        cdef Py_ssize_t k
        cdef int rc = 0
        cdef IntBuf out
        if b >= self.n_blocks:
            return False
        # The block's buffer is filled through a local copy: the IntBufs of neighbouring
        # blocks share cache lines, and two threads updating their sizes after every chunk
        # would bounce those lines between the cores.
        out = self.bufs[b]
        for k in range(self.block_lo[b], self.block_lo[b + 1]):
            w.rng = self.seeds[k]
            self.starts[k] = out.size
            rc = encode_item(&self.seg.m, self.ptrs[k], self.lens[k], self.kinds[k], self.alpha, w, &out)
            if rc < 0:
                break
        self.bufs[b] = out
        tm_store(&self.state[b], 1 if rc == 0 else -1)
        return True

    cdef void _work(self) noexcept nogil:
        cdef Work w
        work_init(&w)
        while self._claim_and_encode(&w):
            pass
        work_free(&w)

    def collect(self):
        """One list of ids per text, in order. The calling thread encodes blocks too: while
        the next block in order is not finished, it claims and encodes an unclaimed one (so
        ``n`` threads need only ``n - 1`` workers), and only when every block is claimed does
        it wait for the workers."""
        cdef list out = PyList_New(self.n)
        cdef Py_ssize_t b, k, end
        cdef object item
        cdef Work w
        cdef bint more = True
        work_init(&w)
        try:
            for b in range(self.n_blocks):
                if tm_load(&self.state[b]) == 0:
                    with nogil:
                        while tm_load(&self.state[b]) == 0:
                            if more:
                                more = self._claim_and_encode(&w)
                            else:
                                usleep(50)
                if self.state[b] < 0:
                    raise MemoryError()
                for k in range(self.block_lo[b], self.block_lo[b + 1]):
                    end = self.starts[k + 1] if k + 1 < self.block_lo[b + 1] else self.bufs[b].size
                    item = self.seg._to_list(self.bufs[b].data + self.starts[k], end - self.starts[k])
                    Py_INCREF(item)
                    PyList_SET_ITEM(out, k, item)

        finally:
            work_free(&w)
        return out


cdef class ByteTable:
    """The bytes of every id, for decoding: ``ByteTable(list_of_bytes).join(ids) -> bytes``.

    >>> ByteTable([b"a", b"bc", b""]).join([1, 0, 2, 1])
    b'bcabc'
    """
    cdef char* blob
    cdef Py_ssize_t* off
    cdef readonly Py_ssize_t size

    def __cinit__(self):
        self.blob = NULL
        self.off = NULL

    def __dealloc__(self):
        free(self.blob)
        free(self.off)

    def __init__(self, list entries):
        cdef Py_ssize_t n = len(entries), k, total = 0
        for item in entries:
            total += len(<bytes?> item)
        self.blob = <char*> malloc(total + 1)
        self.off = <Py_ssize_t*> malloc((n + 1) * sizeof(Py_ssize_t))
        if self.blob == NULL or self.off == NULL:
            raise MemoryError()
        self.size = n
        self.off[0] = 0
        for k in range(n):
            item = entries[k]
            memcpy(self.blob + self.off[k], PyBytes_AS_STRING(item), len(item))
            self.off[k + 1] = self.off[k] + len(item)

    def join(self, ids):
        """Concatenated bytes of ``ids`` (any sequence of ints); ValueError for a bad id."""
        cdef Py_ssize_t n, k, total = 0, pos = 0
        cdef long v
        cdef IntBuf tmp
        cdef bytes out
        cdef char* dst
        if not isinstance(ids, (list, tuple)):
            ids = list(ids) if not hasattr(ids, "tolist") else ids.tolist()
        n = len(ids)
        tmp.data = <int32_t*> malloc((n + 1) * sizeof(int32_t))
        if tmp.data == NULL:
            raise MemoryError()
        try:
            for k in range(n):
                item = ids[k]
                try:
                    v = item
                except (TypeError, OverflowError):
                    raise ValueError(f"token id {item!r} is out of range for a vocabulary of {self.size}") from None
                if v < 0 or v >= self.size or isinstance(item, bool):
                    raise ValueError(f"token id {item!r} is out of range for a vocabulary of {self.size}")
                tmp.data[k] = <int32_t> v
                total += self.off[v + 1] - self.off[v]
            out = PyBytes_FromStringAndSize(NULL, total)  # filled below, before anyone sees it
            dst = PyBytes_AS_STRING(out)
            for k in range(n):
                v = tmp.data[k]
                memcpy(dst + pos, self.blob + self.off[v], self.off[v + 1] - self.off[v])
                pos += self.off[v + 1] - self.off[v]
            return out
        finally:
            free(tmp.data)
