# cython: language_level=3
"""Hot loops of the out-of-core shuffle (see shuffle.py; shuffle_reference.py is the readable oracle).

All loops release the GIL. Lines are ``b"\\n"``-terminated byte runs; callers guarantee that a
buffer passed here holds complete lines only.

Randomness is counter based (SplitMix64): the bucket of a line that starts at byte ``o`` of a
file with key ``k`` is ``mix64(k + (o + 1) * GAMMA) % K``, and the Fisher-Yates draws of a
bucket with key ``k`` are ``mix64(k + t * GAMMA)`` for t = 1, 2, ... Nothing depends on thread
scheduling.
"""
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memchr, memcpy

cdef extern from *:
    """
    #include <stdint.h>
    #define TM_GAMMA 0x9E3779B97F4A7C15ULL
    static inline uint64_t tm_mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    """
    uint64_t TM_GAMMA
    uint64_t tm_mix64(uint64_t z) nogil


def mix64(uint64_t z):
    """The SplitMix64 finaliser (exposed for tests): ``mix64(0) -> 0``."""
    return tm_mix64(z)


def bucket_of(uint64_t key, uint64_t counter, uint64_t k):
    """Bucket of the line at ``counter`` (its offset) under ``key`` among ``k`` buckets (same as
    the kernel)."""
    return tm_mix64(key + (counter + 1) * TM_GAMMA) % k


def last_newline(const uint8_t[::1] buf, Py_ssize_t n):
    """Index of the last ``\\n`` in ``buf[:n]``, or -1: ``last_newline(b"a\\nb", 3) -> 1``."""
    cdef Py_ssize_t i = n - 1
    if n <= 0:
        return -1
    with nogil:
        while i >= 0 and buf[i] != 10:
            i -= 1
    return i


def scatter_chunk(const uint8_t[::1] buf, Py_ssize_t n, const uint64_t[::1] keys, const int64_t[::1] starts,
                  const int64_t[::1] bases, uint64_t k, uint8_t[::1] out, int64_t[::1] offsets,
                  int64_t[::1] lines, int64_t[::1] scratch=None):
    """Counting-sort the lines of ``buf[:n]`` by bucket into ``out``.

    The chunk is cut into segments, one per file it holds lines of: segment ``s`` starts at
    ``starts[s]`` (``starts[0] == 0``, increasing), and its bytes start at offset ``bases[s]`` of
    a file whose key is ``keys[s]``. A line that starts at ``p`` in segment ``s`` goes to bucket
    ``bucket_of(keys[s], bases[s] + p - starts[s], k)``; lines keep their order inside a bucket.
    On return ``out[offsets[b]:offsets[b + 1]]`` holds bucket ``b`` and ``lines[b]`` its line
    count (``offsets`` has k + 1 entries, ``lines`` k). Returns the number of lines.

    ``scratch`` (optional, reused between calls) remembers the length and bucket of up to its
    size lines from the counting pass, so that the copying pass need not search for them again.

    Example: with k = 1 the chunk is copied unchanged and ``offsets == [0, n]``.
    """
    cdef Py_ssize_t n_seg = keys.shape[0]
    if n == 0:
        for b in range(k + 1):
            offsets[b] = 0
        for b in range(k):
            lines[b] = 0
        return 0
    if out.shape[0] < n or offsets.shape[0] < <Py_ssize_t>k + 1 or lines.shape[0] < <Py_ssize_t>k:
        raise ValueError("scatter_chunk: output arrays too small")
    if n_seg < 1 or starts.shape[0] < n_seg or bases.shape[0] < n_seg or starts[0] != 0:
        raise ValueError("scatter_chunk: bad segments")
    if buf[n - 1] != 10:
        raise ValueError("scatter_chunk: chunk must end with a newline")
    if k >= (1 << 24):
        raise ValueError("scatter_chunk: too many buckets")
    cdef const uint8_t* base = &buf[0]
    cdef const uint8_t* p
    cdef const uint8_t* end = base + n
    cdef const uint8_t* q
    cdef const uint8_t* seg_end
    cdef uint8_t* dst = &out[0]
    cdef int64_t length
    cdef uint64_t b2, key, shift
    cdef Py_ssize_t i, s, m = 0, noted = 0
    cdef Py_ssize_t cap = scratch.shape[0] if scratch is not None else 0
    cdef int64_t* note = &scratch[0] if cap > 0 else NULL
    cdef int64_t* pos = <int64_t*> malloc((k + 1) * sizeof(int64_t))
    if pos == NULL:
        raise MemoryError()
    with nogil:
        for i in range(<Py_ssize_t>k + 1):
            pos[i] = 0
        for i in range(<Py_ssize_t>k):
            lines[i] = 0
        # pass 1: bytes and lines per bucket (a line's counter is its offset in its file + 1)
        p = base
        s = 0
        key = keys[0]
        shift = <uint64_t>bases[0] + 1
        seg_end = base + starts[1] if n_seg > 1 else end
        while p < end:
            while p >= seg_end:
                s += 1
                key = keys[s]
                shift = <uint64_t>bases[s] - <uint64_t>starts[s] + 1
                seg_end = base + starts[s + 1] if s + 1 < n_seg else end
            q = <const uint8_t*> memchr(p, 10, end - p)
            length = q - p + 1
            b2 = tm_mix64(key + (<uint64_t>(p - base) + shift) * TM_GAMMA) % k
            if noted < cap:
                note[noted] = (length << 24) | <int64_t>b2
                noted += 1
            pos[b2 + 1] += length
            lines[b2] += 1
            m += 1
            p = q + 1
        for i in range(<Py_ssize_t>k):
            pos[i + 1] += pos[i]
        for i in range(<Py_ssize_t>k + 1):
            offsets[i] = pos[i]
        # pass 2: copy every line to its bucket's next free position
        p = base
        for i in range(noted):
            length = note[i] >> 24
            b2 = <uint64_t>(note[i] & 0xFFFFFF)
            memcpy(dst + pos[b2], p, length)
            pos[b2] += length
            p += length
        s = 0
        key = keys[0]
        shift = <uint64_t>bases[0] + 1
        seg_end = base + starts[1] if n_seg > 1 else end
        while p < end:
            while p >= seg_end:
                s += 1
                key = keys[s]
                shift = <uint64_t>bases[s] - <uint64_t>starts[s] + 1
                seg_end = base + starts[s + 1] if s + 1 < n_seg else end
            q = <const uint8_t*> memchr(p, 10, end - p)
            length = q - p + 1
            b2 = tm_mix64(key + (<uint64_t>(p - base) + shift) * TM_GAMMA) % k
            memcpy(dst + pos[b2], p, length)
            pos[b2] += length
            p = q + 1
    free(pos)
    return m


