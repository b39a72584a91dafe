"""Input expansion, decompression, line/document iteration, atomic outputs and litter cleanup."""
import gzip
import lzma
import os
import subprocess
import sys

import pytest
import zstandard

from tokenmill.corpus import io as tio
from tokenmill.errors import InputError

RAW = b"caf\xc3\xa9\r\n\x00nul\n\n\xff\xfe invalid\nlast without newline"
LINES = [b"caf\xc3\xa9\r\n", b"\x00nul\n", b"\n", b"\xff\xfe invalid\n", b"last without newline\n"]


def write(path, data):
    path = str(path)
    if path.endswith(".gz"):
        data = gzip.compress(data)
    elif path.endswith(".xz"):
        data = lzma.compress(data)
    elif path.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("name", ["a.txt", "a.txt.gz", "a.txt.xz", "a.jsonl.zst"])
def test_iter_lines_keeps_bytes_and_adds_final_newline(tmp_path, name):
    path = write(tmp_path / name, RAW)
    assert list(tio.iter_lines([path])) == LINES
    with tio.open_input(path) as f:
        assert f.read() == RAW


def test_iter_lines_many_files_and_empty_file(tmp_path):
    a = write(tmp_path / "a.txt", b"x")
    e = write(tmp_path / "e.txt", b"")
    b = write(tmp_path / "b.txt.gz", b"y\n")
    assert list(tio.iter_lines([a, e, b])) == [b"x\n", b"y\n"]


def test_zst_multiple_frames(tmp_path):
    c = zstandard.ZstdCompressor()
    path = tmp_path / "m.zst"
    path.write_bytes(c.compress(b"a\nb\n") + c.compress(b"c\n"))
    assert list(tio.iter_lines([path])) == [b"a\n", b"b\n", b"c\n"]


