# cython: language_level=3
"""Exact counts of byte strings of any length: the counting core of ``tokenmill count``,
``tokenmill discover`` and the trainer's piece counts.

A *span* is a byte string ``buf[start:end]``. Text is cut into *units* (bytes, UTF-8
characters, words or any spans the caller chooses) given as two arrays, ``ustart`` and
``uend``, and into *segments*: runs of units that n-grams may cross (``seg_ends[k]`` is the
index of the first unit after segment ``k``). The n-gram of ``n`` units starting at unit ``i``
is the span ``buf[ustart[i]:uend[i + n - 1]]``: whatever lies between the units (a space
between words) is part of it.

:class:`SpanCounter` counts n-grams in ``SHARDS`` hash tables in two steps per batch, both
parallel and free of locks and of the GIL:

1. :meth:`SpanCounter.collect` (one call per thread, each over its own segments) hashes every
   n-gram and files a record (hash, start, length) under the thread that owns its shard;
2. :meth:`SpanCounter.add` (one call per thread) adds the records filed under that thread to
   the tables it owns.

Memory: with ``max_bytes`` each table may use ``max_bytes / shards``. A table that would need
more gives up the upper half of its *hash range* (forgetting those strings); :meth:`ranges`
then tells which strings were counted, and a further pass over the same input with
:meth:`set_starts` counts the rest. Every string is counted completely in exactly one pass,
so counts are exact, never estimated, whatever the budget, the thread count or the batches.
"""
from libc.stdint cimport uint64_t, int64_t, uint32_t, uint8_t, int32_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize

from ._alloc cimport zeroed_alloc, zeroed_free
from ._hash cimport grown, home_slot, mix64, over_full, range_value, reserved_slots, shard_of

import numpy as np

cdef extern from *:
    void __builtin_prefetch(const void *addr, int rw, int locality) nogil

cdef extern from "Python.h":
    bint Py_UNICODE_ISALNUM(Py_UCS4 ch) nogil

cdef extern from "malloc.h" nogil:
    int mallopt(int param, int value)
    int M_MMAP_THRESHOLD
    int M_TRIM_THRESHOLD

# Tables, arenas and record arrays are large blocks that come and go with every pass; glibc
# would raise its mmap threshold after the first ones are freed and then keep their memory in
# the heap. A fixed threshold makes every large block an mmap that free() returns at once.
mallopt(M_MMAP_THRESHOLD, 256 * 1024)
mallopt(M_TRIM_THRESHOLD, 1024 * 1024)

FULL_RANGE = 1 << 32
cdef uint64_t C_FULL_RANGE = 4294967296ULL
cdef uint64_t FNV_OFFSET = 0xCBF29CE484222325ULL
cdef uint64_t FNV_PRIME = 0x100000001B3ULL
cdef enum:
    AHEAD = 8           # records whose table slot is prefetched ahead of use
    FETCH_AHEAD = 16    # entries fetched ahead when writing them in count order


# ---------------------------------------------------------------------------------- hashing

