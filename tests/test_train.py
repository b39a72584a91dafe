"""The trainer: compiled phases against the pure-Python reference, determinism, worker
independence, several sizes, round trips, the memory budget and bad inputs."""
import gzip
import json
import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tokenmill import _ngram, model_file
from tokenmill import reference_train as ref
from tokenmill.spec import TrainerSpec
from tokenmill.trainer import Corpus, Trainer


def make_docs(n=400, seed=1):
    """Small mixed documents: Chinese, English, code, digits, newlines, invalid UTF-8."""
    rng = random.Random(seed)
    words = ["的", "法律", "规定", "人民", "the", " of", " and", "def ", "return ", "self.",
             "    ", "123", "\n", "，", "。", "tokenizer", "\xe9t\xe9", "(x)", " = ", "中华人民共和国"]
    docs = []
    for _ in range(n):
        parts = [rng.choice(words) for _ in range(rng.randint(1, 30))]
        doc = "".join(parts).encode("utf-8")
        if rng.random() < 0.05:
            doc += bytes([0xFF, 0x80, rng.randint(0, 255)])
        docs.append(doc)
    return docs


def train(docs, **options):
    options.setdefault("progress", False)
    return Trainer(TrainerSpec(**options)).train(docs)


def dump(tok):
    return model_file.dumps(tok._model)


def vocab_counts(vocab):
    return {p: int(c) for p, c in zip(vocab.pieces, vocab.counts)}


# ------------------------------------------------------------------------ compiled phases

@pytest.mark.parametrize("order", [1, 3, 6, 7, 8, 11, 15])
def test_ngram_counts_match_reference(order):
    docs = make_docs(150)
    texts = [c for d in docs for c in ref.chunks(d)]
    expected, positions = ref.count_ngrams(texts, order)
    buf, doc_ends = b"".join(docs), np.cumsum([len(d) for d in docs]).astype(np.int64)
    ends = _ngram.chunk_ends(buf, doc_ends, True, False, 32768)
    table = _ngram.NgramTable(order, 5)
    for part in range(3):
        table.count_bytes(buf, ends, part, 3)
    keys, counts = table.export(1)
    got = dict(zip(keys.tolist(), counts.tolist()))
    want = {_ngram.key_of(g): c for g, c in expected.items() if len(g) > 1}
    assert len(want) == sum(len(g) > 1 for g in expected)      # no two n-grams share a key
    assert got == want
    assert {bytes([b]): int(table.unigrams[b]) for b in range(256) if table.unigrams[b]} == \
        {g: c for g, c in expected.items() if len(g) == 1}
    assert table.positions == positions
    if order <= 7:
        assert dict(zip(_ngram.unpack_many(keys), counts.tolist())) == {g: c for g, c in expected.items() if len(g) > 1}


def test_long_ngram_keys():
    # up to 7 bytes the key is the packing; beyond, a hash above the length: distinct for
    # n-grams that differ in any byte or in length, never a packed key
    assert _ngram.key_of(b"abc") == _ngram.pack(b"abc")
    rng = np.random.default_rng(5)
    grams = {bytes(rng.integers(0, 3, n, dtype=np.uint8)) for n in rng.integers(8, 16, 5000)}
    grams |= {b"\x00" * n for n in range(1, 16)} | {b"\xff" * n for n in range(1, 16)}
    keys = {_ngram.key_of(g) for g in grams}
    assert len(keys) == len(grams)
    assert all(_ngram.key_of(g) & 0xFF == len(g) for g in grams)
    with pytest.raises(ValueError):
        _ngram.key_of(b"x" * 16)
    with pytest.raises(ValueError):
        _ngram.NgramTable(16)


