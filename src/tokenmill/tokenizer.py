"""The byte-level unigram tokenizer: encode and decode any bytes exactly.

Example::

    >>> from tokenmill import Tokenizer
    >>> tok = Tokenizer.from_pieces([(bytes([b]), -8.0) for b in range(256)] + [(b"ab", -1.0)],
    ...                             special_tokens={"<eos>": 257})
    >>> tok.encode("abc")
    [256, 99]
    >>> tok.decode([256, 99, 257])
    'abc<eos>'
    >>> tok.encode("<eos>") == tok.encode(b"<eos>")    # plain text unless allowed
    True
    >>> tok.encode("x<eos>", allowed_special={"<eos>"})
    [120, 257]
"""
from __future__ import annotations

import codecs
import gc
import itertools
import os
import re
import unicodedata
import threading
from typing import Iterable, Sequence

from . import model_file
from ._core import ByteTable, ParallelEncode, Segmenter, mix_seed
from .errors import TokenmillError
from .spec import NormalizerSpec

_BATCH_BLOCK_BYTES = 1 << 18  # a thread's unit of work in encode_batch


def _seed_state(seed: int) -> int:
    """The sampler's 64-bit start state for a user seed (any int)."""
    return mix_seed(seed & 0xFFFFFFFFFFFFFFFF, 0)