# A line of a loaded bucket is indexed by one int64: its start offset in the high 40 bits and its
# length in the low 24 (LEN_MASK when it is that long or longer: then its end is searched for).
DEF LEN_BITS = 24
DEF LEN_MASK = 0xFFFFFF


cdef inline int64_t line_end(const uint8_t* base, Py_ssize_t n, int64_t entry) noexcept nogil:
    cdef int64_t s = entry >> LEN_BITS
    cdef int64_t length = entry & LEN_MASK
    if length != LEN_MASK:
        return s + length
    return (<const uint8_t*> memchr(base + s, 10, n - s) - base) + 1


def index_lines(const uint8_t[::1] buf, Py_ssize_t n, int64_t[::1] starts):
    """Index every line of ``buf[:n]`` into ``starts`` (``start << 24 | min(length, 2**24 - 1)``,
    see :func:`line_span`); return the count.

    ``index_lines(b"ab\n\nc\n", 6, s) -> 3`` with ``s[:3] >> 24 == [0, 3, 4]``.
    """
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t cap = starts.shape[0]
    cdef const uint8_t* base
    cdef const uint8_t* p
    cdef const uint8_t* q
    cdef const uint8_t* end
    cdef int64_t length
    if n == 0:
        return 0
    if buf[n - 1] != 10:
        raise ValueError("index_lines: buffer must end with a newline")
    if n >= (<int64_t>1 << (63 - LEN_BITS)):
        raise ValueError("index_lines: buffer too large")
    base = &buf[0]
    p = base
    end = base + n
    with nogil:
        while p < end and count < cap:
            q = <const uint8_t*> memchr(p, 10, end - p)
            length = q - p + 1
            starts[count] = ((p - base) << LEN_BITS) | (length if length < LEN_MASK else LEN_MASK)
            count += 1
            p = q + 1
    if p < end:
        raise ValueError("index_lines: starts array too small")
    return count


def fisher_yates(int64_t[::1] a, Py_ssize_t n, uint64_t key):
    """Shuffle ``a[:n]`` in place: for i = n-1 .. 1, swap a[i] with a[mix64(key + t*GAMMA) % (i+1)],
    t counting the draws from 1."""
    cdef Py_ssize_t i, j
    cdef uint64_t state = key
    cdef int64_t tmp
    with nogil:
        i = n - 1
        while i > 0:
            state += TM_GAMMA
            j = <Py_ssize_t>(tm_mix64(state) % <uint64_t>(i + 1))
            tmp = a[i]
            a[i] = a[j]
            a[j] = tmp
            i -= 1


def gather(const uint8_t[::1] buf, Py_ssize_t n, const int64_t[::1] starts, Py_ssize_t i, Py_ssize_t stop,
           uint8_t[::1] out):
    """Copy the lines indexed by ``starts[i]``, ``starts[i+1]``, ... (entries of
    :func:`index_lines` for ``buf[:n]``) into ``out`` until line ``stop`` or until the next line
    does not fit.

    Returns ``(next_i, used_bytes)``; ``used_bytes == 0`` with ``next_i < stop`` means the line
    at ``next_i`` is larger than ``out`` (see :func:`line_span`).
    """
    cdef Py_ssize_t used = 0
    cdef Py_ssize_t cap = out.shape[0]
    cdef const uint8_t* base
    cdef int64_t s, e
    if i >= stop:
        return i, 0
    base = &buf[0]
    cdef uint8_t* dst = &out[0]
    with nogil:
        while i < stop:
            s = starts[i] >> LEN_BITS
            e = line_end(base, n, starts[i])
            if used + (e - s) > cap:
                break
            memcpy(dst + used, base + s, e - s)
            used += e - s
            i += 1
    return i, used


def line_span(const uint8_t[::1] buf, Py_ssize_t n, int64_t entry):
    """``(start, end)`` of the line indexed by ``entry`` (end is one past its newline)."""
    return entry >> LEN_BITS, line_end(&buf[0], n, entry)


def count_lines(const uint8_t[::1] buf, Py_ssize_t n):
    """Number of ``\\n`` in ``buf[:n]``: ``count_lines(b"a\\n\\nb", 4) -> 2``."""
    cdef Py_ssize_t count = 0
    cdef const uint8_t* p
    cdef const uint8_t* q
    cdef const uint8_t* end
    if n <= 0:
        return 0
    p = &buf[0]
    end = p + n
    with nogil:
        while p < end:
            q = <const uint8_t*> memchr(p, 10, end - p)
            if q == NULL:
                break
            count += 1
            p = q + 1
    return count