def test_ngram_counts_past_32_bits_are_exact():
    # a slot keeps a count mod 2**32; what passes it is carried beside the table
    rng = np.random.default_rng(3)
    keys = np.array([_ngram.pack(bytes(rng.integers(0, 256, n, dtype=np.uint8))) for n in rng.integers(2, 8, 300)],
                    dtype=np.uint64)
    keys = np.unique(keys)
    big = np.uint64(2**32)
    adds = [rng.integers(1, 2**31, len(keys), dtype=np.uint64) for _ in range(7)]
    adds.append(np.where(np.arange(len(keys)) % 3 == 0, big * np.uint64(5) + np.uint64(7), np.uint64(1)))
    expected = {int(k): sum(int(a[i]) for a in adds) for i, k in enumerate(keys)}
    table = _ngram.NgramTable(4, 3)
    for a in adds:
        for part in range(2):
            table.add_keys(keys, a, part, 2)
    assert {int(k): table.get(int(k)) for k in keys} == expected
    got_keys, got_counts = table.export(big * np.uint64(3))
    assert dict(zip(got_keys.tolist(), got_counts.tolist())) == {k: c for k, c in expected.items() if c >= 3 * 2**32}
    # a key range that drops keys also drops their carries
    table.set_starts([2**31] * 3)
    got_keys, got_counts = table.export(1)
    want = {k: c for k, c in expected.items() if _ngram.key_range_value(k) >= 2**31}
    assert dict(zip(got_keys.tolist(), got_counts.tolist())) == want


def test_reserved_table_keeps_and_goes_on_counting():
    docs = make_docs(100)
    buf, doc_ends = b"".join(docs), np.cumsum([len(d) for d in docs]).astype(np.int64)
    ends = _ngram.chunk_ends(buf, doc_ends, True, False, 32768)
    plain, reserved = _ngram.NgramTable(5, 4), _ngram.NgramTable(5, 4)
    for t in (plain, reserved):
        t.count_bytes(buf, ends, 0, 1)
    small = reserved.nbytes
    for part in range(2):
        reserved.reserve(50_000, part, 2)
    assert reserved.nbytes > max(small, 50_000 * 12)
    for t in (plain, reserved):
        t.count_bytes(buf, ends, 0, 1)
    for a, b in zip(plain.export(1), reserved.export(1)):
        assert np.array_equal(a, b)


def test_chunks_match_reference():
    docs = make_docs(200) + [b"12ab34\n\n\ncd", b"\n", "长" .encode() * 50]
    buf, doc_ends = b"".join(docs), np.cumsum([len(d) for d in docs]).astype(np.int64)
    for split_newlines in (True, False):
        for digits in (True, False):
            ends = _ngram.chunk_ends(buf, doc_ends, split_newlines, digits, 16)
            starts = np.concatenate([[0], ends[:-1]])
            got = [buf[a:b] for a, b in zip(starts, ends)]
            assert got == [c for d in docs for c in ref.chunks(d, split_newlines, digits, 16)]


@pytest.mark.parametrize("order", [3, 6, 7, 9, 15])
def test_lm_segmentation_matches_reference(order):
    docs = make_docs(300)
    texts = [c for d in docs for c in ref.chunks(d)]
    counts, positions = ref.count_ngrams(texts, order)
    lm = ref.language_model(counts, positions, 2)
    buf, doc_ends = b"".join(docs), np.cumsum([len(d) for d in docs]).astype(np.int64)
    ends = _ngram.chunk_ends(buf, doc_ends, True, False, 32768)
    table = _ngram.NgramTable(order, 1)
    table.count_bytes(buf, ends, 0, 1)
    keys, cnts = table.export(2)
    uni = table.unigrams.astype(float)
    uni[uni == 0] = 1
    model = _ngram.lm_from_counts(keys, cnts)
    assert model.size == sum(len(g) > 1 for g in lm)
    for g, v in lm.items():
        if len(g) > 1:   # the model holds log counts; the reference, log c(g) - log c(g[:-1])
            prefix = math.log(uni[g[0]]) if len(g) == 2 else model.get(_ngram.key_of(g[:-1]))
            assert model.get(_ngram.key_of(g)) - prefix == pytest.approx(v, abs=1e-12)
    piece_ends = _ngram.lm_segment(model, np.log(uni) - math.log(uni.sum()), np.log(uni), buf,
                                   np.concatenate([[0], ends]), order, True)
    starts = np.concatenate([[0], piece_ends[:-1]])
    got = [buf[a:b] for a, b in zip(starts, piece_ends)]
    assert got == [p for t in texts for p in ref.lm_segment(t, lm, order, True)]


def test_ensure_unicode_pieces_are_whole_characters():
    docs = make_docs(300)
    docs = [d for d in docs if not d.endswith(bytes([0x80])) and b"\xff" not in d]
    [tok] = train(docs, vocab_size=[400], refine=False)
    for piece, _ in tok.pieces:
        if len(piece) > 1 and piece[0] & 0xC0 == 0x80:
            pytest.fail(f"piece starts inside a character: {piece!r}")


# ------------------------------------------------------------------------ whole trainer

