"""Token shards: a corpus encoded once into flat arrays that a training loop memory-maps.

:func:`encode_corpus` turns documents (lines, or a field of JSONL records) into token ids,
encoded in parallel, and writes them into a folder::

    manifest.json          what was encoded, with what, and which shards are complete
    shard-00000.bin        token ids of the shard's documents, concatenated
                           (little-endian uint16 when the vocabulary has <= 65536 ids, else uint32)
    shard-00000.idx        little-endian uint64 token offsets, one more than the documents:
                           document k of the shard is bin[idx[k]:idx[k + 1]]
    shard-00001.bin ...

Plain numpy reads it::

    m = json.load(open("out/manifest.json"))
    ids = np.memmap("out/shard-00000.bin", dtype={"uint16": "<u2", "uint32": "<u4"}[m["dtype"]], mode="r")
    idx = np.memmap("out/shard-00000.idx", dtype="<u8", mode="r")
    first_document = ids[idx[0]:idx[1]]

or :class:`TokenShards` does it for you (documents, counts, random training windows).

A shard is written under a temporary name and renamed when complete; then the manifest, which
lists the completed shards, is replaced atomically. A rerun with the same model, inputs and
options continues after the last completed shard (the result is byte for byte the one an
uninterrupted run gives); a rerun with anything else is refused. Shard boundaries depend only
on the token counts (a shard closes after the document that brings it to ``shard_tokens``),
never on the worker count. With ``alpha``, document ``i`` (counted over all inputs from 0) is
segmented with seed ``seed + i``, i.e. exactly as ``tok.encode(doc, alpha=alpha, seed=seed + i)``.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import TokenmillError
from ..progress import Progress, format_count
from ..spec import Spec, check_engine, engine_option, option, ray_address_option
from ..errors import InputError
from .io import (AtomicOutputs, atomic_output, clean_litter, compression_of, expand_inputs,
                 input_size, iter_documents, open_input, write_all)

FORMAT = "tokenmill-shards"
VERSION = 1
MANIFEST = "manifest.json"
_BATCH_BYTES = 1 << 19     # text per encode_many call: the unit of parallel work
_FINGERPRINT_BYTES = 1 << 16
_SHARD_NAME = re.compile(r"^(shard-\d{5,})\.(?:bin|idx)$")


@dataclass
class EncodeCorpusSpec(Spec):
    """Options of ``tokenmill encode-corpus`` / :func:`encode_corpus`; stored in the manifest."""

    field: str | None = option(None, "inputs are JSONL: encode this string field of each record "
                                     "(default: each line is a document)", metavar="NAME")
    bos: bool = option(False, "put the special token --bos-token before every document")
    eos: bool = option(False, "put the special token --eos-token after every document")
    bos_token: str = option("<bos>", "the special token --bos adds (<s> is used if the model has no <bos>)",
                            metavar="TOKEN")
    eos_token: str = option("<eos>", "the special token --eos adds (</s> is used if the model has no <eos>)",
                            metavar="TOKEN")
    alpha: float | None = option(None, "subword regularization: sample each document's segmentation "
                                       "with probability proportional to P**ALPHA", metavar="A")
    seed: int = option(0, "with --alpha, document i (counted from 0 over all inputs) uses seed SEED + i, "
                          "whatever --workers is", metavar="S")
    shard_tokens: int = option(1 << 28, "a shard closes after the document that brings it to N tokens",
                               metavar="N")
    workers: int = option(0, "encoding threads (0 = all cores); never changes the output", metavar="W")
    engine: str = engine_option()
    ray_address: str | None = ray_address_option()
    progress: bool = option(True, "progress bar (tokens/s) on stderr when it is a terminal, and a summary")

    def validate(self):
        check_engine("encode-corpus", self)
        if self.alpha is not None and not (self.alpha >= 0 and self.alpha != float("inf")):
            raise TokenmillError(f"encode-corpus: --alpha must be a finite number >= 0 (got {self.alpha})")
        if self.shard_tokens < 1:
            raise TokenmillError("encode-corpus: --shard-tokens must be at least 1")
        if self.workers < 0:
            raise TokenmillError("encode-corpus: --workers must be >= 0")

    def identity(self) -> dict:
        """The options that determine the output (``workers`` and ``progress`` do not)."""
        d = self.to_dict()
        for name in ("workers", "progress", "engine", "ray_address"):
            del d[name]
        return d


@dataclass
class EncodeCorpusResult:
    """What :func:`encode_corpus` did (totals are for the whole folder)."""

    output: str
    documents: int
    tokens: int
    shards: int
    bytes: int              # document bytes encoded by this run
    resumed_documents: int  # documents found already done (0 for a fresh run)
    seconds: float
    tokens_encoded: int = 0  # tokens written by this run

    @property
    def tokens_per_second(self) -> float:
        """Tokens written by this run per second of it."""
        return self.tokens_encoded / max(self.seconds, 1e-9)


def dtype_for(vocab_size: int) -> str:
    """``'uint16'`` when every id fits in 16 bits, else ``'uint32'``."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def model_sha256(tok) -> str:
    """sha256 of the model's canonical file text (the same for a model and its saved copy)."""

    return hashlib.sha256(tok.to_json().encode("utf-8")).hexdigest()


