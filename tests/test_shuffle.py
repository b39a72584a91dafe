"""tokenmill shuffle: exactness against the reference, permutation, uniformity, reproducibility,
shards, errors and cleanup. The memory-bound and signal tests run the CLI in a subprocess."""
import collections
import errno
import gzip
import lzma
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zstandard
from scipy import stats

from tokenmill import cli
from tokenmill.corpus import io as tio
from tokenmill.corpus import shuffle as shuffle_mod
from tokenmill.corpus import shuffle_reference as ref
from tokenmill.corpus.shuffle import shuffle
from tokenmill.errors import InputError, TokenmillError
from tokenmill.memory import tree_rss

CLI = [sys.executable, "-m", "tokenmill.cli", "shuffle"]


def random_lines(n, seed, max_len=60):
    """Lines of arbitrary bytes (NUL, CR, invalid UTF-8, empty), each ending with a newline."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, max_len, n)
    blob = rng.integers(0, 255, int(lengths.sum()), dtype=np.uint8)
    blob[blob == 10] = 0  # keep the line structure
    out, pos = [], 0
    for length in lengths.tolist():
        out.append(blob[pos:pos + length].tobytes() + b"\n")
        pos += length
    return out


def write(path, data):
    path = str(path)
    if path.endswith(".gz"):
        data = gzip.compress(data, compresslevel=1)
    elif path.endswith(".xz"):
        data = lzma.compress(data, preset=0)
    elif path.endswith(".zst"):
        data = zstandard.ZstdCompressor(level=1).compress(data)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_lines(paths):
    return list(tio.iter_lines(paths))


def litter(folder):
    return [n for n in os.listdir(folder) if n.startswith(tio.TEMP_PREFIX)]


# ------------------------------------------------------------------- exact definition
@pytest.mark.parametrize("memory, buckets, workers", [
    ("64M", None, 1),   # in memory
    ("1M", None, 2),    # scattered into buckets
    ("1M", 1, 1),       # one bucket too big: spilled, then scattered again
    ("2M", 3, 2),       # forced bucket count
    ("1M", 2, 3),       # two oversized buckets: two re-scatters
])
def test_output_is_exactly_the_reference_algorithm(tmp_path, memory, buckets, workers):
    lines = random_lines(60_000, 1)
    src = write(tmp_path / "in.txt", b"".join(lines))
    for seed in (0, 7):
        r = shuffle([src], tmp_path / "out.txt", memory=memory, seed=seed, buckets=buckets,
                    workers=workers, progress=False)
        expected = ref.reference_shuffle(lines, seed, r.root_buckets, r.max_bucket_cost, r.target_bucket_cost)
        assert (tmp_path / "out.txt").read_bytes() == b"".join(expected)
        assert r.lines == len(lines) and r.in_memory == (memory == "64M")
    if buckets in (1, 2):
        assert r.rescattered >= 1
    assert litter(tmp_path) == []


@pytest.mark.parametrize("layout", ["one file", "no final newline", "two files", "gz"])
def test_in_memory_paths_agree(tmp_path, monkeypatch, layout):
    """One plain file is shuffled from a read-only mapping of it; other inputs are read into
    memory. Both give the reference's output, and the mapping is really used for one file."""
    lines = random_lines(20_000, 3)
    data = b"".join(lines)
    if layout == "no final newline":
        srcs = [write(tmp_path / "in.txt", data[:-1])]
    elif layout == "two files":
        srcs = [write(tmp_path / "a.txt", b"".join(lines[:7000])), write(tmp_path / "b.txt", b"".join(lines[7000:]))]
    elif layout == "gz":
        srcs = [write(tmp_path / "in.txt.gz", data)]
    else:
        srcs = [write(tmp_path / "in.txt", data)]
    mapped = []
    original = shuffle_mod._Shuffle._shuffle_mapped

    def spy(self, *args):
        mapped.append(True)
        return original(self, *args)

    monkeypatch.setattr(shuffle_mod._Shuffle, "_shuffle_mapped", spy)
    r = shuffle(srcs, tmp_path / "out.txt", memory="64M", seed=5, progress=False)
    expected = ref.reference_shuffle(lines, 5, r.root_buckets, r.max_bucket_cost, r.target_bucket_cost)
    assert r.in_memory and (tmp_path / "out.txt").read_bytes() == b"".join(expected)
    assert bool(mapped) == (layout == "one file")
    assert litter(tmp_path) == []


