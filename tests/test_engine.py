"""Jobs as map/reduce tasks on an engine: the same output as a local run, on the local engine
and on a two-node Ray cluster that the tests start themselves (``ray_cluster`` in conftest),
also when a task is killed midway; the error without Ray."""
from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys

import pytest

from tokenmill import count_job
from tokenmill.corpus import splits
from tokenmill.corpus.splits import ShardSource, plan_shards
from tokenmill.counting import count_ngrams
from tokenmill.engine import LocalEngine



def _text(seed: int, n_lines: int = 2000) -> bytes:
    rng = random.Random(seed)
    words = ["中国", "人民", "的", "发展", "the", "of", "data", "x = 1", "def f():", "é", "\t", ""]
    lines = []
    for _ in range(n_lines):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))).encode())
    lines[rng.randrange(n_lines)] = b"\xff\xfe invalid \x00 bytes"
    return b"\n".join(lines) + b"\n"


@pytest.fixture
def small_shards(monkeypatch):
    """Cut inputs into shards of a few kB, so that small files make many tasks."""
    monkeypatch.setattr(splits, "MIN_SHARD_BYTES", 1 << 12)
    monkeypatch.setattr(splits, "SHARD_BYTES", 1 << 14)


# ------------------------------------------------------------------------------ shards

@pytest.mark.parametrize("parts", [1, 2, 3, 7, 50])
def test_shards_hold_every_line_once(tmp_path, parts):
    data = _text(1, 500) + b"last line without newline"
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    shards = plan_shards([str(path)], None, parts, shard_bytes=1 << 30, min_bytes=1)
    assert len(shards) == parts
    got = []
    for sh in shards:
        for buf, lines in ShardSource(sh).batches(1000):
            got.extend(buf.split(b"\n"))
            assert len(buf.split(b"\n")) == lines
    assert got == data.split(b"\n")


def test_a_compressed_or_json_input_is_one_shard(tmp_path):
    import gzip

    gz = tmp_path / "a.txt.gz"
    gz.write_bytes(gzip.compress(b"x\n" * 1000))
    js = tmp_path / "b.jsonl"
    js.write_text('{"text": "y"}\n' * 1000)
    assert [s.end for s in plan_shards([str(gz)], None, 8, min_bytes=1)] == [None]
    assert [s.end for s in plan_shards([str(js)], "text", 8, min_bytes=1)] == [None]


# ------------------------------------------------------------------- count, local engine

@pytest.mark.parametrize("unit,order", [("char", 3), ("byte", 4), ("word", 2)])
def test_count_tasks_on_the_local_engine_equal_a_local_count(tmp_path, small_shards, unit, order):
    paths = []
    for k in range(3):
        p = tmp_path / f"in{k}.txt"
        p.write_bytes(_text(k))
        paths.append(str(p))
    want = count_ngrams(paths, unit=unit, order=order, min_count=2, progress=False).items
    from tokenmill.counting import merged, remove_runs
    from tokenmill.spec import CountSpec

    spec = CountSpec(unit=unit, order=order, min_count=2, progress=False)
    work = tmp_path / "work"
    work.mkdir()
    runs, stats = count_job.run_count(LocalEngine(tasks=3), paths, spec, str(work), False)
    assert stats["shards"] > 3 and stats["groups"] == 3 and stats["partitions"] == 6
    got = [(c, s) for c, s in merged(runs)]
    remove_runs(runs)
    space = (lambda s: s.decode("utf-8", "surrogateescape")) if unit != "byte" else (lambda s: s)
    assert [(space(s), c) for c, s in got] == want
    assert os.listdir(work) == []


