"""encode_batch equals a loop of encode, for any thread count."""
from hypothesis import given, settings, strategies as st
import pytest

THREADS = [1, 2, 8]


@pytest.mark.parametrize("threads", THREADS)
def test_batch_equals_loop(small_tok, sample_lines, threads):
    lines = sample_lines[:6000]  # large enough to be split into many blocks
    assert small_tok.encode_batch(lines, num_threads=threads) == [small_tok.encode(x) for x in lines]


@pytest.mark.parametrize("threads", THREADS)
def test_batch_of_str_equals_loop(small_tok, sample_lines, threads):
    texts = [x.decode("utf-8") for x in sample_lines[:3000]]
    assert small_tok.encode_batch(texts, num_threads=threads) == [small_tok.encode(t) for t in texts]


@pytest.mark.parametrize("threads", THREADS)
def test_sampled_batch_equals_loop_with_seed_plus_index(small_tok, sample_lines, threads):
    lines = sample_lines[:3000]
    batch = small_tok.encode_batch(lines, num_threads=threads, alpha=0.3, seed=11)
    assert batch == [small_tok.encode(x, alpha=0.3, seed=11 + i) for i, x in enumerate(lines)]
    assert batch != small_tok.encode_batch(lines, alpha=0.3, seed=12)


def test_batch_with_special_tokens(small_tok):
    texts = ["a<eos>b", "<bos>x", "plain <eos>"]
    got = small_tok.encode_batch(texts, num_threads=2, allowed_special={"<eos>", "<bos>"})
    assert got == [small_tok.encode(t, allowed_special={"<eos>", "<bos>"}) for t in texts]
    assert got[1][0] == 1


def test_threads_run_in_parallel_without_the_gil(small_tok, sample_lines):
    """While one thread encodes a long text, another thread keeps running Python code."""
    import threading
    import time

    big = b"\n".join(sample_lines) * 3
    ticks = 0
    done = threading.Event()

    def spin():
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    start = time.perf_counter()
    small_tok.encode(big)
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    # With the GIL held for the whole encode the spinner would get ~one 5 ms switch slot.
    assert elapsed > 0.02 and ticks > 1000


class _Str(str):
    pass


@pytest.mark.parametrize("threads", THREADS)
def test_batch_of_every_kind_of_text_equals_loop(small_tok, threads):
    """str of every internal width (ASCII, Latin-1, BMP, astral, lone surrogates), bytes,
    bytearray, memoryview and a str subclass, mixed: the core converts str itself."""
    kinds = ["plain ascii", "café ÿ", "汉字 and 中文", "emoji 😀 𝄞 x", "lone \ud800 \udfff end", "",
             b"raw \xff\xfe bytes", bytearray(b"array \x00"), memoryview(b"view \x80"), _Str("sub 汉")]
    texts = kinds * 700   # many blocks
    expected = [small_tok.encode(t) for t in texts]
    assert small_tok.encode_batch(texts, num_threads=threads) == expected
    assert small_tok.encode_batch(tuple(texts), num_threads=threads) == expected
    assert small_tok.decode_bytes(expected[4]) == "lone \ud800 \udfff end".encode("utf-8", "surrogatepass")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF)), max_size=40))
def test_batch_of_arbitrary_str_round_trips(small_tok, texts):
    tok = small_tok
    for threads in (1, 2):
        ids = tok.encode_batch(texts * 50, num_threads=threads)
        assert [tok.decode_bytes(x) for x in ids] == [t.encode("utf-8", "surrogatepass") for t in texts * 50]


def test_batch_rejects_other_types(small_tok):
    with pytest.raises(TypeError):
        small_tok.encode_batch(["ok", 3], num_threads=2)
    with pytest.raises(TypeError):
        small_tok.encode_batch([None], num_threads=1)


def test_batches_of_changing_sizes_reuse_buffers_safely(small_tok, sample_lines):
    """The id buffer of one batch is kept for the next: batches that grow, shrink and grow
    again, in one or several threads, still equal the loop."""
    expected = [small_tok.encode(x) for x in sample_lines[:4000]]
    for n, threads in [(4000, 2), (10, 1), (3000, 2), (4000, 1), (1, 2), (4000, 3)]:
        assert small_tok.encode_batch(sample_lines[:n], num_threads=threads) == expected[:n]
