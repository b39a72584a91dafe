"""Model files: save/load round trip and one-line errors for bad files."""
import json

import pytest

from conftest import DATA
from tokenmill import ModelFileError, Tokenizer

MODEL = DATA / "small-model.json"


def test_save_load_round_trip(small_tok, tmp_path, sample_lines):
    out = tmp_path / "m.json"
    small_tok.save(out)
    again = Tokenizer.load(out)
    assert again.pieces == small_tok.pieces
    assert again.special_tokens == small_tok.special_tokens
    assert again.encode_batch(sample_lines[:500]) == small_tok.encode_batch(sample_lines[:500])
    assert out.read_text() == MODEL.read_text()  # byte for byte
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp litter


def test_compressed_model_file(small_tok, tmp_path):
    out = tmp_path / "m.json.gz"
    small_tok.save(out)
    assert Tokenizer.load(out).pieces == small_tok.pieces


def test_model_is_self_describing():
    doc = json.loads(MODEL.read_text())
    assert doc["format"] == "tokenmill-model" and doc["version"] == 1
    assert {"normalizer", "special_tokens", "trainer", "pieces", "vocab_size"} <= set(doc)


def _write(tmp_path, text, name="bad.json"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _one_line_error(path, match):
    with pytest.raises(ModelFileError, match=match) as info:
        Tokenizer.load(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_truncated_file(tmp_path):
    text = MODEL.read_text()
    _one_line_error(_write(tmp_path, text[: len(text) // 2]), "not valid JSON.*truncated")


def test_empty_file(tmp_path):
    _one_line_error(_write(tmp_path, ""), "empty")


def test_binary_garbage(tmp_path):
    _one_line_error(_write(tmp_path, bytes(range(256)) * 4), "not UTF-8")


def test_foreign_json(tmp_path):
    _one_line_error(_write(tmp_path, '{"model": {"type": "BPE"}}'), "not a tokenmill model")
    _one_line_error(_write(tmp_path, "[1, 2, 3]"), "not a tokenmill model")


def test_newer_version(tmp_path):
    doc = json.loads(MODEL.read_text())
    doc["version"] = 99
    _one_line_error(_write(tmp_path, json.dumps(doc)), "newer than this tokenmill")


def _drop_byte_piece(d):
    d["pieces"].pop(5)


def _drop_byte_piece_and_a_special(d):
    d["pieces"].pop(5)
    d["special_tokens"].pop()
    d["vocab_size"] -= 2


def _duplicate_piece(d):
    d["pieces"].append(d["pieces"][300])
    d["vocab_size"] += 1


def _special_id_clash(d):
    d["special_tokens"].append({"id": 0, "content": "<x>"})
    d["vocab_size"] += 1


@pytest.mark.parametrize("edit, match", [
    (_drop_byte_piece, "vocab_size says 2004 but the file has 2003"),
    (_drop_byte_piece_and_a_special, "single bytes are missing"),
    (lambda d: d["pieces"][300].__setitem__(1, "x"), "not a finite number"),
    (lambda d: d["pieces"][300].__setitem__(0, [300]), "bad piece"),
    (_duplicate_piece, "listed twice"),
    (_special_id_clash, "share an id"),
    (lambda d: d.pop("pieces"), "missing field"),
])
def test_corrupt_content(tmp_path, edit, match):
    doc = json.loads(MODEL.read_text())
    edit(doc)
    _one_line_error(_write(tmp_path, json.dumps(doc)), match)


def test_bytepiece_model_given_to_load(tmp_path, bytepiece_zip):
    _one_line_error(bytepiece_zip, "zip archive")
    import zipfile
    with zipfile.ZipFile(bytepiece_zip) as z:
        raw = z.read(z.namelist()[0])
    _one_line_error(_write(tmp_path, raw, "bp.model"), "BytePiece model")


def test_missing_file(tmp_path):
    _one_line_error(tmp_path / "nope.json", "no such model file")


def test_save_is_atomic_on_failure(small_tok, tmp_path, monkeypatch):
    """Interrupted half way through writing: the old file stays, no temp file is left."""
    import contextlib

    import tokenmill.corpus.io as tio

    real = tio.atomic_output

    @contextlib.contextmanager
    def failing(path, *args, **kwargs):
        with real(path, *args, **kwargs) as f:
            class HalfWriter:
                def write(self, data):
                    f.write(data[: len(data) // 2])
                    raise KeyboardInterrupt
            yield HalfWriter()

    monkeypatch.setattr(tio, "atomic_output", failing)
    out = tmp_path / "m.json"
    out.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        small_tok.save(out)
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
