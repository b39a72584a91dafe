# cython: language_level=3
"""Hot loops of the out-of-core shuffle (see shuffle.py; shuffle_reference.py is the readable oracle).

All loops release the GIL. Lines are ``b"\\n"``-terminated byte runs; callers guarantee that a
buffer passed here holds complete lines only.

Randomness is counter based (SplitMix64): the bucket of line ``i`` under key ``k`` is
``mix64(k + (i + 1) * GAMMA) % K``, and the Fisher-Yates draws of a bucket with key ``k`` are
``mix64(k + t * GAMMA)`` for t = 1, 2, ... Nothing depends on thread scheduling.
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


def bucket_of(uint64_t key, uint64_t index, uint64_t k):
    """Bucket of line ``index`` under ``key`` among ``k`` buckets (same as the kernel)."""
    return tm_mix64(key + (index + 1) * TM_GAMMA) % k


def last_newline(const uint8_t[::1] buf, Py_ssize_t n):
    """Index of the last ``\\n`` in ``buf[:n]``, or -1: ``last_newline(b"a\\nb", 3) -> 1``."""
    cdef Py_ssize_t i = n - 1
    if n <= 0:
        return -1
    with nogil:
        while i >= 0 and buf[i] != 10:
            i -= 1
    return i


def scatter_chunk(const uint8_t[::1] buf, Py_ssize_t n, uint64_t key, int64_t first_index, uint64_t k,
                  uint8_t[::1] out, int64_t[::1] offsets, int64_t[::1] lines):
    """Counting-sort the lines of ``buf[:n]`` by bucket into ``out``.

    Line ``j`` of the chunk has global index ``first_index + j`` and goes to bucket
    ``bucket_of(key, first_index + j, k)``; lines keep their order inside a bucket. On return
    ``out[offsets[b]:offsets[b + 1]]`` holds bucket ``b`` and ``lines[b]`` its line count
    (``offsets`` has k + 1 entries, ``lines`` k). Returns the number of lines.

    Example: with k = 1 the chunk is copied unchanged and ``offsets == [0, n]``.
    """
    if n == 0:
        for b in range(k + 1):
            offsets[b] = 0
        for b in range(k):
            lines[b] = 0
        return 0
    if out.shape[0] < n or offsets.shape[0] < <Py_ssize_t>k + 1 or lines.shape[0] < <Py_ssize_t>k:
        raise ValueError("scatter_chunk: output arrays too small")
    if buf[n - 1] != 10:
        raise ValueError("scatter_chunk: chunk must end with a newline")
    cdef const uint8_t* base = &buf[0]
    cdef const uint8_t* p
    cdef const uint8_t* end = base + n
    cdef const uint8_t* q
    cdef uint8_t* dst = &out[0]
    cdef int64_t idx
    cdef int64_t length
    cdef uint64_t b2
    cdef Py_ssize_t i
    cdef int64_t* pos = <int64_t*> malloc((k + 1) * sizeof(int64_t))
    if pos == NULL:
        raise MemoryError()
    with nogil:
        for i in range(<Py_ssize_t>k + 1):
            pos[i] = 0
        for i in range(<Py_ssize_t>k):
            lines[i] = 0
        # pass 1: bytes and lines per bucket
        p = base
        idx = first_index
        while p < end:
            q = <const uint8_t*> memchr(p, 10, end - p)
            length = q - p + 1
            b2 = tm_mix64(<uint64_t>key + (<uint64_t>idx + 1) * TM_GAMMA) % k
            pos[b2 + 1] += length
            lines[b2] += 1
            idx += 1
            p = q + 1
        for i in range(<Py_ssize_t>k):
            pos[i + 1] += pos[i]
        for i in range(<Py_ssize_t>k + 1):
            offsets[i] = pos[i]
        # pass 2: copy every line to its bucket's next free position
        p = base
        idx = first_index
        while p < end:
            q = <const uint8_t*> memchr(p, 10, end - p)
            length = q - p + 1
            b2 = tm_mix64(<uint64_t>key + (<uint64_t>idx + 1) * TM_GAMMA) % k
            memcpy(dst + pos[b2], p, length)
            pos[b2] += length
            idx += 1
            p = q + 1
    free(pos)
    return idx - first_index


def index_lines(const uint8_t[::1] buf, Py_ssize_t n, int64_t[::1] starts):
    """Write the start offset of every line of ``buf[:n]`` into ``starts``; return the count.

    ``index_lines(b"ab\\n\\nc\\n", 6, s) -> 3`` with ``s[:3] == [0, 3, 4]``.
    """
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t cap = starts.shape[0]
    cdef const uint8_t* base
    cdef const uint8_t* p
    cdef const uint8_t* q
    cdef const uint8_t* end
    if n == 0:
        return 0
    if buf[n - 1] != 10:
        raise ValueError("index_lines: buffer must end with a newline")
    base = &buf[0]
    p = base
    end = base + n
    with nogil:
        while p < end and count < cap:
            starts[count] = p - base
            count += 1
            q = <const uint8_t*> memchr(p, 10, end - p)
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
    """Copy lines ``starts[i]``, ``starts[i+1]``, ... (each running to its newline in ``buf[:n]``)
    into ``out`` until line ``stop`` or until the next line does not fit.

    Returns ``(next_i, used_bytes)``; ``used_bytes == 0`` with ``next_i < stop`` means the line
    at ``next_i`` is larger than ``out`` (see :func:`line_span`).
    """
    cdef Py_ssize_t used = 0
    cdef Py_ssize_t cap = out.shape[0]
    cdef const uint8_t* base
    cdef const uint8_t* q
    cdef int64_t s, length
    if i >= stop:
        return i, 0
    base = &buf[0]
    cdef uint8_t* dst = &out[0]
    with nogil:
        while i < stop:
            s = starts[i]
            q = <const uint8_t*> memchr(base + s, 10, n - s)
            length = (q - base) - s + 1
            if used + length > cap:
                break
            memcpy(dst + used, base + s, length)
            used += length
            i += 1
    return i, used


def line_span(const uint8_t[::1] buf, Py_ssize_t n, Py_ssize_t start):
    """``(start, end)`` of the line beginning at ``start`` (end is one past its newline)."""
    cdef const uint8_t* base = &buf[0]
    cdef const uint8_t* q = <const uint8_t*> memchr(base + start, 10, n - start)
    return start, (q - base) + 1


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