def test_kernel_matches_reference_primitives():
    from tokenmill.corpus import _shuffle as k
    for z in (0, 1, 2**63, 2**64 - 1, 12345):
        assert k.mix64(z) == ref.mix64(z)
    for i in range(100):
        assert k.bucket_of(99, i, 7) == ref.bucket_of(99, i, 7)
    a = np.arange(50, dtype=np.int64)
    k.fisher_yates(a, 50, 1234)
    assert a.tolist() == ref.fisher_yates(list(range(50)), 1234)


def test_scatter_kernel_keys_each_line_by_its_file_and_offset():
    """A chunk holding lines of several files (one of them empty, one starting mid-file) sends
    each line where the reference sends the line at that offset of that file."""
    from tokenmill.corpus import _shuffle as k
    files = [random_lines(300, 11), [], random_lines(5, 12), random_lines(400, 13)]
    bases = [1000, 0, 0, 77]                 # the first and last segments start inside their file
    key, nb = 0xDEADBEEF, 7
    buf = np.frombuffer(b"".join(b"".join(f) for f in files), np.uint8)
    starts = np.cumsum([0] + [sum(map(len, f)) for f in files[:-1]]).astype(np.int64)
    keys = np.array([ref.file_key(key, f) for f in range(4)], np.uint64)
    out, offsets, lines = np.empty(buf.size, np.uint8), np.empty(nb + 1, np.int64), np.empty(nb, np.int64)
    for scratch in (None, np.zeros(100, np.int64)):         # the copy pass with and without notes
        m = k.scatter_chunk(buf, buf.size, keys, starts, np.array(bases, np.int64), nb, out, offsets, lines, scratch)
        want = [[] for _ in range(nb)]
        for f, part in enumerate(files):
            at = bases[f]
            for line in part:
                want[ref.bucket_of(int(keys[f]), at, nb)].append(line)
                at += len(line)
        assert m == sum(map(len, files))
        for b in range(nb):
            assert out[offsets[b]:offsets[b + 1]].tobytes() == b"".join(want[b])
            assert lines[b] == len(want[b])


@pytest.mark.parametrize("workers", [1, 2])
def test_several_inputs_scatter_by_file_and_offset_as_the_reference(tmp_path, workers):
    """Lines are scattered by (input, offset of the line in it): two inputs with the same lines
    do not scatter alike, an empty input counts as one, a missing last newline is added."""
    lines = random_lines(40_000, 4)
    parts = [lines[:15_000], [], lines[15_000:25_000], lines[25_000:]]
    srcs = [write(tmp_path / "a.txt", b"".join(parts[0])), write(tmp_path / "empty.txt", b""),
            write(tmp_path / "b.txt.gz", b"".join(parts[2])[:-1]), write(tmp_path / "c.txt", b"".join(parts[3]))]
    r = shuffle(srcs, tmp_path / "out.txt", memory="1M", seed=3, workers=workers, progress=False)
    assert r.root_buckets > 1
    expected = ref.reference_shuffle(lines, 3, r.root_buckets, r.max_bucket_cost, r.target_bucket_cost,
                                     file_lines=[len(p) for p in parts])
    assert (tmp_path / "out.txt").read_bytes() == b"".join(expected)
    assert expected != ref.reference_shuffle(lines, 3, r.root_buckets, r.max_bucket_cost, r.target_bucket_cost)


def test_line_index_handles_lines_past_the_length_field():
    """Loaded buckets index each line by start and length (24 bits); longer lines are found by
    searching for their newline."""
    from tokenmill.corpus import _shuffle as k
    long = b"x" * ((1 << 24) + 5) + b"\n"
    buf = np.frombuffer(b"ab\n" + long + b"\n" + b"c" * ((1 << 24) - 2) + b"\n", np.uint8)
    starts = np.empty(4, np.int64)
    assert k.index_lines(buf, buf.size, starts) == 4
    spans = [k.line_span(buf, buf.size, int(e)) for e in starts]
    assert spans == [(0, 3), (3, 3 + len(long)), (3 + len(long), 4 + len(long)), (4 + len(long), buf.size)]
    out = np.empty(buf.size, np.uint8)
    order = starts[[3, 0, 2, 1]].copy()
    assert k.gather(buf, buf.size, order, 0, 4, out) == (4, buf.size)
    pieces = [bytes(buf[s:e]) for s, e in (spans[3], spans[0], spans[2], spans[1])]
    assert out.tobytes() == b"".join(pieces)


