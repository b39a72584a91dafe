"""`tokenmill discover`: planted words are recovered; the compiled, parallel version equals the
plain-Python reference; bad inputs give one-line errors and no output."""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from tokenmill import discover_words
from tokenmill.reference_count import discover_reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANTED = ["葡萄美酒", "夜光杯", "琵琶", "马上催", "醉卧沙场", "古来征战"]


def _synthetic(seed: int, lines: int = 1500) -> str:
    """Random characters with the planted words inserted often, and punctuation between."""
    rng = random.Random(seed)
    filler = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
    out = []
    for _ in range(lines):
        parts = []
        for _ in range(rng.randrange(3, 9)):
            if rng.random() < 0.5:
                parts.append(rng.choice(PLANTED))
            else:
                parts.append("".join(rng.choice(filler) for _ in range(rng.randrange(1, 3))))
            if rng.random() < 0.2:
                parts.append(rng.choice("，。 ab1"))
        out.append("".join(parts))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("disc") / "corpus.txt"
    path.write_text(_synthetic(1), encoding="utf-8")
    return str(path)


def test_recovers_planted_words(corpus):
    result = discover_words([corpus], min_count=20, progress=False)
    words = [w for w, _, _ in result.words]
    top = set(words[:len(PLANTED) + 10])
    for w in PLANTED:
        assert w in top, (w, words[:20])
    # a random pair of filler characters is not a word
    assert all(len(w) == 1 or w in PLANTED or w.isascii() for w in words[:len(PLANTED) + 5])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_equals_reference(corpus, workers):
    text = open(corpus, encoding="utf-8").read()
    want = discover_reference(text, order=4, min_count=20)
    got = discover_words([corpus], min_count=20, workers=workers, progress=False).words
    assert [(w, c) for w, c, _ in got] == [(w, c) for w, c, _ in want]
    assert [round(x, 9) for _, _, x in got] == [round(x, 9) for _, _, x in want]


def test_equals_reference_on_real_text(sample_lines):
    text = b"\n".join(sample_lines).decode("utf-8", "replace")
    want = discover_reference(text, order=3, min_count=5, min_pmi=(0, 1, 2))
    got = discover_words_text(text, order=3, min_count=5, min_pmi=[0, 1, 2])
    assert [(w, c) for w, c, _ in got] == [(w, c) for w, c, _ in want]


def discover_words_text(text, **options):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.txt")
        with open(p, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        return discover_words([p], progress=False, **options).words


def test_exclude_dict_and_tsv_output(corpus, tmp_path):
    dic = tmp_path / "dict.txt"
    dic.write_text("琵琶 100 n\n夜光杯 5\n", encoding="utf-8")
    out = tmp_path / "words.tsv"
    r = subprocess.run([sys.executable, "-m", "tokenmill", "discover", corpus, "-o", str(out),
                        "--min-count", "20", "--exclude-dict", str(dic), "--top", "30"],
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    words = [w for w, _, _ in rows]
    assert "琵琶" not in words and "夜光杯" not in words and "葡萄美酒" in words
    assert len(rows) <= 30
    counts = [int(c) for _, c, _ in rows]
    assert counts == sorted(counts, reverse=True)
    assert all(float(x) >= 0 or len(w) == 1 for w, _, x in rows)


def _env():
    return dict(os.environ)     # the tokenmill the tests import (installed, or PYTHONPATH=src)


@pytest.mark.parametrize("extra, message", [
    (["--exclude-dict", "NOPE"], "NOPE"),
    (["--min-pmi", "x,1"], "--min-pmi"),
    (["--order", "0"], "--order must be at least 1"),
])
def test_bad_input(corpus, tmp_path, extra, message):
    extra = [str(tmp_path / "nope.txt") if a == "NOPE" else a for a in extra]
    message = "nope.txt" if message == "NOPE" else message
    out = tmp_path / "w.tsv"
    r = subprocess.run([sys.executable, "-m", "tokenmill", "discover", corpus, "-o", str(out), *extra],
                       capture_output=True, text=True, env=_env())
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert message in err[-1], err
    assert not out.exists()
