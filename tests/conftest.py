import gzip
import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BYTEPIECE_ZIP = SHARED / "models" / "bytepiece.eu.plus.80k.zip"


@pytest.fixture(scope="session")
def small_tok():
    from tokenmill import Tokenizer

    return Tokenizer.load(DATA / "small-model.json")


@pytest.fixture(scope="session")
def sample_lines():
    """Lines of the text sample the package ships (Chinese law articles, Python code)."""
    import tokenmill

    path = Path(tokenmill.__file__).parent / "data" / "sample.txt.gz"
    with gzip.open(path, "rb") as f:
        return f.read().split(b"\n")[:-1]


@pytest.fixture(scope="session")
def bytepiece_zip():
    if not BYTEPIECE_ZIP.exists():
        pytest.skip(f"the released BytePiece model is not here ({BYTEPIECE_ZIP}); it lives in ../shared")
    return BYTEPIECE_ZIP


def vocab_of(tok):
    """piece bytes -> (id, score): the reference implementation's view of a tokenizer."""
    return {p: (tok.piece_to_id(p), s) for p, s in tok.pieces}