def test_workers_never_change_the_output(tmp_path):
    lines = random_lines(60_000, 2)
    src = write(tmp_path / "in.txt", b"".join(lines))
    outs = []
    for workers in (1, 2, 4):
        shuffle([src], tmp_path / f"o{workers}.txt", memory="1M", seed=3, workers=workers, progress=False)
        outs.append((tmp_path / f"o{workers}.txt").read_bytes())
    assert outs[0] == outs[1] == outs[2]
    shuffle([src], tmp_path / "other.txt", memory="1M", seed=4, progress=False)
    assert (tmp_path / "other.txt").read_bytes() != outs[0]


# ------------------------------------------------------------------------ permutation
@pytest.mark.parametrize("seed, buckets", [(0, None), (1, None), (2, 5), (3, 16), (4, 1)])
def test_permutation_of_compressed_inputs_ten_times_the_budget(tmp_path, seed, buckets):
    parts = [random_lines(60_000, 10 + i, max_len=120) for i in range(3)]
    names = ["a.txt", "b.txt.gz", "c.txt.zst"]
    srcs = [write(tmp_path / n, b"".join(p)) for n, p in zip(names, parts)]
    total = sum(len(b"".join(p)) for p in parts)
    assert total > 10 * (1 << 20)
    r = shuffle(srcs, tmp_path / "out.txt.zst", memory="1M", seed=seed, buckets=buckets, progress=False)
    got = read_lines([tmp_path / "out.txt.zst"])
    want = [line for p in parts for line in p]
    assert r.bytes == total and not r.in_memory
    assert collections.Counter(got) == collections.Counter(want)
    assert got != want
    assert litter(tmp_path) == []


def test_xz_input_and_gz_output_and_newline_rule(tmp_path):
    a = write(tmp_path / "a.txt.xz", b"one\r\ntwo")      # no final newline
    b = write(tmp_path / "b.txt", b"\x00three\n\n")
    c = write(tmp_path / "c.txt", b"")
    shuffle([a, b, c], tmp_path / "o.gz", progress=False, seed=1)
    got = read_lines([tmp_path / "o.gz"])
    assert sorted(got) == sorted([b"one\r\n", b"two\n", b"\x00three\n", b"\n"])


def test_globs_and_folders(tmp_path):
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "x.txt", b"1\n2\n")
    write(tmp_path / "y1.txt", b"3\n")
    write(tmp_path / "y2.txt", b"4\n")
    shuffle([tmp_path / "d", str(tmp_path / "y*.txt")], tmp_path / "o.txt", progress=False)
    assert sorted(read_lines([tmp_path / "o.txt"])) == [b"1\n", b"2\n", b"3\n", b"4\n"]
    with pytest.raises(InputError, match="nope"):
        shuffle([str(tmp_path / "nope*")], tmp_path / "o2.txt", progress=False)


@pytest.mark.parametrize("opts, sizes", [
    ({"shards": 3}, [333, 333, 334]),
    ({"lines_per_shard": 400}, [400, 400, 200]),
])
def test_shards_are_the_single_output_cut_in_order(tmp_path, opts, sizes):
    lines = random_lines(1000, 5)
    src = write(tmp_path / "in.txt", b"".join(lines))
    shuffle([src], tmp_path / "all.txt", seed=9, memory="1M", progress=False)
    r = shuffle([src], tmp_path / "part.txt.gz", seed=9, memory="1M", progress=False, **opts)
    assert [os.path.basename(p) for p in r.outputs] == [f"part-0000{i}.txt.gz" for i in range(3)]
    shards = [read_lines([p]) for p in r.outputs]
    assert [len(s) for s in shards] == sizes
    assert b"".join(sum(shards, [])) == (tmp_path / "all.txt").read_bytes()


def test_shard_names():
    assert shuffle_mod.shard_name("out/c.txt.gz", 3) == "out/c-00003.txt.gz"
    assert shuffle_mod.shard_name("c", 12, 6) == "c-000012"
    assert shuffle_mod.shard_name("c.jsonl", 0) == "c-00000.jsonl"


def test_line_longer_than_budget_is_an_error_before_output(tmp_path):
    src = write(tmp_path / "in.txt", b"short\n" + b"x" * (3 << 20) + b"\nshort\n")
    with pytest.raises(InputError, match="in.txt: a line is longer than"):
        shuffle([src], tmp_path / "o.txt", memory="4M", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]
    # a line longer than a read chunk but within the limit is fine
    src2 = write(tmp_path / "in2.txt", b"a\n" + b"y" * (1 << 20) + b"\nb\n")
    shuffle([src2], tmp_path / "o.txt", memory="4M", buckets=2, progress=False)
    assert sorted(read_lines([tmp_path / "o.txt"])) == sorted(read_lines([src2]))