class Tokenizer:
    """A vocabulary of byte pieces with log-probability scores, plus special tokens.

    All 256 single bytes are pieces, so every input encodes and there is no ``<unk>``.
    Build one with :meth:`load`, :meth:`from_bytepiece`, :meth:`from_pieces` or the trainer.
    """

    def __init__(self, model: model_file.ModelData, *, seed: int | None = None):
        try:
            model_file.check(model)
        except ValueError as exc:
            raise TokenmillError(f"invalid model: {exc}") from None
        self._model = model
        self.normalizer = NormalizerSpec(**model.normalizer) if model.normalizer else NormalizerSpec()
        self._normal_form = None if self.normalizer.form == "none" else self.normalizer.form.upper()
        size = model.vocab_size
        self._special_to_id = dict(model.special_tokens)
        self._id_to_special = {i: s for s, i in self._special_to_id.items()}
        piece_ids = [i for i in range(size) if i not in self._id_to_special]
        self._id_to_bytes: list[bytes] = [b""] * size
        for s, i in self._special_to_id.items():
            self._id_to_bytes[i] = s.encode("utf-8")
        self._piece_to_id: dict[bytes, int] = {}
        for i, (piece, _) in zip(piece_ids, model.pieces):
            self._id_to_bytes[i] = piece
            self._piece_to_id[piece] = i
        self._bytes = ByteTable(self._id_to_bytes)
        self._bytes_no_special = ByteTable([b"" if i in self._id_to_special else b
                                            for i, b in enumerate(self._id_to_bytes)])
        self._seg = Segmenter([p for p, _ in model.pieces], [s for _, s in model.pieces], piece_ids,
                              split_newlines=self.normalizer.split_newlines)
        self._special_regex_cache: dict = {}
        self.set_seed(seed)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pieces(cls, pieces: Sequence[tuple[bytes, float]], special_tokens: dict | None = None,
                    normalizer: NormalizerSpec | dict | None = None, trainer: dict | None = None,
                    origin: dict | None = None, seed: int | None = None) -> "Tokenizer":
        """A tokenizer from ``(piece bytes, log-probability)`` pairs in id order.

        ``special_tokens`` maps each special token's text to its fixed id; the pieces take
        the remaining ids in order.
        """
        if isinstance(normalizer, NormalizerSpec):
            normalizer = normalizer.to_dict()
        from . import __version__

        data = model_file.ModelData(
            pieces=[(bytes(p), float(s)) for p, s in pieces],
            special_tokens=dict(special_tokens or {}),
            normalizer=dict(normalizer or NormalizerSpec().to_dict()),
            trainer=trainer,
            origin=dict(origin or {"created_by": f"tokenmill {__version__}"}),
        )
        return cls(data, seed=seed)

    @classmethod
    def load(cls, path, *, seed: int | None = None) -> "Tokenizer":
        """Load a tokenmill model file (JSON). Raises ``ModelFileError`` naming the file."""
        return cls(model_file.read(path), seed=seed)

    @classmethod
    def from_bytepiece(cls, path, *, normalizer: str = "none", seed: int | None = None) -> "Tokenizer":
        """Import a BytePiece model (its ``.model`` JSON or the ``.zip`` holding it).

        Ids and pieces are BytePiece's: 0, 1, 2 are ``<pad>``, ``<bos>``, ``<eos>``; a piece's
        score is log(count / total count), as BytePiece computes it. BytePiece applies NFC to
        its input; tokenmill does not unless ``normalizer="nfc"``, so on NFC text the pieces
        are identical to BytePiece's and any other text still round-trips byte for byte.
        """
        from .interop.bytepiece import read_model

        return cls(read_model(path, normalizer=normalizer), seed=seed)

    def to_json(self) -> str:
        """The model file's text (what :meth:`save` writes)."""
        return model_file.dumps(self._model)

    def save(self, path) -> None:
        """Write the model file (atomically: a temporary name, renamed when complete)."""
        model_file.write(self._model, path)

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self._id_to_bytes)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"<Tokenizer vocab_size={self.vocab_size} specials={len(self._special_to_id)} "
                f"normalizer={self.normalizer.form}>")

    @property
    def special_tokens(self) -> dict[str, int]:
        """``{text: id}`` of the special tokens."""
        return dict(self._special_to_id)

    @property
    def trainer_options(self) -> dict | None:
        """The options the model was trained with (``None`` for imported models)."""
        return self._model.trainer

    @property
    def origin(self) -> dict:
        return dict(self._model.origin)

    @property
    def pieces(self) -> list[tuple[bytes, float]]:
        """``(piece bytes, score)`` of every non-special token, in id order."""
        return list(self._model.pieces)

    def id_to_piece(self, i: int) -> bytes | str:
        """The bytes of piece ``i``, or the text of special token ``i``."""
        self._check_id(i)
        return self._id_to_special.get(i, self._id_to_bytes[i])

    def piece_to_id(self, piece: bytes | str) -> int:
        """Id of a piece (bytes) or of a special token (str); KeyError if absent."""
        if isinstance(piece, str):
            if piece in self._special_to_id:
                return self._special_to_id[piece]
            piece = piece.encode("utf-8")
        return self._piece_to_id[piece]

    def is_special(self, i: int) -> bool:
        return i in self._id_to_special

    def score(self, i: int) -> float:
        """Log-probability of piece ``i`` (special tokens have none)."""
        self._check_id(i)
        if i in self._id_to_special:
            raise KeyError(f"id {i} is the special token {self._id_to_special[i]!r}, which has no score")
        return self._seg.score(i)

    def _check_id(self, i) -> None:
        if not isinstance(i, int) or not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i!r} is out of range for a vocabulary of {self.vocab_size}")

    # ------------------------------------------------------------------ randomness

    def set_seed(self, seed: int | None) -> None:
        """Seed this instance's sampling stream (``None``: from the OS). Calls that pass
        ``seed=`` do not use or advance it."""
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        self._instance_seed = seed & 0xFFFFFFFFFFFFFFFF
        self._draws = itertools.count()  # next() is atomic under the GIL: thread-safe

    def _call_seed(self, seed: int | None) -> int:
        if seed is not None:
            return seed
        return mix_seed(self._instance_seed, next(self._draws))

    # ------------------------------------------------------------------ encode

    def _to_bytes(self, text) -> bytes:
        if isinstance(text, str):
            if self._normal_form is not None:
                text = unicodedata.normalize(self._normal_form, text)
            # Lone surrogates are kept as their 3-byte (CESU-style) encoding: decode_bytes
            # returns those bytes, decode(errors="surrogatepass") the original str.
            return text.encode("utf-8", "surrogatepass")
        if isinstance(text, (bytes, bytearray, memoryview)):
            data = bytes(text)
            if self._normal_form is not None:
                try:
                    return unicodedata.normalize(self._normal_form, data.decode("utf-8")).encode("utf-8")
                except UnicodeDecodeError:
                    return data  # not UTF-8: encoded as given
            return data
        raise TypeError(f"expected str or bytes, got {type(text).__name__}")

    def _special_regex(self, allowed_special):
        if not allowed_special:
            return None
        if allowed_special == "all":
            names = tuple(self._special_to_id)
        else:
            if isinstance(allowed_special, str):
                raise TypeError('allowed_special must be "all" or a set of special token strings')
            names = tuple(allowed_special)
            unknown = [s for s in names if s not in self._special_to_id]
            if unknown:
                raise ValueError(f"not special tokens of this model: {', '.join(map(repr, unknown))}")
        if not names:
            return None
        key = frozenset(names)
        regex = self._special_regex_cache.get(key)
        if regex is None:
            alternatives = sorted((s.encode("utf-8") for s in names), key=len, reverse=True)
            regex = re.compile(b"|".join(re.escape(a) for a in alternatives))
            self._special_regex_cache[key] = regex
        return regex

    def _encode_bytes(self, data: bytes, alpha, state: int, regex) -> list[int]:
        if regex is None:
            return self._seg.encode(data, alpha, state)
        out: list[int] = []
        start = 0
        k = 0
        for m in regex.finditer(data):
            if m.start() > start:
                out += self._seg.encode(data[start:m.start()], alpha, mix_seed(state, k))
                k += 1
            out.append(self._special_to_id[m.group().decode("utf-8")])
            start = m.end()
        if start < len(data):
            out += self._seg.encode(data[start:], alpha, mix_seed(state, k))
        return out

    @staticmethod
    def _check_alpha(alpha) -> float:
        if alpha is None:
            return -1.0
        alpha = float(alpha)
        if not alpha >= 0 or alpha == float("inf"):
            raise ValueError(f"alpha must be a finite number >= 0 (got {alpha})")
        return alpha

    def encode(self, text: str | bytes, alpha: float | None = None, seed: int | None = None,
               allowed_special: Iterable[str] | str = ()) -> list[int]:
        """Token ids of ``text`` (str or bytes).

        - ``alpha=None``: the maximum-probability segmentation (Viterbi).
        - ``alpha>=0``: a random segmentation drawn with probability proportional to
          P(segmentation)**alpha (subword regularization); ``seed`` makes it reproducible,
          otherwise the instance's stream is used (see :meth:`set_seed`).
        - ``allowed_special``: special tokens whose spelling in ``text`` becomes the special
          id (``"all"`` or a set of strings). By default their spelling is plain text, so
          user text cannot forge control tokens.
        """
        alpha = self._check_alpha(alpha)
        state = _seed_state(self._call_seed(seed)) if alpha >= 0 else 0
        return self._encode_bytes(self._to_bytes(text), alpha, state, self._special_regex(allowed_special))

    def tokenize(self, text: str | bytes, alpha: float | None = None, seed: int | None = None,
                 allowed_special: Iterable[str] | str = ()) -> list[bytes]:
        """The pieces (bytes) of ``text``; special tokens come back as their UTF-8 text."""
        table = self._id_to_bytes
        return [table[i] for i in self.encode(text, alpha, seed, allowed_special)]

    def encode_to_numpy(self, text: str | bytes, alpha: float | None = None, seed: int | None = None,
                        allowed_special: Iterable[str] | str = ()):
        """Like :meth:`encode`, as a ``numpy.uint32`` array (no Python list in between)."""
        import numpy as np

        alpha = self._check_alpha(alpha)
        regex = self._special_regex(allowed_special)
        data = self._to_bytes(text)
        state = _seed_state(self._call_seed(seed)) if alpha >= 0 else 0
        if regex is None:
            return np.frombuffer(self._seg.encode_array(data, alpha, state), dtype=np.uint32)
        return np.asarray(self._encode_bytes(data, alpha, state, regex), dtype=np.uint32)

    def encode_batch(self, texts: Sequence[str | bytes], num_threads: int | None = None,
                     alpha: float | None = None, seed: int | None = None,
                     allowed_special: Iterable[str] | str = ()) -> list[list[int]]:
        """Encode many texts on ``num_threads`` threads (default: all cores).

        The result equals ``[encode(t, alpha, seed + i, allowed_special) for i, t in
        enumerate(texts)]`` for any thread count (with ``seed=None`` and ``alpha`` set, a seed
        is drawn once from the instance stream).
        """
        alpha = self._check_alpha(alpha)
        regex = self._special_regex(allowed_special)
        if num_threads is None:
            num_threads = os.cpu_count() or 1
        if num_threads < 1:
            raise ValueError("num_threads must be >= 1")
        base = self._call_seed(seed) if alpha >= 0 else 0
        if regex is not None:
            return [self._encode_bytes(self._to_bytes(t), alpha, _seed_state(base + i) if alpha >= 0 else 0, regex)
                    for i, t in enumerate(texts)]
        if self._normal_form is None:
            # str and bytes go to the compiled core as they are (a str is turned into UTF-8 by
            # the thread that encodes it); a private copy of the list keeps them alive
            data = list(texts)
        else:
            data = [self._to_bytes(t) for t in texts]
        seeds = [_seed_state(base + i) for i in range(len(data))] if alpha >= 0 else None
        # The result is one list per text: thousands of new containers, which would trigger
        # the cyclic garbage collector again and again (full collections walk every live
        # object). Lists of ints cannot form cycles, so it is paused while they are built.
        paused = gc.isenabled()
        gc.disable()
        try:
            if num_threads == 1:
                return self._seg.encode_many(data, alpha, seeds, self._to_bytes).tolists()
            job = ParallelEncode(self._seg, data, num_threads, alpha, seeds, _BATCH_BLOCK_BYTES,
                                 convert=self._to_bytes)
            if job.blocks < 2:
                return self._seg.encode_many(data, alpha, seeds, self._to_bytes).tolists()
            # this thread encodes too (see ParallelEncode.collect): num_threads - 1 helpers
            helpers = min(num_threads, job.blocks) - 1
            workers = [threading.Thread(target=job.work, daemon=True) for _ in range(helpers)]
            for w in workers:
                w.start()
            try:
                return job.collect()
            finally:
                for w in workers:
                    w.join()
        finally:
            if paused:
                gc.enable()

    # ------------------------------------------------------------------ decode

    def decode_bytes(self, ids: Iterable[int], skip_special: bool = False) -> bytes:
        """The exact bytes of ``ids``; special tokens give their UTF-8 text unless skipped."""
        if skip_special and self._id_to_special:
            return self._bytes_no_special.join(ids)
        return self._bytes.join(ids)

    def decode(self, ids: Iterable[int], errors: str = "replace", skip_special: bool = False) -> str:
        """Text of ``ids``. Bytes that are not valid UTF-8 follow Python's ``errors=``
        convention (default ``"replace"``: U+FFFD); nothing is dropped silently."""
        return self.decode_bytes(ids, skip_special).decode("utf-8", errors)

    def decode_batch(self, batch: Iterable[Iterable[int]], errors: str = "replace",
                     skip_special: bool = False) -> list[str]:
        return [self.decode(ids, errors, skip_special) for ids in batch]

    def stream_decoder(self, errors: str = "replace", skip_special: bool = False) -> "StreamDecoder":
        """A decoder for ids that arrive one at a time (e.g. from a generating model)."""
        return StreamDecoder(self, errors, skip_special)


class StreamDecoder:
    """Turns ids into text as they arrive, holding back an incomplete UTF-8 sequence.

    >>> # dec = tok.stream_decoder(); dec.feed([i1]); dec.feed([i2, i3]); dec.flush()
    """

    def __init__(self, tokenizer: Tokenizer, errors: str = "replace", skip_special: bool = False):
        self._tok = tokenizer
        self._skip = skip_special
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors)

    def feed(self, ids: int | Iterable[int]) -> str:
        """Text completed by ``ids`` (may be empty while a character is incomplete)."""
        if isinstance(ids, int):
            ids = [ids]
        return self._decoder.decode(self._tok.decode_bytes(ids, self._skip))

    def flush(self) -> str:
        """End of stream: whatever is held back, decoded with the ``errors`` policy."""
        return self._decoder.decode(b"", final=True)
