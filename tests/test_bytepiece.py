"""BytePiece compatibility: same pieces and ids as bytepiece 0.6.3 on NFC text."""
import base64
import gzip
import json
import zipfile

import pytest

from conftest import DATA
from tokenmill import ModelFileError, Tokenizer, reference


@pytest.fixture(scope="module")
def bp_tok(bytepiece_zip):
    return Tokenizer.from_bytepiece(bytepiece_zip)


def _golden():
    with gzip.open(DATA / "bytepiece_golden.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_golden_segmentations_match_bytepiece(bp_tok):
    records = _golden()
    assert len(records) > 1000
    mismatches = []
    for r in records:
        want = [base64.b64decode(p) for p in r["pieces"]]
        if bp_tok.tokenize(r["text"]) != want or bp_tok.encode(r["text"]) != r["ids"]:
            mismatches.append(r["text"][:60])
    assert not mismatches, f"{len(mismatches)} of {len(records)} differ, e.g. {mismatches[:3]}"


def test_golden_ids_batch(bp_tok):
    records = _golden()
    assert bp_tok.encode_batch([r["text"] for r in records], num_threads=2) == [r["ids"] for r in records]


def test_ids_and_specials(bp_tok):
    assert bp_tok.vocab_size == 79816
    assert bp_tok.special_tokens == {"<pad>": 0, "<bos>": 1, "<eos>": 2}
    assert bp_tok.id_to_piece(3) == b"\x00" and bp_tok.id_to_piece(258) == b"\xff"
    assert bp_tok.trainer_options is None and bp_tok.origin["imported_from"] == "bytepiece"


def test_reference_agrees_on_the_big_vocabulary(bp_tok):
    vocab = {p: (bp_tok.piece_to_id(p), s) for p, s in bp_tok.pieces}
    for r in _golden()[:300]:
        data = r["text"].encode()
        assert bp_tok.encode(data) == reference.viterbi(vocab, data)


def test_plain_model_file_and_zip_give_the_same_tokenizer(bytepiece_zip, bp_tok, tmp_path):
    with zipfile.ZipFile(bytepiece_zip) as z:
        name = z.namelist()[0]
        (tmp_path / name).write_bytes(z.read(name))
    plain = Tokenizer.from_bytepiece(tmp_path / name)
    assert plain.pieces == bp_tok.pieces


def test_non_nfc_text_still_round_trips(bp_tok):
    text = "e\u0301 cafe\u0301 \u212b"  # not NFC: BytePiece would change it, tokenmill does not
    assert bp_tok.decode(bp_tok.encode(text)) == text


def test_nfc_option_mimics_bytepiece(bytepiece_zip):
    import unicodedata

    tok = Tokenizer.from_bytepiece(bytepiece_zip, normalizer="nfc")
    text = "e\u0301 cafe\u0301"
    assert tok.decode(tok.encode(text)) == unicodedata.normalize("NFC", text)


def test_bad_bytepiece_files(tmp_path):
    bad = tmp_path / "x.model"
    bad.write_text('{"not base64!": [3, "x", 5]}')
    with pytest.raises(ModelFileError, match="not a BytePiece model"):
        Tokenizer.from_bytepiece(bad)
    bad.write_text("{")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Tokenizer.from_bytepiece(bad)
    # a few pieces only: the 256 single bytes are missing
    bad.write_text(json.dumps({base64.b64encode(b"ab").decode(): [3, "ab", 5]}))
    with pytest.raises(ModelFileError, match="single bytes"):
        Tokenizer.from_bytepiece(bad)
    with pytest.raises(ModelFileError, match="tokenmill model"):
        Tokenizer.from_bytepiece(DATA / "small-model.json")
