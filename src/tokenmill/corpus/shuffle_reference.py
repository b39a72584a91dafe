"""The shuffle algorithm in plain Python: the definition the fast version must match byte for byte.

Exact method (random scatter; Rao 1961, Sanders 1998): every line goes to one of K buckets
chosen at random, each bucket is shuffled in memory (Fisher-Yates), and the buckets are
concatenated in order. Given the bucket sizes, every order inside each bucket is equally likely,
and which lines share a bucket is itself uniform (multinomial), so every permutation of the
input is equally likely. A bucket too big for memory is scattered again the same way.

Randomness is counter based, so it never depends on how the work is scheduled:

* ``derive_key(seed, tag, path)`` gives a 64-bit key per tree node (``path`` = bucket numbers
  from the root; the root is ``()``);
* a line goes to bucket ``mix64(file_key(key, f) + (o + 1) * GAMMA) % K`` (SplitMix64 at
  counter o + 1), where ``o`` is the byte offset at which the line starts in the ``f``-th file
  being scattered: one of the inputs at the root (its decompressed bytes; a last line without
  a newline gets one), the node's bucket file below it (f = 0). A line's bucket thus depends on
  the line's own place only, so a task that reads any part of an input can scatter it without
  counting the lines before it;
* Fisher-Yates of a leaf with key ``k``: for i = n-1 .. 1, ``j = mix64(k + t * GAMMA) % (i + 1)``
  with t = 1, 2, ..., then swap items i and j.

Example::

    >>> reference_shuffle([b"a\\n", b"b\\n", b"c\\n"], seed=1, root_buckets=1, max_cost=1 << 20,
    ...                   target_cost=1 << 18)    # doctest: +SKIP
    [b'c\\n', b'a\\n', b'b\\n']
"""
from __future__ import annotations

M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
SCATTER = 1  # tags of derive_key
SHUFFLE = 2
MAX_DEPTH = 32


def mix64(z: int) -> int:
    """SplitMix64's finaliser: ``mix64(1) == 0x5692161D100B05E5``."""
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def derive_key(seed: int, tag: int, path: tuple[int, ...] = ()) -> int:
    """The 64-bit key of node ``path`` for ``tag`` (SCATTER or SHUFFLE); seed is taken mod 2**64."""
    h = mix64((seed & M64) ^ 0x6A09E667F3BCC909)
    h = mix64(h + tag * GAMMA)
    h = mix64(h + len(path))
    for p in path:
        h = mix64(h ^ mix64((p + 1) * GAMMA))
    return h


def file_key(key: int, f: int) -> int:
    """The key of the ``f``-th file scattered under node key ``key``."""
    return mix64(key ^ mix64((f + 1) * GAMMA))


def bucket_of(key: int, counter: int, k: int) -> int:
    return mix64(key + (counter + 1) * GAMMA) % k


def scatter(lines: list[bytes], key: int, k: int, file_lines: list[int] | None = None) -> list[list[bytes]]:
    """``lines`` (the files' lines in order; ``file_lines``: how many each file holds, default
    one file) into ``k`` buckets, in order inside each."""
    counts = file_lines if file_lines is not None else [len(lines)]
    if sum(counts) != len(lines):
        raise ValueError("file_lines must add up to the number of lines")
    parts: list[list[bytes]] = [[] for _ in range(k)]
    i = 0
    for f, count in enumerate(counts):
        fk, offset = file_key(key, f), 0
        for line in lines[i:i + count]:
            parts[bucket_of(fk, offset, k)].append(line)
            offset += len(line)
        i += count
    return parts


def fisher_yates(items: list, key: int) -> list:
    """Shuffle a copy of ``items`` with the counter-based draws described above."""
    a = list(items)
    state = key
    for i in range(len(a) - 1, 0, -1):
        state = (state + GAMMA) & M64
        j = mix64(state) % (i + 1)
        a[i], a[j] = a[j], a[i]
    return a


def bucket_cost(n_bytes: int, n_lines: int) -> int:
    """Memory needed to shuffle a bucket in memory: its bytes plus one 8-byte offset per line."""
    return n_bytes + 8 * (n_lines + 1)


def fanout(cost: int, target_cost: int) -> int:
    """Number of sub-buckets when a bucket of ``cost`` is scattered again (at least 2)."""
    return max(2, -(-cost // target_cost))


def reference_shuffle(lines: list[bytes], seed: int, root_buckets: int, max_cost: int,
                      target_cost: int, file_lines: list[int] | None = None) -> list[bytes]:
    """Shuffle ``lines`` (each ending with ``b"\\n"``; ``file_lines``: how many lines each input
    file holds, default one file) exactly as ``tokenmill.shuffle`` does with the same plan:
    ``root_buckets`` first-level buckets, leaves of cost <= ``max_cost`` shuffled in memory,
    bigger ones scattered again into ``fanout(cost, target_cost)`` buckets."""
    out: list[bytes] = []
    _node(lines, seed, (), root_buckets, max_cost, target_cost, out, file_lines)
    return out


def _node(lines, seed, path, k, max_cost, target_cost, out, file_lines=None):
    if len(path) > MAX_DEPTH:
        raise RuntimeError("shuffle: bucket tree too deep")
    parts = scatter(lines, derive_key(seed, SCATTER, path), k, file_lines)
    for b, part in enumerate(parts):
        sub = path + (b,)
        cost = bucket_cost(sum(map(len, part)), len(part))
        if cost <= max_cost:
            out.extend(fisher_yates(part, derive_key(seed, SHUFFLE, sub)))
        else:
            _node(part, seed, sub, fanout(cost, target_cost), max_cost, target_cost, out)


def round_robin_shuffle(lines: list[bytes], seed: int, chunks: int) -> list[bytes]:
    """Su's chunked method (NOT uniform), kept only so that tests can show the uniformity checks
    catch it: shuffle ``chunks`` contiguous chunks, then emit one line of each chunk per round,
    rounds in random order."""
    import random

    rng = random.Random(seed)
    size = -(-len(lines) // chunks)
    parts = [lines[i:i + size] for i in range(0, len(lines), size)]
    for p in parts:
        rng.shuffle(p)
    out = []
    while any(parts):
        order = [p for p in parts if p]
        rng.shuffle(order)
        for p in order:
            out.append(p.pop())
    return out
