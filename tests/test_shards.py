"""encode-corpus and TokenShards: round trips, resumption after a kill, worker independence."""
import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tokenmill import TokenmillError
from tokenmill.corpus.shards import TokenShards, encode_corpus

DATA = Path(__file__).parent / "data"
MODEL = DATA / "small-model.json"


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory, sample_lines):
    """The package's text sample as a plain file, plus awkward documents (CR, NUL, invalid UTF-8,
    empty lines, a long line)."""
    path = tmp_path_factory.mktemp("in") / "sample.txt"
    extra = [b"", b"a\r", b"\x00\xff\xfe bytes", b"x" * 300_000, b"", "caf\u00e9 \U0001f600".encode()]
    path.write_bytes(b"\n".join(sample_lines[:6000] + extra + sample_lines[6000:9000]) + b"\n")
    return path


def _docs(path):
    return path.read_bytes().split(b"\n")[:-1]


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_round_trip_and_plain_numpy(tmp_path, small_tok, sample_file):
    out = tmp_path / "out"
    result = encode_corpus([sample_file], small_tok, out, shard_tokens=50_000, workers=2, progress=False)
    docs = _docs(sample_file)
    shards = TokenShards(out)
    assert len(shards) == shards.num_documents == result.documents == len(docs)
    assert shards.num_shards == result.shards > 3
    assert shards.dtype == np.dtype("<u2")
    for i, doc in enumerate(docs):
        assert small_tok.decode_bytes(shards[i].tolist()) == doc
    assert shards.num_tokens == sum(len(d) for d in shards) == result.tokens
    # ids equal the tokenizer's, and the files are readable with plain numpy
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] == small_tok.vocab_size
    first = manifest["shards"][0]
    ids = np.memmap(out / "shard-00000.bin", dtype="<u2", mode="r")
    idx = np.memmap(out / "shard-00000.idx", dtype="<u8", mode="r")
    assert len(idx) == first["documents"] + 1 and idx[-1] == len(ids) == first["tokens"] >= 50_000
    for k in (0, 1, first["documents"] - 1):
        assert ids[idx[k]:idx[k + 1]].tolist() == small_tok.encode(docs[k])
    # each shard but the last closes on the document that brings it to shard_tokens
    for s in manifest["shards"][:-1]:
        ends = np.memmap(out / (s["name"] + ".idx"), dtype="<u8", mode="r")
        assert ends[-1] >= 50_000 > ends[-2]
    assert not [p for p in os.listdir(out) if p.startswith(".")]


def test_workers_do_not_change_output_and_rerun_is_a_no_op(tmp_path, small_tok, sample_file):
    a, b = tmp_path / "a", tmp_path / "b"
    opts = dict(shard_tokens=40_000, bos=True, eos=True, alpha=0.3, seed=7, progress=False)
    encode_corpus([sample_file], small_tok, a, workers=1, **opts)
    encode_corpus([sample_file], MODEL, b, workers=2, **opts)
    assert _files(a) == _files(b)
    before = _files(a)
    again = encode_corpus([sample_file], small_tok, a, workers=2, **opts)
    assert again.bytes == 0 and _files(a) == before
    (a / "shard-00002.bin").unlink()      # a lost shard is made again, and those after it
    (a / "shard-00004.idx").write_bytes(b"")
    again = encode_corpus([sample_file], small_tok, a, workers=2, **opts)
    assert again.resumed_documents > 0 and _files(a) == before


def test_bos_eos_and_alpha_follow_the_seed_rule(tmp_path, small_tok, sample_file):
    out = tmp_path / "o"
    encode_corpus([sample_file], small_tok, out, bos=True, eos=True, alpha=0.2, seed=100, progress=False,
                  shard_tokens=30_000)
    shards = TokenShards(out)
    docs = _docs(sample_file)
    bos, eos = small_tok.piece_to_id("<bos>"), small_tok.piece_to_id("<eos>")
    for i in list(range(0, len(docs), 251)) + [len(docs) - 1]:
        row = shards[i].tolist()
        assert row[0] == bos and row[-1] == eos
        assert row[1:-1] == small_tok.encode(docs[i], alpha=0.2, seed=100 + i)
        assert small_tok.decode_bytes(row, skip_special=True) == docs[i]


def test_jsonl_field(tmp_path, small_tok, sample_lines):
    texts = [line.decode("utf-8", "replace") for line in sample_lines[:500]]
    src = tmp_path / "in.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        for k, t in enumerate(texts):
            f.write(json.dumps({"id": k, "text": t}) + "\n")
    out = tmp_path / "o"
    encode_corpus([src], small_tok, out, field="text", progress=False)
    shards = TokenShards(out)
    assert [small_tok.decode(d.tolist()) for d in shards] == texts


