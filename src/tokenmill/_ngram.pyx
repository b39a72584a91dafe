# cython: language_level=3
"""Exact n-gram counting over packed 64-bit keys, in compiled code that releases the GIL.

A key packs an n-gram of up to 7 bytes (or any units whose packing fits 56 bits) and its
length: the bytes go big-endian into the high bits, the length into the low byte, so that

    >>> pack(b"ab") == (0x61 << 56) | (0x62 << 48) | 2
    True

and sorting keys numerically sorts the n-grams bytewise with every prefix before its
extensions (b"ab" < b"ab\\x00" < b"abc" < b"b"). An n-gram of 8 to ``MAX_ORDER`` bytes does
not fit: its key is a 56-bit hash of its bytes above its length (:func:`key_of`), so two such
n-grams share a key with probability about 2**-56 per pair (for 10**7 distinct long n-grams,
about one chance in 1,400 that any pair does; their counts would then be added together).
Such keys cannot be unpacked; nothing needs to: the language model only looks n-grams up.

:class:`NgramTable` is an open-addressing hash table (key -> count) split into shards by the
key's hash; a slot is 12 bytes (the key and its count mod 2**32; the rare counts that pass
2**32 keep their carries beside the table) and a shard grows by half when 3/4 full, so the
table takes 16 to 24 bytes per distinct n-gram. Shard ``s`` is only ever touched by the
thread that passes ``shard=s``, so several threads count one batch at once without locks,
and since counts are sums the result does not depend on how batches or shards were spread
over threads. Counts are exact: nothing
is sampled or dropped until :meth:`NgramTable.export` applies ``min_count``.
"""
from libc.stdint cimport uint64_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memset
from libc.math cimport log

from ._alloc cimport zeroed_alloc, zeroed_free
from ._hash cimport grown, home_slot, mix64, over_full, range_value, reserved_slots, shard_of, tm_fastrange64

import numpy as np

cdef extern from *:
    void __builtin_prefetch(const void *addr, int rw, int locality) nogil

cdef enum:
    BLOCK = 64          # positions whose table slots are prefetched together
    C_MAX_ORDER = 15    # longest n-gram: 7 bytes packed, then up to 8 more in a 64-bit tail

MAX_ORDER = C_MAX_ORDER


cdef inline uint64_t long_key(uint64_t head, uint64_t tail, int n) noexcept nogil:
    """The key of an n-gram of 8 <= n <= 15 bytes: ``head`` holds its first 7 bytes as
    :func:`pack` places them (low byte 0), ``tail`` the others as a big-endian integer."""
    return (mix64(head ^ mix64(tail + <uint64_t>n * 0x9E3779B97F4A7C15ULL)) & ~(<uint64_t>0xFF)) | <uint64_t>n


def key_of(bytes ngram):
    """The key of ``ngram`` (1 to ``MAX_ORDER`` bytes): :func:`pack` up to 7 bytes, a hash
    above the length beyond (see the module's docstring)."""
    cdef Py_ssize_t n = len(ngram)
    if n <= 7:
        return pack(ngram)
    if n > C_MAX_ORDER:
        raise ValueError(f"an n-gram key holds 1 to {C_MAX_ORDER} bytes")
    return long_key(pack(ngram[:7]) & ~(<uint64_t>0xFF), int.from_bytes(ngram[7:], "big"), <int>n)


def pack(bytes ngram):
    """The packed key of ``ngram`` (1 to 7 bytes)."""
    cdef Py_ssize_t n = len(ngram), i
    cdef uint64_t key = 0
    if n < 1 or n > 7:
        raise ValueError("an n-gram key holds 1 to 7 bytes")
    for i in range(n):
        key |= (<uint64_t>(<uint8_t>ngram[i])) << (56 - 8 * i)
    return key | <uint64_t>n


def unpack(uint64_t key):
    """Inverse of :func:`pack`: ``unpack(pack(b"ab")) == b"ab"``."""
    cdef int n = key & 0xFF, i
    return bytes([(key >> (56 - 8 * i)) & 0xFF for i in range(n)])


def unpack_many(uint64_t[:] keys):
    """``[unpack(k) for k in keys]``, faster."""
    cdef Py_ssize_t j
    cdef uint64_t key
    cdef int n, i
    cdef bytearray buf = bytearray(8)
    out = []
    for j in range(keys.shape[0]):
        key = keys[j]
        n = key & 0xFF
        for i in range(n):
            buf[i] = (key >> (56 - 8 * i)) & 0xFF
        out.append(bytes(buf[:n]))
    return out


cdef packed struct NSlot:    # 12 bytes: a packed key (0 = empty slot) and its count mod 2**32
    uint64_t key
    uint32_t count


cdef struct Carry:           # key occurred n * 2**32 more times than its slot's count says
    uint64_t key
    uint64_t n


cdef struct Shard:
    NSlot *slots
    uint64_t cap         # any number of slots >= 256; grows by half when 3/4 full
    uint64_t size
    uint64_t lo          # this pass counts the keys whose range value is in [lo, hi)
    uint64_t hi
    uint64_t budget      # bytes this shard may use (0 = unlimited)
    int evictions
    Carry *carries       # counts that passed 2**32 (only on corpora of several GB)
    uint64_t ncarries
    uint64_t carries_cap


