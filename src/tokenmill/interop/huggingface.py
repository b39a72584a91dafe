"""Hugging Face ``tokenizers`` / ``transformers`` interop: export a tokenmill model as a
``tokenizer.json`` folder, and import a byte-level Unigram ``tokenizer.json`` back.

The exported pipeline reproduces tokenmill's segmentation exactly:

* ``normalizer``: none, or NFC / NFKC when the model has one;
* ``pre_tokenizer``: ``Split(/\\n+/, merged_with_previous)`` (the newline-run cut, when the
  model's ``split_newlines`` is on), then ``ByteLevel(use_regex=False, add_prefix_space=False)``,
  which maps every byte to one character as GPT-2 does (``b" "`` -> ``"Ġ"``), so that pieces
  that are not valid UTF-8 (a lone ``b"\\x80"``) are still vocabulary strings;
* ``model``: ``Unigram`` over the mapped pieces with tokenmill's scores (float64), id for id.
  Its Viterbi keeps the first of equal-scoring paths, which is the longest last piece: the
  same tie rule as tokenmill's;
* ``decoder``: ``ByteLevel``, so that decoding maps characters back to bytes;
* special tokens: ``added_tokens`` with ``special: true`` at their ids.

One difference cannot be exported: Hugging Face always turns the spelling of an added token
in the text into that token, while tokenmill treats it as plain text unless
``allowed_special`` says otherwise. On text that contains no special token spelling (or with
``allowed_special="all"`` in tokenmill) the ids are identical.

Example::

    export_huggingface(Tokenizer.load("model.json"), "hf/")
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained("hf/")("hello")["input_ids"]   # == tok.encode("hello")
"""
from __future__ import annotations

import json
import math
import os

from .. import model_file
from ..errors import ModelFileError, TokenmillError

NEWLINE_SPLIT = {"type": "Split", "pattern": {"Regex": "\n+"}, "behavior": "MergedWithPrevious",
                 "invert": False}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
