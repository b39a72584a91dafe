"""`tokenmill count`: exact counts equal a naive Python count, for every unit, order, worker
count and memory budget; bad inputs give one-line errors and no output."""
from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from tokenmill import _spans
from tokenmill.counting import PassCounter, TextSource, count_ngrams, merged, unit_function
from tokenmill.errors import TokenmillError
from tokenmill.reference_count import count_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _items(result, unit):
    """count_ngrams items as (bytes, count), like the reference."""
    out = []
    for k, c in result.items:
        if unit == "byte":
            out.append((k, c))
        else:
            out.append((k.encode("utf-8", "surrogateescape"), c))
    return out


def _write(tmp_path, data: bytes, name="in.txt"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _mixed_text(seed, n_lines=300):
    rng = random.Random(seed)
    alphabet = ["的", "是", "中", "国", "人", "a", "b", "ab", " ", "  ", "\t", "x", "é", "\\", "\r"]
    lines = []
    for _ in range(n_lines):
        lines.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))))
    return "\n".join(lines).encode("utf-8")


@pytest.mark.parametrize("unit", ["char", "byte", "word"])
@pytest.mark.parametrize("order", [1, 3])
def test_equals_reference_on_mixed_text(tmp_path, unit, order):
    data = _mixed_text(order) + b"\n\xff\xfe broken \xe4\xb8 utf8\n"
    path = _write(tmp_path, data)
    got = count_ngrams([path], unit=unit, order=order, progress=False, workers=2)
    assert _items(got, unit) == count_reference(data, unit, order)


def test_equals_reference_on_real_text(sample_lines, tmp_path):
    data = b"\n".join(sample_lines[:800])
    path = _write(tmp_path, data)
    for unit, order in (("char", 4), ("word", 2), ("byte", 3)):
        got = count_ngrams([path], unit=unit, order=order, min_count=2, progress=False)
        assert _items(got, unit) == count_reference(data, unit, order, min_count=2), unit


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["char", "byte", "word"]), st.integers(1, 4))
def test_arbitrary_bytes(tmp_path_factory, data, unit, order):
    path = _write(tmp_path_factory.mktemp("c"), data)
    got = count_ngrams([path], unit=unit, order=order, progress=False, workers=3)
    assert _items(got, unit) == count_reference(data, unit, order)


def test_split_regex_matches_reference(tmp_path):
    data = "a,b;;c,a,b\nb,c,a b\n".encode()
    path = _write(tmp_path, data)
    got = count_ngrams([path], unit="word", order=2, split="[,;]+", progress=False)
    want = [(k.replace(b"\xff", b" "), c) for k, c in count_reference(data, "word", 2, split="[,;]+")]
    assert _items(got, "word") == want
    assert ("a b", 1) in got.items      # a two-word bigram, and the word "a b" itself
    assert got.items[0] == ("a", 2) or got.items[0][1] >= 2


def test_min_count_and_top(tmp_path):
    data = _mixed_text(5)
    path = _write(tmp_path, data)
    full = count_reference(data, "char", 2)
    got = count_ngrams([path], unit="char", order=2, min_count=3, top=7, progress=False)
    assert _items(got, "char") == [kc for kc in full if kc[1] >= 3][:7]


def _passes(data: bytes, tmp_path, unit, order, workers, table_budget):
    path = _write(tmp_path, data, f"p{workers}-{table_budget}.txt")
    units, _ = unit_function(unit)
    source = TextSource([path])
    counter = PassCounter(source, units, order, workers=workers, progress=False,
                          table_budget=table_budget, batch_bytes=4096)
    runs = counter.run(1)
    return [(s, c) for c, s in merged(runs)], counter.stats.passes, counter.stats.reserved


def test_same_counts_for_any_workers_and_budget(tmp_path):
    rng = random.Random(7)
    data = b"\n".join(bytes(rng.randrange(97, 123) for _ in range(rng.randrange(50, 200))) for _ in range(600))
    want = count_reference(data, "byte", 4)
    results, reserved = set(), set()
    for workers in (1, 2, 3):
        for budget in (None, 40_000, 200_000):
            got, passes, keys = _passes(data, tmp_path, "byte", 4, workers, budget)
            assert got == want, (workers, budget)
            results.add(passes)
            reserved.add(keys)
    assert max(results) > 2          # the small budgets really forced extra passes
    assert max(reserved) > 0         # and without a budget the tables were pre-sized early on


def test_presized_tables_hold_what_was_counted():
    c = _spans.SpanCounter(4)
    u = _spans.byte_units(b"abcabd")
    c.add([c.collect(b"abcabd", *u, 3, 0, len(u[2]))], 0, 1)
    before = sorted(c.items())
    for part in range(2):
        c.reserve(10_000, part, 2)
    assert sorted(c.items()) == before and c.nbytes > 10_000 * 32
    c.add([c.collect(b"abcabd", *u, 3, 0, len(u[2]))], 0, 1)
    assert sorted(c.items()) == [(k, 2 * n) for k, n in before]