FULL_RANGE = 1 << 32
cdef uint64_t C_FULL_RANGE = 4294967296ULL
cdef uint64_t MIN_SLOTS = 256


def key_range_value(uint64_t key):
    """The value in 0..2**32 that decides which counting pass owns ``key``."""
    return range_value(mix64(key))


cdef inline uint64_t shard_nbytes(Shard *s) noexcept nogil:
    return s.cap * sizeof(NSlot) + s.carries_cap * sizeof(Carry)


cdef int shard_alloc(Shard *s, uint64_t capacity) noexcept nogil:
    cdef uint64_t cap = capacity if capacity > MIN_SLOTS else MIN_SLOTS
    s.slots = <NSlot *> zeroed_alloc(cap * sizeof(NSlot))
    if s.slots == NULL:
        s.cap = 0
        return -1
    s.cap = cap
    s.size = 0
    s.carries = NULL
    s.ncarries = 0
    s.carries_cap = 0
    return 0


cdef void shard_free(Shard *s) noexcept nogil:
    zeroed_free(s.slots, s.cap * sizeof(NSlot))
    free(s.carries)
    s.slots = NULL
    s.cap = 0
    s.size = 0
    s.carries = NULL
    s.ncarries = 0
    s.carries_cap = 0


cdef inline void slot_put(NSlot *slots, uint64_t cap, uint64_t key, uint32_t count, uint64_t h) noexcept nogil:
    """Place a key known to be absent (growing and filtering)."""
    cdef uint64_t j = home_slot(h, cap)
    while slots[j].key != 0:
        j += 1
        if j == cap:
            j = 0
    slots[j].key = key
    slots[j].count = count


cdef int shard_grow(Shard *s, uint64_t newcap) noexcept nogil:
    cdef NSlot *bigger = <NSlot *> zeroed_alloc(newcap * sizeof(NSlot))
    cdef uint64_t i, k
    if bigger == NULL:
        return -1
    for i in range(s.cap):
        k = s.slots[i].key
        if k != 0:
            slot_put(bigger, newcap, k, s.slots[i].count, mix64(k))
    zeroed_free(s.slots, s.cap * sizeof(NSlot))
    s.slots = bigger
    s.cap = newcap
    return 0


cdef int add_carry(Shard *s, uint64_t key, uint64_t n) noexcept nogil:
    cdef Carry *more
    cdef uint64_t newcap
    if s.ncarries == s.carries_cap:
        newcap = s.carries_cap * 2 if s.carries_cap else 16
        more = <Carry *> realloc(s.carries, newcap * sizeof(Carry))
        if more == NULL:
            return -1
        s.carries = more
        s.carries_cap = newcap
    s.carries[s.ncarries].key = key
    s.carries[s.ncarries].n = n
    s.ncarries += 1
    return 0


cdef int carry_cmp(const void *a, const void *b) noexcept nogil:
    cdef uint64_t x = (<Carry *> a).key, y = (<Carry *> b).key
    return (x > y) - (x < y)


cdef void compact_carries(Shard *s) noexcept nogil:
    """Sort the carries by key and sum those of the same key (for :func:`carry_of`)."""
    cdef uint64_t i, m = 0
    if s.ncarries < 2:
        return
    qsort(s.carries, s.ncarries, sizeof(Carry), carry_cmp)
    for i in range(1, s.ncarries):
        if s.carries[i].key == s.carries[m].key:
            s.carries[m].n += s.carries[i].n
        else:
            m += 1
            s.carries[m] = s.carries[i]
    s.ncarries = m + 1


cdef inline uint64_t carry_of(Shard *s, uint64_t key) noexcept nogil:
    """The carries of ``key``, after :func:`compact_carries` (binary search)."""
    cdef uint64_t lo = 0, hi = s.ncarries, mid
    while lo < hi:
        mid = (lo + hi) // 2
        if s.carries[mid].key < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < s.ncarries and s.carries[lo].key == key:
        return s.carries[lo].n
    return 0


cdef inline uint64_t slot_total(Shard *s, NSlot *sl) noexcept nogil:
    """The exact count of a slot's key, after :func:`compact_carries`."""
    if s.ncarries == 0:
        return sl.count
    return sl.count + (carry_of(s, sl.key) << 32)


cdef void shard_filter(Shard *s) noexcept nogil:
    """Remove the keys whose range value is outside [lo, hi), in place (linear probing:
    the survivors are re-inserted in probe order starting after an empty slot)."""
    cdef uint64_t cap = s.cap, i, k, start = 0, key, r, m = 0
    cdef uint32_t cnt
    for i in range(cap):
        if s.slots[i].key != 0:
            r = range_value(mix64(s.slots[i].key))
            if r < s.lo or r >= s.hi:
                s.slots[i].key = 0
                s.slots[i].count = 0
                s.size -= 1
    for i in range(s.ncarries):
        r = range_value(mix64(s.carries[i].key))
        if s.lo <= r < s.hi:
            s.carries[m] = s.carries[i]
            m += 1
    s.ncarries = m
    for i in range(cap):
        if s.slots[i].key == 0:
            start = i
            break
    for k in range(1, cap + 1):
        i = start + k
        if i >= cap:
            i -= cap
        key = s.slots[i].key
        if key == 0:
            continue
        cnt = s.slots[i].count
        s.slots[i].key = 0
        slot_put(s.slots, cap, key, cnt, mix64(key))