@pytest.mark.parametrize("order", [7, 10])
def test_trainer_matches_reference(order):
    docs = make_docs(300)
    spec = TrainerSpec(vocab_size=[420, 300], refine=False, progress=False, order=order)
    trainer = Trainer(spec)
    corpus = Corpus(docs)
    lm = list(trainer._count_ngrams(corpus))
    data = trainer._segment(corpus, lm)
    from tokenmill.trainer import Pruner

    pruner = Pruner(spec, workers=2)
    base = pruner.initial(data)
    expected = ref.train_reference(docs, [420, 300], order=spec.order, min_count=spec.min_count)
    for size in (420, 300):
        assert vocab_counts(pruner.shrink(base, size)) == expected[size]


def test_worker_count_does_not_change_the_model():
    docs = make_docs(500, seed=3)
    one = [dump(t) for t in train(docs, vocab_size=[500, 300], workers=1)]
    three = [dump(t) for t in train(docs, vocab_size=[500, 300], workers=3)]
    again = [dump(t) for t in train(docs, vocab_size=[500, 300], workers=3)]
    assert one == three == again


def test_several_sizes_equal_separate_runs():
    docs = make_docs(500, seed=4)
    both = train(docs, vocab_size=[300, 500])
    assert dump(both[0]) == dump(train(docs, vocab_size=[300])[0])
    assert dump(both[1]) == dump(train(docs, vocab_size=[500])[0])
    assert both[0].vocab_size == 300 < both[1].vocab_size <= 500


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200))
def test_round_trip_arbitrary_bytes(trained_small, data):
    tok = trained_small
    assert tok.decode_bytes(tok.encode(data)) == data


@pytest.fixture(scope="module")
def trained_small():
    return train(make_docs(400, seed=5), vocab_size=[600], special_tokens=["<pad>", "<s>"])[0]


def test_special_tokens_and_metadata(trained_small):
    tok = trained_small
    assert tok.special_tokens == {"<pad>": 0, "<s>": 1}
    assert 300 < tok.vocab_size <= 600
    assert tok.trainer_options["vocab_size"] == [600]
    assert tok.trainer_options["order"] == 7 and tok.trainer_options["min_count"] == 4


def test_isolate_digits():
    [tok] = train(make_docs(300), vocab_size=[400], isolate_digits=True)
    for piece, _ in tok.pieces:
        if any(48 <= b <= 57 for b in piece):
            assert len(piece) == 1


def sample_split():
    """The real text the package ships (Chinese, English, code): 9 lines in 10 to train on,
    the 10th held out."""
    import importlib.resources

    raw = gzip.decompress(importlib.resources.files("tokenmill").joinpath("data/sample.txt.gz").read_bytes())
    lines = [line for line in raw.split(b"\n") if line]
    return [x for i, x in enumerate(lines) if i % 10], [x for i, x in enumerate(lines) if i % 10 == 0]


@pytest.mark.parametrize("size", [1000, 4000])
def test_refinement_and_ngram_candidates_raise_held_out_compression(size):
    """What the defaults promise on real text: the refinement compresses held-out lines better
    than BytePiece's selection, and its frequent n-gram candidates better than without them
    (on the sample, by 5 to 13 %)."""
    docs, held_out = sample_split()
    scores = {}
    for name, options in {"bytepiece": dict(refine=False), "refine": dict(refine_ngrams=0),
                          "default": {}}.items():
        [tok] = train(docs, vocab_size=[size], **options)
        scores[name] = sum(map(len, held_out)) / sum(len(x) for x in tok.encode_batch(held_out))
    assert scores["default"] > scores["refine"] * 1.03 > scores["bytepiece"], scores