def _fingerprint(path: str) -> dict:
    """Size plus a hash of the first and last 64 KiB: cheap, and catches a replaced file."""
    size = input_size(path)
    entry = {"path": path, "size": size}
    if path == "-" or size is None:
        return entry
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_FINGERPRINT_BYTES))
        if size > 2 * _FINGERPRINT_BYTES:
            f.seek(size - _FINGERPRINT_BYTES)
        h.update(f.read(_FINGERPRINT_BYTES))
    entry["sha256_head_tail"] = h.hexdigest()
    return entry


def _special_id(tok, wanted: str, fallback: str, what: str) -> int:
    specials = tok.special_tokens
    for name in (wanted, fallback):
        if name in specials:
            return specials[name]
    raise TokenmillError(f"encode-corpus: --{what} needs the special token {wanted!r}, which the model "
                         f"does not have (its special tokens: {', '.join(specials) or 'none'}); "
                         f"name another with --{what}-token")


class _TokenProgress(Progress):
    """The progress bar, with tokens/s."""

    def line(self, final: bool = False) -> str:
        text = super().line(final)
        rate = self.items / max(self.elapsed, 1e-9)
        return f"{text}  {format_count(rate)} tokens/s"


def _read_manifest(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TokenmillError(f"{path}: cannot read the shard manifest ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TokenmillError(f"{path}: not a tokenmill shard manifest (no \"format\": \"{FORMAT}\")")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise TokenmillError(f"{path}: shard format version {doc.get('version')!r} is not one this "
                             f"tokenmill reads ({VERSION}); upgrade tokenmill")
    return doc


def _write_manifest(folder: str, doc: dict) -> None:
    with atomic_output(os.path.join(folder, MANIFEST)) as f:
        f.write((json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _shard_ok(folder: str, shard: dict, itemsize: int) -> bool:
    base = os.path.join(folder, shard["name"])
    try:
        return (os.path.getsize(base + ".bin") == shard["tokens"] * itemsize
                and os.path.getsize(base + ".idx") == (shard["documents"] + 1) * 8)
    except OSError:
        return False


def _remove_unlisted(folder: str, manifest: dict) -> None:
    """Delete shard files the manifest does not list (left by a run killed between renaming a
    shard and recording it, whose rerun then made fewer shards)."""
    listed = {s["name"] for s in manifest["shards"]}
    for name in os.listdir(folder):
        m = _SHARD_NAME.match(name)
        if m and m.group(1) not in listed:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def _batches(docs, target_bytes: int):
    """Lists of documents of about ``target_bytes`` bytes each."""
    batch: list[bytes] = []
    size = 0
    for d in docs:
        batch.append(d)
        size += len(d) + 16
        if size >= target_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _line_batches(paths, target_bytes: int):
    """The documents of :func:`iter_documents` (``field=None``), as lists of about
    ``target_bytes``: whole blocks are read and split in C rather than line by line."""
    for path in paths:
        f = open_input(path)
        try:
            tail = b""
            while True:
                block = f.read(target_bytes)
                if not block:
                    break
                lines = block.split(b"\n")
                if tail:
                    lines[0] = tail + lines[0]
                tail = lines.pop()
                if lines:
                    yield lines
            if tail:
                yield [tail]
        except (OSError, EOFError, ValueError) as exc:
            raise InputError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        finally:
            if path != "-":
                f.close()


def _skip(batches, n: int):
    """Drop the first ``n`` documents of a stream of batches."""
    for batch in batches:
        if n >= len(batch):
            n -= len(batch)
            continue
        if n:
            batch = batch[n:]
            n = 0
        yield batch
    if n:
        raise _ShortInput()


class _ShortInput(Exception):
    pass


class _ShardWriter:
    """Appends documents to the current shard; closes it at ``shard_tokens`` and records it."""

    def __init__(self, folder, manifest, np_dtype, shard_tokens, first_shard, first_document):
        self.folder = folder
        self.manifest = manifest
        self.dtype = np_dtype
        self.limit = shard_tokens
        self.number = first_shard
        self.next_document = first_document
        self.outs = None

    def _open(self):
        name = f"shard-{self.number:05d}"
        self.outs = AtomicOutputs()
        self.bin = self.outs.open(os.path.join(self.folder, name + ".bin"))
        self.idx = self.outs.open(os.path.join(self.folder, name + ".idx"))
        self.idx.write(np.zeros(1, "<u8").tobytes())
        self.name = name
        self.tokens = 0
        self.documents = 0
        self.first = self.next_document

    def add(self, ids: np.ndarray, ends: np.ndarray) -> None:
        """``ids``: the tokens of several documents; ``ends[k]``: end of document k in ``ids``."""
        start_doc = 0
        base = 0
        n = len(ends)
        while start_doc < n:
            if self.outs is None:
                self._open()
            # the first document whose end brings the shard to the limit closes it
            room = self.limit - self.tokens
            k = int(np.searchsorted(ends[start_doc:], base + room, side="left")) + start_doc
            last = min(k, n - 1)
            stop = int(ends[last])
            write_all(self.bin, ids[base:stop])
            write_all(self.idx, (ends[start_doc:last + 1] - base + self.tokens).astype("<u8"))
            self.tokens += stop - base
            self.documents += last + 1 - start_doc
            self.next_document += last + 1 - start_doc
            base = stop
            start_doc = last + 1
            if self.tokens >= self.limit:
                self.close()

    def close(self) -> None:
        if self.outs is None:
            return
        self.outs.commit()
        self.outs = None
        self.manifest["shards"].append({"name": self.name, "first_document": self.first,
                                        "documents": self.documents, "tokens": self.tokens})
        self.manifest["documents"] += self.documents
        self.manifest["tokens"] += self.tokens
        _write_manifest(self.folder, self.manifest)
        self.number += 1

    def abort(self) -> None:
        if self.outs is not None:
            self.outs.abort()
            self.outs = None


def with_specials(enc, bos: int | None, eos: int | None, np_dtype):
    """``(ids, ends)`` of an encoded batch in the shard dtype, with ``bos`` / ``eos`` (ids or
    None) around every document; ``ends[k]``: where document k ends in ``ids``."""
    ids = np.frombuffer(enc.ids_bytes(), dtype=np.uint32)
    offsets = np.array(enc.offsets_list(), dtype=np.int64)
    extra = (bos is not None) + (eos is not None)
    if not extra:
        out = ids.astype(np_dtype, copy=False) if np_dtype != ids.dtype else ids
        return out, offsets[1:]
    n = len(offsets) - 1
    shift = np.arange(n + 1, dtype=np.int64) * extra
    out = np.empty(len(ids) + n * extra, dtype=np_dtype)
    lengths = np.diff(offsets)
    doc_of_token = np.repeat(np.arange(n, dtype=np.int64), lengths)
    out[np.arange(len(ids), dtype=np.int64) + (doc_of_token * extra + (bos is not None))] = ids
    starts = offsets[:-1] + shift[:-1]
    if bos is not None:
        out[starts] = bos
    if eos is not None:
        out[offsets[1:] + shift[1:] - 1] = eos
    return out, offsets[1:] + shift[1:]


@dataclass
class _Folder:
    """An output folder opened for encoding: the model, the inputs and the manifest so far."""

    tok: object
    paths: list
    output: str
    manifest: dict
    manifest_path: str
    bos: int | None
    eos: int | None
    np_dtype: np.dtype


def _open_folder(inputs, model, output, spec: EncodeCorpusSpec) -> _Folder:
    """Load the model, expand the inputs and read the folder's manifest: the completed shards
    that a run with the same model, inputs and options continues from (an error if it was made
    with anything else)."""
    from ..commands._common import load_model
    from ..tokenizer import Tokenizer

    tok = model if isinstance(model, Tokenizer) else load_model(model)
    paths = expand_inputs(inputs if isinstance(inputs, (list, tuple)) else [inputs])
    output = os.fspath(output)
    if os.path.exists(output) and not os.path.isdir(output):
        raise TokenmillError(f"{output}: exists and is not a folder")
    os.makedirs(output, exist_ok=True)
    clean_litter(output)

    bos = _special_id(tok, spec.bos_token, "<s>", "bos") if spec.bos else None
    eos = _special_id(tok, spec.eos_token, "</s>", "eos") if spec.eos else None
    dtype = dtype_for(tok.vocab_size)
    np_dtype = np.dtype("<u2" if dtype == "uint16" else "<u4")
    identity = {
        "model_sha256": model_sha256(tok),
        "vocab_size": tok.vocab_size,
        "dtype": dtype,
        "inputs": [_fingerprint(p) for p in paths],
        "options": spec.identity(),
    }
    manifest_path = os.path.join(output, MANIFEST)
    manifest = None
    if os.path.exists(manifest_path):
        manifest = _read_manifest(manifest_path)
        old = {k: manifest.get(k) for k in identity}
        if old != identity and not manifest.get("shards"):
            manifest = None           # nothing was completed: nothing to mix, start afresh
    if manifest is not None:
        old = {k: manifest.get(k) for k in identity}
        if old != identity:
            what = [k.replace("_", " ") for k in identity if old[k] != identity[k]]
            raise TokenmillError(f"{manifest_path}: this folder holds shards made with a different "
                                 f"{', '.join(what)}; refusing to mix them (use another output folder, "
                                 "or delete this one)")
        if "-" in paths:
            raise TokenmillError(f"{manifest_path}: cannot resume from standard input; use a new folder")
        good = []
        for shard in manifest.get("shards", []):
            if not _shard_ok(output, shard, np_dtype.itemsize):
                break
            good.append(shard)
        if len(good) < len(manifest.get("shards", [])):
            manifest["complete"] = False   # a shard went missing: encode again from there
        manifest["shards"] = good
    if manifest is None or not manifest.get("shards"):
        manifest = {"format": FORMAT, "version": VERSION, **identity, "complete": False,
                    "documents": 0, "tokens": 0, "shards": []}
    else:
        manifest["documents"] = sum(s["documents"] for s in manifest["shards"])
        manifest["tokens"] = sum(s["tokens"] for s in manifest["shards"])
    return _Folder(tok, paths, output, manifest, manifest_path, bos, eos, np_dtype)


def encode_corpus(inputs, model, output, spec: EncodeCorpusSpec | None = None, **options) -> EncodeCorpusResult:
    """Encode every document of ``inputs`` with ``model`` into token shards in folder ``output``.

    ``inputs``: files, globs or folders (plain, .gz, .xz, .zst); ``model``: a :class:`Tokenizer`
    or a model path; options: the fields of :class:`EncodeCorpusSpec` (``field``, ``bos``,
    ``eos``, ``alpha``, ``seed``, ``shard_tokens``, ``workers``, ``progress``).

    Example::

        encode_corpus(["zh.txt.gz"], "model.json", "shards/", eos=True, workers=2)
        TokenShards("shards/").num_tokens
    """
    from ..tokenizer import _seed_state

    if spec is None:
        spec = EncodeCorpusSpec(**options)
    elif options:
        spec = dataclasses.replace(spec, **options)
    started = time.monotonic()
    job = _open_folder(inputs, model, output, spec)
    if spec.engine != "local":
        from .encode_job import encode_on_engine

        return encode_on_engine(job, spec, started)
    tok, paths, output, manifest = job.tok, job.paths, job.output, job.manifest
    bos, eos, np_dtype, manifest_path = job.bos, job.eos, job.np_dtype, job.manifest_path
    if manifest.get("complete"):
        return EncodeCorpusResult(output, manifest["documents"], manifest["tokens"], len(manifest["shards"]),
                                  0, manifest["documents"], time.monotonic() - started)
    manifest["complete"] = False
    resumed = manifest["documents"]
    tokens_before = manifest["tokens"]
    _write_manifest(output, manifest)   # claims the folder before any shard is written

    workers = spec.workers or os.cpu_count() or 1
    alpha = -1.0 if spec.alpha is None else float(spec.alpha)
    seg = tok._seg
    normalize = tok._normal_form is not None
    known = [input_size(p) for p in paths]
    total = None if (spec.field or any(s is None for s in known) or any(compression_of(p) for p in paths)) \
        else sum(known)
    bar = _TokenProgress("encode-corpus", total_bytes=total, item_name="tokens",
                         enabled=None if spec.progress else False)
    writer = _ShardWriter(output, manifest, np_dtype, spec.shard_tokens, len(manifest["shards"]), resumed)
    if spec.field is None:
        batches = _line_batches(paths, _BATCH_BYTES)
    else:
        batches = _batches(iter_documents(paths, spec.field), _BATCH_BYTES)
    if resumed:
        batches = _skip(batches, resumed)
        bar.update(0, tokens_before)
    if normalize:
        batches = ([tok._to_bytes(d) for d in batch] for batch in batches)

    def finish(job):
        future, n_bytes = job
        out, ends = with_specials(future.result(), bos, eos, np_dtype)
        writer.add(out, ends)
        bar.update(n_bytes, len(out))
        return len(out)

    encoded_bytes = 0
    written = 0
    index = resumed
    pending: collections.deque = collections.deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokenmill-encode")
    try:
        with bar:
            for batch in batches:
                seeds = [_seed_state(spec.seed + index + k) for k in range(len(batch))] if alpha >= 0 else None
                index += len(batch)
                n_bytes = sum(map(len, batch)) + len(batch)
                encoded_bytes += n_bytes
                pending.append((pool.submit(seg.encode_many, batch, alpha, seeds), n_bytes))
                while len(pending) > 2 * workers:
                    written += finish(pending.popleft())
            while pending:
                written += finish(pending.popleft())
            writer.close()
        manifest["complete"] = True
        _write_manifest(output, manifest)
        _remove_unlisted(output, manifest)
    except _ShortInput:
        writer.abort()
        raise TokenmillError(f"{manifest_path}: the inputs hold fewer documents than already encoded") from None
    except BaseException:
        writer.abort()
        for future, _ in pending:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    result = EncodeCorpusResult(output, manifest["documents"], manifest["tokens"], len(manifest["shards"]),
                                encoded_bytes, resumed, time.monotonic() - started, written)
    return result


class TokenShards:
    """Read a folder written by :func:`encode_corpus` (memory-mapped; nothing is loaded up front).

    Example::

        shards = TokenShards("shards/")
        shards.num_documents, shards.num_tokens, shards.dtype   # (120000, 31250000, dtype('uint16'))
        tok.decode(shards[5])                                   # document 5, as written
        for x in shards.batches(batch_size=8, seq_len=1024, seed=0):   # int64 (8, 1025) windows
            inputs, targets = x[:, :-1], x[:, 1:]
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        manifest_path = os.path.join(self.path, MANIFEST)
        try:
            self.manifest = _read_manifest(manifest_path)
        except FileNotFoundError:
            raise TokenmillError(f"{self.path}: no {MANIFEST} here (not a token shard folder)") from None
        if not self.manifest.get("complete"):
            raise TokenmillError(f"{manifest_path}: the shards are incomplete (an interrupted "
                                 "encode-corpus; rerun it to finish)")
        m = self.manifest
        self.dtype = np.dtype("<u2" if m["dtype"] == "uint16" else "<u4")
        self.vocab_size = m["vocab_size"]
        self._shards = m["shards"]
        for s in self._shards:
            if not _shard_ok(self.path, s, self.dtype.itemsize):
                raise TokenmillError(f"{os.path.join(self.path, s['name'])}.bin: missing or the wrong size "
                                     "for the manifest (corrupt shard folder)")
        self._first_doc = np.cumsum([0] + [s["documents"] for s in self._shards])
        self._maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def num_documents(self) -> int:
        return int(self.manifest["documents"])

    @property
    def num_tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    def __len__(self) -> int:
        return self.num_documents

    def __repr__(self) -> str:
        return (f"<TokenShards {self.path!r} documents={self.num_documents} tokens={self.num_tokens} "
                f"shards={self.num_shards} dtype={self.dtype.name}>")

    def shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, offsets)`` of shard ``k``, memory-mapped."""
        if k not in self._maps:
            base = os.path.join(self.path, self._shards[k]["name"])
            ids = (np.memmap(base + ".bin", dtype=self.dtype, mode="r") if self._shards[k]["tokens"]
                   else np.zeros(0, self.dtype))
            offsets = np.memmap(base + ".idx", dtype="<u8", mode="r")
            self._maps[k] = (ids, offsets)
        return self._maps[k]

    def document(self, i: int) -> np.ndarray:
        """The token ids of document ``i`` (a read-only view; negative ``i`` counts from the end)."""
        n = self.num_documents
        if not -n <= i < n:
            raise IndexError(f"document {i} out of range ({n} documents)")
        i %= n
        k = int(np.searchsorted(self._first_doc, i, side="right")) - 1
        ids, offsets = self.shard(k)
        j = i - int(self._first_doc[k])
        return ids[int(offsets[j]):int(offsets[j + 1])]

    __getitem__ = document

    def __iter__(self):
        for k in range(self.num_shards):
            ids, offsets = self.shard(k)
            for j in range(len(offsets) - 1):
                yield ids[int(offsets[j]):int(offsets[j + 1])]

    def batches(self, batch_size: int, seq_len: int, seed: int = 0, steps: int | None = None):
        """Random ``(batch_size, seq_len + 1)`` int64 windows of the token stream, forever (or
        ``steps`` times). Each window lies inside one shard (documents follow each other, so
        put ``--eos`` between them); every start position is equally likely. The sequence of
        batches depends only on ``seed`` and the shards."""
        width = seq_len + 1
        starts = np.array([max(int(s["tokens"]) - width + 1, 0) for s in self._shards], dtype=np.int64)
        total = int(starts.sum())
        if total == 0:
            raise TokenmillError(f"{self.path}: no shard holds {width} tokens; use a smaller seq_len")
        cumulative = np.cumsum(starts)
        rng = np.random.default_rng(seed)
        made = 0
        while steps is None or made < steps:
            draws = rng.integers(0, total, size=batch_size)
            which = np.searchsorted(cumulative, draws, side="right")
            out = np.empty((batch_size, width), dtype=np.int64)
            for row, (k, d) in enumerate(zip(which, draws)):
                offset = int(d - (cumulative[k] - starts[k]))
                out[row] = self.shard(int(k))[0][offset:offset + width]
            yield out
            made += 1


__all__ = ["EncodeCorpusSpec", "EncodeCorpusResult", "TokenShards", "encode_corpus", "dtype_for"]