@pytest.mark.parametrize("memory,top", [("1G", None), ("1G", 50), ("128M", None)])
def test_one_group_of_count_tasks_is_final_without_a_reduce(tmp_path, small_shards, memory, top):
    """One group (a one-node cluster): the map task sorts and writes the final counts itself,
    in several passes when they do not fit its memory, and equals a local count."""
    rng = random.Random(9)
    paths = []
    for k in range(2):
        p = tmp_path / f"in{k}.txt"
        p.write_text("\n".join("".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(60))
                               for _ in range(4000)), encoding="utf-8")
        paths.append(str(p))
    from tokenmill.counting import merged, remove_runs
    from tokenmill.spec import CountSpec

    spec = CountSpec(unit="char", order=3, min_count=1, top=top, memory=memory, progress=False)
    want = count_ngrams(paths, spec=spec).items
    work = tmp_path / "work"
    work.mkdir()
    runs, stats = count_job.run_count(LocalEngine(workers=2), paths, spec, str(work), False)
    assert stats["groups"] == 1 and stats["partitions"] == 0 and stats["shards"] > 2
    assert (stats["passes"] > 1) == (memory != "1G")
    got = list(merged(runs, top))
    remove_runs(runs)
    assert [(s.decode("utf-8"), c) for c, s in got] == want
    assert os.listdir(work) == []


@pytest.mark.parametrize("name,top", [("counts.tsv", None), ("counts.tsv.zst", 30)])
def test_one_count_task_writes_the_tsv_itself(tmp_path, small_shards, monkeypatch, name, top):
    """With one group, the map task writes the job's TSV (compressed by the output's name) and
    the driver only moves it into place: the same bytes as a local count, nothing left over."""
    import tokenmill.engine as engine_mod
    from tokenmill.corpus import io as tio

    p = tmp_path / "in.txt"
    p.write_bytes(_text(21, 3000))
    local, tasks = tmp_path / "local" / name, tmp_path / "tasks" / name
    local.parent.mkdir()
    tasks.parent.mkdir()
    count_ngrams([str(p)], local, unit="char", order=3, top=top, progress=False)
    import tokenmill.counting as counting_mod

    monkeypatch.setattr(engine_mod, "make_engine", lambda *a, **k: LocalEngine(workers=2))
    monkeypatch.setattr(counting_mod, "_write_result", None)      # the driver does not write it
    r = count_ngrams([str(p)], tasks, unit="char", order=3, top=top, progress=False, engine="ray")
    with tio.open_input(str(local)) as a, tio.open_input(str(tasks)) as b:
        data = b.read()
        assert a.read() == data
    assert r.written == data.count(b"\n") == (top or r.distinct)
    assert os.listdir(tasks.parent) == [name]


def test_a_reduce_that_does_not_fit_makes_more_passes(tmp_path, small_shards):
    rng = random.Random(5)
    p = tmp_path / "in.txt"
    p.write_text("\n".join("".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(30)) for _ in range(5000)))
    spec = count_job.Units("char", 4)
    work = str(tmp_path)
    maps = [count_job.count_group(([sh], spec, work, 1, "256M", 1, None))
            for sh in plan_shards([str(p)], None, 4, min_bytes=1 << 12)]
    files = [m["files"][0] for m in maps]
    entries = sum(m["entries"][0] for m in maps)
    big = count_job.reduce_partition((files, entries, work, "1G", 1, None))
    small = count_job.reduce_partition((files, entries, work, "1M", 1, None))
    assert big["passes"] == 1 and small["passes"] > 1
    assert big["distinct"] == small["distinct"]
    from tokenmill.counting import SpilledRun, merged

    def entries(result):
        return list(merged([SpilledRun(path, n) for path, n in result["runs"]]))

    assert len(small["runs"]) == small["passes"]
    assert entries(big) == entries(small)         # the same counts, in the same order


class _RecordingBar:
    """Stands in for tokenmill.progress.Progress: shown, and records every update."""

    updates: list = []

    def __init__(self, *args, **kwargs):
        self.enabled = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n_bytes=0, n_items=0):
        _RecordingBar.updates.append((n_bytes, n_items))


@pytest.fixture
def recording_bar(monkeypatch):
    import tokenmill.progress

    _RecordingBar.updates = []
    monkeypatch.setattr(tokenmill.progress, "Progress", _RecordingBar)
    return _RecordingBar.updates


