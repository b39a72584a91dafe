"""Work and memory are linear in the input: a long single line costs what short lines cost.

Measured by counting the Viterbi's trie transitions and its scratch size, not by timing.
"""


def test_work_per_byte_is_the_same_for_one_long_line(small_tok, sample_lines):
    seg = small_tok._seg
    lines = [x for x in sample_lines[:3000] if x]
    short = sum(seg.count_work(x)["steps"] for x in lines)
    short_bytes = sum(map(len, lines))
    one_line = b" ".join(lines)  # ~250 kB with no newline
    long = seg.count_work(one_line)
    assert len(one_line) > 200_000
    per_byte_short = short / short_bytes
    per_byte_long = long["steps"] / len(one_line)
    assert 0.8 < per_byte_long / per_byte_short < 1.25
    # bounded by the longest piece, whatever the input
    assert long["steps"] <= len(one_line) * (seg.max_piece_length + 1)


def test_work_and_memory_grow_linearly(small_tok, sample_lines):
    seg = small_tok._seg
    unit = b" ".join(x for x in sample_lines[:500] if x)
    one = seg.count_work(unit)
    eight = seg.count_work(unit * 8)
    assert eight["steps"] == 8 * one["steps"] or abs(eight["steps"] / one["steps"] - 8) < 0.01
    # scratch space (the Viterbi arrays) is proportional to the longest chunk
    assert eight["scratch_positions"] <= 2 * (8 * len(unit) + 1)
    assert small_tok.decode_bytes(small_tok.encode(unit * 8)) == unit * 8