def test_bad_options():
    with pytest.raises(TokenmillError, match="not both"):
        shuffle(["x"], "y", shards=2, lines_per_shard=3)
    with pytest.raises(TokenmillError, match="invalid size"):
        shuffle(["x"], "y", memory="lots")


# ------------------------------------------------------------------------- uniformity
N_ITEMS, N_SEEDS = 6, 600


def position_and_pair_pvalues(shuffled_runs):
    """p-values of chi-square tests on (line, position) counts and on adjacent ordered pairs."""
    pos = np.zeros((N_ITEMS, N_ITEMS))
    pairs = np.zeros((N_ITEMS, N_ITEMS))
    for order in shuffled_runs:
        for p, item in enumerate(order):
            pos[item, p] += 1
        for a, b in zip(order, order[1:]):
            pairs[a, b] += 1
    p_pos = stats.chisquare(pos.ravel()).pvalue
    off = pairs[~np.eye(N_ITEMS, dtype=bool)]
    p_pairs = stats.chisquare(off).pvalue
    return p_pos, p_pairs


@pytest.mark.parametrize("buckets", [None, 3])
def test_uniform_positions_and_pairs(tmp_path, monkeypatch, buckets):
    monkeypatch.setattr(shuffle_mod, "FSYNC", False)
    src = write(tmp_path / "in.txt", b"".join(b"%d\n" % i for i in range(N_ITEMS)))
    runs = []
    for seed in range(N_SEEDS):
        shuffle([src], tmp_path / "o.txt", seed=seed, buckets=buckets, workers=1, progress=False)
        runs.append([int(x) for x in (tmp_path / "o.txt").read_bytes().split()])
    p_pos, p_pairs = position_and_pair_pvalues(runs)
    assert p_pos > 1e-3 and p_pairs > 1e-3, (p_pos, p_pairs)


def test_uniformity_check_catches_biased_shuffles():
    items = list(range(N_ITEMS))
    rr = [ref.round_robin_shuffle(items, s, chunks=2) for s in range(N_SEEDS)]
    assert min(position_and_pair_pvalues(rr)) < 1e-6
    # and one with a subtle position bias: a fair shuffle whose last swap is skipped half of the time
    biased = []
    for s in range(N_SEEDS):
        rng = random.Random(s)
        a = items[:]
        for i in range(len(a) - 1, 0, -1):
            if i == 1 and rng.random() < 0.5:
                continue
            j = rng.randrange(i + 1)
            a[i], a[j] = a[j], a[i]
        biased.append(a)
    assert min(position_and_pair_pvalues(biased)) < 1e-3


def test_reference_with_rescatter_is_uniform():
    lines = [b"%d\n" % i for i in range(N_ITEMS)]
    index = {line: i for i, line in enumerate(lines)}
    for root, max_cost in ((1, 1000), (3, 37), (2, 20)):  # in memory; some / all buckets re-scattered
        runs = [[index[x] for x in ref.reference_shuffle(lines, s, root, max_cost, 12)]
                for s in range(4 * N_SEEDS)]
        assert min(position_and_pair_pvalues(runs)) > 1e-3


# -------------------------------------------------------------- memory, signals, faults


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_peak_memory_of_the_process_tree_stays_within_budget(tmp_path):
    budget = 16 << 20
    rng = np.random.default_rng(0)
    data = rng.integers(32, 127, 6 * budget, dtype=np.uint8)
    data[rng.integers(0, data.size, data.size // 80)] = 10
    data[-1] = 10
    src = tmp_path / "in.txt"
    data.tofile(src)
    out = tmp_path / "out.txt"
    proc = subprocess.Popen(CLI + [str(src), "-o", str(out), "--memory", "16M", "--workers", "2"],
                            stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.01)
    assert proc.returncode == 0, proc.stderr.read()
    assert peak <= budget + (64 << 20), f"peak RSS {peak / 2**20:.1f} MiB"
    assert out.stat().st_size == src.stat().st_size
    assert np.array_equal(np.bincount(np.fromfile(out, np.uint8), minlength=256),
                          np.bincount(data, minlength=256))


def start_on_stdin(tmp_path, workers="1"):
    """A shuffle reading a pipe we hold open: it is mid-run, with temp files, until we say so."""
    out = tmp_path / "out.txt"
    proc = subprocess.Popen(CLI + ["-", "-o", str(out), "--memory", "1M", "--workers", workers],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"".join(random_lines(60_000, 3)))
    proc.stdin.flush()
    deadline = time.time() + 30
    while not litter(tmp_path):
        assert time.time() < deadline and proc.poll() is None, "no temporary files appeared"
        time.sleep(0.01)
    return proc, out


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, "1"), (signal.SIGTERM, "2")])
def test_interrupt_leaves_no_output_and_no_temp_files(tmp_path, sig, workers):
    proc, out = start_on_stdin(tmp_path, workers)
    time.sleep(0.2)
    proc.send_signal(sig)
    time.sleep(0.2)
    proc.stdin.close()
    assert proc.wait(timeout=30) == 130
    assert not out.exists() and litter(tmp_path) == []


