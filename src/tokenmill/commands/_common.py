"""Small helpers shared by the command modules."""
from __future__ import annotations

import argparse


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", required=True, metavar="MODEL",
                        help="a tokenmill model file (.json); a BytePiece model (.model or .zip) "
                             "is imported on the fly")


def load_model(path):
    """A tokenmill model, or a BytePiece one recognised by its extension."""
    from ..tokenizer import Tokenizer

    if str(path).endswith((".zip", ".model")):
        return Tokenizer.from_bytepiece(path)
    return Tokenizer.load(path)


def parse_allowed_special(value):
    if value is None:
        return ()
    if value == "all":
        return "all"
    return {v for v in value.split(",") if v}


def batched(iterable, n):
    batch = []
    for item in iterable:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
