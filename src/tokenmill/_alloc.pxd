# cython: language_level=3
"""Zeroed memory for the large hash tables (inline, so nothing is linked between modules).

Each add to a table is a random access, so large tables are mapped straight from the kernel
(already zero: no second zeroing pass) and asked for 2 MB pages, which spare most TLB misses
and page faults; small ones come from malloc, cache-line aligned.
"""
from libc.stdlib cimport free
from libc.string cimport memset


cdef extern from "stdlib.h" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)


cdef extern from "sys/mman.h" nogil:
    int madvise(void *addr, size_t length, int advice)
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int MADV_HUGEPAGE, PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS
    void *MAP_FAILED


cdef enum:
    BIG_BLOCK = 4 << 20       # blocks this large are mapped directly, on 2 MB pages


cdef inline void *zeroed_alloc(size_t size) noexcept nogil:
    """``size`` zero bytes, 64-byte aligned, or NULL; release with :func:`zeroed_free`."""
    cdef void *p = NULL
    cdef volatile char *q
    cdef size_t done = 0
    if size >= BIG_BLOCK:
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if p == MAP_FAILED:
            return NULL
        madvise(p, size, MADV_HUGEPAGE)
        # Fault the pages in now, by writing to each. Otherwise a table's first access to a
        # 2 MB page is often a read (probing an empty slot), which maps the shared zero page,
        # and the first write then replaces it: a second fault and a TLB flush that interrupts
        # the other threads (5 % of a 2-thread count in perf). Faults by writes, unlike
        # MADV_POPULATE_WRITE, do not hold the address-space lock that every other thread's
        # mmap needs, so threads growing their tables at once fault in parallel.
        q = <volatile char *> p
        while done < size:
            q[done] = 0
            done += 4096
        return p
    if posix_memalign(&p, 64, size if size else 64) != 0:
        return NULL
    memset(p, 0, size)
    return p


cdef inline void zeroed_free(void *p, size_t size) noexcept nogil:
    """Release a block of ``size`` bytes from :func:`zeroed_alloc` (NULL is ignored)."""
    if p == NULL:
        return
    if size >= BIG_BLOCK:
        munmap(p, size)
    else:
        free(p)
