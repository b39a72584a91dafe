"""SentencePiece interop: export a tokenmill model as a unigram ``.model`` file, and import a
SentencePiece unigram model whose behaviour tokenmill reproduces exactly.

Export (models whose multi-byte pieces are all valid UTF-8, i.e. trained with
``ensure_unicode``, and without a normalizer):

* multi-byte pieces and single ASCII bytes become ``NORMAL`` pieces with tokenmill's scores
  (SentencePiece stores scores as float32: they are rounded);
* the single bytes 0x80..0xFF (and NUL) become ``BYTE`` pieces ``<0x80>``.. at the same ids, and
  ``byte_fallback`` is on: a character that no piece spells is split into its bytes;
* special tokens become ``CONTROL`` pieces at their ids (never produced from text, as in
  tokenmill by default);
* after tokenmill's ids come the ``BYTE`` pieces ``<0x01>``..``<0x7F>`` (SentencePiece wants all
  256) and ``<unk>`` (it wants one), which SentencePiece never outputs when the ASCII
  characters are pieces;
* the normalizer is ``identity`` with no dummy prefix, no whitespace escaping and no
  whitespace removal, so the text is segmented as given.

What SentencePiece does differently (measured in the README, "Hugging Face and SentencePiece interop"): it does not cut after runs
of newlines, it sums scores in float32, and a character that no piece spells costs a fixed
"unknown" penalty (lowest score - 10) instead of the sum of its bytes' scores.

Import accepts the models this export writes and those trained like them
(``--model_type=unigram --byte_fallback --normalization_rule_name=identity
--add_dummy_prefix=false --remove_extra_whitespaces=false``; the whitespace escape U+2581 that
SentencePiece's trainer always adds is read as a space): the byte pieces get scores that make
tokenmill's byte path cost what SentencePiece's unknown-character path costs. What remains
different: SentencePiece's float32 sums (ties, see above), and a literal U+2581 in the text,
which an escaping SentencePiece model treats as a space.
"""
from __future__ import annotations

import os

from .. import model_file
from ..errors import ModelFileError, TokenmillError

UNK_PENALTY = 10.0   # SentencePiece's kUnkPenalty


def _pb2():
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise TokenmillError("SentencePiece interop needs the sentencepiece and protobuf packages: "
                             "pip install sentencepiece protobuf") from None
    return sentencepiece_model_pb2


def _byte_name(b: int) -> str:
    return f"<0x{b:02X}>"


def model_proto(tok):
    """The SentencePiece ``ModelProto`` for ``tok`` (raises TokenmillError if not exportable)."""
    pb = _pb2()
    T = pb.ModelProto.SentencePiece
    if tok.normalizer.form != "none":
        raise TokenmillError(f"cannot export to SentencePiece: the model normalizes text "
                             f"({tok.normalizer.form}); SentencePiece's normalizers are not the same")
    proto = pb.ModelProto()
    specials = tok.special_tokens
    by_id = {i: s for s, i in specials.items()}
    piece_ids = [i for i in range(tok.vocab_size) if i not in by_id]
    entries: list = [None] * tok.vocab_size
    for content, i in specials.items():
        # "<0x41>": a byte piece that an import kept as a placeholder id (SentencePiece never
        # outputs it because "A" is a piece); it goes back as a BYTE piece
        kind = T.UNKNOWN if content == "<unk>" else T.BYTE if _byte_value(content) is not None else T.CONTROL
        entries[i] = (content, 0.0, kind)
    for i, (piece, score) in zip(piece_ids, tok.pieces):
        if len(piece) == 1:
            b = piece[0]
            # NUL cannot be a NORMAL piece (SentencePiece treats it as unused): a BYTE piece
            entries[i] = (chr(b), score, T.NORMAL) if 0 < b < 0x80 else (_byte_name(b), 0.0, T.BYTE)
            continue
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenmillError(f"cannot export to SentencePiece: piece {i} {piece!r} is not valid UTF-8 "
                                 "(train with ensure_unicode, the default)") from None
        entries[i] = (text, score, T.NORMAL)
    for b in range(1, 0x80):
        if _byte_name(b) not in specials:
            entries.append((_byte_name(b), 0.0, T.BYTE))
    if "<unk>" not in specials:
        entries.append(("<unk>", 0.0, T.UNKNOWN))
    seen = {}
    for i, (text, score, kind) in enumerate(entries):
        if text in seen:
            raise TokenmillError(f"cannot export to SentencePiece: ids {seen[text]} and {i} are both "
                                 f"spelled {text!r}")
        seen[text] = i
        p = proto.pieces.add()
        p.piece = text
        p.score = score
        p.type = kind
    ts = proto.trainer_spec
    ts.model_type = pb.TrainerSpec.UNIGRAM
    ts.vocab_size = len(entries)
    ts.byte_fallback = True
    ts.unk_id = seen["<unk>"]
    ts.unk_piece = "<unk>"
    for field, names in (("bos", ("<bos>", "<s>")), ("eos", ("<eos>", "</s>")), ("pad", ("<pad>",))):
        name = next((n for n in names if n in specials), None)
        setattr(ts, f"{field}_id", specials[name] if name else -1)
        if name:
            setattr(ts, f"{field}_piece", name)
    ns = proto.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = False
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = False
    ns.precompiled_charsmap = b""
    return proto


