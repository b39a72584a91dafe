"""Subword regularization: draws follow P(segmentation)**alpha; seeds reproduce draws."""
from collections import Counter

import pytest
from scipy.stats import chisquare

from conftest import vocab_of
from tokenmill import Tokenizer, reference


def _lattice_tok():
    # "abcd" has many segmentations with distinct probabilities
    pieces = [(bytes([b]), -3.0) for b in range(256)]
    pieces += [(b"ab", -2.0), (b"bc", -2.5), (b"cd", -1.5), (b"abc", -3.5), (b"bcd", -2.2), (b"abcd", -4.0)]
    return Tokenizer.from_pieces(pieces)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_sampling_frequencies_match_p_to_the_alpha(alpha):
    tok = _lattice_tok()
    dist = reference.segmentation_distribution(vocab_of(tok), b"abcd", alpha)
    n = 20000
    counts = Counter(tuple(tok.encode(b"abcd", alpha=alpha, seed=s)) for s in range(n))
    assert set(counts) <= set(dist)
    keys = sorted(dist)
    observed = [counts.get(k, 0) for k in keys]
    expected = [dist[k] * n for k in keys]
    stat, p = chisquare(observed, expected)
    assert p > 1e-4, (alpha, observed, expected)


def test_chi_square_detects_a_wrong_distribution():
    """The check above can fail: samples at alpha=2 do not fit the alpha=0.5 distribution."""
    tok = _lattice_tok()
    dist = reference.segmentation_distribution(vocab_of(tok), b"abcd", 0.5)
    n = 20000
    counts = Counter(tuple(tok.encode(b"abcd", alpha=2.0, seed=s)) for s in range(n))
    keys = sorted(dist)
    _, p = chisquare([counts.get(k, 0) for k in keys], [dist[k] * n for k in keys])
    assert p < 1e-6


def test_same_seed_same_sample_and_seeds_differ(small_tok, sample_lines):
    text = b"\n".join(sample_lines[:50])
    a = small_tok.encode(text, alpha=0.2, seed=123)
    assert a == small_tok.encode(text, alpha=0.2, seed=123)
    assert a != small_tok.encode(text, alpha=0.2, seed=124)
    assert small_tok.decode_bytes(a) == text
    assert a != small_tok.encode(text)


def test_instance_seed_makes_the_stream_reproducible(small_tok):
    from tokenmill import Tokenizer
    from conftest import DATA

    one = Tokenizer.load(DATA / "small-model.json", seed=7)
    two = Tokenizer.load(DATA / "small-model.json", seed=7)
    text = "第一条 为了保护民事主体的合法权益 def f(x): return x"
    draws_one = [one.encode(text, alpha=0.1) for _ in range(20)]
    draws_two = [two.encode(text, alpha=0.1) for _ in range(20)]
    assert draws_one == draws_two
    assert len({tuple(d) for d in draws_one}) > 1  # the stream advances


def test_sampling_is_thread_safe(small_tok, sample_lines):
    from concurrent.futures import ThreadPoolExecutor

    lines = sample_lines[:400]
    want = [small_tok.encode(x, alpha=0.5, seed=i) for i, x in enumerate(lines)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda a: small_tok.encode(a[1], alpha=0.5, seed=a[0]), enumerate(lines)))
    assert got == want


def test_bad_alpha(small_tok):
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            small_tok.encode("x", alpha=bad)