def test_cli_writes_sorted_escaped_tsv(tmp_path):
    data = b"a\\b\ta\\b\n"
    path = _write(tmp_path, data)
    out = tmp_path / "out.tsv"
    r = subprocess.run([sys.executable, "-m", "tokenmill", "count", path, "-o", str(out), "--order", "2",
                        "--unit", "byte"], capture_output=True, env=_env())
    assert r.returncode == 0, r.stderr
    lines = out.read_bytes().split(b"\n")[:-1]
    assert lines[0] == b"\\\\\t2"          # backslash, written escaped
    assert b"\\t\t1" in lines                # the tab
    counts = [int(x.rsplit(b"\t", 1)[1]) for x in lines]
    assert counts == sorted(counts, reverse=True)


def test_compressed_inputs_jsonl_and_stdin(tmp_path):
    docs = ["你好世界", "hello world", "你好"]
    jl = tmp_path / "d.jsonl.gz"
    with gzip.open(jl, "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d, "id": 1}) + "\n")
    got = count_ngrams([str(jl)], field="text", order=2, progress=False)
    assert got.items == [(k.decode(), c) for k, c in count_reference("\n".join(docs).encode(), "char", 2)]
    r = subprocess.run([sys.executable, "-m", "tokenmill", "count", "-", "-o", "-", "--unit", "word",
                        "--no-progress", "--order", "1"], input=b"b a b\n", capture_output=True, env=_env())
    assert r.returncode == 0 and r.stdout == b"b\t2\na\t1\n", r


def test_jieba_words(tmp_path):
    pytest.importorskip("jieba")
    path = _write(tmp_path, "我们在北京天安门\n北京很大\n".encode())
    got = dict(count_ngrams([path], unit="word", jieba=True, order=1, progress=False).items)
    assert got["北京"] == 2


def _env():
    return dict(os.environ)     # the tokenmill the tests import (installed, or PYTHONPATH=src)


@pytest.mark.parametrize("args, message", [
    (["missing.txt"], "missing.txt"),
    (["BAD", "--field", "text"], "bad.jsonl:2: invalid JSON"),
    (["GOOD", "--unit", "word", "--split", "("], "not a valid regular expression"),
    (["GOOD", "--order", "0"], "--order must be at least 1"),
    (["GOOD", "--split", ","], "only apply to --unit word"),
])
def test_bad_input_one_line_error_no_output(tmp_path, args, message):
    bad = _write(tmp_path, b'{"text": "ok"}\n{broken\n', "bad.jsonl")
    good = _write(tmp_path, b"text\n", "good.txt")
    args = [bad if a == "BAD" else good if a == "GOOD" else str(tmp_path / a) if a == "missing.txt" else a
            for a in args]
    out = tmp_path / "out.tsv"
    r = subprocess.run([sys.executable, "-m", "tokenmill", "count", *args, "-o", str(out)],
                       capture_output=True, text=True, env=_env())
    assert r.returncode != 0
    err = r.stderr.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tokenmill-tmp")]


def test_spec_rejects_bad_options():
    with pytest.raises(TokenmillError):
        count_ngrams(["x"], unit="syllable")
    with pytest.raises(TokenmillError):
        count_ngrams(["x"], memory="10M")


def test_memory_budget_is_honoured(tmp_path):
    """Peak RSS of a `tokenmill count` subprocess stays within --memory while the distinct
    n-grams alone would need far more (so it must make several passes)."""
    rng = random.Random(3)
    words = ["".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(rng.randrange(1, 4))) for _ in range(60000)]
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(30000):
            f.write("".join(rng.choice(words) for _ in range(40)) + "\n")
    out = tmp_path / "out.tsv"
    budget = 160
    r = subprocess.run([sys.executable, "-c",
                        "import sys, tokenmill.cli as c; rc = c.main(sys.argv[1:]);"
                        "print('HWM', [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]);"
                        "sys.exit(rc)",
                        "count", str(path), "-o", str(out), "--order", "4", "--memory", f"{budget}M", "--workers", "2"],
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    hwm_mb = int(r.stdout.split("HWM")[1].split()[0].strip("[]'")) / 1024
    assert "passes" in r.stderr, r.stderr            # it did need several passes
    assert hwm_mb <= budget + 16, (hwm_mb, r.stderr)
    n_lines = sum(1 for _ in open(out, "rb"))
    assert n_lines > 1_000_000


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_sorting_the_entries_on_threads_equals_sorted(threads):
    """The threaded sort (buckets split at sampled keys) gives the order of ``sorted`` by count
    descending, then bytes: many equal counts, strings sharing 8-byte prefixes, empty ones."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from tokenmill.counting import sort_entries

    rng = random.Random(threads)
    strings = [bytes(rng.choice(b"ab") for _ in range(rng.choice([0, 3, 8, 9, 12]))) + bytes([rng.randrange(256)]) * rng.randrange(2)
               for _ in range(20000)]
    counts = [rng.choice([1, 1, 1, 2, 3, 7, 1000]) for _ in strings]
    offs = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in strings], out=offs[1:])
    blob = np.frombuffer(b"".join(strings), dtype=np.uint8)
    with ThreadPoolExecutor(threads) as pool:
        order = sort_entries(blob, offs, np.array(counts, dtype=np.int64), threads, pool)
    got = [(counts[k], strings[k]) for k in order.tolist()]
    assert got == sorted(zip(counts, strings), key=lambda e: (-e[0], e[1]))
