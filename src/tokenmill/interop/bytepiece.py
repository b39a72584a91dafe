"""Import BytePiece models (bojone/bytepiece): ``Tokenizer.from_bytepiece(path)``.

A BytePiece model is one JSON object ``{base64(piece): [id, text, count]}``; ids 0, 1, 2 are
BytePiece's ``<pad>``, ``<bos>``, ``<eos>`` and are not in the file. The score of a piece is
``log(count) - log(total count)``, computed in float64 exactly as BytePiece does, so that
Viterbi ties break the same way.
"""
from __future__ import annotations

import os

import numpy as np

from .. import model_file
from ..errors import ModelFileError
from ..spec import NormalizerSpec

BYTEPIECE_SPECIALS = {"<pad>": 0, "<bos>": 1, "<eos>": 2}


def read_model(path, normalizer: str = "none") -> model_file.ModelData:
    items, member = model_file.read_bytepiece(path)
    items.sort(key=lambda t: t[1])
    ids = [pid for _, pid, _ in items]
    expected = list(range(3, 3 + len(items)))
    if ids != expected:
        raise ModelFileError(path, "not a BytePiece model: piece ids are not 3, 4, 5, ... without gaps")
    counts = [c for _, _, c in items]
    # np.log of each count minus np.log of the total: the same float64 operations as BytePiece.
    log_total = np.log(sum(counts))
    scores = [float(np.log(c) - log_total) for c in counts]
    data = model_file.ModelData(
        pieces=[(p, s) for (p, _, _), s in zip(items, scores)],
        special_tokens=dict(BYTEPIECE_SPECIALS),
        normalizer=NormalizerSpec(form=normalizer, split_newlines=True).to_dict(),
        trainer=None,
        origin={"imported_from": "bytepiece", "file": os.path.basename(os.fspath(path)), "member": member},
    )
    try:
        model_file.check(data)
    except ValueError as exc:
        raise ModelFileError(path, f"not a usable BytePiece model: {exc}") from None
    return data
