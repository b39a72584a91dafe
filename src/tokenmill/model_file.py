"""The tokenmill model file: versioned, self-describing JSON. Loading never executes code.

Layout (version 1)::

    {
      "format": "tokenmill-model",
      "version": 1,
      "type": "byte-unigram",
      "vocab_size": 8003,
      "normalizer": {"form": "none", "split_newlines": true},
      "special_tokens": [{"id": 0, "content": "<pad>"}, ...],
      "pieces": [["的", -6.02], [[128], -13.9], ...],
      "trainer": {...options the model was trained with...} or null,
      "origin": {"created_by": "tokenmill 0.1.0", ...}
    }

``pieces`` lists every non-special token in id order; the ids are those not taken by a special
token, ascending. A piece is a JSON string when its bytes are valid UTF-8, otherwise a list of
byte values (e.g. ``[128]`` for the single byte 0x80). Scores are natural-log probabilities.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field

from .errors import ModelFileError

FORMAT = "tokenmill-model"
VERSION = 1
MODEL_TYPE = "byte-unigram"


@dataclass
class ModelData:
    """What a model file holds, decoded: pieces as bytes, in id order."""

    pieces: list  # list[tuple[bytes, float]]
    special_tokens: dict = field(default_factory=dict)  # content -> id
    normalizer: dict = field(default_factory=dict)
    trainer: dict | None = None
    origin: dict = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return len(self.pieces) + len(self.special_tokens)


def piece_to_json(piece: bytes):
    """``b"ab"`` -> ``"ab"``; ``b"\\x80"`` -> ``[128]`` (not valid UTF-8)."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


def piece_from_json(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise ValueError(f"bad piece {value!r}")


def dumps(model: ModelData) -> str:
    specials = sorted(((i, s) for s, i in model.special_tokens.items()))
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "type": MODEL_TYPE,
        "vocab_size": model.vocab_size,
        "normalizer": model.normalizer,
        "special_tokens": [{"id": i, "content": s} for i, s in specials],
        "trainer": model.trainer,
        "origin": model.origin,
        "pieces": [[piece_to_json(p), s] for p, s in model.pieces],
    }
    # One top-level field, and one piece, per line: diffable and greppable, still plain JSON.
    fields = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in doc.items() if k != "pieces"]
    pieces = ",\n".join("  " + json.dumps(entry, ensure_ascii=False) for entry in doc["pieces"])
    return "{\n" + ",\n".join(fields) + ',\n "pieces": [\n' + pieces + "\n ]\n}\n"


def loads(text: str, path="<model>") -> ModelData:
    """Parse and validate; every problem is a :class:`ModelFileError` naming ``path``."""
    if not text.strip():
        raise ModelFileError(path, "empty file (truncated?)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(path, f"not valid JSON at line {exc.lineno} column {exc.colno} "
                                   f"({exc.msg}); the file is truncated or corrupt") from None
    if not isinstance(doc, dict):
        raise ModelFileError(path, "not a tokenmill model (the JSON is not an object)")
    if doc.get("format") != FORMAT:
        if doc and all(isinstance(v, list) and len(v) == 3 for v in list(doc.values())[:50]):
            raise ModelFileError(path, "this is a BytePiece model, not a tokenmill model; "
                                       "load it with Tokenizer.from_bytepiece()")
        raise ModelFileError(path, f'not a tokenmill model (no "format": "{FORMAT}" field)')
    version = doc.get("version")
    if not isinstance(version, int):
        raise ModelFileError(path, "model file has no integer \"version\"")
    if version > VERSION:
        raise ModelFileError(path, f"model format version {version} is newer than this tokenmill "
                                   f"reads ({VERSION}); upgrade tokenmill")
    if version < 1:
        raise ModelFileError(path, f"unknown model format version {version}")
    if doc.get("type") != MODEL_TYPE:
        raise ModelFileError(path, f"unsupported model type {doc.get('type')!r} (expected {MODEL_TYPE!r})")
    try:
        raw_pieces = doc["pieces"]
        if not isinstance(raw_pieces, list):
            raise ValueError('"pieces" is not a list')
        pieces = []
        for k, entry in enumerate(raw_pieces):
            if not (isinstance(entry, list) and len(entry) == 2):
                raise ValueError(f"pieces[{k}] is not a [piece, score] pair")
            piece = piece_from_json(entry[0])
            score = entry[1]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise ValueError(f"pieces[{k}] has a score that is not a finite number")
            if not piece:
                raise ValueError(f"pieces[{k}] is empty")
            pieces.append((piece, float(score)))
        specials = {}
        for k, entry in enumerate(doc.get("special_tokens") or []):
            if not (isinstance(entry, dict) and isinstance(entry.get("id"), int)
                    and isinstance(entry.get("content"), str) and entry["content"]):
                raise ValueError(f"special_tokens[{k}] needs an integer id and a non-empty content")
            if entry["content"] in specials:
                raise ValueError(f"special token {entry['content']!r} is listed twice")
            specials[entry["content"]] = entry["id"]
        normalizer = doc.get("normalizer") or {}
        if not isinstance(normalizer, dict):
            raise ValueError('"normalizer" is not an object')
        trainer = doc.get("trainer")
        if trainer is not None and not isinstance(trainer, dict):
            raise ValueError('"trainer" is not an object')
        origin = doc.get("origin") or {}
        model = ModelData(pieces, specials, normalizer, trainer, origin if isinstance(origin, dict) else {})
        if doc.get("vocab_size") != model.vocab_size:
            raise ValueError(f"vocab_size says {doc.get('vocab_size')} but the file has "
                             f"{model.vocab_size} tokens (truncated?)")
        check(model)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(path, f"corrupt model file: {what}") from None
    return model