def test_ngram_candidates_are_the_most_frequent_whole_characters():
    """frequent_ngrams against a plain count: the n most frequent n-grams of 2 to 7 bytes that
    are valid UTF-8, ties by bytes, the same when the keys come in several parts (passes)."""
    from tokenmill.trainer import frequent_ngrams

    docs, _ = sample_split()
    counts, _ = ref.count_ngrams(docs[:3000], 7)
    items = [(p, c) for p, c in counts.items() if len(p) >= 2]
    keys = np.array([_ngram.pack(p) for p, _ in items], np.uint64)
    values = np.array([c for _, c in items], np.uint64)
    valid = []
    for p, c in items:
        try:
            p.decode("utf-8")
            valid.append((p, c))
        except UnicodeDecodeError:
            pass
    for n in (1, 50, 2000):
        want = sorted(valid, key=lambda e: (-e[1], e[0]))[:n]
        got = frequent_ngrams(keys, values, n)
        assert list(zip(_ngram.unpack_many(got[0]), got[1].tolist())) == want
        parts = np.arange(len(keys)) % 3          # three "passes", each with a third of the keys
        merged = None
        for k in range(3):
            merged = frequent_ngrams(keys[parts == k], values[parts == k], n, previous=merged)
        assert [a.tolist() for a in merged] == [a.tolist() for a in got]
    short = frequent_ngrams(keys, values, 100, whole_chars=False, max_length=3)
    assert all(2 <= len(p) <= 3 for p in _ngram.unpack_many(short[0]))
    assert short[1].tolist() == sorted((c for p, c in items if len(p) <= 3), reverse=True)[:100]


def test_sample_bytes_is_deterministic_and_smaller():
    docs = make_docs(2000, seed=8)
    a = Trainer(TrainerSpec(vocab_size=[400], sample_bytes="20K", progress=False))
    ta = a.train(docs)[0]
    tb = train(docs, vocab_size=[400], sample_bytes="20K")[0]
    assert dump(ta) == dump(tb)
    assert a.stats.bytes < sum(map(len, docs)) / 2


# ------------------------------------------------------------------------ command line

def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "tokenmill.cli", "train", *args], input=stdin,
                          capture_output=True)


def write_lines(path, docs):
    data = b"".join(d.replace(b"\n", b" ") + b"\n" for d in docs)
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_cli_inputs_and_outputs(tmp_path):
    docs = make_docs(300)
    a = write_lines(tmp_path / "a.txt.gz", docs[:150])
    jl = tmp_path / "b.jsonl"
    jl.write_text("".join(json.dumps({"text": d.decode("utf-8", "replace"), "id": i}) + "\n"
                          for i, d in enumerate(docs[150:])))
    out = tmp_path / "out" / "m.json"
    out.parent.mkdir()
    r = run_cli(str(a), "-o", str(out), "--vocab-size", "400", "300", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out.parent)) == ["m.300.json", "m.400.json"]
    r = run_cli(str(jl), "-o", str(tmp_path / "j.json"), "--field", "text", "--vocab-size", "300")
    assert r.returncode == 0, r.stderr
    assert b"wrote" in r.stderr
    r = run_cli("-", "-o", str(tmp_path / "stdin.json"), "--vocab-size", "300",
                stdin=gzip.decompress(a.read_bytes()))
    assert r.returncode == 0, r.stderr
    # stdin and the file give the same model
    from tokenmill import Tokenizer

    file_model = run_cli(str(a), "-o", str(tmp_path / "file.json"), "--vocab-size", "300")
    assert file_model.returncode == 0
    assert Tokenizer.load(tmp_path / "stdin.json").pieces == Tokenizer.load(tmp_path / "file.json").pieces


@pytest.mark.parametrize("case", ["missing", "bad_json", "empty", "small_vocab", "no_field", "big_order", "no_tmp"])
def test_cli_bad_inputs(tmp_path, case):
    good = write_lines(tmp_path / "good.txt", make_docs(50))
    out = tmp_path / "out"
    out.mkdir()
    args = {
        "missing": [str(tmp_path / "nope.txt"), "--vocab-size", "300"],
        "bad_json": [str(tmp_path / "bad.jsonl"), "--field", "text", "--vocab-size", "300"],
        "empty": [str(tmp_path / "empty.txt"), "--vocab-size", "300"],
        "small_vocab": [str(good), "--vocab-size", "257", "--special-tokens", "<s>,</s>"],
        "no_field": [str(tmp_path / "bad.jsonl"), "--field", "body", "--vocab-size", "300"],
        "big_order": [str(good), "--vocab-size", "300", "--order", "16"],
        "no_tmp": [str(good), "--vocab-size", "300", "--tmp", str(tmp_path / "no-such-dir")],
    }[case]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": broken\n')
    (tmp_path / "empty.txt").write_bytes(b"\n\n")
    r = run_cli(*args, "-o", str(out / "m.json"))
    assert r.returncode == 2
    message = r.stderr.decode().strip()
    assert message.count("\n") == 0 and message.startswith("tokenmill: error:")
    if case == "missing":
        assert "nope.txt" in message
    if case == "bad_json":
        assert "bad.jsonl:2" in message
    if case == "no_field":
        assert "bad.jsonl:1" in message
    if case == "empty":
        assert "empty.txt" in message
    if case == "small_vocab":
        assert "258" in message
    if case == "big_order":
        assert "--order must be between 1 and 15" in message
    if case == "no_tmp":
        assert "no-such-dir: --tmp folder does not exist" in message
    assert os.listdir(out) == []