cdef inline bint shard_owns(Shard *s, uint64_t h) noexcept nogil:
    cdef uint64_t r
    if s.lo == 0 and s.hi == C_FULL_RANGE:
        return True
    if s.lo >= s.hi:
        return False
    r = range_value(h)
    return s.lo <= r < s.hi


cdef int shard_make_room(Shard *s) noexcept nogil:
    """Called when the shard is 3/4 full: grow it by half if the budget allows (old and new
    arrays coexist while growing), else give up the upper half of its key range."""
    cdef uint64_t newcap
    while over_full(s.size, s.cap):
        newcap = grown(s.cap)
        if (s.budget == 0 or (s.cap + newcap) * sizeof(NSlot) + s.carries_cap * sizeof(Carry) <= s.budget
                or s.hi - s.lo < 2):
            return shard_grow(s, newcap)
        s.hi = s.lo + (s.hi - s.lo) // 2
        s.evictions += 1
        shard_filter(s)
    return 0


cdef inline int slot_add(Shard *s, NSlot *sl, uint64_t count) noexcept nogil:
    cdef uint64_t total = <uint64_t> sl.count + count
    sl.count = <uint32_t> total
    if total >> 32:
        return add_carry(s, sl.key, total >> 32)
    return 0


cdef inline int shard_add(Shard *s, uint64_t key, uint64_t h, uint64_t count) noexcept nogil:
    cdef uint64_t j = home_slot(h, s.cap)
    cdef NSlot *sl
    while True:
        sl = &s.slots[j]
        if sl.key == key:
            return slot_add(s, sl, count)
        if sl.key == 0:
            sl.key = key
            sl.count = 0
            s.size += 1
            if slot_add(s, sl, count) != 0:
                return -1
            if over_full(s.size, s.cap):
                return shard_make_room(s)
            return 0
        j += 1
        if j == s.cap:
            j = 0


cdef inline Py_ssize_t queue_key(Shard *shards, int nshards, int part, int nparts, uint64_t key,
                                 uint64_t *kbuf, uint64_t *hbuf, int *sbuf, Py_ssize_t nb) noexcept nogil:
    """Queue ``key`` (``nb`` keys queued so far) if its shard is one of ``part``'s and owns it,
    prefetching its home slot; return the new number queued."""
    cdef uint64_t h = mix64(key)
    cdef int sh = shard_of(h, nshards)
    cdef Shard *s
    if sh % nparts != part:
        return nb
    s = &shards[sh]
    if not shard_owns(s, h):
        return nb
    kbuf[nb] = key
    hbuf[nb] = h
    sbuf[nb] = sh
    __builtin_prefetch(&s.slots[home_slot(h, s.cap)], 1, 1)
    return nb + 1


cdef inline int add_queued(Shard *shards, const uint64_t *kbuf, const uint64_t *hbuf, const int *sbuf,
                           Py_ssize_t nb) noexcept nogil:
    """Add 1 to each queued key; -1 if out of memory."""
    cdef Py_ssize_t q
    cdef Shard *s
    for q in range(nb):
        s = &shards[sbuf[q]]
        if not shard_owns(s, hbuf[q]):   # its range may have shrunk meanwhile
            continue
        if shard_add(s, kbuf[q], hbuf[q], 1) != 0:
            return -1
    return 0