def check(model: ModelData) -> None:
    """Structural rules every model obeys (raises ValueError)."""
    size = model.vocab_size
    for content, i in model.special_tokens.items():
        if not 0 <= i < size:
            raise ValueError(f"special token {content!r} has id {i}, outside 0..{size - 1}")
    if len(set(model.special_tokens.values())) != len(model.special_tokens):
        raise ValueError("two special tokens share an id")
    seen = set()
    singles = set()
    for piece, _ in model.pieces:
        if piece in seen:
            raise ValueError(f"piece {piece!r} is listed twice")
        seen.add(piece)
        if len(piece) == 1:
            singles.add(piece[0])
    if len(singles) != 256:
        missing = min(set(range(256)) - singles)
        raise ValueError(f"{256 - len(singles)} of the 256 single bytes are missing (first: 0x{missing:02x}); "
                         "every byte must be a piece")


def read(path) -> ModelData:
    from .corpus.io import compression_of, open_input

    path = os.fspath(path)
    try:
        if compression_of(path):
            with open_input(path) as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError:
        raise ModelFileError(path, "no such model file") from None
    except IsADirectoryError:
        raise ModelFileError(path, "is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot read: {exc.strerror}") from None
    if raw[:4] == b"PK\x03\x04":
        raise ModelFileError(path, "is a zip archive, not a tokenmill model "
                                   "(a zipped BytePiece model loads with Tokenizer.from_bytepiece())")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(path, f"not UTF-8 text (bad byte at offset {exc.start}); "
                                   "not a tokenmill model or corrupt") from None
    return loads(text, path)


def write(model: ModelData, path) -> None:
    """Write atomically: a temporary file in the same folder, renamed when complete.
    A ``.gz``/``.xz``/``.zst`` name compresses the file (and :func:`read` reads it)."""
    from .corpus.io import atomic_output

    text = dumps(model)
    with atomic_output(path) as f:
        f.write(text.encode("utf-8"))


def read_bytepiece(path) -> tuple[list, str]:
    """Read a BytePiece model (the ``.model`` JSON, or a ``.zip`` holding one).

    Returns ``[(piece bytes, id, count), ...]`` and the name of the member read.
    """
    import base64
    import binascii

    path = os.fspath(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith(".model")]
                if len(names) != 1:
                    raise ModelFileError(path, f"zip archive holds {len(names)} .model files, expected one")
                raw, member = z.read(names[0]), names[0]
        else:
            with open(path, "rb") as f:
                raw, member = f.read(), os.path.basename(path)
    except FileNotFoundError:
        raise ModelFileError(path, "no such model file") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFileError(path, f"cannot read: {exc}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"not a BytePiece model: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not doc:
        raise ModelFileError(path, "not a BytePiece model: expected a JSON object of pieces")
    if doc.get("format") == FORMAT:
        raise ModelFileError(path, "this is a tokenmill model; load it with Tokenizer.load()")
    items = []
    for key, value in doc.items():
        try:
            piece = base64.b64decode(key, validate=True)
            pid, count = value[0], value[-1]
            if not (isinstance(value, list) and len(value) == 3 and isinstance(pid, int)
                    and isinstance(count, (int, float)) and count > 0 and piece):
                raise ValueError
        except (binascii.Error, ValueError, TypeError, IndexError):
            raise ModelFileError(path, f"not a BytePiece model: bad entry {key!r}: {value!r}"[:200]) from None
        items.append((piece, pid, count))
    return items, member
