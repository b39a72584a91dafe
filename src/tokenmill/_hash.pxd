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
