"""Benchmark: `tokenmill count` with --workers 1 and 2 on the zh corpus (not in CI).

    PYTHONPATH=src python3 bench/count.py [--train /tmp/corpus/zh.train.txt] [--order 4]
        [--unit char] [--min-count 2] [--repeat 3] [--memory 4G] [--python-anchor]

Each run is a fresh `python -m tokenmill count` subprocess; the wall time includes reading the
input, counting, sorting and writing the TSV. Peak memory is the child's VmHWM (kernel high-water
mark of its RSS), read through a tiny wrapper. The two outputs are compared byte for byte. With
--python-anchor it also times the batch-then-merge Python counter of ALGORITHMS.md §3
(collections.Counter per batch of 1,000 lines merged into one global Counter), single process,
for the same n-grams: the pattern our compiled counter replaces.

Prints a Markdown table and the ratio workers 2 / workers 1 (target >= 1.8x).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WRAPPER = (
    "import sys, runpy\n"
    "sys.argv = ['tokenmill'] + sys.argv[1:]\n"
    "try:\n"
    "    from tokenmill.cli import main\n"
    "    rc = main(sys.argv[1:])\n"
    "finally:\n"
    "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "    sys.stderr.write(f'\\nVMHWM {hwm}\\n')\n"
    "sys.exit(rc)\n"
)


def run_count(args, workers, out):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-c", WRAPPER, "count", args.train, "-o", out, "--unit", args.unit,
           "--order", str(args.order), "--min-count", str(args.min_count), "--memory", args.memory,
           "--workers", str(workers)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"count failed: {r.stderr}")
    hwm = int(r.stderr.rsplit("VMHWM", 1)[1].split()[0]) * 1024
    summary = [l for l in r.stderr.splitlines() if l.startswith("tokenmill count:")]
    return wall, hwm, summary[0] if summary else ""


def python_anchor(path, order, min_count):
    from collections import Counter

    t0 = time.perf_counter()
    total: Counter = Counter()
    batch: list[str] = []

    def flush():
        c: Counter = Counter()
        for line in batch:
            for i in range(len(line)):
                for n in range(1, order + 1):
                    if i + n <= len(line):
                        c[line[i:i + n]] += 1
        total.update(c)
        batch.clear()

    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            batch.append(line.rstrip("\n"))
            if len(batch) == 1000:
                flush()
    flush()
    kept = sorted(((k, v) for k, v in total.items() if v >= min_count), key=lambda kv: (-kv[1], kv[0]))
    return time.perf_counter() - t0, len(kept)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", default="/tmp/corpus/zh.train.txt",
                    help="input (unpack with: sh ../shared/corpus/unpack.sh /tmp/corpus)")
    ap.add_argument("--unit", default="char", choices=["char", "byte", "word"])
    ap.add_argument("--order", type=int, default=4)
    ap.add_argument("--min-count", type=int, default=2)
    ap.add_argument("--memory", default="4G", help="--memory passed to tokenmill count")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per worker count")
    ap.add_argument("--python-anchor", action="store_true", help="also time the pure-Python batch counter")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    if not os.path.exists(args.train):
        sys.exit(f"{args.train}: missing; run sh ../shared/corpus/unpack.sh /tmp/corpus")
    size = os.path.getsize(args.train)
    results = {}
    with tempfile.TemporaryDirectory(prefix="tokenmill-bench-count-") as d:
        outs = {}
        for rep in range(args.repeat):
            for w in (1, 2):      # interleaved, so that a noisy moment hits both
                out = os.path.join(d, f"w{w}.tsv")
                wall, hwm, summary = run_count(args, w, out)
                outs[w] = out
                best = results.get(w)
                if best is None or wall < best["wall"]:
                    results[w] = {"wall": wall, "peak_rss": hwm, "summary": summary}
                print(f"[count.py] workers={w} run {rep + 1}: {wall:.2f} s, peak {hwm / 2**20:.0f} MiB", file=sys.stderr)
        same = filecmp.cmp(outs[1], outs[2], shallow=False)
    anchor = python_anchor(args.train, args.order, args.min_count) if args.python_anchor else None

    print(f"\nInput: {args.train} ({size / 1e6:.1f} MB), --unit {args.unit} --order {args.order} "
          f"--min-count {args.min_count} --memory {args.memory}; best of {args.repeat}\n")
    print("| run | wall | MB/s | peak RSS | vs workers 1 |")
    print("|---|---:|---:|---:|---:|")
    for w in (1, 2):
        r = results[w]
        print(f"| tokenmill count --workers {w} | {r['wall']:.2f} s | {size / r['wall'] / 1e6:.1f} | "
              f"{r['peak_rss'] / 2**20:.0f} MiB | {results[1]['wall'] / r['wall']:.2f}x |")
    if anchor:
        print(f"| Python Counter, batches of 1,000 lines (1 process) | {anchor[0]:.2f} s | "
              f"{size / anchor[0] / 1e6:.1f} | - | {results[1]['wall'] / anchor[0]:.2f}x |")
    print(f"\nworkers 2 / workers 1: {results[1]['wall'] / results[2]['wall']:.2f}x (target >= 1.8x); "
          f"outputs identical: {same}")
    print(results[2]["summary"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "identical": same,
                       "python_anchor": anchor}, f, indent=1)


if __name__ == "__main__":
    main()
