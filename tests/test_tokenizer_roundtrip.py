"""Byte-exact round trips on arbitrary input (Hypothesis), and the str/bytes conventions."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_bytes_round_trip(small_tok, data):
    ids = small_tok.encode(data)
    assert small_tok.decode_bytes(ids) == data
    assert all(0 <= i < small_tok.vocab_size for i in ids)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_text_round_trip(small_tok, text):
    ids = small_tok.encode(text)
    data = text.encode("utf-8", "surrogatepass")
    assert small_tok.decode_bytes(ids) == data
    # lone surrogates come back through surrogatepass; valid text through the default
    assert small_tok.decode(ids, errors="surrogatepass") == text
    if "\ud800" > max(text, default="") or not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert small_tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_numpy_and_tokenize_agree(small_tok, data):
    ids = small_tok.encode(data)
    arr = small_tok.encode_to_numpy(data)
    assert arr.dtype == np.uint32
    assert arr.tolist() == ids
    assert b"".join(small_tok.tokenize(data)) == data


def test_str_and_bytes_give_same_ids(small_tok):
    text = "法律 law\n\n\tcode();\r\n"
    assert small_tok.encode(text) == small_tok.encode(text.encode()) == small_tok.encode(bytearray(text.encode()))


def test_lone_surrogate_is_kept_as_its_three_bytes(small_tok):
    ids = small_tok.encode("a\udc80b")
    assert small_tok.decode_bytes(ids) == b"a\xed\xb2\x80b"
    assert small_tok.decode(ids, errors="surrogatepass") == "a\udc80b"


def test_invalid_utf8_decodes_with_replacement_not_dropped(small_tok):
    ids = small_tok.encode(b"ok\xff\xfe!")
    assert small_tok.decode(ids) == "ok\ufffd\ufffd!"
    assert small_tok.decode(ids, errors="backslashreplace") == "ok\\xff\\xfe!"
    import pytest
    with pytest.raises(UnicodeDecodeError):
        small_tok.decode(ids, errors="strict")


def test_empty_input(small_tok):
    assert small_tok.encode("") == []
    assert small_tok.decode([]) == ""
    assert small_tok.encode_batch([]) == []


def test_rejects_non_text(small_tok):
    import pytest
    with pytest.raises(TypeError):
        small_tok.encode(123)


def test_bad_ids_are_rejected_with_a_clear_error(small_tok):
    import pytest
    for bad in ([small_tok.vocab_size], [-1], [0, 5, 99999999]):
        with pytest.raises(ValueError, match="out of range"):
            small_tok.decode(bad)