def test_a_task_moves_the_bar_while_it_reads_on_the_local_engine(tmp_path, recording_bar):
    p = tmp_path / "in.txt"
    p.write_bytes(_text(1, 60000))
    size = p.stat().st_size
    shards = plan_shards([str(p)], None, 2, min_bytes=1)
    from tokenmill.corpus.splits import count_documents

    LocalEngine().map(count_documents, [(sh, None) for sh in shards], progress=True,
                      sizes=[sh.size for sh in shards])
    during = [n for n, items in recording_bar if items == 0 and n]
    assert len(during) >= 4                      # batch after batch, not only at the end
    assert sum(n for n, _ in recording_bar) == size
    assert sum(items for _, items in recording_bar) == 2


# --------------------------------------------------------------------------------- Ray

def test_without_ray_the_engine_error_names_the_install_command(tmp_path):
    p = tmp_path / "in.txt"
    p.write_bytes(b"abc\n")
    code = ("import sys; sys.modules['ray'] = None\n"
            "from tokenmill.cli import main\n"
            f"sys.exit(main(['count', {str(p)!r}, '--engine', 'ray', '-o', {str(tmp_path / 'out.tsv')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ))     # the tokenmill the tests import (installed, or PYTHONPATH=src)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        'tokenmill: error: --engine ray needs Ray, an optional extra: pip install "tokenmill[ray]"']
    assert not (tmp_path / "out.tsv").exists()


def test_ray_address_without_the_ray_engine_is_an_error():
    from tokenmill.errors import TokenmillError
    from tokenmill.spec import CountSpec

    with pytest.raises(TokenmillError, match="--ray-address needs --engine ray"):
        CountSpec(ray_address="auto")


def test_count_on_two_ray_nodes_equals_the_local_count(tmp_path, ray_cluster, small_shards):
    address, _ = ray_cluster
    paths = []
    for k in range(2):
        p = tmp_path / f"in{k}.txt"
        p.write_bytes(_text(10 + k, 4000))
        paths.append(str(p))
    local = tmp_path / "local.tsv"
    on_ray = tmp_path / "ray.tsv"
    count_ngrams(paths, local, unit="char", order=3, progress=False)
    r = count_ngrams(paths, on_ray, unit="char", order=3, progress=False, engine="ray", ray_address=address)
    assert on_ray.read_bytes() == local.read_bytes()
    assert r.lines == 8000
    import ray

    assert len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 2
    assert sorted(os.listdir(tmp_path)) == ["in0.txt", "in1.txt", "local.tsv", "ray.tsv"]


@pytest.mark.parametrize("name", ["in.txt", "in.txt.gz"])
def test_a_count_task_killed_midway_is_retried_and_the_counts_stay_exact(tmp_path, ray_cluster, small_shards, name):
    """A plain file makes several groups of shards, with a reduce; a compressed one makes one
    shard, whose task writes the final counts itself."""
    address, fault_dir = ray_cluster
    p = tmp_path / name
    data = _text(20, 5000)
    p.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    local = tmp_path / "local.tsv"
    on_ray = tmp_path / "ray.tsv"
    count_ngrams([str(p)], local, unit="char", order=2, progress=False)
    armed = fault_dir / "count-map"
    armed.write_bytes(b"")
    count_ngrams([str(p)], on_ray, unit="char", order=2, progress=False, engine="ray", ray_address=address)
    assert not armed.exists()          # a task did die there
    assert on_ray.read_bytes() == local.read_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted([name, "local.tsv", "ray.tsv"])


def test_a_long_ray_task_moves_the_bar_while_it_runs(tmp_path, ray_cluster, recording_bar):
    """The tasks report the bytes they read to a progress actor that the driver polls."""
    from tokenmill.engine import RayEngine

    rng = random.Random(4)
    p = tmp_path / "in.txt"
    p.write_text("\n".join("".join(chr(0x4E00 + rng.randrange(5000)) for _ in range(80))
                           for _ in range(20000)), encoding="utf-8")      # 4.8 MB: 0.5-1 s
    shard = plan_shards([str(p)], None, 1)
    assert len(shard) == 1
    engine = RayEngine(ray_cluster[0], report_every=0.02)
    try:
        from tokenmill.corpus.splits import count_documents

        # a first map starts the progress actor (a process of its own), as in a job's first step
        ended = []
        counted = engine.map(count_documents, [(shard[0], None)], progress=True, sizes=[shard[0].size],
                             done=lambda k, r: ended.append((k, r)))
        assert ended == [(0, counted[0])]
        del recording_bar[:]
        task = (shard, count_job.Units("char", 4), str(tmp_path), 1, "1G", 1, (1, None, None))
        result, = engine.map(count_job.count_group, [task], progress=True, sizes=[shard[0].size])
    finally:
        engine.close()
    for path, _ in result["runs"]:
        os.unlink(path)
    during = [n for n, items in recording_bar if items == 0 and n]
    assert during, recording_bar                 # bytes came in before the task ended
    assert sum(n for n, _ in recording_bar) == shard[0].size
    assert recording_bar[-1][1] == 1


def test_finish_maps_disconnects_in_the_background_and_refuses_more_maps(tmp_path, ray_cluster):
    """A job that maps no more lets Ray go while it ends (in a process of its own, which
    connects itself); close() waits until it has."""
    p = tmp_path / "in.txt"
    p.write_text("a\nbb\nccc\n")
    script = f"""
import ray
from tokenmill.corpus.splits import count_documents, plan_shards
from tokenmill.engine import RayEngine
shard, = plan_shards([{str(p)!r}], None, 1)
engine = RayEngine({ray_cluster[0]!r})
assert engine.map(count_documents, [(shard, None)]) == [count_documents((shard, None))]
engine.finish_maps()
assert engine._leaving is not None and engine._leaving.name == "tokenmill-ray-disconnect"
try:
    engine.map(count_documents, [(shard, None)])
    raise SystemExit("a map after finish_maps ran")
except RuntimeError as exc:
    assert "after finish_maps" in str(exc)
engine.close()
assert not ray.is_initialized() and not engine._leaving.is_alive()
engine.close()                      # twice is harmless
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_tasks_submitted_while_a_map_runs_give_their_results_in_order(tmp_path, ray_cluster):
    """done= may submit work that a result makes ready; results() returns it in order."""
    from tokenmill.corpus.splits import count_documents
    from tokenmill.engine import RayEngine

    paths = []
    for k in range(3):
        p = tmp_path / f"in{k}.txt"
        p.write_text("x\n" * (k + 1))
        paths.append(p)
    shards = [plan_shards([str(p)], None, 1)[0] for p in paths]
    engine = RayEngine(ray_cluster[0])
    try:
        submitted = {}
        mapped = engine.map(count_documents, [(s, None) for s in shards],
                            done=lambda k, r: submitted.__setitem__(k, engine.submit(count_documents, (shards[k], None),
                                                                                     cpus=0)))
        assert sorted(submitted) == [0, 1, 2]
        assert engine.results([submitted[k] for k in range(3)]) == mapped == [(1, 1), (2, 2), (3, 3)]
        assert engine.results([]) == []
        # no more of them run at once than the cluster has CPUs: submit waits for room
        many = []
        for k in range(2 * engine.parallel_tasks + 1):
            many.append(engine.submit(count_documents, (shards[k % 3], None), cpus=0))
            assert len(engine._running) <= engine.parallel_tasks
        assert engine.results(many) == [mapped[k % 3] for k in range(len(many))]
        assert engine._running == engine._submitted == []
    finally:
        engine.close()


def test_count_cli_on_ray(tmp_path, ray_cluster):
    address, _ = ray_cluster
    rng = random.Random(30)
    p = tmp_path / "in.txt"                # 4 MB: three parts, counted at once
    p.write_text("\n".join("".join(chr(0x4E00 + rng.randrange(5000)) for _ in range(40)) for _ in range(33000)))
    env = dict(os.environ)     # the tokenmill the tests import (installed, or PYTHONPATH=src)
    base = [sys.executable, "-m", "tokenmill", "count", str(p), "--order", "3"]
    subprocess.run(base + ["-o", str(tmp_path / "a.tsv")], check=True, env=env, capture_output=True)
    r = subprocess.run(base + ["--engine", "ray", "--ray-address", address, "-o", str(tmp_path / "b.tsv")],
                       check=True, env=env, capture_output=True, text=True)
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    # three map tasks at once do not fit the head's one CPU: both nodes count; the summary says so
    assert "tokenmill: ray: 9 tasks on 2 nodes (3 CPUs)" in r.stderr.splitlines()


# ------------------------------------------------------------------------------ shuffle

def _shuffle_inputs(tmp_path):
    import gzip

    a = tmp_path / "a.txt"
    a.write_bytes(_text(40, 60000) + b"no newline at the end")      # 2.4 MB
    b = tmp_path / "b.txt.gz"
    b.write_bytes(gzip.compress(_text(41, 2000)))
    return [str(a), str(b)]


@pytest.mark.parametrize("options", [
    {"memory": "1M", "seed": 1},                                  # scattered into buckets
    {"memory": "1M", "seed": 2, "buckets": 2, "shards": 3},       # buckets scattered again; shards
    {"memory": "64M", "seed": 3},                                 # fits: one task
])
def test_shuffle_on_two_ray_nodes_equals_the_local_shuffle(tmp_path, ray_cluster, small_shards, options):
    from tokenmill import shuffle

    address, _ = ray_cluster
    inputs = _shuffle_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    local = shuffle(inputs, out / "local.txt", progress=False, **options)
    on_ray = shuffle(inputs, out / "ray.txt", progress=False, engine="ray", ray_address=address, **options)
    assert len(local.outputs) == len(on_ray.outputs)
    for x, y in zip(local.outputs, on_ray.outputs):
        assert open(x, "rb").read() == open(y, "rb").read()
    assert (on_ray.lines, on_ray.root_buckets, on_ray.rescattered) == (local.lines, local.root_buckets, local.rescattered)
    assert (local.root_buckets > 1, local.rescattered > 0) == {1: (True, False), 2: (True, True), 3: (False, False)}[options["seed"]]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in local.outputs + on_ray.outputs)
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt.gz", "out"]


@pytest.mark.parametrize("options", [{"seed": 4}, {"seed": 5, "shards": 2}])
def test_shuffle_tasks_on_the_local_engine_equal_the_local_shuffle(tmp_path, small_shards, monkeypatch, options):
    """The task functions, run in this process, give the local output, also with an empty
    input among the others; the files a bucket task read are gone once it has ended."""
    from tokenmill import shuffle
    import tokenmill.engine as engine_mod
    from tokenmill.corpus import shuffle_job
    from tokenmill.spec import ShuffleSpec

    inputs = _shuffle_inputs(tmp_path)
    (tmp_path / "empty.txt").write_bytes(b"")
    inputs.insert(1, str(tmp_path / "empty.txt"))
    local = shuffle(inputs, tmp_path / "local.txt", memory="1M", progress=False, **options)
    seen, seen_pieces = [], []
    real = shuffle_job.shuffle_bucket

    def bucket(task):
        b, pieces = task[0], task[1]
        seen.append((b, all(os.path.exists(p) for p, _, _ in pieces)))
        for earlier in seen_pieces:
            assert not any(os.path.exists(p) for p, _, _ in earlier)
        seen_pieces.append(pieces)
        return real(task)

    monkeypatch.setattr(shuffle_job, "shuffle_bucket", bucket)
    monkeypatch.setattr(engine_mod, "make_engine", lambda *a, **k: LocalEngine(tasks=3))
    from tokenmill.corpus import io as tio

    started = []
    monkeypatch.setattr(tio, "WRITEBACK_STEP", 1 << 14)
    monkeypatch.setattr(tio, "_START_WRITEBACK", lambda fd, off, n, flags: started.append((off, n)) or 0)
    tasks = shuffle_job.shuffle_on_engine(inputs, str(tmp_path / "tasks.txt"),
                                          ShuffleSpec(memory="1M", progress=False, engine="ray", **options))
    assert local.root_buckets > 1 and len(seen) == local.root_buckets and all(ok for _, ok in seen)
    assert len(tasks.outputs) == len(local.outputs)
    for x, y in zip(local.outputs, tasks.outputs):
        assert open(x, "rb").read() == open(y, "rb").read()
    if "shards" not in options:
        # the bucket tasks wrote into the one output at their offsets, starting the writeback of
        # their own ranges as they went: the ranges do not overlap and cover all but the tails
        started.sort()
        assert all(a + n <= b for (a, n), (b, _) in zip(started, started[1:]))
        assert sum(n for _, n in started) >= tasks.bytes - local.root_buckets * (1 << 14)
        assert started[-1][0] + started[-1][1] <= tasks.bytes


@pytest.mark.parametrize("where", ["shuffle-scatter", "shuffle-bucket"])
def test_a_shuffle_task_killed_midway_loses_and_repeats_no_line(tmp_path, ray_cluster, small_shards, where):
    from tokenmill import shuffle

    address, fault_dir = ray_cluster
    inputs = _shuffle_inputs(tmp_path)
    armed = fault_dir / where
    armed.write_bytes(b"")
    r = shuffle(inputs, tmp_path / "ray.txt", memory="1M", seed=9, progress=False, engine="ray", ray_address=address)
    assert not armed.exists()          # a task did die there
    shuffle(inputs, tmp_path / "local.txt", memory="1M", seed=9, progress=False)
    assert (tmp_path / "ray.txt").read_bytes() == (tmp_path / "local.txt").read_bytes()
    assert r.root_buckets > 1
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt.gz", "local.txt", "ray.txt"]


def test_shuffle_on_the_ray_engine_refuses_stdin_and_stdout(tmp_path):
    from tokenmill import shuffle
    from tokenmill.errors import TokenmillError

    p = tmp_path / "in.txt"
    p.write_bytes(b"a\nb\n")
    with pytest.raises(TokenmillError, match="standard input"):
        shuffle(["-"], tmp_path / "o.txt", engine="ray")
    with pytest.raises(TokenmillError, match="standard output"):
        shuffle([str(p)], "-", engine="ray")


# ------------------------------------------------------------------------ encode-corpus

def _folder_bytes(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("options", [
    {"shard_tokens": 5000, "eos": True},
    {"shard_tokens": 3000, "alpha": 0.5, "seed": 7, "bos": True},
])
def test_encode_corpus_on_two_ray_nodes_equals_the_local_folder(tmp_path, ray_cluster, small_shards,
                                                                small_tok, options):
    from tokenmill import encode_corpus

    address, fault_dir = ray_cluster
    inputs = _shuffle_inputs(tmp_path)
    local = encode_corpus(inputs, small_tok, tmp_path / "local", progress=False, **options)
    armed = [fault_dir / "encode-split", fault_dir / "encode-write"]
    for f in armed:
        f.write_bytes(b"")
    on_ray = encode_corpus(inputs, small_tok, tmp_path / "ray", progress=False, engine="ray",
                           ray_address=address, **options)
    assert not any(f.exists() for f in armed)    # an encoding and a shard-writing task died midway, and ran again
    assert (on_ray.documents, on_ray.tokens, on_ray.shards) == (local.documents, local.tokens, local.shards)
    assert local.shards > 3
    assert _folder_bytes(tmp_path / "ray") == _folder_bytes(tmp_path / "local")


def test_copying_tokens_into_a_shard_starts_their_writeback_in_steps(tmp_path, monkeypatch):
    """A shard's tokens are copied by the kernel in steps, each of which starts its writeback
    (as writes to any output do), and the shard holds exactly the bytes of the range."""
    from tokenmill.corpus import encode_job
    from tokenmill.corpus import io as tio

    calls = []
    monkeypatch.setattr(tio, "WRITEBACK_STEP", 1 << 16)
    monkeypatch.setattr(tio, "_START_WRITEBACK", lambda fd, off, n, flags: calls.append((off, n)) or 0)
    data = os.urandom(1 << 20)
    src = tmp_path / "tokens"
    src.write_bytes(data)
    with tio.atomic_output(tmp_path / "shard.bin") as out:
        out.write(b"head")
        encode_job._copy_range(str(src), 1000, len(data) - 5000, out)
    assert (tmp_path / "shard.bin").read_bytes() == b"head" + data[1000:len(data) - 4000]
    assert len(calls) >= 14
    assert [off for off, _ in calls] == [0] + [off + n for off, n in calls[:-1]]


def test_encode_corpus_on_the_local_engine_tasks_equals_the_local_folder(tmp_path, small_shards, small_tok,
                                                                        monkeypatch):
    """The task functions, run in this process, make the same folder (no Ray needed)."""
    from tokenmill import encode_corpus
    from tokenmill.corpus import encode_job, shards
    from tokenmill.engine import LocalEngine

    inputs = _shuffle_inputs(tmp_path)
    spec = shards.EncodeCorpusSpec(shard_tokens=4000, eos=True, progress=False)
    encode_corpus(inputs, small_tok, tmp_path / "local", spec=spec)
    job = shards._open_folder(inputs, small_tok, tmp_path / "tasks", spec)
    import tokenmill.engine as engine_mod

    monkeypatch.setattr(engine_mod, "make_engine", lambda *a, **k: LocalEngine(tasks=3))
    encode_job.encode_on_engine(job, spec, 0.0)
    assert _folder_bytes(tmp_path / "tasks") == _folder_bytes(tmp_path / "local")


def test_encode_corpus_tasks_write_a_shard_as_soon_as_its_parts_are_encoded(tmp_path, small_shards, small_tok,
                                                                           monkeypatch):
    """Shards are written while later parts are still being encoded, not after all of them."""
    from tokenmill.corpus import encode_job, shards
    from tokenmill.engine import LocalEngine

    inputs = _shuffle_inputs(tmp_path)
    spec = shards.EncodeCorpusSpec(shard_tokens=4000, eos=True, progress=False)
    job = shards._open_folder(inputs, small_tok, tmp_path / "tasks", spec)
    import tokenmill.engine as engine_mod

    calls = []
    encode, write = encode_job.encode_split, encode_job.write_shard
    monkeypatch.setattr(encode_job, "encode_split", lambda task: calls.append("encode") or encode(task))
    monkeypatch.setattr(encode_job, "write_shard", lambda task: calls.append("write") or write(task))
    monkeypatch.setattr(engine_mod, "make_engine", lambda *a, **k: LocalEngine(tasks=3))
    result = encode_job.encode_on_engine(job, spec, 0.0)
    assert calls.count("write") == result.shards > 3
    assert calls.count("encode") > 3
    assert calls.index("write") < len(calls) - 1 - calls[::-1].index("encode")   # a write before the last encode


# ------------------------------------------------------------------------------ discover

def test_discover_on_two_ray_nodes_equals_the_local_discovery(tmp_path, ray_cluster, small_shards, sample_lines):
    from tokenmill import discover_words

    address, fault_dir = ray_cluster
    p = tmp_path / "sample.txt"
    p.write_bytes(b"\n".join(sample_lines) + b"\n")
    local = tmp_path / "local.tsv"
    on_ray = tmp_path / "ray.tsv"
    a = discover_words([str(p)], local, min_count=4, progress=False)
    armed = fault_dir / "count-map"
    armed.write_bytes(b"")
    b = discover_words([str(p)], on_ray, min_count=4, progress=False, engine="ray", ray_address=address)
    assert not armed.exists()
    assert a.written > 100
    assert on_ray.read_bytes() == local.read_bytes()
    assert (b.candidates, b.pieces, b.characters, b.lines) == (a.candidates, a.pieces, a.characters, a.lines)
    assert sorted(os.listdir(tmp_path)) == ["local.tsv", "ray.tsv", "sample.txt"]


# --------------------------------------------------------------------------------- train

@pytest.fixture(scope="module")
def train_inputs(tmp_path_factory, sample_lines):
    import json

    folder = tmp_path_factory.mktemp("train")
    (folder / "a.txt").write_bytes(b"\n".join(sample_lines[: len(sample_lines) // 2]) + b"\n")
    rest = sample_lines[len(sample_lines) // 2:]
    for name, lines in (("b.jsonl", rest[: len(rest) // 2]), ("c.jsonl", rest[len(rest) // 2:])):
        with open(folder / name, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps({"text": line.decode("utf-8", "surrogateescape")}) + "\n")
    return folder


@pytest.mark.parametrize("options", [
    {"vocab_size": [1000, 600]},
    {"vocab_size": [800], "order": 9, "sample_bytes": "300K", "seed": 5, "normalizer": "nfc"},
])
def test_train_on_two_ray_nodes_equals_the_local_model(tmp_path, ray_cluster, small_shards, train_inputs, options):
    from tokenmill import Trainer, TrainerSpec

    address, fault_dir = ray_cluster
    inputs = [str(train_inputs / "a.txt")]
    local = Trainer(TrainerSpec(progress=False, **options)).train(inputs)
    for where in ("train-count", "train-segment"):
        (fault_dir / where).write_bytes(b"")
    trainer = Trainer(TrainerSpec(progress=False, engine="ray", ray_address=address, tmp=str(tmp_path), **options))
    on_ray = trainer.train(inputs)
    assert not (fault_dir / "train-count").exists() and not (fault_dir / "train-segment").exists()
    assert [t.to_json() for t in on_ray] == [t.to_json() for t in local]
    assert "engine" not in on_ray[0].to_json() and "ray_address" not in on_ray[0].to_json()
    assert os.listdir(tmp_path) == []


def test_train_tasks_on_the_local_engine_equal_the_local_model(tmp_path, small_shards, train_inputs, monkeypatch):
    """JSON lines (a task per file), with the task functions run in this process."""
    from tokenmill import Trainer, TrainerSpec
    import tokenmill.engine as engine_mod

    inputs = [str(train_inputs / "b.jsonl"), str(train_inputs / "c.jsonl")]
    spec = dict(vocab_size=[700], progress=False)
    local = Trainer(TrainerSpec(**spec)).train(inputs, field="text")
    monkeypatch.setattr(engine_mod, "make_engine", lambda *a, **k: LocalEngine(tasks=3))
    tasks = Trainer(TrainerSpec(engine="ray", tmp=str(tmp_path), **spec)).train(inputs, field="text")
    assert tasks[0].to_json() == local[0].to_json()
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("job", ["count", "discover", "shuffle", "encode-corpus", "train"])
def test_a_bad_input_read_by_a_task_is_a_one_line_error_and_leaves_nothing(tmp_path, ray_cluster, job, small_tok):
    import gzip

    from tokenmill import Trainer, TrainerSpec, count_ngrams, discover_words, encode_corpus, shuffle
    from tokenmill.errors import TokenmillError

    address, _ = ray_cluster
    good = tmp_path / "good.txt"
    good.write_bytes(_text(50, 500))
    bad = tmp_path / "bad.txt.gz"
    bad.write_bytes(gzip.compress(_text(51, 500))[:-40])      # truncated: fails when read
    out = tmp_path / "out"
    out.mkdir()
    ray = {"engine": "ray", "ray_address": address, "progress": False}
    inputs = [str(good), str(bad)]
    with pytest.raises(TokenmillError) as err:
        if job == "count":
            count_ngrams(inputs, out / "c.tsv", **ray)
        elif job == "discover":
            discover_words(inputs, out / "d.tsv", **ray)
        elif job == "shuffle":
            shuffle(inputs, out / "s.txt", memory="1M", **ray)
        elif job == "encode-corpus":
            encode_corpus(inputs, small_tok, out / "shards", **ray)
        else:
            Trainer(TrainerSpec(vocab_size=[400], tmp=str(out), **ray)).train(inputs)
    message = str(err.value)
    assert message.startswith(str(bad)) and "\n" not in message
    left = sorted(os.listdir(out))
    if job == "encode-corpus":       # the folder is claimed by its manifest, which lists no shard
        assert left == ["shards"] and sorted(os.listdir(out / "shards")) == ["manifest.json"]
    else:
        assert left == []