cdef class NgramTable:
    """Exact counts of packed n-gram keys, in ``shards`` parts that threads fill independently.

    >>> t = NgramTable(order=3)
    >>> t.count_bytes(b"abab", np.array([4]), 0, 1)
    >>> keys, counts = t.export(1)
    >>> dict(zip(unpack_many(keys), counts.tolist()))
    {b'ab': 2, b'aba': 1, b'ba': 1, b'bab': 1}

    Single bytes are not in the table: they are counted in :attr:`unigrams` (and the number
    of positions in :attr:`positions`) by part 0.

    Memory: with ``max_bytes`` each shard may use ``max_bytes / shards``. A shard that would
    need more gives up the upper half of its *key range* (keys are spread uniformly over
    range values 0..2**32 by a hash), forgetting those keys; :meth:`ranges` then tells which
    keys were counted, and a further pass with :meth:`set_starts` counts the rest. Every key is
    thus counted completely in exactly one pass: counts are exact, never estimated.
    """
    cdef Shard *shards
    cdef readonly int nshards
    cdef readonly int order
    cdef uint64_t[:] _unigrams
    cdef readonly object unigrams
    cdef public uint64_t positions

    def __cinit__(self, int order=6, int shards=1, uint64_t max_bytes=0):
        cdef int i
        if order < 1 or order > C_MAX_ORDER:
            raise ValueError(f"order must be between 1 and {C_MAX_ORDER}")
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.order = order
        self.nshards = shards
        self.shards = <Shard *> calloc(shards, sizeof(Shard))
        if self.shards == NULL:
            raise MemoryError()
        for i in range(shards):
            if shard_alloc(&self.shards[i], 256) != 0:
                raise MemoryError()
            self.shards[i].lo = 0
            self.shards[i].hi = C_FULL_RANGE
            self.shards[i].budget = max_bytes // shards
        self.unigrams = np.zeros(256, dtype=np.uint64)
        self._unigrams = self.unigrams
        self.positions = 0

    def __dealloc__(self):
        cdef int i
        if self.shards != NULL:
            for i in range(self.nshards):
                shard_free(&self.shards[i])
            free(self.shards)

    def set_starts(self, starts):
        """Start each shard's key range at ``starts[i]`` (2**32: the shard counts nothing)."""
        cdef int i
        for i in range(self.nshards):
            if not 0 <= starts[i] <= C_FULL_RANGE:
                raise ValueError("bad range start")
            self.shards[i].lo = starts[i]
            self.shards[i].hi = C_FULL_RANGE
            shard_filter(&self.shards[i])

    def reserve(self, uint64_t keys, int part=0, int nparts=1):
        """Make room for ``keys`` keys in all, spread evenly over the shards (those of ``part``
        of ``nparts``), each then 2/3 full (it grows at 3/4), where its budget allows: growing
        once to the final size costs far less than growing by half again and again. Releases
        the GIL."""
        cdef uint64_t cap = reserved_slots(keys, self.nshards)
        cdef int i = part, err = 0
        cdef Shard *s
        with nogil:
            while i < self.nshards:
                s = &self.shards[i]
                if cap > s.cap and (s.budget == 0 or (s.cap + cap) * sizeof(NSlot) + s.carries_cap * sizeof(Carry) <= s.budget):
                    if shard_grow(s, cap) != 0:
                        err = 1
                        break
                i += nparts
        if err:
            raise MemoryError("n-gram table: out of memory")

    def ranges(self):
        """``[(lo, hi)]`` per shard: the range values whose keys this table counted."""
        return [(self.shards[i].lo, self.shards[i].hi) for i in range(self.nshards)]

    @property
    def evictions(self):
        return sum(self.shards[i].evictions for i in range(self.nshards))

    def __len__(self):
        cdef uint64_t n = 0
        cdef int i
        for i in range(self.nshards):
            n += self.shards[i].size
        return n

    @property
    def nbytes(self):
        """Bytes of memory held by the tables."""
        cdef uint64_t n = 0
        cdef int i
        for i in range(self.nshards):
            n += shard_nbytes(&self.shards[i])
        return n

    def count_bytes(self, const unsigned char[:] buf, const int64_t[:] ends, int part=0, int nparts=1):
        """Add every n-gram (2 <= n <= order) lying inside one chunk whose shard belongs to
        ``part`` of ``nparts`` (shard % nparts == part): ``nparts`` threads may count the same
        batch at once. Chunks are ``buf[ends[k-1]:ends[k]]`` (the first starts at 0).
        Releases the GIL."""
        cdef Py_ssize_t k, start = 0, end, i, n, order = self.order
        cdef uint64_t base, key, tail
        cdef int nshards = self.nshards, err = 0
        cdef uint64_t[:] uni = self._unigrams
        cdef uint64_t positions = 0
        if part < 0 or part >= nparts:
            raise ValueError("no such part")
        cdef uint64_t kbuf[BLOCK * C_MAX_ORDER]
        cdef uint64_t hbuf[BLOCK * C_MAX_ORDER]
        cdef int sbuf[BLOCK * C_MAX_ORDER]
        cdef Py_ssize_t nb, blk_end, i0
        with nogil:
            for k in range(ends.shape[0]):
                end = ends[k]
                i0 = start
                while i0 < end and not err:
                    blk_end = i0 + BLOCK if i0 + BLOCK < end else end
                    nb = 0
                    for i in range(i0, blk_end):
                        base = (<uint64_t>buf[i]) << 56
                        if part == 0:
                            uni[buf[i]] += 1
                            positions += 1
                        n = 2
                        tail = 0
                        while n <= order and i + n <= end:
                            if n <= 7:
                                base |= (<uint64_t>buf[i + n - 1]) << (64 - 8 * n)
                                key = base | <uint64_t>n
                            else:
                                tail = (tail << 8) | buf[i + n - 1]
                                key = long_key(base, tail, <int>n)
                            n += 1
                            nb = queue_key(self.shards, nshards, part, nparts, key, kbuf, hbuf, sbuf, nb)
                    if add_queued(self.shards, kbuf, hbuf, sbuf, nb) != 0:
                        err = 1
                    i0 = blk_end
                if err:
                    break
                start = end
        self.positions += positions
        if err:
            raise MemoryError("n-gram table: out of memory")

    def add_keys(self, const uint64_t[:] keys, const uint64_t[:] counts, int part=0, int nparts=1):
        """Add ``counts[i]`` to each packed key ``keys[i]`` of ``part`` (generic entry point)."""
        cdef Py_ssize_t i
        cdef uint64_t h
        cdef int nshards = self.nshards, err = 0, sh
        cdef Shard *s
        with nogil:
            for i in range(keys.shape[0]):
                h = mix64(keys[i])
                sh = shard_of(h, nshards)
                if sh % nparts != part:
                    continue
                s = &self.shards[sh]
                if not shard_owns(s, h):
                    continue
                if shard_add(s, keys[i], h, counts[i]) != 0:
                    err = 1
                    break
        if err:
            raise MemoryError("n-gram table: out of memory")

    def get(self, uint64_t key):
        cdef uint64_t h = mix64(key)
        cdef Shard *s = &self.shards[shard_of(h, self.nshards)]
        cdef uint64_t j = home_slot(h, s.cap)
        compact_carries(s)
        while True:
            if s.slots[j].key == key:
                return slot_total(s, &s.slots[j])
            if s.slots[j].key == 0:
                return 0
            j += 1
            if j == s.cap:
                j = 0

    def export(self, uint64_t min_count=1, bint free_tables=False):
        """``(keys, counts)``: the keys with count >= ``min_count``, sorted, as uint64 arrays.

        With ``free_tables`` each shard's memory is released as soon as it has been read.
        """
        cdef int i
        cdef uint64_t j, m
        cdef Shard *s
        parts_k, parts_c = [], []
        for i in range(self.nshards):
            s = &self.shards[i]
            compact_carries(s)
            m = 0
            for j in range(s.cap):
                if s.slots[j].key != 0 and slot_total(s, &s.slots[j]) >= min_count:
                    m += 1
            ks = np.empty(m, dtype=np.uint64)
            cs = np.empty(m, dtype=np.uint64)
            _collect(s, min_count, ks, cs)
            parts_k.append(ks)
            parts_c.append(cs)
            if free_tables:
                shard_free(s)
                if shard_alloc(s, 0) != 0:
                    raise MemoryError()
        keys = np.concatenate(parts_k) if parts_k else np.empty(0, np.uint64)
        del parts_k
        counts = np.concatenate(parts_c) if parts_c else np.empty(0, np.uint64)
        del parts_c
        order = np.argsort(keys, kind="stable")
        return keys[order], counts[order]


