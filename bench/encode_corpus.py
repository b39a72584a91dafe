"""Benchmark ``encode-corpus``: MB/s and tokens/s with 1 and 2 workers, against

* the raw ``Tokenizer.encode_batch`` throughput of the same threads on the same documents
  (already in memory, nothing written: the ceiling), and
* Hugging Face ``tokenizers`` ``encode_batch`` with the exported model, writing the same shard
  files (the whole job: read, encode, write).

Each measurement runs in its own process (``tokenizers`` fixes its thread count at start-up).
Not run by CI. Example (the figures in the README, "Token shards")::

    python bench/encode_corpus.py --mb 30 --model ../shared/models/bytepiece.eu.plus.80k.zip

``--mb N`` uses the first N MB (whole lines) of each of zh, en and code train files.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

CORPUS = "/tmp/corpus"
FILES = ("zh.train.txt", "en.train.txt", "code.train.txt")


def load_tok(model):
    from tokenmill import Tokenizer

    return Tokenizer.load(model) if model.endswith(".json") else Tokenizer.from_bytepiece(model)


def child(kind: str, workers: int, model: str, inputs: list[str], scratch: str) -> dict:
    import numpy as np

    out = os.path.join(scratch, f"{kind}-{workers}")
    shutil.rmtree(out, ignore_errors=True)
    n_bytes = sum(os.path.getsize(p) for p in inputs)
    tok = load_tok(model)
    if kind == "raw":
        from tokenmill.corpus.io import iter_documents

        docs = list(iter_documents(inputs))
        chunks, chunk, size = [], [], 0
        for d in docs:
            chunk.append(d)
            size += len(d)
            if size >= 4 << 20:
                chunks.append(chunk)
                chunk, size = [], 0
        chunks.append(chunk)
        t0, c0 = time.perf_counter(), time.process_time()
        tokens = 0
        for c in chunks:
            tokens += sum(map(len, tok.encode_batch(c, num_threads=workers)))
    elif kind == "tokenmill":
        from tokenmill.corpus.shards import encode_corpus

        t0, c0 = time.perf_counter(), time.process_time()
        tokens = encode_corpus(inputs, tok, out, workers=workers, progress=False).tokens
    elif kind == "hf":
        import tokenizers  # RAYON_NUM_THREADS was set by the parent
        from tokenmill.interop.huggingface import export_huggingface
        from tokenmill.corpus.io import iter_documents

        export_huggingface(tok, os.path.join(scratch, "hf-model"))
        hf = tokenizers.Tokenizer.from_file(os.path.join(scratch, "hf-model", "tokenizer.json"))
        dtype = "<u2" if tok.vocab_size <= 65536 else "<u4"
        os.makedirs(out)
        t0, c0 = time.perf_counter(), time.process_time()
        tokens = 0
        with open(os.path.join(out, "shard-00000.bin"), "wb") as fb, \
                open(os.path.join(out, "shard-00000.idx"), "wb") as fi:
            fi.write(np.zeros(1, "<u8").tobytes())
            batch, size = [], 0

            def flush(batch):
                nonlocal tokens
                encs = hf.encode_batch([b.decode("utf-8", "surrogateescape") for b in batch],
                                       add_special_tokens=False)
                ids = [e.ids for e in encs]
                lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
                flat = np.fromiter((i for row in ids for i in row), dtype=dtype, count=int(lengths.sum()))
                fb.write(flat.tobytes())
                fi.write((np.cumsum(lengths) + tokens).astype("<u8").tobytes())
                tokens += int(lengths.sum())

            for d in iter_documents(inputs):
                batch.append(d)
                size += len(d)
                if size >= 1 << 20:
                    flush(batch)
                    batch, size = [], 0
            if batch:
                flush(batch)
    else:
        raise SystemExit(f"unknown kind {kind}")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"kind": kind, "workers": workers, "bytes": n_bytes, "tokens": tokens, "seconds": wall,
            "cpu_seconds": cpu, "MB/s": n_bytes / wall / 1e6, "Mtokens/s": tokens / wall / 1e6}


def cut_inputs(mb: float, scratch: str) -> list[str]:
    paths = []
    for name in FILES:
        src = os.path.join(CORPUS, name)
        if not mb:
            paths.append(src)
            continue
        dst = os.path.join(scratch, name)
        with open(src, "rb") as f:
            data = f.read(int(mb * 1e6))
        data = data[: data.rfind(b"\n") + 1]
        with open(dst, "wb") as f:
            f.write(data)
        paths.append(dst)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models",
                                                     "bytepiece.eu.plus.80k.zip"))
    ap.add_argument("--mb", type=float, default=30, help="MB of each train file (0: whole files)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--kinds", default="raw,tokenmill,hf")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "W"), help=argparse.SUPPRESS)
    ap.add_argument("--inputs", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.model, args.inputs, args.scratch)))
        return
    if not all(os.path.exists(os.path.join(CORPUS, f)) for f in FILES):
        raise SystemExit(f"needs {CORPUS}/{{zh,en,code}}.train.txt: sh ../shared/corpus/unpack.sh {CORPUS}")
    scratch = tempfile.mkdtemp(prefix="tokenmill-bench-")
    try:
        inputs = cut_inputs(args.mb, scratch)
        total = sum(os.path.getsize(p) for p in inputs)
        print(f"inputs: {', '.join(os.path.basename(p) for p in inputs)} = {total / 1e6:.1f} MB; "
              f"model {os.path.basename(args.model)}; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs", flush=True)
        results = {}
        for w in [int(x) for x in args.workers.split(",")]:
            for kind in args.kinds.split(","):
                env = dict(os.environ, RAYON_NUM_THREADS=str(w), TOKENIZERS_PARALLELISM="true")
                best = None
                for _ in range(args.repeat):
                    proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--child", kind, str(w),
                                           "--scratch", scratch, "--inputs", *inputs],
                                          env=env, capture_output=True, text=True)
                    if proc.returncode:
                        raise SystemExit(proc.stderr)
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    best = r if best is None or r["seconds"] < best["seconds"] else best
                results[(kind, w)] = best
                print(f"{kind:10s} workers={w}  {best['seconds']:6.2f} s  {best['MB/s']:6.2f} MB/s  "
                      f"{best['Mtokens/s']:5.2f} M tokens/s  cpu {best['cpu_seconds']:6.2f} s", flush=True)
        for w in sorted({w for _, w in results}):
            if ("tokenmill", w) in results and ("raw", w) in results:
                print(f"encode-corpus / raw encode_batch, {w} worker(s): "
                      f"{results[('tokenmill', w)]['MB/s'] / results[('raw', w)]['MB/s']:.2f}")
            if ("tokenmill", w) in results and ("hf", w) in results:
                print(f"encode-corpus / HF tokenizers, {w} worker(s): "
                      f"{results[('tokenmill', w)]['MB/s'] / results[('hf', w)]['MB/s']:.2f}")
        if ("tokenmill", 1) in results and ("tokenmill", 2) in results:
            print(f"encode-corpus 2 workers / 1 worker: "
                  f"{results[('tokenmill', 2)]['MB/s'] / results[('tokenmill', 1)]['MB/s']:.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