def test_corrupt_compressed_input_names_file(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(b"not gzip at all\n")
    with pytest.raises(InputError, match="bad.gz"):
        list(tio.iter_lines([path]))


def test_iter_documents_plain_and_jsonl(tmp_path):
    path = write(tmp_path / "a.txt", RAW)
    assert list(tio.iter_documents([path])) == [line[:-1] for line in LINES]
    j = write(tmp_path / "d.jsonl", b'{"text": "h\\u00e9", "id": 1}\n\n{"text": ""}\n')
    assert list(tio.iter_documents([j], field="text")) == [b"h\xc3\xa9", b""]


@pytest.mark.parametrize("content, problem", [
    (b'{"text": "ok"}\n{oops\n', "invalid JSON"),
    (b'{"text": "ok"}\n{"body": "x"}\n', "no field 'text'"),
    (b'{"text": "ok"}\n{"text": 3}\n', "not a string"),
])
def test_iter_documents_errors_name_file_and_line(tmp_path, content, problem):
    j = write(tmp_path / "d.jsonl", content)
    with pytest.raises(InputError) as err:
        list(tio.iter_documents([j], field="text"))
    assert str(err.value).startswith(f"{j}:2: ") and problem in str(err.value)


def test_expand_inputs(tmp_path):
    for rel in ["d/b.txt", "d/a.txt", "d/sub/c.txt.gz", "d/.hidden", "x1.txt", "x2.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"z\n")
    got = tio.expand_inputs([tmp_path / "d", str(tmp_path / "x*.txt"), "-"])
    rel = [os.path.relpath(p, tmp_path) if p != "-" else p for p in got]
    assert rel == ["d/a.txt", "d/b.txt", "d/sub/c.txt.gz", "x1.txt", "x2.txt", "-"]
    with pytest.raises(InputError, match="nothing-here"):
        tio.expand_inputs([str(tmp_path / "nothing-here*.txt")])
    with pytest.raises(InputError, match="missing.txt: no such file"):
        tio.expand_inputs([str(tmp_path / "missing.txt")])


@pytest.mark.parametrize("name", ["o.txt", "o.txt.gz", "o.txt.xz", "o.txt.zst"])
def test_atomic_output_success_and_failure(tmp_path, name):
    final = tmp_path / name
    with tio.atomic_output(final) as f:
        f.write(b"hello\n")
        assert not final.exists()
    assert list(tio.iter_lines([final])) == [b"hello\n"]
    with pytest.raises(KeyboardInterrupt):
        with tio.atomic_output(tmp_path / ("new-" + name)) as f:
            f.write(b"partial\n")
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == [name]


def test_gzip_output_is_reproducible(tmp_path):
    for n in ("a.gz", "b.gz"):
        with tio.atomic_output(tmp_path / n) as f:
            f.write(b"same\n")
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_clean_litter_removes_only_dead_owners(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    mine = tio.temp_name("keep")
    theirs = tio.temp_name("x").replace(f"-{os.getpid()}-", f"-{dead}-", 1)
    (tmp_path / mine).write_bytes(b"")
    (tmp_path / theirs).mkdir()
    (tmp_path / theirs / "b0").write_bytes(b"data")
    (tmp_path / "unrelated.txt").write_bytes(b"")
    removed = tio.clean_litter(tmp_path)
    assert removed == [str(tmp_path / theirs)]
    assert sorted(os.listdir(tmp_path)) == sorted([mine, "unrelated.txt"])


@pytest.mark.parametrize("name", ["o.txt", "o.txt.zst"])
def test_outputs_start_writeback_in_steps(tmp_path, monkeypatch, name):
    """A durable output asks the kernel to start writing back each WRITEBACK_STEP bytes as they
    are written (so the fsync at commit has little left); the ranges cover what was written, in
    order, without gaps, and the file holds exactly the bytes written."""
    calls = []
    monkeypatch.setattr(tio, "WRITEBACK_STEP", 1 << 16)
    monkeypatch.setattr(tio, "_START_WRITEBACK", lambda fd, off, n, flags: calls.append((off, n, flags)) or 0)
    data = os.urandom(1 << 20)          # incompressible: the .zst output is about as large
    final = tmp_path / name
    with tio.atomic_output(final) as f:
        for i in range(0, len(data), 3000):
            f.write(data[i:i + 3000])
    with tio.open_input(final) as f:
        assert f.read() == data
    size = os.path.getsize(final)
    assert len(calls) >= 6
    assert size - (1 << 17) <= calls[-1][0] + calls[-1][1] <= size
    assert all(flags == tio._SYNC_FILE_RANGE_WRITE and n >= 1 << 16 for _, n, flags in calls)
    assert [off for off, _, _ in calls] == [0] + [off + n for off, n, _ in calls[:-1]]


def test_start_writeback_is_a_real_call_on_linux(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("sync_file_range is a Linux call")
    assert tio._START_WRITEBACK is not None
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x" * 8192)
        f.flush()
        assert tio._START_WRITEBACK(f.fileno(), 0, 8192, tio._SYNC_FILE_RANGE_WRITE) == 0


def test_atomic_outputs_can_keep_their_temporary_files_in_another_folder(tmp_path):
    """With temp_dir (a job's work folder), nothing appears in the output folder until commit,
    and an aborted write leaves nothing in either."""
    out, work = tmp_path / "out", tmp_path / "out" / "work"
    work.mkdir(parents=True)
    with tio.AtomicOutputs(temp_dir=str(work)) as outs:
        f = outs.open(out / "a.bin")
        f.write(b"abc")
        assert os.listdir(out) == ["work"] and len(os.listdir(work)) == 1
    assert (out / "a.bin").read_bytes() == b"abc" and os.listdir(work) == []
    with pytest.raises(RuntimeError):
        with tio.AtomicOutputs(temp_dir=str(work)) as outs:
            outs.open(out / "b.bin").write(b"x")
            raise RuntimeError("stop")
    assert sorted(os.listdir(out)) == ["a.bin", "work"] and os.listdir(work) == []