cdef void _collect(Shard *s, uint64_t min_count, uint64_t[:] ks, uint64_t[:] cs) noexcept:
    cdef uint64_t j, m = 0, c
    with nogil:
        for j in range(s.cap):
            if s.slots[j].key != 0:
                c = slot_total(s, &s.slots[j])
                if c >= min_count:
                    ks[m] = s.slots[j].key
                    cs[m] = c
                    m += 1


cdef struct LMSlot:
    uint64_t key      # 0 = empty (a packed key always has a non-zero length byte)
    double value


cdef class KeyMap:
    """Read-only map key -> float64 value (the n-gram language model's log counts).

    Made empty for a number of keys, then filled; missing keys read as ``default``.
    Open addressing with linear probing over ``n / 0.6`` slots (any capacity, not a power of
    two: the home slot of a key is ``hash * capacity >> 64``), each slot holding its key and
    value side by side so that a lookup touches one cache line.
    """
    cdef LMSlot *slots
    cdef readonly uint64_t capacity
    cdef readonly uint64_t size
    cdef uint64_t room

    def __cinit__(self, uint64_t n):
        """An empty map with room for ``n`` keys (:meth:`put_log_counts` fills it)."""
        cdef uint64_t cap = max(<uint64_t>1024, (n * 10) // 6 + 1)
        self.slots = <LMSlot *> calloc(cap, sizeof(LMSlot))
        if self.slots == NULL:
            raise MemoryError()
        self.capacity = cap
        self.size = 0
        self.room = n

    def put_log_counts(self, const uint64_t[:] keys, const uint64_t[:] counts):
        """Map each (distinct, not yet present) ``keys[i]`` to ``log(counts[i])``."""
        cdef uint64_t i, j, k, cap = self.capacity
        cdef uint64_t n = keys.shape[0]
        if self.size + n > self.room:
            raise ValueError("KeyMap: more keys than it was made for")
        with nogil:
            for i in range(n):
                k = keys[i]
                j = self.home(k)
                while self.slots[j].key != 0 and self.slots[j].key != k:
                    j += 1
                    if j == cap:
                        j = 0
                self.slots[j].key = k
                self.slots[j].value = log(<double> counts[i])
        self.size += n

    def __dealloc__(self):
        free(self.slots)

    @property
    def nbytes(self):
        return self.capacity * sizeof(LMSlot)

    def get(self, uint64_t key, double default=float("-inf")):
        cdef double v
        if self.lookup(key, &v):
            return v
        return default

    cdef inline uint64_t home(self, uint64_t key) noexcept nogil:
        return tm_fastrange64(mix64(key), self.capacity)

    cdef inline bint lookup_from(self, uint64_t key, uint64_t j, double *out) noexcept nogil:
        while True:
            if self.slots[j].key == key:
                out[0] = self.slots[j].value
                return True
            if self.slots[j].key == 0:
                return False
            j += 1
            if j == self.capacity:
                j = 0

    cdef inline bint lookup(self, uint64_t key, double *out) noexcept nogil:
        return self.lookup_from(key, self.home(key), out)


def count_long(NgramTable table, const unsigned char[:] buf, const int64_t[:] ends, KeyMap windows,
               int part=0, int nparts=1):
    """Add to ``table`` every n-gram of 8 to ``table.order`` bytes lying inside one chunk whose
    7-byte windows are all keys of ``windows``, for the shards of ``part`` of ``nparts`` (as
    :meth:`NgramTable.count_bytes`). Releases the GIL.

    This is the second counting stage of a language model of order > 7: an n-gram seen at
    least ``c`` times has every window seen at least ``c`` times, so with ``windows`` = the
    7-grams kept at ``min_count`` the long n-grams that reach ``min_count`` are all counted,
    exactly, while the many rare ones (the bulk of the distinct n-grams) are never stored.
    """
    cdef Py_ssize_t k, start = 0, end, i, n, L, t, order = table.order, cap = 0
    cdef uint64_t head, tail
    cdef int nshards = table.nshards, err = 0
    cdef unsigned char *ok = NULL
    cdef double v
    cdef uint64_t kbuf[BLOCK * C_MAX_ORDER]
    cdef uint64_t hbuf[BLOCK * C_MAX_ORDER]
    cdef int sbuf[BLOCK * C_MAX_ORDER]
    cdef uint64_t wk[BLOCK]
    cdef uint64_t ws[BLOCK]
    cdef Py_ssize_t nb, blk_end, i0
    if part < 0 or part >= nparts:
        raise ValueError("no such part")
    if order < 8:
        return
    with nogil:
        for k in range(ends.shape[0]):
            end = ends[k]
            L = end - start
            if L >= 8:
                if L > cap:
                    free(ok)
                    cap = L
                    ok = <unsigned char *> malloc(cap)
                    if ok == NULL:
                        err = 1
                        break
                # ok[t]: the 7 bytes at start + t are a key of ``windows``
                head = 0
                for t in range(6):
                    head = (head << 8) | buf[start + t]
                i0 = 0
                while i0 + 7 <= L:
                    blk_end = i0 + BLOCK if i0 + BLOCK + 7 <= L else L - 6
                    for t in range(i0, blk_end):
                        head = (head << 8) | buf[start + t + 6]
                        wk[t - i0] = (head << 8) | 7
                        ws[t - i0] = windows.home(wk[t - i0])
                        __builtin_prefetch(&windows.slots[ws[t - i0]], 0, 1)
                    for t in range(i0, blk_end):
                        ok[t] = windows.lookup_from(wk[t - i0], ws[t - i0], &v)
                    i0 = blk_end
                i0 = start
                while i0 + 8 <= end and not err:
                    blk_end = i0 + BLOCK if i0 + BLOCK + 8 <= end else end - 7
                    nb = 0
                    for i in range(i0, blk_end):
                        if not ok[i - start]:
                            continue
                        head = 0
                        for t in range(7):
                            head |= (<uint64_t> buf[i + t]) << (56 - 8 * t)
                        tail = 0
                        n = 8
                        while n <= order and i + n <= end and ok[i - start + n - 7]:
                            tail = (tail << 8) | buf[i + n - 1]
                            nb = queue_key(table.shards, nshards, part, nparts, long_key(head, tail, <int>n),
                                           kbuf, hbuf, sbuf, nb)
                            n += 1
                    if add_queued(table.shards, kbuf, hbuf, sbuf, nb) != 0:
                        err = 1
                    i0 = blk_end
            if err:
                break
            start = end
    free(ok)
    if err:
        raise MemoryError("n-gram table: out of memory")


# ----------------------------------------------------------------------------------------
# Chunking: where training text is cut before n-grams are counted or pieces are found.

def chunk_ends(const unsigned char[:] buf, const int64_t[:] doc_ends, bint split_newlines=True,
               bint isolate_digits=False, Py_ssize_t max_chunk=32768):
    """End offsets of the chunks of the documents ``buf[doc_ends[k-1]:doc_ends[k]]``.

    A chunk never spans two documents; with ``split_newlines`` it ends after every run of
    ``\\n`` (the run stays with the text before it); with ``isolate_digits`` every ASCII digit
    is a chunk of its own; a chunk longer than ``max_chunk`` bytes is cut before a byte that
    does not continue a UTF-8 character (or at ``max_chunk`` if there is none near).

    >>> list(chunk_ends(b"ab\\n\\ncd7e", np.array([8]), True, True))
    [4, 6, 7, 8]
    """
    cdef Py_ssize_t cap = doc_ends.shape[0] + 16, n = 0, k, i, start = 0, cstart, end, cut, j
    cdef int64_t[:] out
    arr = np.empty(cap, dtype=np.int64)
    out = arr
    cdef unsigned char c
    for k in range(doc_ends.shape[0]):
        end = doc_ends[k]
        cstart = start
        i = start
        while i < end:
            c = buf[i]
            cut = -1
            if isolate_digits and 48 <= c <= 57:
                if i > cstart:
                    cut = i            # close the text before the digit
                else:
                    cut = i + 1        # the digit alone
            elif split_newlines and c == 10 and (i + 1 == end or buf[i + 1] != 10):
                cut = i + 1
            elif i + 1 - cstart >= max_chunk:
                cut = i + 1
                for j in range(4):
                    if cut - j > cstart and (cut - j == end or (buf[cut - j] & 0xC0) != 0x80):
                        cut = cut - j
                        break
            if cut >= 0:
                if n == cap:
                    cap *= 2
                    arr = np.resize(arr, cap)
                    out = arr
                out[n] = cut
                n += 1
                cstart = cut
                i = cut
            else:
                i += 1
        if cstart < end:
            if n == cap:
                cap *= 2
                arr = np.resize(arr, cap)
                out = arr
            out[n] = end
            n += 1
        start = end
    return arr[:n].copy()


# ----------------------------------------------------------------------------------------
# Segmentation with the byte n-gram language model (BytePiece's "order states" Viterbi).

cdef inline bint better(int pa, double sa, int pb, double sb) noexcept nogil:
    # (penalties, score) a strictly better than b: fewer penalties, then higher score
    return pa < pb or (pa == pb and sa > sb)


def lm_segment(KeyMap lm, const double[:] unigram, const double[:] unigram_log_counts,
               const unsigned char[:] buf, const int64_t[:] ends, int order, bint ensure_unicode):
    """Segment every chunk with the n-gram LM; return the end offsets (in ``buf``) of the pieces.

    ``lm`` maps the key of every kept n-gram (n >= 2) to its log count (:func:`lm_from_counts`);
    ``unigram_log_counts[b]`` is ``log c(b)`` and ``unigram[b]`` its log-probability. State
    ``j`` at byte ``i`` means "byte i is the (j+1)-th byte of the current piece" and scores
    ``log c(bytes i-j..i) - log c(bytes i-j..i-1)`` (the conditional log-probability of the byte
    given the piece so far; state ``order-1`` loops, so a piece may be longer than ``order``).
    A piece may start anywhere (state 0, scored ``unigram[byte]``). With ``ensure_unicode`` a
    piece starting on a UTF-8 continuation byte costs one *penalty*: paths are compared by
    penalties first, then by score, so valid UTF-8 is split into whole characters whenever the
    model allows it. Ties go to the lowest state (BytePiece's argmax). Releases the GIL.

    ``ends`` are chunk ends as from :func:`chunk_ends`; the first chunk starts at ``ends[0]``'s
    predecessor, i.e. pass ``ends`` together with ``first`` = start offset of the first chunk
    via a leading element: ``ends[0]`` is the start, ``ends[1:]`` the chunk ends.
    """
    cdef Py_ssize_t maxlen = 0, k, start, end, L, i, j, jj, best_j, npieces = 0, cap
    cdef int O = order
    if order < 1 or order > C_MAX_ORDER:
        raise ValueError(f"order must be between 1 and {C_MAX_ORDER}")
    if ends.shape[0] < 2:
        return np.empty(0, dtype=np.int64)
    start = ends[0]
    for k in range(1, ends.shape[0]):
        if ends[k] - start > maxlen:
            maxlen = ends[k] - start
        start = ends[k]
    cap = ends[ends.shape[0] - 1] - ends[0] + 1
    result = np.empty(cap, dtype=np.int64)
    cdef int64_t[:] outv = result
    if maxlen == 0:
        return result[:0]
    cdef double NEG = float("-inf")
    cdef double *V = <double *> malloc(maxlen * O * sizeof(double))
    cdef double *N = <double *> malloc(maxlen * O * sizeof(double))
    cdef uint64_t kb[BLOCK * C_MAX_ORDER]
    cdef uint64_t sb[BLOCK * C_MAX_ORDER]
    cdef int ib[BLOCK * C_MAX_ORDER]
    cdef Py_ssize_t nb, q, i0, blk_end
    cdef uint64_t tail
    cdef int *P = <int *> malloc(maxlen * O * sizeof(int))
    cdef signed char *R = <signed char *> malloc(maxlen * O)
    cdef signed char *state = <signed char *> malloc(maxlen + 1)
    cdef double node, bs, prev
    cdef int bp, pen, BIG = 1 << 30
    cdef uint64_t key
    cdef unsigned char c
    if V == NULL or P == NULL or R == NULL or state == NULL or N == NULL:
        free(V); free(P); free(R); free(state); free(N)
        raise MemoryError()
    start = ends[0]
    with nogil:
        for k in range(1, ends.shape[0]):
            end = ends[k]
            L = end - start
            if L <= 0:
                start = end
                continue
            # log counts N[i, j] = log c(bytes i-j..i) (NEG if absent), looked up a block at a
            # time with the table slots prefetched
            i0 = 0
            while i0 < L:
                blk_end = i0 + BLOCK if i0 + BLOCK < L else L
                nb = 0
                for i in range(i0, blk_end):
                    # the n-gram grows to the left: ``key`` holds its first 7 bytes (all of
                    # them up to 7), ``tail`` the bytes after those, as in count_bytes
                    key = (<uint64_t> buf[start + i]) << 56
                    tail = 0
                    for j in range(1, O):
                        N[i * O + j] = NEG
                        if j > i:
                            continue
                        if j < 7:
                            key = (key >> 8) | ((<uint64_t> buf[start + i - j]) << 56)
                            kb[nb] = key | <uint64_t>(j + 1)
                        else:
                            tail |= ((key >> 8) & 0xFF) << (8 * (j - 7))   # the 7th byte moves to the tail
                            key = ((key >> 8) | ((<uint64_t> buf[start + i - j]) << 56)) & ~(<uint64_t>0xFF)
                            kb[nb] = long_key(key, tail, <int>(j + 1))
                        sb[nb] = lm.home(kb[nb])
                        ib[nb] = <int>(i * O + j)
                        __builtin_prefetch(&lm.slots[sb[nb]], 0, 1)
                        nb += 1
                for q in range(nb):
                    if lm.lookup_from(kb[q], sb[q], &node):
                        N[ib[q]] = node
                i0 = blk_end
            # ... turned into conditional log-probabilities by subtracting the log count of the
            # n-gram minus its last byte (the one ending a byte earlier, one state lower); from
            # the last byte back, so every prefix is still a log count when it is read
            for i in range(L - 1, 0, -1):
                for j in range(O - 1 if O - 1 < i else i, 0, -1):
                    node = N[i * O + j]
                    if node == NEG:
                        continue
                    prev = unigram_log_counts[buf[start + i - 1]] if j == 1 else N[(i - 1) * O + j - 1]
                    N[i * O + j] = node - prev if prev != NEG else NEG
            c = buf[start]
            V[0] = unigram[c]
            P[0] = 1 if (ensure_unicode and (c & 0xC0) == 0x80) else 0
            R[0] = 0
            for j in range(1, O):
                V[j] = NEG
                P[j] = BIG
                R[j] = 0
            for i in range(1, L):
                c = buf[start + i]
                bs = V[(i - 1) * O]
                bp = P[(i - 1) * O]
                best_j = 0
                for j in range(1, O):
                    if better(P[(i - 1) * O + j], V[(i - 1) * O + j], bp, bs):
                        bs = V[(i - 1) * O + j]
                        bp = P[(i - 1) * O + j]
                        best_j = j
                pen = 1 if (ensure_unicode and (c & 0xC0) == 0x80) else 0
                V[i * O] = bs + unigram[c]
                P[i * O] = bp + pen
                R[i * O] = <signed char> best_j
                for j in range(1, O):
                    V[i * O + j] = NEG
                    P[i * O + j] = BIG
                    R[i * O + j] = <signed char> (j - 1)
                for j in range(1, O):
                    if j > i:
                        break
                    node = N[i * O + j]
                    if node == NEG:
                        break
                    bs = V[(i - 1) * O + j - 1]
                    bp = P[(i - 1) * O + j - 1]
                    best_j = j - 1
                    if j == O - 1 and better(P[(i - 1) * O + j], V[(i - 1) * O + j], bp, bs):
                        bs = V[(i - 1) * O + j]
                        bp = P[(i - 1) * O + j]
                        best_j = j
                    if bp >= BIG:
                        continue
                    V[i * O + j] = bs + node
                    P[i * O + j] = bp
                    R[i * O + j] = <signed char> best_j
            best_j = 0
            for j in range(1, O):
                if better(P[(L - 1) * O + j], V[(L - 1) * O + j], P[(L - 1) * O + best_j], V[(L - 1) * O + best_j]):
                    best_j = j
            j = best_j
            for i in range(L - 1, -1, -1):
                state[i] = <signed char> j
                j = R[i * O + j]
            for i in range(1, L + 1):
                if i == L or state[i] == 0:
                    outv[npieces] = start + i
                    npieces += 1
            start = end
    free(V); free(P); free(R); free(state); free(N)
    return result[:npieces].copy()


def lm_from_counts(keys, counts, int length=0):
    """The n-gram LM as a :class:`KeyMap`: key (:func:`key_of`) -> ``log c(ngram)``, for the
    n-grams with n >= 2 that were kept. :func:`lm_segment` divides each count by its prefix's
    as it goes, so the keys need not be unpacked (long n-grams are keyed by a hash).

    ``keys``/``counts``: arrays, or lists of arrays (one per counting pass), which are then
    emptied as they are put in, so that each is freed as soon as it is in the map. With
    ``length``, only the n-grams of that many bytes are put in.
    """
    if not isinstance(keys, list):
        keys, counts = [keys], [counts]
    if length:      # new lists: the caller's are left alone
        sel = [(k & 0xFF) == length for k in keys]
        keys = [k[w] for k, w in zip(keys, sel)]
        counts = [c[w] for c, w in zip(counts, sel)]
        del sel
    cdef KeyMap lm = KeyMap(sum(len(k) for k in keys))
    while keys:
        lm.put_log_counts(keys.pop(0), counts.pop(0))
    return lm