# ------------------------------------------------------------------------ memory budget

MEMORY_SCRIPT = r"""
import resource, sys, json
from tokenmill.trainer import Trainer
from tokenmill.spec import TrainerSpec
t = Trainer(TrainerSpec(vocab_size=[400], memory=sys.argv[2], workers=2, progress=False, refine=False))
[tok] = t.train([sys.argv[1]])
# VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child started by a big parent
# (this test suite) would report the parent's size
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rss": hwm * 1024, "passes": t.stats.count_passes}))
"""


def zipf_text(lines, seed=9):
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(30000)]
    weights = [1 / (i + 1) for i in range(len(words))]
    return ("\n".join(" ".join(rng.choices(words, weights, k=40)) for _ in range(lines)) + "\n").encode()


def zipf_lines(lines):
    """``zipf_text(lines)`` as a buffer of its lines without newlines and their end offsets."""
    data = zipf_text(lines)
    return data.replace(b"\n", b""), np.cumsum([len(x) for x in data.split(b"\n")[:-1]]).astype(np.int64)


def test_multi_pass_counting_is_exact():
    buf, ends = zipf_lines(1500)
    full = _ngram.NgramTable(6, 8)
    full.count_bytes(buf, ends, 0, 1)
    expected = full.export(1)
    starts, parts, passes = [0] * 8, [], 0
    while min(starts) < _ngram.FULL_RANGE:
        passes += 1
        t = _ngram.NgramTable(6, 8, max_bytes=8 * 64 * 1024)
        t.set_starts(starts)
        for part in range(2):
            t.count_bytes(buf, ends, part, 2)
        starts = [hi for _, hi in t.ranges()]
        assert t.nbytes <= 8 * 64 * 1024
        parts.append(t.export(1))
    keys = np.concatenate([k for k, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    order = np.argsort(keys)
    assert passes > 2
    assert np.array_equal(keys[order], expected[0]) and np.array_equal(counts[order], expected[1])


def test_long_ngrams_are_counted_from_kept_windows():
    # order > 7: the second stage counts only the n-grams of 8+ bytes whose 7-byte windows
    # were kept; every n-gram that reaches min_count gets its exact count, and far fewer
    # keys are stored than by counting every long n-gram
    buf, ends = zipf_lines(800)
    full = _ngram.NgramTable(12, 4)
    full.count_bytes(buf, ends, 0, 1)
    everything = len(full)
    want = dict(zip(*(a.tolist() for a in full.export(3))))
    short = _ngram.NgramTable(7, 4)
    short.count_bytes(buf, ends, 0, 1)
    keys, counts = short.export(3)
    long_table = _ngram.NgramTable(12, 4)
    for part in range(2):
        _ngram.count_long(long_table, buf, ends, _ngram.lm_from_counts(keys, counts), part, 2)
    stored = len(long_table) + len(short)
    got = dict(zip(keys.tolist(), counts.tolist()))
    got.update(zip(*(a.tolist() for a in long_table.export(3))))
    assert got == want
    assert sum(k & 0xFF >= 8 for k in want) > 1000
    assert stored < everything * 0.7, (stored, everything)


def test_high_order_model_does_not_depend_on_workers_or_budget(tmp_path):
    path = tmp_path / "zipf.txt"
    path.write_bytes(zipf_text(6000))     # 1.5 MB: its n-gram table needs more than 64M
    models, passes = [], []
    for workers, memory in ((1, "4G"), (3, "64M")):
        t = Trainer(TrainerSpec(vocab_size=[600], order=10, workers=workers, memory=memory, progress=False))
        [tok] = t.train([str(path)])
        models.append(dump(tok))
        passes.append(t.stats.count_passes)
    assert models[0] == models[1]
    assert passes[0] == 2 and passes[1] > 2, passes     # stage 1 and stage 2; more within 64M


def test_memory_budget_is_honoured(tmp_path):
    path = tmp_path / "zipf.txt"
    path.write_bytes(zipf_text(12000))     # 3 MB; its exact n-gram table alone needs ~64 MB
    r = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), "64M"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    result = json.loads(r.stdout)
    assert result["passes"] > 1
    assert result["rss"] <= (64 + 64) * 2**20, result["rss"] / 2**20


PEAK_SCRIPT = r"""
import json, resource, sys
from tokenmill.trainer import Trainer
from tokenmill.spec import TrainerSpec
t = Trainer(TrainerSpec(vocab_size=[300], workers=1, progress=False, refine=False))
t.train([sys.argv[1]])
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"reported": t.stats.peak_rss, "hwm": hwm * 1024,
                  "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def test_reported_peak_rss_is_the_process_own(tmp_path):
    """The peak RSS in the trainer's summary is the process's own, not that of the bigger
    process that started it (``ru_maxrss`` carries over across exec on Linux)."""
    path = tmp_path / "zipf.txt"
    path.write_bytes(zipf_text(300))
    ballast = np.ones(400 << 20, np.uint8)     # this process, started the child: > 400 MB
    r = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True)
    del ballast
    assert r.returncode == 0, r.stderr.decode()
    result = json.loads(r.stdout)
    if result["ru_maxrss"] < 400 << 20:
        pytest.skip("this kernel does not carry ru_maxrss over exec: nothing to tell apart")
    assert result["reported"] < 300 << 20, result
    assert abs(result["reported"] - result["hwm"]) < 16 << 20, result


# ------------------------------------------------------------------------ pieces on disk

def test_piece_data_adds_up_spilled_chunks(tmp_path):
    """Pieces spilled in several chunks, with repeats within and across chunks, come back once
    each with their total count; nothing is left on disk after close()."""
    from collections import Counter
    from tokenmill.piece_store import PieceData

    rng = random.Random(3)
    vocab = [bytes(rng.choices(b"abc\x00\xff\n", k=rng.randint(1, 40))) for _ in range(3000)]
    want = Counter()
    data = PieceData(str(tmp_path))
    for chunk in range(6):
        pieces = [rng.choice(vocab) for _ in range(2000)]
        counts = np.array([rng.randint(1, 9) for _ in pieces], np.int64)
        for p, c in zip(pieces, counts.tolist()):
            want[p] += c
        ends = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
        (data.spill if chunk < 5 else data.finish)(b"".join(pieces), ends, counts)
    got = Counter()
    for buf, ends, counts in data.batches():
        for k in range(len(counts)):
            piece = buf[ends[k]:ends[k + 1]]
            assert piece not in got, "a piece came twice"
            got[piece] = int(counts[k])
    assert got == want and data.count == len(want) and data.total == sum(want.values())
    assert data.spilled and data.spills == 6
    data.close()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options", [{}, {"refine_loss": "likelihood", "refine_estimate": "em"}])
def test_spilling_the_pieces_does_not_change_the_model(tmp_path, options):
    """Pieces written to disk when their tables outgrow the budget (forced here with a tiny
    piece budget) give the same model byte for byte as pieces kept in memory, whatever the
    number of workers, and leave no file behind."""
    path = tmp_path / "zipf.txt"
    path.write_bytes(zipf_text(6000))     # 1.5 MB: two batches
    spill = tmp_path / "spill"
    spill.mkdir()
    models, spills = [], []
    for workers, budget in ((2, None), (1, 1 << 16), (3, 1 << 18)):
        t = Trainer(TrainerSpec(vocab_size=[500, 300], workers=workers, tmp=str(spill), progress=False,
                                **options))
        t.piece_budget = budget
        models.append([dump(tok) for tok in t.train([str(path)])])
        spills.append(t.stats.piece_spills)
        assert os.listdir(spill) == []
    assert models[0] == models[1] == models[2]
    assert spills[0] == 0 and spills[1] >= 2 and spills[2] >= 3, spills


def test_an_error_after_spilling_leaves_no_files(tmp_path, monkeypatch):
    import tokenmill.trainer as trainer_module

    def broken(*args, **kwargs):
        raise RuntimeError("refinement failed")

    monkeypatch.setattr(trainer_module, "refine", broken)
    t = Trainer(TrainerSpec(vocab_size=[400], tmp=str(tmp_path), progress=False))
    t.piece_budget = 1 << 14
    with pytest.raises(RuntimeError, match="refinement failed"):
        t.train(make_docs(400))
    assert t.stats.piece_spills > 0
    assert os.listdir(tmp_path) == []