def test_sigkill_litter_is_removed_by_the_next_run(tmp_path):
    proc, out = start_on_stdin(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    assert not out.exists() and litter(tmp_path) != []
    src = write(tmp_path / "in.txt", b"b\na\n")
    done = subprocess.run(CLI + [str(src), "-o", str(out)], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert litter(tmp_path) == [] and sorted(read_lines([out])) == [b"a\n", b"b\n"]


def test_writes_are_cut_into_pieces_and_survive_short_writes(tmp_path, monkeypatch):
    data = bytes(random.Random(5).randbytes(3 * shuffle_mod.WRITE_PIECE + 123))
    sizes = []
    real_write = os.write

    def short_write(fd, view):
        sizes.append(len(view))
        return real_write(fd, bytes(view)[: max(1, len(view) * 2 // 3)])   # the kernel may write less

    monkeypatch.setattr(shuffle_mod.os, "write", short_write)
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    shuffle_mod._write_all(fd, data, str(path))
    os.close(fd)
    assert path.read_bytes() == data
    assert max(sizes) <= shuffle_mod.WRITE_PIECE and len(sizes) > 4

    class ShortFile:
        def __init__(self):
            self.chunks, self.calls = [], []

        def write(self, view):
            self.calls.append(len(view))
            n = max(1, len(view) // 2)
            self.chunks.append(bytes(view[:n]))
            return n

    f = ShortFile()
    shuffle_mod._write_file(f, data, "x")
    assert b"".join(f.chunks) == data and max(f.calls) <= shuffle_mod.WRITE_PIECE


@pytest.mark.parametrize("target, memory", [("_write_all", "1M"), ("_write_file", "1M"),
                                            ("_write_file", "64M")])  # 64M: shuffled from a mapping
def test_disk_full_gives_one_line_error_and_no_output(tmp_path, monkeypatch, capsys, target, memory):
    lines = random_lines(50_000, 4)
    data = b"".join(lines)
    src = write(tmp_path / "in.txt", data)
    real = getattr(shuffle_mod, target)
    written = [0]

    def failing(f, view, path):
        written[0] += len(memoryview(view))
        if written[0] > len(data) // 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(f, view, path)

    monkeypatch.setattr(shuffle_mod, target, failing)
    code = cli.main(["shuffle", src, "-o", str(tmp_path / "out.txt"), "--memory", memory, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith("tokenmill: error: ") and "No space left on device" in err and str(tmp_path) in err
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]
    assert (tmp_path / "in.txt").read_bytes() == data


def test_free_space_is_checked_before_starting(tmp_path, monkeypatch):
    src = write(tmp_path / "in.txt", b"x\n" * 2_000_000)
    monkeypatch.setattr(tio, "free_space", lambda folder: 1000)
    with pytest.raises(TokenmillError, match="not enough free space"):
        shuffle([src], tmp_path / "o.txt", memory="1M", progress=False)
    assert sorted(os.listdir(tmp_path)) == ["in.txt"]


def test_cli_end_to_end_with_stdin_and_summary(tmp_path):
    done = subprocess.run(CLI + ["-", "-o", str(tmp_path / "o.txt"), "--seed", "2"],
                          input=b"a\nb\nc", capture_output=True)
    assert done.returncode == 0
    assert b"3 lines" in done.stderr
    assert sorted(read_lines([tmp_path / "o.txt"])) == [b"a\n", b"b\n", b"c\n"]
    helptext = subprocess.run(CLI + ["--help"], capture_output=True, text=True).stdout
    assert "--lines-per-shard" in helptext and "SIGKILL" in helptext
