"""Special tokens have fixed ids and are never produced from ordinary text."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

SPECIALS = ["<pad>", "<bos>", "<eos>", "<|endoftext|>"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(SPECIALS + ["a", "<", ">", "|", "text", " "]), max_size=20).map("".join))
def test_specials_are_plain_text_by_default(small_tok, text):
    ids = small_tok.encode(text)
    assert not any(small_tok.is_special(i) for i in ids)
    assert small_tok.decode(ids) == text


def test_allowed_specials_become_their_ids(small_tok):
    text = "<bos>hello<|endoftext|>world<eos>"
    ids = small_tok.encode(text, allowed_special="all")
    assert ids[0] == 1 and ids[-1] == 2 and 2003 in ids
    assert small_tok.decode(ids) == text
    assert small_tok.decode(ids, skip_special=True) == "helloworld"
    only_eos = small_tok.encode(text, allowed_special={"<eos>"})
    assert only_eos[-1] == 2 and 1 not in only_eos and 2003 not in only_eos


def test_special_ids_and_lookup(small_tok):
    assert small_tok.special_tokens == {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<|endoftext|>": 2003}
    assert small_tok.piece_to_id("<|endoftext|>") == 2003
    assert small_tok.id_to_piece(2003) == "<|endoftext|>"
    assert small_tok.id_to_piece(3) == b"\x00"
    with pytest.raises(ValueError):
        small_tok.encode("x", allowed_special={"<nope>"})


def test_longest_special_wins_when_they_overlap():
    from tokenmill import Tokenizer

    pieces = [(bytes([b]), -5.0) for b in range(256)]
    tok = Tokenizer.from_pieces(pieces, special_tokens={"<s>": 256, "<s>x": 257})
    assert tok.encode("<s>x<s>", allowed_special="all") == [257, 256]


def test_stream_decoder_holds_back_incomplete_utf8(small_tok):
    text = "法律🚀é"
    ids = small_tok.encode(text)
    pieces = [small_tok.id_to_piece(i) for i in ids]
    assert any(len(p) == 1 and p[0] >= 0x80 for p in pieces)  # characters are split across ids
    dec = small_tok.stream_decoder()
    out = []
    for i in ids:
        chunk = dec.feed(i)
        assert "\ufffd" not in chunk
        out.append(chunk)
    out.append(dec.flush())
    assert "".join(out) == text


def test_stream_decoder_flushes_a_truncated_character_with_replacement(small_tok):
    dec = small_tok.stream_decoder()
    assert dec.feed(small_tok.encode(b"ok\xe6\xb3")) == "ok"
    assert dec.flush() == "\ufffd"