def test_refuses_a_different_model_inputs_or_options(tmp_path, small_tok, sample_file):
    out = tmp_path / "o"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(TokenmillError, match="bad.jsonl:2: no field 'text'"):
        encode_corpus([bad], small_tok, out, field="text", progress=False)
    # a failed run that completed no shard does not hold the folder
    (out / "shard-00007.bin").write_bytes(b"stale")
    encode_corpus([sample_file], small_tok, out, progress=False)
    assert sorted(os.listdir(out)) == ["manifest.json", "shard-00000.bin", "shard-00000.idx"]
    other = tmp_path / "other.txt"
    other.write_bytes(b"hello\n")
    with pytest.raises(TokenmillError, match="different inputs"):
        encode_corpus([other], small_tok, out, progress=False)
    with pytest.raises(TokenmillError, match="different options"):
        encode_corpus([sample_file], small_tok, out, eos=True, progress=False)
    from tokenmill import Tokenizer
    changed = Tokenizer.from_pieces([(p, s - 1.0) for p, s in small_tok.pieces],
                                    special_tokens=small_tok.special_tokens)
    with pytest.raises(TokenmillError, match="different model sha256") as e:
        encode_corpus([sample_file], changed, out, progress=False)
    assert "manifest.json" in str(e.value) and "\n" not in str(e.value)


def test_reader_errors_and_batches(tmp_path, small_tok, sample_file):
    with pytest.raises(TokenmillError, match="no manifest.json"):
        TokenShards(tmp_path)
    out = tmp_path / "o"
    encode_corpus([sample_file], small_tok, out, shard_tokens=20_000, eos=True, progress=False)
    shards = TokenShards(out)
    a = list(shards.batches(batch_size=4, seq_len=64, seed=3, steps=5))
    b = list(shards.batches(batch_size=4, seq_len=64, seed=3, steps=5))
    assert all(x.shape == (4, 65) and x.dtype == np.int64 for x in a)
    assert all((x == y).all() for x, y in zip(a, b))
    assert not all((x == y).all() for x, y in zip(a, shards.batches(4, 64, seed=4, steps=5)))
    # every window is a contiguous run of some shard's tokens
    stream = [shards.shard(k)[0] for k in range(shards.num_shards)]
    for row in a[0]:
        assert any(_contains(s, row) for s in stream)
    with pytest.raises(IndexError):
        shards[len(shards)]
    (out / "shard-00001.bin").write_bytes(b"\x00\x00")
    with pytest.raises(TokenmillError, match="shard-00001.bin"):
        TokenShards(out)


def _contains(haystack, needle):
    starts = np.flatnonzero(haystack[: len(haystack) - len(needle) + 1] == needle[0])
    return any((haystack[s:s + len(needle)] == needle).all() for s in starts)


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from tokenmill.corpus import shards
    mode, after = sys.argv[4], int(sys.argv[5])
    shards._BATCH_BYTES = 1 << 14   # many small batches (the batch size never changes the output)
    calls = [0]
    if mode == "between":        # right after a shard and its manifest entry are on disk
        original = shards._ShardWriter.close
        def close(self):
            original(self)
            calls[0] += 1
            if calls[0] == after:
                os.kill(os.getpid(), signal.SIGKILL)
        shards._ShardWriter.close = close
    else:                        # in the middle of a shard, after part of it was written
        original = shards._ShardWriter.add
        def add(self, ids, ends):
            original(self, ids, ends)
            calls[0] += 1
            if calls[0] >= after and self.outs is not None and self.tokens:
                self.bin.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        shards._ShardWriter.add = add
    shards.encode_corpus([sys.argv[1]], sys.argv[2], sys.argv[3], shard_tokens=40_000, eos=True,
                         workers=2, progress=False)
""")


@pytest.mark.parametrize("mode,after", [("between", 2), ("inside", 7)])
def test_resume_after_kill_gives_the_same_bytes(tmp_path, sample_file, mode, after):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    encode_corpus([sample_file], MODEL, whole, shard_tokens=40_000, eos=True, workers=1, progress=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(sample_file), str(MODEL), str(resumed), mode,
                           str(after)], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert not manifest["complete"] and 0 < len(manifest["shards"]) < len(_files(whole)) // 2
    names = os.listdir(resumed)
    if mode == "inside":   # the half shard exists only under a temporary name
        assert any(n.startswith(".tokenmill-tmp-") for n in names)
        assert f"shard-{len(manifest['shards']):05d}.bin" not in names
    with pytest.raises(TokenmillError, match="incomplete"):
        TokenShards(resumed)
    result = encode_corpus([sample_file], MODEL, resumed, shard_tokens=40_000, eos=True, workers=2,
                           progress=False)
    assert result.resumed_documents == sum(s["documents"] for s in manifest["shards"]) > 0
    assert _files(resumed) == _files(whole)   # litter of the killed run is cleaned up too


def test_cli_encode_corpus(tmp_path, sample_file):
    from tokenmill.cli import main

    out = tmp_path / "o"
    assert main(["encode-corpus", str(sample_file), "-m", str(MODEL), "-o", str(out), "--eos",
                 "--shard-tokens", "100000", "--workers", "2", "--no-progress"]) == 0
    assert TokenShards(out).num_documents == len(_docs(sample_file))
    assert main(["encode-corpus", str(sample_file), "-m", str(MODEL), "-o", str(out), "--no-progress"]) == 2
    assert main(["encode-corpus", str(sample_file), "-m", str(MODEL), "-o", str(tmp_path / "p"),
                 "--bos", "--bos-token", "<nope>", "--no-progress"]) == 2
