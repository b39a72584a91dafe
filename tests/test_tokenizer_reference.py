"""The compiled Viterbi equals the plain Python reference, and golden ids stay put."""
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DATA, vocab_of
from tokenmill import Tokenizer, reference


def test_equals_reference_on_thousands_of_corpus_lines(small_tok, sample_lines):
    vocab = vocab_of(small_tok)
    lines = sample_lines[::4][:3000]
    assert len(lines) >= 3000
    for line in lines:
        assert small_tok.encode(line) == reference.viterbi(vocab, line)


def test_equals_reference_on_whole_multiline_text(small_tok, sample_lines):
    vocab = vocab_of(small_tok)
    text = b"\n".join(sample_lines[:200]) + b"\n\n\n" + b"\n".join(sample_lines[-200:])
    assert small_tok.encode(text) == reference.viterbi(vocab, text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["第", "条", "的", "法律", " ", "\n", "def", "self", "_", "(", "a", "\t", "。", "\u00e9"]),
                max_size=40).map("".join))
def test_equals_reference_on_generated_text(small_tok, text):
    assert small_tok.encode(text) == reference.viterbi(vocab_of(small_tok), text.encode())


def _tie_model():
    # "ab"+"c" and "a"+"bc" score the same: the longest last piece must win ("a" + "bc").
    pieces = [(bytes([b]), -10.0) for b in range(256)] + [(b"ab", -2.0), (b"bc", -2.0)]
    return Tokenizer.from_pieces(pieces)


def test_ties_go_to_the_longest_last_piece():
    tok = _tie_model()
    assert tok.tokenize(b"abc") == [b"a", b"bc"]
    assert tok.encode(b"abc") == reference.viterbi(vocab_of(tok), b"abc")


def test_newline_runs_cut_the_text():
    pieces = [(bytes([b]), -10.0) for b in range(256)] + [(b"\nx", -1.0), (b"\n\n", -1.0)]
    cut = Tokenizer.from_pieces(pieces)
    assert cut.tokenize(b"a\nx") == [b"a", b"\n", b"x"]          # "\nx" would cross the cut
    assert cut.tokenize(b"a\n\n\nx") == [b"a", b"\n", b"\n\n", b"x"]  # tie: longest last piece
    whole = Tokenizer.from_pieces(pieces, normalizer={"form": "none", "split_newlines": False})
    assert whole.tokenize(b"a\nx") == [b"a", b"\nx"]


def _golden_texts():
    return [
        "第一条 为了保护民事主体的合法权益，调整民事关系，制定本法。",
        "    def __init__(self, name, *args, **kwargs):",
        "Hello, world! 123 456\n\nSecond paragraph\r\n",
        "混合 mixed 文本 with émojis 🚀 and tabs\tend",
        "",
        "\x00\x01 binary \xff",
    ]


def test_golden_ids(small_tok):
    golden = json.loads((DATA / "small-model.golden.json").read_text(encoding="utf-8"))
    texts = _golden_texts()
    assert [g["text"] for g in golden] == texts
    for g in golden:
        assert small_tok.encode(g["text"]) == g["ids"], g["text"]


if __name__ == "__main__":  # regenerate the golden file (after checking against the reference)
    tok = Tokenizer.load(DATA / "small-model.json")
    out = []
    for t in _golden_texts():
        ids = tok.encode(t)
        assert ids == reference.viterbi(vocab_of(tok), t.encode("utf-8", "surrogatepass"))
        out.append({"text": t, "ids": ids})
    lines = ",\n".join(json.dumps(g, ensure_ascii=False) for g in out)
    (DATA / "small-model.golden.json").write_text("[\n" + lines + "\n]\n", encoding="utf-8")