cdef inline uint64_t fnv(uint64_t state, const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        state = (state ^ p[i]) * FNV_PRIME
    return state


cdef inline uint64_t hash_final(uint64_t state, Py_ssize_t n) noexcept nogil:
    return mix64(state ^ (<uint64_t>n * 0x9E3779B97F4A7C15ULL))


cdef inline uint64_t hash_bytes(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    return hash_final(fnv(FNV_OFFSET, p, n), n)


# ------------------------------------------------------------------------------- StrTable
# One open-addressing table (linear probing) of byte strings -> int64 counts. The strings
# live in an arena as [uint32 length][bytes]; a slot holds the full hash, the arena offset
# and the count (0 = empty slot).

cdef enum:
    INLINE = 15           # strings of up to INLINE bytes live in their slot: one cache miss per add
    LONG = 255            # Slot.len of a string kept in the arena


cdef struct Slot:         # 32 bytes, two per cache line
    uint64_t h
    int64_t count         # 0: empty slot
    unsigned char data[15]   # the string itself, or (LONG) its arena offset in data[0:8]
    uint8_t len


cdef struct StrTable:
    Slot *slots
    uint64_t cap          # any number of slots >= 256; grows by half when 3/4 full
    uint64_t size
    unsigned char *arena  # strings longer than INLINE, as [uint32 length][bytes]
    int64_t arena_len
    int64_t arena_cap
    uint64_t lo           # this pass counts the strings whose range value is in [lo, hi)
    uint64_t hi
    uint64_t budget       # bytes this table may use (0 = unlimited)
    int evictions


cdef inline Slot *slots_alloc(uint64_t cap) noexcept nogil:
    return <Slot *> zeroed_alloc(cap * sizeof(Slot))


cdef inline void slots_free(Slot *slots, uint64_t cap) noexcept nogil:
    zeroed_free(slots, cap * sizeof(Slot))


cdef int st_init(StrTable *t, uint64_t capacity, uint64_t budget) noexcept nogil:
    cdef uint64_t cap = 256
    if capacity * 4 > cap * 3:
        cap = capacity * 4 // 3 + 1
    t.slots = slots_alloc(cap)
    t.arena_cap = 4096
    t.arena = <unsigned char *> malloc(t.arena_cap)
    t.arena_len = 0
    t.cap = cap
    t.size = 0
    t.lo = 0
    t.hi = C_FULL_RANGE
    t.budget = budget
    t.evictions = 0
    if t.slots == NULL or t.arena == NULL:
        st_free(t)
        return -1
    return 0


cdef void st_free(StrTable *t) noexcept nogil:
    slots_free(t.slots, t.cap)
    free(t.arena)
    t.slots = NULL
    t.arena = NULL
    t.cap = 0
    t.size = 0
    t.arena_len = 0
    t.arena_cap = 0


cdef inline uint64_t st_nbytes(StrTable *t) noexcept nogil:
    return t.cap * sizeof(Slot) + <uint64_t>t.arena_cap


cdef inline bint st_owns(StrTable *t, uint64_t h) noexcept nogil:
    cdef uint64_t r
    if t.lo == 0 and t.hi == C_FULL_RANGE:
        return True
    if t.lo >= t.hi:
        return False
    r = range_value(h)
    return t.lo <= r < t.hi


cdef inline const unsigned char *slot_bytes(StrTable *t, Slot *s, Py_ssize_t *n) noexcept nogil:
    cdef int64_t off
    cdef uint32_t plen
    if s.len != LONG:
        n[0] = s.len
        return s.data
    memcpy(&off, s.data, 8)
    memcpy(&plen, t.arena + off, 4)
    n[0] = plen
    return t.arena + off + 4


cdef inline bint slot_equals(StrTable *t, Slot *s, const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef int64_t off
    cdef uint32_t plen
    if n <= INLINE:
        return s.len == n and memcmp(s.data, p, n) == 0
    if s.len != LONG:
        return False
    memcpy(&off, s.data, 8)
    memcpy(&plen, t.arena + off, 4)
    return plen == n and memcmp(t.arena + off + 4, p, n) == 0


cdef int st_rebuild(StrTable *t, uint64_t cap, int64_t arena_min) noexcept nogil:
    """Move the entries this table still owns into fresh slots (``cap`` of them) and a
    compacted arena of at least ``arena_min`` bytes."""
    cdef Slot *ns = slots_alloc(cap)
    cdef uint64_t i, j, live = 0
    cdef int64_t pos = 0, acap, off
    cdef uint32_t plen
    cdef unsigned char *a
    if ns == NULL:
        return -1
    for i in range(t.cap):
        if t.slots[i].count != 0 and t.slots[i].len == LONG and st_owns(t, t.slots[i].h):
            memcpy(&off, t.slots[i].data, 8)
            memcpy(&plen, t.arena + off, 4)
            pos += 4 + plen
    acap = pos + pos // 2 + 4096
    if acap < arena_min:
        acap = arena_min
    a = <unsigned char *> malloc(acap)
    if a == NULL:
        slots_free(ns, cap)
        return -1
    pos = 0
    for i in range(t.cap):
        if t.slots[i].count != 0 and st_owns(t, t.slots[i].h):
            j = home_slot(t.slots[i].h, cap)
            while ns[j].count != 0:
                j += 1
                if j == cap:
                    j = 0
            ns[j] = t.slots[i]
            if t.slots[i].len == LONG:
                memcpy(&off, t.slots[i].data, 8)
                memcpy(&plen, t.arena + off, 4)
                memcpy(a + pos, t.arena + off, 4 + plen)
                memcpy(ns[j].data, &pos, 8)
                pos += 4 + plen
            live += 1
    slots_free(t.slots, t.cap)
    free(t.arena)
    t.slots = ns
    t.cap = cap
    t.size = live
    t.arena = a
    t.arena_len = pos
    t.arena_cap = acap
    return 0


cdef inline int st_evict(StrTable *t, uint64_t cap, int64_t arena_min) noexcept nogil:
    t.hi = t.lo + (t.hi - t.lo) // 2
    t.evictions += 1
    return st_rebuild(t, cap, arena_min)


cdef int st_make_room(StrTable *t) noexcept nogil:
    """The table is 3/4 full: grow it by half if the budget allows, else give up half its
    range."""
    cdef uint64_t cap
    while over_full(t.size, t.cap):
        cap = grown(t.cap)
        if t.budget == 0 or cap * sizeof(Slot) + <uint64_t>t.arena_cap <= t.budget or t.hi - t.lo < 2:
            if st_rebuild(t, cap, t.arena_cap) != 0:
                return -1
        elif st_evict(t, t.cap, 0) != 0:
            return -1
    return 0


cdef int st_reserve(StrTable *t, int64_t need) noexcept nogil:
    """Make the arena hold ``need`` bytes, giving up hash range first if over budget
    (returns 1 then: the arena was compacted and the caller recomputes ``need``)."""
    cdef int64_t newcap
    cdef unsigned char *a
    while need > t.arena_cap:
        newcap = t.arena_cap + t.arena_cap // 2
        if newcap < need:
            newcap = need
        if (t.budget != 0 and t.cap * sizeof(Slot) + <uint64_t>newcap > t.budget
                and t.hi - t.lo >= 2 and t.size > 0):
            if st_evict(t, t.cap, 0) != 0:
                return -1
            return 1
        a = <unsigned char *> realloc(t.arena, newcap)
        if a == NULL:
            return -1
        t.arena = a
        t.arena_cap = newcap
    return 0


cdef int st_add(StrTable *t, const unsigned char *p, Py_ssize_t n, uint64_t h, int64_t count) noexcept nogil:
    """Add ``count`` (non-zero) to string ``p[:n]`` of hash ``h`` if this table owns it;
    -1 when out of memory."""
    cdef uint64_t j
    cdef uint32_t plen
    cdef int rc
    cdef Slot *s
    if not st_owns(t, h):
        return 0
    j = home_slot(h, t.cap)
    while t.slots[j].count != 0:
        if t.slots[j].h == h and slot_equals(t, &t.slots[j], p, n):
            t.slots[j].count += count
            return 0
        j += 1
        if j == t.cap:
            j = 0
    if n > INLINE:
        while True:
            rc = st_reserve(t, t.arena_len + 4 + n)
            if rc < 0:
                return -1
            if rc == 0:
                break
            if not st_owns(t, h):     # its half of the range was given up
                return 0
        j = home_slot(h, t.cap)       # the table may have been rebuilt: find the free slot again
        while t.slots[j].count != 0:
            j += 1
            if j == t.cap:
                j = 0
    s = &t.slots[j]
    s.h = h
    s.count = count
    if n <= INLINE:
        memcpy(s.data, p, n)
        s.len = <uint8_t> n
    else:
        plen = <uint32_t> n
        memcpy(t.arena + t.arena_len, &plen, 4)
        memcpy(t.arena + t.arena_len + 4, p, n)
        memcpy(s.data, &t.arena_len, 8)
        s.len = LONG
        t.arena_len += 4 + n
    t.size += 1
    if over_full(t.size, t.cap):
        return st_make_room(t)
    return 0


cdef int64_t st_get(StrTable *t, const unsigned char *p, Py_ssize_t n, uint64_t h) noexcept nogil:
    cdef uint64_t j = home_slot(h, t.cap)
    while t.slots[j].count != 0:
        if t.slots[j].h == h and slot_equals(t, &t.slots[j], p, n):
            return t.slots[j].count
        j += 1
        if j == t.cap:
            j = 0
    return 0


cdef void st_export(StrTable *t, int64_t min_count, unsigned char *blob, int64_t *pos,
                    int64_t *offs, int64_t *cnts, Py_ssize_t *m) noexcept nogil:
    cdef uint64_t i
    cdef Py_ssize_t n
    cdef const unsigned char *p
    for i in range(t.cap):
        if t.slots[i].count >= min_count and t.slots[i].count != 0:
            p = slot_bytes(t, &t.slots[i], &n)
            memcpy(blob + pos[0], p, n)
            pos[0] += n
            cnts[m[0]] = t.slots[i].count
            m[0] += 1
            offs[m[0]] = pos[0]


cdef void st_export_size(StrTable *t, int64_t min_count, int64_t *nbytes, Py_ssize_t *m) noexcept nogil:
    cdef uint64_t i
    cdef Py_ssize_t n
    for i in range(t.cap):
        if t.slots[i].count >= min_count and t.slots[i].count != 0:
            slot_bytes(t, &t.slots[i], &n)
            nbytes[0] += n
            m[0] += 1


# ---------------------------------------------------------------------------- PieceCounter

cdef class PieceCounter:
    """Exact counts of byte strings (pieces of any length) in one table.

    >>> c = PieceCounter(); c.add(b"ab", 2); c.add(b"ab", 1); c.items()
    ([b'ab'], array([3]))
    """
    cdef StrTable t

    def __cinit__(self, uint64_t capacity=1024):
        if st_init(&self.t, capacity, 0) != 0:
            raise MemoryError()

    def __dealloc__(self):
        st_free(&self.t)

    def __len__(self):
        return self.t.size

    @property
    def nbytes(self):
        return st_nbytes(&self.t)

    def add(self, bytes piece, int64_t count=1):
        if count != 0 and st_add(&self.t, piece, len(piece), hash_bytes(piece, len(piece)), count) != 0:
            raise MemoryError()

    def get(self, bytes piece):
        return st_get(&self.t, piece, len(piece), hash_bytes(piece, len(piece)))

    def add_spans(self, const unsigned char[:] buf, const int64_t[:] ends, int shard=0, int nshards=1):
        """Count the pieces ``buf[ends[k-1]:ends[k]]`` (``ends[0]`` is the first start) whose
        hash falls in ``shard`` of ``nshards``. Releases the GIL."""
        cdef Py_ssize_t k, s, e
        cdef int err = 0
        cdef uint64_t h
        with nogil:
            for k in range(1, ends.shape[0]):
                s = ends[k - 1]
                e = ends[k]
                if e <= s:
                    continue
                h = hash_bytes(&buf[s], e - s)
                if nshards > 1 and shard_of(h, nshards) != shard:
                    continue
                if st_add(&self.t, &buf[s], e - s, h, 1) != 0:
                    err = 1
                    break
        if err:
            raise MemoryError()

    def add_counted(self, const unsigned char[:] buf, const int64_t[:] ends, const int64_t[:] counts):
        """Add ``counts[k]`` to the piece ``buf[ends[k]:ends[k+1]]`` (the layout of
        :meth:`export`, so that exports can be added up). Releases the GIL.

        >>> c = PieceCounter(); c.add_counted(b"abb", np.array([0, 1, 3]), np.array([2, 5])); c.items()
        ([b'a', b'bb'], array([2, 5]))
        """
        cdef Py_ssize_t k, s, e
        cdef int err = 0
        if counts.shape[0] + 1 != ends.shape[0]:
            raise ValueError("need one count per piece")
        with nogil:
            for k in range(counts.shape[0]):
                s = ends[k]
                e = ends[k + 1]
                if e <= s or counts[k] == 0:
                    continue
                if st_add(&self.t, &buf[s], e - s, hash_bytes(&buf[s], e - s), counts[k]) != 0:
                    err = 1
                    break
        if err:
            raise MemoryError()

    def export(self):
        """``(buf, ends, counts)``: the pieces concatenated in table order (piece k is
        ``buf[ends[k]:ends[k+1]]``) and their counts; no Python object per piece."""
        return _export_tables(self, &self.t, 1, 1)

    def clear(self):
        """Release the memory (the counter is empty afterwards)."""
        st_free(&self.t)
        if st_init(&self.t, 1024, 0) != 0:
            raise MemoryError()

    def items(self):
        """``(pieces, counts)`` sorted by piece bytes: a list of bytes and an int64 array."""
        blob, ends, counts = self.export()
        pieces = [bytes(blob[ends[k]:ends[k + 1]]) for k in range(len(counts))]
        order = sorted(range(len(pieces)), key=pieces.__getitem__)
        return [pieces[k] for k in order], counts[np.asarray(order, dtype=np.int64)] if order else counts


cdef class Export:
    """Copies the entries with count >= ``min_count`` of a set of tables into three arrays,
    ``blob`` (uint8), ``offs`` and ``counts`` (int64): string k is ``blob[offs[k]:offs[k+1]]``.

    Threads may share the work: :meth:`size_part` and then :meth:`copy_part` for every part
    (parts take every ``nparts``-th table). With ``free_tables`` each table is emptied once
    copied, so that the copy and the tables never both take their full size.
    """
    cdef StrTable *tables
    cdef int ntables
    cdef int64_t min_count
    cdef bint free_tables
    cdef int64_t *tbytes
    cdef int64_t *tcount
    cdef readonly object blob, offs, counts
    cdef object owner
    cdef int err

    def __dealloc__(self):
        free(self.tbytes)
        free(self.tcount)

    cdef int setup(self, object owner, StrTable *tables, int ntables, int64_t min_count, bint free_tables) except -1:
        self.owner = owner
        self.tables = tables
        self.ntables = ntables
        self.min_count = min_count if min_count > 1 else 1
        self.free_tables = free_tables
        self.tbytes = <int64_t *> calloc(ntables + 1, sizeof(int64_t))
        self.tcount = <int64_t *> calloc(ntables + 1, sizeof(int64_t))
        self.err = 0
        if self.tbytes == NULL or self.tcount == NULL:
            raise MemoryError()
        return 0

    def size_part(self, int k, int nparts):
        cdef int i
        cdef Py_ssize_t m
        with nogil:
            i = k
            while i < self.ntables:
                m = 0
                st_export_size(&self.tables[i], self.min_count, &self.tbytes[i], &m)
                self.tcount[i] = m
                i += nparts
        return None

    def allocate(self):
        """After every :meth:`size_part`: turn sizes into start positions, allocate."""
        cdef int64_t pos = 0, m = 0, x
        cdef int i
        for i in range(self.ntables):
            x = self.tbytes[i]
            self.tbytes[i] = pos
            pos += x
            x = self.tcount[i]
            self.tcount[i] = m
            m += x
        self.tbytes[self.ntables] = pos
        self.tcount[self.ntables] = m
        self.blob = np.empty(pos, dtype=np.uint8)       # pages are touched only when written
        self.offs = np.empty(m + 1, dtype=np.int64)
        self.counts = np.empty(m, dtype=np.int64)
        self.offs[0] = 0

    def copy_part(self, int k, int nparts):
        cdef unsigned char[:] bv = self.blob
        cdef int64_t[:] ov = self.offs
        cdef int64_t[:] cv = self.counts
        cdef unsigned char *bp = &bv[0] if bv.shape[0] else NULL
        cdef int64_t *cp = &cv[0] if cv.shape[0] else NULL
        cdef int64_t pos
        cdef Py_ssize_t m
        cdef int i
        cdef uint64_t lo, hi, budget
        with nogil:
            i = k
            while i < self.ntables:
                pos = self.tbytes[i]
                m = self.tcount[i]
                st_export(&self.tables[i], self.min_count, bp, &pos, &ov[0], cp, &m)
                if self.free_tables:
                    lo, hi, budget = self.tables[i].lo, self.tables[i].hi, self.tables[i].budget
                    st_free(&self.tables[i])
                    if st_init(&self.tables[i], 0, budget) != 0:
                        self.err = 1
                    self.tables[i].lo, self.tables[i].hi = lo, hi
                i += nparts
        if self.err:
            raise MemoryError()

    def result(self):
        return self.blob, self.offs, self.counts


cdef _export_tables(object owner, StrTable *tables, int ntables, int64_t min_count, bint free_tables=False):
    """:class:`Export` on one thread."""
    cdef Export e = Export()
    e.setup(owner, tables, ntables, min_count, free_tables)
    e.size_part(0, 1)
    e.allocate()
    e.copy_part(0, 1)
    return e.result()


# ----------------------------------------------------------------------------- SpanCounter

cdef struct Rec:          # 16 bytes: batches are below 4 GiB (checked in collect)
    uint64_t h
    uint32_t start
    uint32_t length


cdef class Records:
    """The n-gram occurrences one :meth:`SpanCounter.collect` call found, filed by table (so
    that the adds into one table come together, while its slots are in the cache)."""
    cdef Rec **recs
    cdef Py_ssize_t *n
    cdef Py_ssize_t *cap
    cdef readonly int ntables
    cdef const unsigned char *base
    cdef object owner           # keeps the text alive while records point into it

    def __cinit__(self, int ntables):
        cdef int p
        self.ntables = ntables
        self.recs = <Rec **> calloc(ntables, sizeof(Rec *))
        self.n = <Py_ssize_t *> calloc(ntables, sizeof(Py_ssize_t))
        self.cap = <Py_ssize_t *> calloc(ntables, sizeof(Py_ssize_t))
        if self.recs == NULL or self.n == NULL or self.cap == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef int p
        if self.recs != NULL:
            for p in range(self.ntables):
                free(self.recs[p])
        free(self.recs)
        free(self.n)
        free(self.cap)

    def __len__(self):
        cdef Py_ssize_t total = 0
        cdef int p
        for p in range(self.ntables):
            total += self.n[p]
        return total

    def clear(self):
        """Forget the records, keeping the memory for the next batch."""
        cdef int p
        for p in range(self.ntables):
            self.n[p] = 0
        self.owner = None
        self.base = NULL

    cdef inline int push(self, int p, uint64_t h, int64_t start, int64_t length) noexcept nogil:
        cdef Rec *r
        cdef Py_ssize_t c
        if self.n[p] == self.cap[p]:
            c = self.cap[p] * 2 if self.cap[p] else 4096
            r = <Rec *> realloc(self.recs[p], c * sizeof(Rec))
            if r == NULL:
                return -1
            self.recs[p] = r
            self.cap[p] = c
        r = &self.recs[p][self.n[p]]
        r.h = h
        r.start = <uint32_t> start
        r.length = <uint32_t> length
        self.n[p] += 1
        return 0


cdef class SpanCounter:
    """Exact n-gram counts in ``shards`` tables (see the module docstring).

    >>> c = SpanCounter()
    >>> u = byte_units(b"abab")
    >>> c.add([c.collect(b"abab", *u, 2, 0, len(u[2]))], 0, 1)
    >>> sorted(c.items())
    [(b'a', 2), (b'ab', 2), (b'b', 2), (b'ba', 1)]
    """
    cdef StrTable *tables
    cdef readonly int nshards

    def __cinit__(self, int shards=64, uint64_t max_bytes=0):
        cdef int i
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.nshards = shards
        self.tables = <StrTable *> calloc(shards, sizeof(StrTable))
        if self.tables == NULL:
            raise MemoryError()
        for i in range(shards):
            if st_init(&self.tables[i], 256, max_bytes // shards) != 0:
                raise MemoryError()

    def __dealloc__(self):
        cdef int i
        if self.tables != NULL:
            for i in range(self.nshards):
                st_free(&self.tables[i])
            free(self.tables)

    def __len__(self):
        cdef uint64_t n = 0
        cdef int i
        for i in range(self.nshards):
            n += self.tables[i].size
        return n

    @property
    def nbytes(self):
        """Bytes of memory held by the tables and their arenas."""
        cdef uint64_t n = 0
        cdef int i
        for i in range(self.nshards):
            n += st_nbytes(&self.tables[i])
        return n

    @property
    def evictions(self):
        return sum(self.tables[i].evictions for i in range(self.nshards))

    def set_starts(self, starts):
        """Start each table's hash range at ``starts[i]`` (2**32: the table counts nothing)."""
        cdef int i
        for i in range(self.nshards):
            if not 0 <= starts[i] <= C_FULL_RANGE:
                raise ValueError("bad range start")
            self.tables[i].lo = starts[i]
            self.tables[i].hi = C_FULL_RANGE
            if st_rebuild(&self.tables[i], self.tables[i].cap, 0) != 0:
                raise MemoryError()

    def reserve(self, uint64_t keys, int part=0, int nparts=1):
        """Make room for ``keys`` strings in all, spread evenly over the tables (those of
        ``part`` of ``nparts``), each then 2/3 full (it grows at 3/4), where its budget allows:
        growing once to the final size costs far less than growing by half again and again.
        Releases the GIL."""
        cdef uint64_t cap = reserved_slots(keys, self.nshards)
        cdef int i = part, err = 0
        cdef StrTable *t
        with nogil:
            while i < self.nshards:
                t = &self.tables[i]
                if cap > t.cap and (t.budget == 0 or cap * sizeof(Slot) + <uint64_t>t.arena_cap <= t.budget):
                    if st_rebuild(t, cap, t.arena_cap) != 0:
                        err = 1
                        break
                i += nparts
        if err:
            raise MemoryError("n-gram table: out of memory")

    def ranges(self):
        """``[(lo, hi)]`` per table: the range values whose strings this counter counted."""
        return [(self.tables[i].lo, self.tables[i].hi) for i in range(self.nshards)]

    def collect(self, const unsigned char[:] buf, const int64_t[:] ustart, const int64_t[:] uend,
                const int64_t[:] seg_ends, int order, Py_ssize_t seg_lo, Py_ssize_t seg_hi,
                int min_order=1, Records into=None):
        """Step 1: the n-grams of ``min_order..order`` units inside segments
        ``seg_lo..seg_hi-1``, filed by table (skipping strings outside the current hash
        ranges). Returns them as :class:`Records` (``into``, cleared and reused, if given).
        Releases the GIL."""
        cdef Records out
        if into is not None and into.ntables == self.nshards:
            out = into
            out.clear()
        else:
            out = Records(self.nshards)
        cdef Py_ssize_t k, a, b, i, n, prev, e
        cdef uint64_t state, h
        cdef int sh, err = 0
        cdef StrTable *t
        if order < 1 or min_order < 1:
            raise ValueError("order must be >= 1")
        if ustart.shape[0] != uend.shape[0]:
            raise ValueError("ustart and uend differ in length")
        if buf.shape[0] >= 0xFFFFFFFF:
            raise ValueError("a batch of text must be smaller than 4 GiB (is there a line that long?)")
        out.owner = buf
        out.base = &buf[0] if buf.shape[0] else NULL
        with nogil:
            for k in range(seg_lo, seg_hi):
                a = seg_ends[k - 1] if k > 0 else 0
                b = seg_ends[k]
                for i in range(a, b):
                    state = FNV_OFFSET
                    prev = ustart[i]
                    n = 1
                    while n <= order and i + n <= b:
                        e = uend[i + n - 1]
                        state = fnv(state, &buf[prev], e - prev)
                        prev = e
                        if n >= min_order:
                            h = hash_final(state, e - ustart[i])
                            sh = shard_of(h, self.nshards)
                            t = &self.tables[sh]
                            if st_owns(t, h):
                                if out.push(sh, h, ustart[i], e - ustart[i]) != 0:
                                    err = 1
                                    break
                        n += 1
                    if err:
                        break
                if err:
                    break
        if err:
            raise MemoryError()
        return out

    def add(self, list records, int part, int nparts):
        """Step 2: add the records of tables ``part``, ``part + nparts``, ... from every
        :class:`Records` of ``records`` (``nparts`` threads call this at once, one per part),
        one table after the other. Releases the GIL."""
        cdef Py_ssize_t nr = len(records), r, q, m
        cdef Records rec
        cdef Rec *rs
        cdef Rec *x
        cdef StrTable *t
        cdef int err = 0, sh
        cdef const unsigned char **bases = <const unsigned char **> malloc((nr + 1) * sizeof(void *))
        cdef Rec ***lists = <Rec ***> malloc((nr + 1) * sizeof(Rec **))
        cdef Py_ssize_t **lens = <Py_ssize_t **> malloc((nr + 1) * sizeof(Py_ssize_t *))
        if bases == NULL or lists == NULL or lens == NULL:
            free(bases); free(lists); free(lens)
            raise MemoryError()
        for r in range(nr):
            rec = <Records?> records[r]     # ``records`` keeps them alive while we run
            if rec.ntables != self.nshards:
                free(bases); free(lists); free(lens)
                raise ValueError("records were filed for another number of tables")
            bases[r] = rec.base
            lists[r] = rec.recs
            lens[r] = rec.n
        with nogil:
            sh = part
            while sh < self.nshards:
                t = &self.tables[sh]
                for r in range(nr):
                    rs = lists[r][sh]
                    m = lens[r][sh]
                    for q in range(m):
                        if q + AHEAD < m:
                            __builtin_prefetch(&t.slots[home_slot(rs[q + AHEAD].h, t.cap)], 1, 1)
                        x = &rs[q]
                        if st_add(t, bases[r] + x.start, x.length, x.h, 1) != 0:
                            err = 1
                            break
                    if err:
                        break
                if err:
                    break
                sh += nparts
        free(bases); free(lists); free(lens)
        if err:
            raise MemoryError("n-gram table: out of memory")

    def add_counts(self, const unsigned char[:] blob, const int64_t[:] offs, const int64_t[:] counts):
        """Add ``counts[k]`` to string ``blob[offs[k]:offs[k+1]]`` (single thread)."""
        cdef Py_ssize_t k, s, e
        cdef uint64_t h
        cdef int err = 0
        with nogil:
            for k in range(counts.shape[0]):
                s = offs[k]
                e = offs[k + 1]
                h = hash_bytes(&blob[s] if e > s else NULL, e - s)
                if counts[k] != 0 and st_add(&self.tables[shard_of(h, self.nshards)],
                                             &blob[s] if e > s else NULL, e - s, h, counts[k]) != 0:
                    err = 1
                    break
        if err:
            raise MemoryError()

    def get(self, bytes s):
        """The count of ``s`` (0 if absent or outside the current hash ranges)."""
        cdef uint64_t h = hash_bytes(s, len(s))
        return st_get(&self.tables[shard_of(h, self.nshards)], s, len(s), h)

    cdef inline int64_t get_c(self, const unsigned char *p, Py_ssize_t n, uint64_t h) noexcept nogil:
        return st_get(&self.tables[shard_of(h, self.nshards)], p, n, h)

    def export(self, int64_t min_count=1, bint free_tables=False):
        """``(blob, offs, counts)``: the strings with count >= ``min_count``, concatenated in
        table order (string k is ``blob[offs[k]:offs[k+1]]``). With ``free_tables`` the
        tables are emptied as they are copied."""
        return _export_tables(self, self.tables, self.nshards, max(min_count, 1), free_tables)

    def exporter(self, int64_t min_count=1, bint free_tables=False):
        """An :class:`Export` of this counter that threads can share (see there)."""
        cdef Export e = Export()
        e.setup(self, self.tables, self.nshards, max(min_count, 1), free_tables)
        return e

    def items(self):
        """``[(bytes, count)]`` in table order (for tests and small tables)."""
        blob, offs, counts = self.export(1)
        return [(bytes(blob[offs[k]:offs[k + 1]]), int(counts[k])) for k in range(len(counts))]


# ------------------------------------------------------------------------------ units

cdef inline Py_ssize_t utf8_char(const unsigned char *p, Py_ssize_t avail, Py_UCS4 *cp) noexcept nogil:
    """Length of the UTF-8 character at ``p`` (1 for an invalid byte, as Python's
    ``surrogateescape`` decoder sees it) and its code point (0xDC80 + byte if invalid)."""
    cdef unsigned char c = p[0], c1, c2, c3
    if c < 0x80:
        cp[0] = c
        return 1
    if 0xC2 <= c <= 0xDF and avail >= 2:
        c1 = p[1]
        if (c1 & 0xC0) == 0x80:
            cp[0] = ((c & 0x1F) << 6) | (c1 & 0x3F)
            return 2
    elif 0xE0 <= c <= 0xEF and avail >= 3:
        c1 = p[1]
        c2 = p[2]
        if ((c1 & 0xC0) == 0x80 and (c2 & 0xC0) == 0x80
                and not (c == 0xE0 and c1 < 0xA0) and not (c == 0xED and c1 > 0x9F)):
            cp[0] = ((c & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F)
            return 3
    elif 0xF0 <= c <= 0xF4 and avail >= 4:
        c1 = p[1]
        c2 = p[2]
        c3 = p[3]
        if ((c1 & 0xC0) == 0x80 and (c2 & 0xC0) == 0x80 and (c3 & 0xC0) == 0x80
                and not (c == 0xF0 and c1 < 0x90) and not (c == 0xF4 and c1 > 0x8F)):
            cp[0] = ((c & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F)
            return 4
    cp[0] = 0xDC00 + c
    return 1


cdef class UnitBuffer:
    """Reusable storage for the unit arrays of :func:`byte_units`, :func:`char_units` and
    :func:`split_units`: pass the same buffer for every batch to spare the allocations (the
    arrays returned are views into it, valid until its next use)."""
    cdef object a_us, a_ue, a_se
    cdef int64_t *us
    cdef int64_t *ue
    cdef int64_t *se
    cdef Py_ssize_t nu, ns, cap_u, cap_s

    def __cinit__(self):
        self.cap_u = 0
        self.cap_s = 0

    cdef prepare(self, Py_ssize_t cap_u, Py_ssize_t cap_s):
        cdef int64_t[:] v
        if cap_u + 1 > self.cap_u:
            self.cap_u = cap_u + 1 + cap_u // 4
            self.a_us = np.empty(self.cap_u, dtype=np.int64)
            self.a_ue = np.empty(self.cap_u, dtype=np.int64)
            v = self.a_us
            self.us = &v[0]
            v = self.a_ue
            self.ue = &v[0]
        if cap_s + 1 > self.cap_s:
            self.cap_s = cap_s + 1 + cap_s // 4
            self.a_se = np.empty(self.cap_s, dtype=np.int64)
            v = self.a_se
            self.se = &v[0]
        self.nu = 0
        self.ns = 0

    cdef inline void unit(self, int64_t s, int64_t e) noexcept nogil:
        self.us[self.nu] = s
        self.ue[self.nu] = e
        self.nu += 1

    cdef inline void end_segment(self) noexcept nogil:
        if self.nu > (self.se[self.ns - 1] if self.ns else 0):
            self.se[self.ns] = self.nu
            self.ns += 1

    cdef arrays(self):
        return self.a_us[:self.nu], self.a_ue[:self.nu], self.a_se[:self.ns]


def byte_units(const unsigned char[:] buf, UnitBuffer ws=None):
    """``(ustart, uend, seg_ends)``: every byte but ``\\n`` is a unit; lines are segments.

    >>> [a.tolist() for a in byte_units(b"ab\\nc")]
    [[0, 1, 3], [1, 2, 4], [2, 3]]
    """
    cdef Py_ssize_t n = buf.shape[0], i
    cdef UnitBuffer u = ws if ws is not None else UnitBuffer()
    u.prepare(n, n + 1)
    with nogil:
        for i in range(n):
            if buf[i] == 10:
                u.end_segment()
            else:
                u.unit(i, i + 1)
        u.end_segment()
    return u.arrays()


def char_units(const unsigned char[:] buf, bint alnum_only=False, UnitBuffer ws=None):
    """``(ustart, uend, seg_ends)``: UTF-8 characters (an invalid byte is a character of its
    own) except ``\\n``; lines are segments. With ``alnum_only`` only letters and digits
    (``str.isalnum``) are units and every other character ends a segment.

    >>> [a.tolist() for a in char_units("a中,b".encode(), True)]
    [[0, 1, 5], [1, 4, 6], [2, 3]]
    """
    cdef Py_ssize_t n = buf.shape[0], i = 0, L
    cdef Py_UCS4 cp
    cdef UnitBuffer u = ws if ws is not None else UnitBuffer()
    u.prepare(n, n + 1)
    with nogil:
        while i < n:
            L = utf8_char(&buf[i], n - i, &cp)
            if cp == 10 or (alnum_only and not Py_UNICODE_ISALNUM(cp)):
                u.end_segment()
            else:
                u.unit(i, i + L)
            i += L
        u.end_segment()
    return u.arrays()


def split_units(const unsigned char[:] buf, int sep=32, UnitBuffer ws=None):
    """``(ustart, uend, seg_ends)``: the maximal runs of bytes other than ``sep`` and ``\\n``
    (words); lines are segments.

    >>> [a.tolist() for a in split_units(b"ab c\\nd")]
    [[0, 3, 5], [2, 4, 6], [2, 3]]
    """
    cdef Py_ssize_t n = buf.shape[0], i, start = -1
    cdef UnitBuffer u = ws if ws is not None else UnitBuffer()
    u.prepare(n // 2 + 1, n + 1)
    with nogil:
        for i in range(n + 1):
            if i == n or buf[i] == sep or buf[i] == 10:
                if start >= 0:
                    u.unit(start, i)
                    start = -1
                if i == n or buf[i] == 10:
                    u.end_segment()
            elif start < 0:
                start = i
    return u.arrays()


def squeeze_spaces(const unsigned char[:] buf):
    """``buf`` with every run of ASCII blanks (space, tab, CR, VT, FF) turned into one space
    and blanks at the start and end of lines removed: words then sit one space apart.

    >>> squeeze_spaces(b" a \\t b \\nc")
    b'a b\\nc'
    """
    cdef Py_ssize_t n = buf.shape[0], i, m = 0
    out = bytearray(n)
    cdef unsigned char *o = out
    cdef unsigned char c
    cdef bint pending = False
    with nogil:
        for i in range(n):
            c = buf[i]
            if c == 32 or c == 9 or c == 13 or c == 11 or c == 12:
                pending = m > 0 and o[m - 1] != 10
            else:
                if pending and c != 10:
                    o[m] = 32
                    m += 1
                pending = False
                o[m] = c
                m += 1
    return bytes(out[:m])


# ------------------------------------------------------------------------ discovery: cuts

def cut_units(SpanCounter kept, const unsigned char[:] buf, const int64_t[:] ustart,
              const int64_t[:] uend, const int64_t[:] seg_ends, int order):
    """Su's cut: two neighbouring units stay together when some n-gram of 2..``order`` units
    that covers both is in ``kept`` (count > 0); every other boundary is cut. Returns the
    pieces as ``(pstart, pend)`` arrays (each piece is a span of whole units). Releases the GIL.
    """
    cdef Py_ssize_t nu = ustart.shape[0], k, a, b, i, n, prev, e, j, np_ = 0
    cdef uint64_t state, h
    cdef unsigned char *joined = <unsigned char *> calloc(nu + 1, 1)
    if joined == NULL:
        raise MemoryError()
    pstart = np.empty(nu, dtype=np.int64)
    pend = np.empty(nu, dtype=np.int64)
    cdef int64_t[:] ps = pstart
    cdef int64_t[:] pe = pend
    with nogil:
        for k in range(seg_ends.shape[0]):
            a = seg_ends[k - 1] if k > 0 else 0
            b = seg_ends[k]
            for i in range(a, b):
                state = FNV_OFFSET
                prev = ustart[i]
                n = 1
                while n <= order and i + n <= b:
                    e = uend[i + n - 1]
                    state = fnv(state, &buf[prev], e - prev)
                    prev = e
                    if n >= 2:
                        h = hash_final(state, e - ustart[i])
                        if kept.get_c(&buf[ustart[i]], e - ustart[i], h) > 0:
                            for j in range(i, i + n - 1):
                                joined[j] = 1      # unit j stays with unit j + 1
                    n += 1
            i = a
            while i < b:
                j = i
                while j + 1 < b and joined[j]:
                    j += 1
                ps[np_] = ustart[i]
                pe[np_] = uend[j]
                np_ += 1
                i = j + 1
    free(joined)
    return pstart[:np_], pend[:np_]


# ------------------------------------------------------------------------ sorting, output

def format_tsv(const unsigned char[:] blob, const int64_t[:] offs, const int64_t[:] counts,
               const int64_t[:] order, Py_ssize_t lo, Py_ssize_t hi, int space_byte=-1):
    """Lines ``string<TAB>count`` for entries ``order[lo:hi]``. In the string, backslash,
    tab, LF and CR are written ``\\\\``, ``\\t``, ``\\n``, ``\\r``; ``space_byte`` (if >= 0)
    is written as a space.

    Returns a ``bytearray`` (filled in place, never zeroed or copied: these are megabytes).

    >>> bytes(format_tsv(b"a\\tb", np.array([0, 3]), np.array([7]), np.array([0]), 0, 1))
    b'a\\\\tb\\t7\\n'
    """
    cdef Py_ssize_t k, need = 0, m = 0, i, s, e
    cdef int64_t x, c
    cdef unsigned char ch
    cdef char digits[24]
    cdef int nd
    # entries in count order sit at random places of blob, offs and counts: fetch ahead
    with nogil:
        for k in range(lo, hi):
            if k + FETCH_AHEAD < hi:
                __builtin_prefetch(&offs[order[k + FETCH_AHEAD]], 0, 0)
            x = order[k]
            need += 2 * (offs[x + 1] - offs[x]) + 24
    out = PyByteArray_FromStringAndSize(NULL, need)
    cdef unsigned char *o = <unsigned char *> PyByteArray_AS_STRING(out)
    with nogil:
        for k in range(lo, hi):
            if k + 2 * FETCH_AHEAD < hi:
                __builtin_prefetch(&offs[order[k + 2 * FETCH_AHEAD]], 0, 0)
                __builtin_prefetch(&counts[order[k + 2 * FETCH_AHEAD]], 0, 0)
            if k + FETCH_AHEAD < hi:     # its offset was fetched FETCH_AHEAD entries ago
                __builtin_prefetch(&blob[offs[order[k + FETCH_AHEAD]]], 0, 0)
            x = order[k]
            for i in range(offs[x], offs[x + 1]):
                ch = blob[i]
                if ch == 92:
                    o[m] = 92; o[m + 1] = 92; m += 2
                elif ch == 9:
                    o[m] = 92; o[m + 1] = 116; m += 2
                elif ch == 10:
                    o[m] = 92; o[m + 1] = 110; m += 2
                elif ch == 13:
                    o[m] = 92; o[m + 1] = 114; m += 2
                elif ch == space_byte:
                    o[m] = 32; m += 1
                else:
                    o[m] = ch; m += 1
            o[m] = 9
            m += 1
            c = counts[x]
            nd = 0
            while True:
                digits[nd] = 48 + c % 10
                nd += 1
                c //= 10
                if c == 0:
                    break
            while nd > 0:
                nd -= 1
                o[m] = digits[nd]
                m += 1
            o[m] = 10
            m += 1
    del out[m:]
    return out


def span_parts(const unsigned char[:] buf, const int64_t[:] ends, int nparts, uint64_t salt=0):
    """Which of ``nparts`` parts each piece ``buf[ends[k]:ends[k+1]]`` belongs to, chosen by
    a hash of its bytes (int32 array): the same piece always goes to the same part. With
    ``salt`` 0 the part is the :class:`SpanCounter` table the piece would go to; any other salt
    draws the parts independently of the tables (so a part's strings still fill all of them).

    >>> p = span_parts(b"abab", np.array([0, 2, 4]), 8); int(p[0]) == int(p[1])
    True
    """
    cdef Py_ssize_t k, n = ends.shape[0] - 1
    cdef uint64_t h
    if nparts < 1:
        raise ValueError("nparts must be >= 1")
    out = np.empty(max(n, 0), dtype=np.int32)
    cdef int32_t[:] o = out
    with nogil:
        for k in range(n):
            h = hash_bytes(&buf[ends[k]] if ends[k + 1] > ends[k] else NULL, ends[k + 1] - ends[k])
            if salt == 0:
                o[k] = shard_of(h, nparts)
            else:
                o[k] = <int32_t>(mix64(h ^ salt) % <uint64_t>nparts)
    return out


def gather(const unsigned char[:] blob, const int64_t[:] offs, const int64_t[:] order,
           Py_ssize_t lo, Py_ssize_t hi):
    """``(strings, lengths)``: the strings of entries ``order[lo:hi]`` concatenated in that
    order, and their lengths (to write a sorted run to disk).

    >>> s, n = gather(b"abc", np.array([0, 1, 3]), np.array([1, 0]), 0, 2); s, n.tolist()
    (b'bca', [2, 1])
    """
    cdef Py_ssize_t k, total = 0, pos = 0
    cdef int64_t x
    for k in range(lo, hi):
        x = order[k]
        total += offs[x + 1] - offs[x]
    out = bytearray(total)
    lens = np.empty(hi - lo, dtype=np.int64)
    cdef int64_t[:] lv = lens
    cdef unsigned char *o = out
    with nogil:
        for k in range(lo, hi):
            x = order[k]
            if offs[x + 1] > offs[x]:
                memcpy(o + pos, &blob[offs[x]], offs[x + 1] - offs[x])
            pos += offs[x + 1] - offs[x]
            lv[k - lo] = offs[x + 1] - offs[x]
    return bytes(out), lens


# ------------------------------------------------------------------ parallel sort of counts

cdef struct Ent:
    int64_t count
    uint64_t prefix          # first 8 bytes, big-endian, zero-padded
    int64_t idx


cdef inline int ent_cmp(const Ent *x, const Ent *y, const unsigned char *bp, const int64_t *op) noexcept nogil:
    """-1 if x goes first: higher count, then bytewise smaller string."""
    cdef int64_t lx, ly, l
    cdef int c
    if x.count != y.count:
        return -1 if x.count > y.count else 1
    if x.prefix != y.prefix:
        return -1 if x.prefix < y.prefix else 1
    lx = op[x.idx + 1] - op[x.idx]
    ly = op[y.idx + 1] - op[y.idx]
    l = lx if lx < ly else ly
    c = memcmp(bp + op[x.idx], bp + op[y.idx], l) if l > 0 else 0
    if c != 0:
        return c
    return -1 if lx < ly else (1 if lx > ly else 0)


cdef void ent_merge(const Ent *a, Py_ssize_t na, const Ent *b, Py_ssize_t nb, Ent *out,
                    const unsigned char *bp, const int64_t *op) noexcept nogil:
    cdef Py_ssize_t i = 0, j = 0, k = 0
    while i < na and j < nb:
        if ent_cmp(&b[j], &a[i], bp, op) < 0:
            out[k] = b[j]
            j += 1
        else:
            out[k] = a[i]
            i += 1
        k += 1
    if i < na:
        memcpy(&out[k], &a[i], (na - i) * sizeof(Ent))
        k += na - i
    if j < nb:
        memcpy(&out[k], &b[j], (nb - j) * sizeof(Ent))


cdef void ent_sort(Ent *a, Ent *t, Py_ssize_t n, const unsigned char *bp, const int64_t *op) noexcept nogil:
    """Stable bottom-up merge sort of ``a[:n]`` (``t[:n]`` scratch); result in ``a``."""
    cdef Py_ssize_t lo, hi, i, j, width = 16, mid
    cdef Ent x
    cdef Ent *src = a
    cdef Ent *dst = t
    cdef Ent *sw
    lo = 0
    while lo < n:                       # insertion sort of runs of 16
        hi = lo + 16 if lo + 16 < n else n
        for i in range(lo + 1, hi):
            x = a[i]
            j = i
            while j > lo and ent_cmp(&x, &a[j - 1], bp, op) < 0:
                a[j] = a[j - 1]
                j -= 1
            a[j] = x
        lo = hi
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width if lo + width < n else n
            hi = lo + 2 * width if lo + 2 * width < n else n
            ent_merge(&src[lo], mid - lo, &src[mid], hi - mid, &dst[lo], bp, op)
            lo = hi
        sw = src
        src = dst
        dst = sw
        width *= 2
    if src != a:
        memcpy(a, src, n * sizeof(Ent))


cdef inline int ent_key_cmp(const Ent *x, int64_t count, uint64_t prefix) noexcept nogil:
    """Order of x against the key (count, prefix), counts descending."""
    if x.count != count:
        return -1 if x.count > count else 1
    if x.prefix != prefix:
        return -1 if x.prefix < prefix else 1
    return 0


cdef class EntrySorter:
    """Sorts the entries of an export by count (highest first), then by string bytes, with
    ``parts`` threads::

        s = EntrySorter(blob, offs, counts, parts=2)
        pool.map(s.fill_part, range(2)); s.partition(); pool.map(s.scatter_part, range(2))
        pool.map(s.sort_part, range(2))
        order = s.finish()

    The entries go into ``parts`` buckets of consecutive (count, 8-byte prefix) keys, split
    at keys chosen from a sample, so that the sorted buckets, one after the other, are the
    sorted whole. Each thread builds the keys of a part of the entries and counts them per
    bucket, then moves them into their buckets (``partition`` only adds up the counts), then
    sorts one bucket.
    """
    cdef Ent *ents
    cdef Ent *tmp
    cdef Py_ssize_t n
    cdef int parts
    cdef bint split               # False: one bucket (one part, or too few entries to sample)
    cdef Ent *splitters           # splitters[1 .. parts-1]
    cdef Py_ssize_t *hist         # [k * parts + b]: part k's entries in bucket b, then where they go
    cdef Py_ssize_t *bstart
    cdef object keep
    cdef const unsigned char *bp
    cdef const int64_t *op
    cdef const int64_t *cp

    def __cinit__(self, blob, const int64_t[:] offs, const int64_t[:] counts, int parts=1):
        cdef const unsigned char[:] bv = blob
        cdef Py_ssize_t s, ns
        cdef Ent *sample
        cdef int b
        self.n = counts.shape[0]
        self.parts = max(1, parts)
        self.keep = (blob, offs, counts)
        self.ents = <Ent *> malloc((self.n + 1) * sizeof(Ent))
        self.tmp = <Ent *> malloc((self.n + 1) * sizeof(Ent))
        self.bstart = <Py_ssize_t *> calloc(self.parts + 1, sizeof(Py_ssize_t))
        self.splitters = <Ent *> calloc(self.parts, sizeof(Ent))
        self.hist = <Py_ssize_t *> calloc(self.parts * self.parts, sizeof(Py_ssize_t))
        if self.ents == NULL or self.tmp == NULL or self.bstart == NULL or self.splitters == NULL or self.hist == NULL:
            raise MemoryError()
        self.bp = &bv[0] if bv.shape[0] else NULL
        self.op = &offs[0]
        self.cp = &counts[0] if self.n else NULL
        self.split = self.parts > 1 and self.n >= 4096
        if not self.split:
            return
        ns = 256 * self.parts
        sample = <Ent *> malloc(2 * ns * sizeof(Ent))
        if sample == NULL:
            raise MemoryError()
        with nogil:
            for s in range(ns):
                self.make_key(&sample[s], (self.n - 1) * s // (ns - 1))
            ent_sort(sample, sample + ns, ns, self.bp, self.op)
            for b in range(1, self.parts):
                self.splitters[b] = sample[ns * b // self.parts]
        free(sample)

    def __dealloc__(self):
        free(self.ents)
        free(self.tmp)
        free(self.bstart)
        free(self.splitters)
        free(self.hist)

    cdef inline void make_key(self, Ent *e, Py_ssize_t j) noexcept nogil:
        cdef uint64_t key = 0
        cdef Py_ssize_t L = self.op[j + 1] - self.op[j], i
        for i in range(8):
            key <<= 8
            if i < L:
                key |= self.bp[self.op[j] + i]
        e.count = self.cp[j]
        e.prefix = key
        e.idx = j

    cdef inline int bucket(self, const Ent *e) noexcept nogil:
        """How many splitters are at or before the key of ``e``."""
        cdef int b = 0
        while b + 1 < self.parts and ent_key_cmp(&self.splitters[b + 1], e.count, e.prefix) <= 0:
            b += 1
        return b

    def fill_part(self, int k):
        """Build the sort keys of part ``k`` of the entries and count them per bucket;
        releases the GIL."""
        cdef Py_ssize_t lo = self.n * k // self.parts, hi = self.n * (k + 1) // self.parts, j
        cdef Py_ssize_t *h = &self.hist[k * self.parts]
        with nogil:
            for j in range(lo, hi):
                self.make_key(&self.tmp[j], j)
                if self.split:
                    h[self.bucket(&self.tmp[j])] += 1

    def partition(self):
        """Where each part's entries of each bucket go (after :meth:`fill_part` of every part)."""
        cdef int P = self.parts, b, k
        cdef Py_ssize_t pos = 0, c
        if not self.split:
            self.bstart[0] = 0
            for b in range(1, P + 1):
                self.bstart[b] = self.n
            return
        for b in range(P):
            self.bstart[b] = pos
            for k in range(P):
                c = self.hist[k * P + b]
                self.hist[k * P + b] = pos
                pos += c
        self.bstart[P] = pos

    def scatter_part(self, int k):
        """Move part ``k``'s keys into their buckets (after :meth:`partition`); releases the GIL."""
        cdef Py_ssize_t lo = self.n * k // self.parts, hi = self.n * (k + 1) // self.parts, j
        cdef Py_ssize_t *h = &self.hist[k * self.parts]
        cdef int b
        with nogil:
            if not self.split:
                memcpy(&self.ents[lo], &self.tmp[lo], (hi - lo) * sizeof(Ent))
            else:
                for j in range(lo, hi):
                    b = self.bucket(&self.tmp[j])
                    self.ents[h[b]] = self.tmp[j]
                    h[b] += 1

    def sort_part(self, int k):
        """Sort bucket ``k``; releases the GIL."""
        cdef Py_ssize_t lo = self.bstart[k], hi = self.bstart[k + 1]
        with nogil:
            ent_sort(&self.ents[lo], &self.tmp[lo], hi - lo, self.bp, self.op)

    def finish(self):
        """The entry indices in order (int64 array)."""
        cdef Py_ssize_t k
        out = np.empty(self.n, dtype=np.int64)
        cdef int64_t[:] ov = out
        with nogil:
            for k in range(self.n):
                ov[k] = self.ents[k].idx
        free(self.tmp)
        self.tmp = NULL
        return out