def export_sentencepiece(tok, path) -> str:
    """Write ``tok`` as a SentencePiece ``.model`` file (atomically). Returns the path."""
    from ..corpus.io import atomic_output

    data = model_proto(tok).SerializeToString()
    with atomic_output(path) as f:
        f.write(data)
    return os.fspath(path)


def read_sentencepiece(path) -> model_file.ModelData:
    """Import a SentencePiece unigram ``.model`` as a tokenmill model, or raise
    :class:`ModelFileError` naming what prevents an exact conversion."""
    pb = _pb2()
    T = pb.ModelProto.SentencePiece
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ModelFileError(path, "no such model file") from None
    except OSError as exc:
        raise ModelFileError(path, f"cannot read: {exc.strerror}") from None
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(raw)
    except Exception:
        raise ModelFileError(path, "not a SentencePiece model (protobuf parse failed)") from None
    if not proto.pieces:
        raise ModelFileError(path, "not a SentencePiece model (no pieces)")
    ts, ns = proto.trainer_spec, proto.normalizer_spec
    problems = []
    if ts.model_type != pb.TrainerSpec.UNIGRAM:
        problems.append(f"model type {pb.TrainerSpec.ModelType.Name(ts.model_type)} (only UNIGRAM converts)")
    if not ts.byte_fallback:
        problems.append("byte_fallback is off (unknown characters become <unk>)")
    if ns.precompiled_charsmap or ns.name not in ("identity", ""):
        problems.append(f"normalizer {ns.name!r} (only identity converts)")
    if ns.add_dummy_prefix:
        problems.append("add_dummy_prefix is on")
    if ns.remove_extra_whitespaces:
        problems.append("remove_extra_whitespaces is on")
    if ts.treat_whitespace_as_suffix:
        problems.append("treat_whitespace_as_suffix is on")
    if any(p.type == T.USER_DEFINED for p in proto.pieces):
        problems.append("it has user-defined pieces (always matched in the text)")
    if problems:
        raise ModelFileError(path, "cannot convert exactly to a tokenmill model: " + "; ".join(problems))

    # SentencePiece's cost of a character that no piece spells: min NORMAL score - 10, whatever
    # its length. tokenmill's byte path costs the sum of the bytes' scores, so a lead byte (or
    # an ASCII byte) costs the penalty and a continuation byte 0.
    normal = [p.score for p in proto.pieces if p.type == T.NORMAL]
    unk_score = (min(normal) if normal else 0.0) - UNK_PENALTY
    def spelled(p):
        return (p.piece.replace("\u2581", " ") if ns.escape_whitespaces else p.piece).encode("utf-8")

    single_normal = {spelled(p) for p in proto.pieces if p.type == T.NORMAL and len(spelled(p)) == 1}
    n = len(proto.pieces)
    # trailing pieces SentencePiece never outputs (its required extras) are dropped
    end = n
    while end > 0:
        p = proto.pieces[end - 1]
        if p.type == T.UNKNOWN or (p.type == T.BYTE and _byte_value(p.piece) is not None
                                   and bytes([_byte_value(p.piece)]) in single_normal):
            end -= 1
            continue
        break
    # With escape_whitespaces (SentencePiece's trainer always sets it) a space in the text is
    # segmented as U+2581: the pieces are the same with U+2581 read as a space. (Only a literal
    # U+2581 in the text is then segmented differently: SentencePiece treats it as a space.)
    escape = ns.escape_whitespaces
    pieces, specials = [], {}
    for i in range(end):
        p = proto.pieces[i]
        if p.type == T.NORMAL:
            text = p.piece.replace("\u2581", " ") if escape else p.piece
            pieces.append((text.encode("utf-8"), float(p.score)))
        elif p.type == T.BYTE:
            b = _byte_value(p.piece)
            if b is None:
                raise ModelFileError(path, f"byte piece {p.piece!r} is not of the form <0xNN>")
            if bytes([b]) in single_normal:
                specials[p.piece] = i        # never output by SentencePiece: a placeholder id
            else:
                pieces.append((bytes([b]), 0.0 if 0x80 <= b < 0xC0 else unk_score))
        else:  # CONTROL, UNKNOWN, UNUSED: ids that text never produces
            specials[p.piece] = i
    data = model_file.ModelData(
        pieces=pieces, special_tokens=specials,
        normalizer={"form": "none", "split_newlines": False},
        trainer=None, origin={"imported_from": "sentencepiece", "file": os.path.basename(path)},
    )
    try:
        model_file.check(data)
    except ValueError as exc:
        raise ModelFileError(path, f"cannot convert: {exc}") from None
    return data


def _byte_value(text: str):
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        try:
            return int(text[3:5], 16)
        except ValueError:
            return None
    return None


__all__ = ["export_sentencepiece", "model_proto", "read_sentencepiece"]