_NORMALIZERS = {"none": None, "nfc": {"type": "NFC"}, "nfkc": {"type": "NFKC"}}
# transformers' names for the usual special tokens
_ROLE_NAMES = {
    "bos_token": ("<bos>", "<s>", "<|startoftext|>", "[CLS]"),
    "eos_token": ("<eos>", "</s>", "<|endoftext|>", "[SEP]"),
    "pad_token": ("<pad>", "[PAD]", "<|pad|>"),
    "unk_token": ("<unk>", "[UNK]"),
    "mask_token": ("<mask>", "[MASK]"),
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character map: printable bytes stand for themselves, the others are
    shifted to U+0100 and up. ``bytes_to_unicode()[32] == "Ġ"``, ``[ord("a")] == "a"``."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    out = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + n)
            n += 1
    return out


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def encode_piece(piece: bytes) -> str:
    """``b"a b"`` -> ``"aĠb"``."""
    return "".join(BYTE_TO_CHAR[b] for b in piece)


def decode_piece(text: str) -> bytes:
    """``"aĠb"`` -> ``b"a b"``; a character outside the map raises KeyError."""
    return bytes(CHAR_TO_BYTE[c] for c in text)


def serde_exact(x: float) -> str:
    """A JSON number that the ``tokenizers`` library parses to exactly ``x``.

    Its JSON parser (serde_json without ``float_roundtrip``) computes ``M as f64 / 10**k``,
    which is off by one ulp for about 5% of 17-digit decimals; a 1-ulp change of a score can
    flip the Viterbi choice between paths whose sums are equal up to rounding (e.g. ``" " +
    "    "`` vs ``"    " + " "``). So we look for an integer ``M`` that is exactly a double
    and a ``k <= 22`` (10**k exact too) with ``M / 10**k == x``: a single, correctly rounded
    division. Found for about 99.9% of doubles; otherwise Python's shortest repr is used.

    >>> serde_exact(-14.574465456301233)   # (14574465456301233 is not a double: odd, > 2**53)
    '-14574465456301234e-15'
    >>> float(serde_exact(-14.574465456301233)) == -14.574465456301233
    True
    """
    if x == 0 or not math.isfinite(x):
        return repr(float(x))
    ax = abs(x)
    sign = "-" if x < 0 else ""
    for k in range(23):
        p = 10.0 ** k
        c = ax * p
        if c >= 2.0 ** 64:
            break
        lo = hi = float(round(c))
        candidates = [lo]
        for _ in range(8):
            lo, hi = math.nextafter(lo, 0), math.nextafter(hi, math.inf)
            candidates += [lo, hi]
        for m in candidates:
            if 0 < m < 2.0 ** 64 and m == int(m) and m / p == ax:
                return f"{sign}{int(m)}e-{k}" if k else f"{sign}{int(m)}.0"
    return repr(float(x))


def tokenizer_json_text(tok) -> str:
    """``tokenizer.json`` as text, with every score written so that ``tokenizers`` reads it exactly."""
    doc = tokenizer_json(tok)
    vocab = doc["model"]["vocab"]
    doc["model"]["vocab"] = "@VOCAB@"
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    rows = ",\n".join(f"  [{json.dumps(p, ensure_ascii=False)}, {serde_exact(s)}]" for p, s in vocab)
    return text.replace('"@VOCAB@"', "[\n" + rows + "\n ]", 1)


def tokenizer_json(tok) -> dict:
    """The ``tokenizer.json`` document for ``tok`` (a :class:`tokenmill.Tokenizer`)."""
    specials = tok.special_tokens
    pieces = tok.pieces
    vocab: list = [None] * tok.vocab_size
    lowest = min((s for _, s in pieces), default=0.0)
    for content, i in specials.items():
        vocab[i] = [content, lowest - 100.0]   # never chosen: added tokens are cut out first
    piece_ids = [i for i in range(tok.vocab_size) if vocab[i] is None]
    seen = {v[0]: i for i, v in enumerate(vocab) if v is not None}
    for i, (piece, score) in zip(piece_ids, pieces):
        text = encode_piece(piece)
        if text in seen:
            raise TokenmillError(f"cannot export to Hugging Face: the special token {text!r} (id "
                                 f"{seen[text]}) is also the byte-level spelling of piece {i}")
        seen[text] = i
        vocab[i] = [text, score]
    form = tok.normalizer.form
    pre = [BYTE_LEVEL]
    if tok.normalizer.split_newlines:
        pre = [NEWLINE_SPLIT, BYTE_LEVEL]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for content, i in sorted(specials.items(), key=lambda kv: kv[1])
        ],
        "normalizer": _NORMALIZERS[form],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "Unigram", "unk_id": None, "vocab": vocab, "byte_fallback": False},
    }


def _special_roles(specials: dict) -> dict:
    roles = {}
    for role, names in _ROLE_NAMES.items():
        for name in names:
            if name in specials:
                roles[role] = name
                break
    return roles


