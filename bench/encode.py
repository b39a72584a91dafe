"""Encode-throughput benchmark: tokenmill against bytepiece, SentencePiece and HF tokenizers.

Not part of CI. Runs in the anchors venv (see bench/README.md) with tokenmill installed there
too (``pip install /work/main``). One run measures, for each tool and for 1 and 2 threads:

  * enc MB/s: UTF-8 bytes of the lines of CORPUS/<set>.test.txt (each line without its
    newline, encoded separately, no BOS/EOS) / wall seconds of the encode call. Best of
    --passes timed passes after one warm-up pass; the tokenizer is loaded before timing.
  * B/tok: the same bytes / number of tokens produced.
  * peak RSS of the measuring process (ru_maxrss; for bytepiece's 2-process pool also the
    largest pool worker), and the tokenizer's load time.

Every (tool, threads) pair is measured in a fresh subprocess of this script, one at a time,
so tools do not disturb each other (caches, allocator, thread pools). How each tool is called
(the same as shared/corpus/BASELINES.md "Metrics"):

  tokenmill    Tokenizer.from_bytepiece(--bytepiece-model)  ("tokenmill[bp]"), and
               Tokenizer.load(--tokenmill-model) if given  ("tokenmill");
               tok.encode_batch(lines, num_threads=N)
  bytepiece    bytepiece 0.6.3 Tokenizer with the same BytePiece model. 1 thread: a Python loop
               [tk.encode(l) for l in lines] (it has no batch API); 2 threads:
               multiprocessing.Pool(2) mapping encode over 2,000-line chunks (workers load the
               tokenizer before timing)
  sp-unigram   sentencepiece SentencePieceProcessor(--sp-model).encode(lines, num_threads=N)
  hf-bpe       tokenizers.Tokenizer.from_file(--hf-model).encode_batch(lines) with
               RAYON_NUM_THREADS=N set in the subprocess environment (rayon reads it once)

--check-dump DIR (default /work/bench-out if bytepiece_full_<set>.jsonl.gz exist there, see
bench/make_bytepiece_golden.py) also compares tokenmill[bp]'s ids line by line with bytepiece's
(untimed) and reports the number of differing lines.

Usage (from the repo root):
    /work/anchors-venv/bin/python bench/encode.py                # everything, default models
    /work/anchors-venv/bin/python bench/encode.py --tools tokenmill,sp-unigram --threads 1
    /work/anchors-venv/bin/python bench/encode.py --max-lines 2000 --passes 1   # smoke test
Results: a table on stdout and a JSON file (default bench/out/encode-<time>.json; bench/out/
is git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANCHORS = Path("/work/bench-out/anchors")
DEFAULTS = {
    "corpus": "/tmp/corpus",
    "bytepiece_model": "/work/shared/models/bytepiece.eu.plus.80k.zip",
    "sp_model": str(ANCHORS / "sp_unigram_zh_32k.model"),
    "hf_model": str(ANCHORS / "hf_bpe_zh_32k.json"),
    "check_dump": "/work/bench-out",
}
ALL_TOOLS = ["tokenmill", "bytepiece", "sp-unigram", "hf-bpe"]
CHUNK = 2000  # lines per task for bytepiece's process pool


# --------------------------------------------------------------------------- worker side

def read_lines(corpus: str, name: str, max_lines: int) -> list[str]:
    with open(Path(corpus) / f"{name}.test.txt", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines[:max_lines] if max_lines > 0 else lines


def load_bytepiece(path: str):
    from bytepiece import Tokenizer

    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            (member,) = [n for n in z.namelist() if n.endswith(".model")]
            return Tokenizer(json.loads(z.read(member).decode("utf-8")))
    return Tokenizer(path)


_BP = None


def _bp_init(path: str) -> None:
    global _BP
    _BP = load_bytepiece(path)


def _bp_encode_chunk(lines: list[str]) -> list[list[int]]:
    return [_BP.encode(l) for l in lines]


def _bp_ping(_: int) -> int:
    return _BP.vocab_size


def make_encoder(spec: dict):
    """Return (encode(lines) -> list of id sequences, close(), info dict); loading is timed."""
    tool, n = spec["tool"], spec["threads"]
    info: dict = {}
    t0 = time.perf_counter()
    if tool == "tokenmill":
        import tokenmill
        from tokenmill import Tokenizer

        if spec.get("tokenmill_model"):
            tok = Tokenizer.load(spec["tokenmill_model"])
        else:
            tok = Tokenizer.from_bytepiece(spec["bytepiece_model"])
        info["version"] = getattr(tokenmill, "__version__", "?")

        def encode(lines):
            return tok.encode_batch(lines, num_threads=n)

        close = lambda: None  # noqa: E731
    elif tool == "bytepiece":
        import bytepiece

        info["version"] = getattr(bytepiece, "__version__", "0.6.3?")
        if n == 1:
            tk = load_bytepiece(spec["bytepiece_model"])

            def encode(lines):
                return [tk.encode(l) for l in lines]

            close = lambda: None  # noqa: E731
        else:
            from multiprocessing import get_context

            pool = get_context("fork").Pool(n, initializer=_bp_init,
                                             initargs=(spec["bytepiece_model"],))
            pool.map(_bp_ping, range(4 * n), chunksize=1)  # workers have loaded the model

            def encode(lines):
                chunks = [lines[i:i + CHUNK] for i in range(0, len(lines), CHUNK)]
                out = []
                for part in pool.map(_bp_encode_chunk, chunks, chunksize=1):
                    out.extend(part)
                return out

            def close():
                pool.close()
                pool.join()
    elif tool == "sp-unigram":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=spec["sp_model"])
        info["version"] = spm.__version__

        def encode(lines):
            return sp.encode(lines, num_threads=n)

        close = lambda: None  # noqa: E731
    elif tool == "hf-bpe":
        assert os.environ.get("RAYON_NUM_THREADS") == str(n)
        import tokenizers

        hf = tokenizers.Tokenizer.from_file(spec["hf_model"])
        info["version"] = tokenizers.__version__

        def encode(lines):
            return [e.ids for e in hf.encode_batch(lines)]

        close = lambda: None  # noqa: E731
    else:
        raise SystemExit(f"unknown tool {tool}")
    info["load_s"] = time.perf_counter() - t0
    return encode, close, info


def check_against_dump(encode, lines: list[str], dump: Path) -> dict:
    import gzip

    with gzip.open(dump, "rt", encoding="utf-8") as f:
        gold = [json.loads(l) for l in f]
    if len(gold) < len(lines):
        return {"error": f"{dump} has {len(gold)} records, need {len(lines)}"}
    ids = encode(lines)
    bad = [i for i, (a, g) in enumerate(zip(ids, gold)) if list(a) != g["ids"]]
    return {"lines": len(lines), "differ": len(bad), "first": bad[:10]}


def worker(spec: dict) -> dict:
    encode, close, info = make_encoder(spec)
    res: dict = {"spec": spec, **info, "sets": {}}
    try:
        for name in spec["sets"]:
            lines = read_lines(spec["corpus"], name, spec["max_lines"])
            nbytes = sum(len(l.encode("utf-8")) for l in lines)
            ids = encode(lines)  # warm-up
            ntok = sum(len(x) for x in ids)
            del ids
            times = []
            for _ in range(spec["passes"]):
                t0 = time.perf_counter()
                ids = encode(lines)
                times.append(time.perf_counter() - t0)
                del ids
            res["sets"][name] = {
                "lines": len(lines), "bytes": nbytes, "tokens": ntok, "seconds": times,
                "mbps": nbytes / min(times) / 1e6, "bytes_per_token": nbytes / max(ntok, 1)}
    finally:
        close()
    # peak RSS of the timed part (the check below reads big JSON dumps)
    res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["maxrss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    dump = spec.get("check_dump")
    if dump and spec["tool"] == "tokenmill" and not spec.get("tokenmill_model"):
        for name in spec["sets"]:
            p = Path(dump) / f"bytepiece_full_{name}.jsonl.gz"
            if p.exists():
                lines = read_lines(spec["corpus"], name, spec["max_lines"])
                res["sets"][name]["check"] = check_against_dump(encode, lines, p)
    return res


# --------------------------------------------------------------------------- driver side

def run_one(spec: dict) -> dict:
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(spec["threads"])
    # keep BLAS/OpenMP pools of any imported library at the measured thread count
    env["OMP_NUM_THREADS"] = str(spec["threads"])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    last = p.stdout.strip().splitlines()[-1:] if p.stdout else []
    if p.returncode != 0 or not last:
        return {"spec": spec, "error": f"exit status {p.returncode}", "wall_s": wall}
    res = json.loads(last[0])
    res["wall_s"] = wall
    return res


def label(spec: dict) -> str:
    if spec["tool"] == "tokenmill":
        return "tokenmill" if spec.get("tokenmill_model") else "tokenmill[bp]"
    return spec["tool"]


def tool_available(tool: str, args) -> str | None:
    """None if the tool can be measured, else the reason why not."""
    mod = {"tokenmill": "tokenmill", "bytepiece": "bytepiece",
           "sp-unigram": "sentencepiece", "hf-bpe": "tokenizers"}[tool]
    probe = f"import {mod}"
    if tool == "tokenmill":
        probe += "; from tokenmill import Tokenizer; Tokenizer.from_bytepiece; Tokenizer.encode_batch"
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if p.returncode != 0:
        return (p.stderr.strip().splitlines() or ["import failed"])[-1]
    for need, path in (("bytepiece", args.bytepiece_model), ("sp-unigram", args.sp_model),
                       ("hf-bpe", args.hf_model), ("tokenmill", args.bytepiece_model)):
        if tool == need and not Path(path).exists():
            return f"model file {path} not found"
    return None


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def report(results: list[dict], sets: list[str], threads: list[int]) -> str:
    out = []
    by = {}
    for r in results:
        if "error" not in r:
            by[(label(r["spec"]), r["spec"]["threads"])] = r
    labels = list(dict.fromkeys(label(r["spec"]) for r in results))

    def mbps(lab, n, s):
        r = by.get((lab, n))
        if r is None:
            return None
        if s == "all":
            b = sum(r["sets"][x]["bytes"] for x in sets)
            t = sum(min(r["sets"][x]["seconds"]) for x in sets)
            return b / t / 1e6
        return r["sets"][s]["mbps"]

    def bpt(lab, s):
        r = by.get((lab, min(threads))) or next((v for (l, _), v in by.items() if l == lab), None)
        if r is None:
            return None
        if s == "all":
            return sum(r["sets"][x]["bytes"] for x in sets) / sum(r["sets"][x]["tokens"] for x in sets)
        return r["sets"][s]["bytes_per_token"]

    cols = sets + (["all"] if len(sets) > 1 else [])
    out.append("enc MB/s (best of passes; 'all' = total bytes / sum of per-set best times)")
    head = f"{'tool':<15}{'thr':>4}" + "".join(f"{c:>10}" for c in cols) + f"{'load s':>9}{'RSS MB':>9}{'pool RSS':>10}"
    out.append(head)
    out.append("-" * len(head))
    for lab in labels:
        for n in threads:
            r = by.get((lab, n))
            if r is None:
                err = next((x.get("error") for x in results
                            if label(x["spec"]) == lab and x["spec"]["threads"] == n), "not run")
                out.append(f"{lab:<15}{n:>4}  n/a: {err}")
                continue
            pool = r["maxrss_children_mb"] if r["spec"]["tool"] == "bytepiece" and n > 1 else None
            out.append(f"{lab:<15}{n:>4}" + "".join(f"{fmt(mbps(lab, n, c)):>10}" for c in cols)
                       + f"{fmt(r['load_s']):>9}{fmt(r['maxrss_mb'], 0):>9}{fmt(pool, 0):>10}")
    out.append("")
    out.append("bytes/token (UTF-8 bytes of the lines / tokens)")
    out.append(f"{'tool':<19}" + "".join(f"{c:>10}" for c in cols))
    for lab in labels:
        out.append(f"{lab:<19}" + "".join(f"{fmt(bpt(lab, c), 3):>10}" for c in cols))
    out.append("")
    out.append("ratios (enc MB/s)")
    for tm in [l for l in labels if l.startswith("tokenmill")]:
        for other in ("sp-unigram", "bytepiece"):
            if other in labels:
                vals = [(c, mbps(tm, 1, c), mbps(other, 1, c)) for c in cols]
                out.append(f"  {tm} / {other}, 1 thread: " + "  ".join(
                    f"{c} {a / b:.2f}x" if a and b else f"{c} -" for c, a, b in vals))
        if 1 in threads and 2 in threads:
            vals = [(c, mbps(tm, 2, c), mbps(tm, 1, c)) for c in cols]
            out.append(f"  {tm} 2 threads / 1 thread: " + "  ".join(
                f"{c} {a / b:.2f}x" if a and b else f"{c} -" for c, a, b in vals))
    checks = [(label(r["spec"]), r["spec"]["threads"], s, v["check"]) for r in results
              if "error" not in r for s, v in r["sets"].items() if "check" in v]
    if checks:
        out.append("")
        out.append("tokenmill[bp] ids vs bytepiece 0.6.3 full dump (lines differing)")
        for lab, n, s, c in checks:
            out.append(f"  {lab} thr={n} {s}: " + (c["error"] if "error" in c else
                       f"{c['differ']} of {c['lines']}" + (f", first {c['first']}" if c["differ"] else "")))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description="encode throughput: tokenmill vs anchors")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", default=DEFAULTS["corpus"], help="dir with <set>.test.txt")
    ap.add_argument("--sets", default="zh,en,code")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS),
                    help="comma list of " + ",".join(ALL_TOOLS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--max-lines", type=int, default=0, help="only the first N lines per set")
    ap.add_argument("--bytepiece-model", default=DEFAULTS["bytepiece_model"])
    ap.add_argument("--tokenmill-model", help="also measure this tokenmill model file")
    ap.add_argument("--sp-model", default=DEFAULTS["sp_model"])
    ap.add_argument("--hf-model", default=DEFAULTS["hf_model"])
    ap.add_argument("--check-dump", default=DEFAULTS["check_dump"],
                    help="dir with bytepiece_full_<set>.jsonl.gz ('' to skip the check)")
    ap.add_argument("--json", help="result file (default bench/out/encode-<time>.json)")
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    sets = [s for s in args.sets.split(",") if s]
    threads = [int(x) for x in args.threads.split(",") if x]
    tools = [t for t in args.tools.split(",") if t]
    base = {"corpus": args.corpus, "sets": sets, "passes": args.passes,
            "max_lines": args.max_lines, "bytepiece_model": args.bytepiece_model,
            "sp_model": args.sp_model, "hf_model": args.hf_model}
    specs, results = [], []
    for tool in tools:
        why = tool_available(tool, args)
        variants = [None]
        if tool == "tokenmill" and args.tokenmill_model:
            variants.append(args.tokenmill_model)
        for n in threads:
            for tm in variants:
                spec = {**base, "tool": tool, "threads": n, "tokenmill_model": tm,
                        "check_dump": args.check_dump if (tool == "tokenmill" and n == threads[0]) else ""}
                if why:
                    results.append({"spec": spec, "error": why})
                else:
                    specs.append(spec)
    for spec in specs:
        print(f"[encode.py] {label(spec)} threads={spec['threads']} ...", file=sys.stderr, flush=True)
        r = run_one(spec)
        results.append(r)
        if "error" in r:
            print(f"[encode.py]   failed: {r['error']}", file=sys.stderr, flush=True)
        else:
            print("[encode.py]   " + "  ".join(f"{s} {v['mbps']:.2f} MB/s" for s, v in r["sets"].items()),
                  file=sys.stderr, flush=True)
    results.sort(key=lambda r: (tools.index(r["spec"]["tool"]), r["spec"]["threads"]))
    text = report(results, sets, threads)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "argv": sys.argv[1:]}
    print(f"# bench/encode.py  {meta['date']}  {meta['cpus']} CPUs  Python {meta['python']}")
    print(f"# corpus {args.corpus} sets {','.join(sets)}"
          + (f" (first {args.max_lines} lines)" if args.max_lines else "")
          + f"; best of {args.passes} passes after a warm-up")
    print(f"# models: bytepiece {args.bytepiece_model}; sp {args.sp_model}; hf {args.hf_model}"
          + (f"; tokenmill {args.tokenmill_model}" if args.tokenmill_model else ""))
    print(text)
    path = Path(args.json) if args.json else REPO / "bench" / "out" / f"encode-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": results, "table": text}, indent=1))
    print(f"# results: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
