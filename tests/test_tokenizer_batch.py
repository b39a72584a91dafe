"""encode_batch equals a loop of encode, for any thread count."""
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