def export_huggingface(tok, folder) -> list[str]:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``
    into ``folder`` (created if needed); each file appears only when complete. Returns the paths.
    """
    from .. import __version__
    from ..corpus.io import AtomicOutputs

    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise TokenmillError(f"{folder}: exists and is not a folder (Hugging Face export writes a folder)")
    os.makedirs(folder, exist_ok=True)
    roles = _special_roles(tok.special_tokens)
    others = [s for s in sorted(tok.special_tokens, key=tok.special_tokens.get) if s not in roles.values()]
    special_map = dict(roles)
    if others:
        special_map["additional_special_tokens"] = others
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": 1 << 60,
        **special_map,
        "added_tokens_decoder": {
            str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True}
            for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
        },
        "tokenmill": {"exported_by": f"tokenmill {__version__}", "origin": tok.origin},
    }
    files = {
        "tokenizer.json": tokenizer_json_text(tok),
        "tokenizer_config.json": json.dumps(config, ensure_ascii=False, indent=1),
        "special_tokens_map.json": json.dumps(special_map, ensure_ascii=False, indent=1),
    }
    paths = []
    with AtomicOutputs() as outs:
        for name, text in files.items():
            path = os.path.join(folder, name)
            outs.open(path).write((text + "\n").encode("utf-8"))
            paths.append(path)
    return paths


def _is_byte_level(pre: dict | None) -> tuple[bool, bool]:
    """(is the pre-tokenizer one tokenmill reproduces exactly, does it cut newline runs)."""
    if pre is None:
        return False, False
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    split = False
    if steps and steps[0].get("type") == "Split":
        s = steps[0]
        if (s.get("pattern") != {"Regex": "\n+"} or s.get("behavior") != "MergedWithPrevious"
                or s.get("invert")):
            return False, False
        split = True
        steps = steps[1:]
    if len(steps) != 1:
        return False, False
    b = steps[0]
    ok = (b.get("type") == "ByteLevel" and b.get("use_regex") is False and not b.get("add_prefix_space"))
    return ok, split


def read_tokenizer_json(path) -> model_file.ModelData:
    """Import a Hugging Face byte-level Unigram ``tokenizer.json`` (such as tokenmill exports)
    as a tokenmill model, refusing anything tokenmill would not segment identically.

    ``path`` is the file or the folder holding it.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise ModelFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(path, f"not a tokenizer.json ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise ModelFileError(path, "not a Hugging Face tokenizer.json (no \"model\" object)")
    model = doc["model"]
    if model.get("type") != "Unigram":
        raise ModelFileError(path, f"a {model.get('type')} model; only Unigram models convert exactly")
    ok, split = _is_byte_level(doc.get("pre_tokenizer"))
    if not ok:
        raise ModelFileError(path, "the pre-tokenizer is not ByteLevel(use_regex=false, add_prefix_space="
                                   "false), optionally after Split(/\\n+/, merged_with_previous); such a "
                                   "tokenizer does not convert exactly to a byte-level model")
    normalizer = doc.get("normalizer")
    forms = {None: "none", "NFC": "nfc", "NFKC": "nfkc"}
    kind = normalizer.get("type") if isinstance(normalizer, dict) else None
    if kind not in forms:
        raise ModelFileError(path, f"normalizer {kind} has no tokenmill equivalent (none, NFC, NFKC)")
    if doc.get("post_processor") not in (None, {}):
        raise ModelFileError(path, "has a post-processor (it would add tokens tokenmill does not add)")
    added = {t["id"]: t for t in doc.get("added_tokens") or []}
    specials = {}
    for i, t in added.items():
        if not t.get("special"):
            raise ModelFileError(path, f"added token {t['content']!r} is not special: Hugging Face matches "
                                       "it in every text, which a tokenmill piece cannot reproduce")
        specials[t["content"]] = i
    vocab = model.get("vocab") or []
    pieces = []
    for i, entry in enumerate(vocab):
        if i in added:
            continue
        text, score = entry
        try:
            piece = decode_piece(text)
        except KeyError:
            raise ModelFileError(path, f"vocab[{i}] {text!r} is not a byte-level string") from None
        pieces.append((piece, float(score)))
    for i in added:
        if i >= len(vocab):
            raise ModelFileError(path, f"added token id {i} is outside the vocabulary; not convertible")
    data = model_file.ModelData(
        pieces=pieces, special_tokens=specials,
        normalizer={"form": forms[kind], "split_newlines": split},
        trainer=None, origin={"imported_from": "huggingface", "file": os.path.basename(path)},
    )
    try:
        model_file.check(data)
    except ValueError as exc:
        raise ModelFileError(path, f"not convertible: {exc}") from None
    return data


__all__ = ["export_huggingface", "read_tokenizer_json", "tokenizer_json", "bytes_to_unicode"]
