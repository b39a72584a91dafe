# cython: language_level=3
"""Hash functions shared by the compiled modules (inline, so nothing is linked between them)."""
from libc.stdint cimport uint64_t


cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    # splitmix64 finalizer: a bijection, so distinct 64-bit keys never share a hash.
    x ^= x >> 30
    x *= 0xbf58476d1ce4e5b9ULL
    x ^= x >> 27
    x *= 0x94d049bb133111ebULL
    x ^= x >> 31
    return x


cdef inline uint64_t range_value(uint64_t h) noexcept nogil:
    # 0 .. 2**32: which counting pass owns a key of hash h (independent of the bits that
    # choose its shard and its slot)
    return mix64(h ^ 0x5851F42D4C957F2DULL) >> 32


cdef inline int shard_of(uint64_t h, int nshards) noexcept nogil:
    return <int>((h >> 40) % <uint64_t>nshards)


cdef extern from *:
    """
    static inline uint64_t tm_fastrange64(uint64_t h, uint64_t n) {
        return (uint64_t)(((unsigned __int128)h * n) >> 64);
    }
    """
    uint64_t tm_fastrange64(uint64_t h, uint64_t n) nogil


cdef inline uint64_t home_slot(uint64_t h, uint64_t cap) noexcept nogil:
    # the home slot of hash h in a table of any capacity (fastrange over a product: the top
    # bits of h also choose the shard, see shard_of, so they are mixed with the lower ones)
    return tm_fastrange64(h * 0x9E3779B97F4A7C15ULL, cap)


# Table sizes shared by the open-addressing tables (n-gram keys and strings): a table grows by
# half when more than 3/4 full; a table sized ahead of time is left 2/3 full.

cdef inline bint over_full(uint64_t size, uint64_t cap) noexcept nogil:
    return size * 4 > cap * 3


cdef inline uint64_t grown(uint64_t cap) noexcept nogil:
    return cap + cap // 2


cdef inline uint64_t reserved_slots(uint64_t keys, int ntables) noexcept nogil:
    # slots per table for ``keys`` keys spread evenly over ``ntables`` tables, 2/3 full
    return (keys // <uint64_t>ntables + 1) * 3 // 2 + 1
