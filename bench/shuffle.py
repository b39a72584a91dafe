"""Benchmark: tokenmill shuffle against cp, GNU shuf and sort -R, in one run on one disk (not in CI).

    python bench/shuffle.py [--size 316M] [--dir /tmp/tokenmill-bench] [--workers 2] [--tools cp,out,in,shuf,sort]

A larger ``--size`` shows the throughput without the fixed start-up cost of each process
(Python and numpy take about 0.2 s to start); ``--tools cp,out`` skips the slow ones there.

Input: text lines like BASELINES.md's shuffle anchors (``<n>\\t`` + 0-300 bytes of ASCII).
Every wall time includes ``sync``; memory is the peak summed VmRSS of the process tree sampled
from /proc every 10 ms. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from tokenmill.memory import tree_rss


def make_input(path: str, size: int) -> int:
    rng = np.random.default_rng(0)
    lines = []
    total = 0
    n = 0
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,", np.uint8)
    with open(path, "wb") as f:
        while total < size:
            lengths = rng.integers(0, 301, 100_000)
            blob = alphabet[rng.integers(0, alphabet.size, int(lengths.sum()))].tobytes()
            pos = 0
            lines = []
            for length in lengths.tolist():
                lines.append(b"%d\t%s\n" % (n, blob[pos:pos + length]))
                pos += length
                n += 1
            chunk = b"".join(lines)
            f.write(chunk)
            total += len(chunk)
    return n




def run(cmd: str) -> tuple[float, int]:
    """Wall seconds (including sync) and peak tree RSS of a shell command."""
    subprocess.run("sync", shell=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", cmd + " && sync"])
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.01)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}")
    return wall, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="316M", help="input size (default 316M, as in BASELINES.md)")
    ap.add_argument("--dir", default="/tmp/tokenmill-bench")
    ap.add_argument("--workers", default="2")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per tool")
    ap.add_argument("--tools", default="cp,out,in,shuf,sort",
                    help="which runs: cp, out (tokenmill out of memory), in (tokenmill in memory), shuf, "
                         "sort (sort -R); cp is always run (it sets the limit)")
    args = ap.parse_args()
    from tokenmill.spec import parse_size

    size = parse_size(args.size)
    os.makedirs(args.dir, exist_ok=True)
    src = os.path.join(args.dir, "in.txt")
    out = os.path.join(args.dir, "out.txt")
    if not os.path.exists(src) or abs(os.path.getsize(src) - size) > 1 << 20:
        make_input(src, size)
    nbytes = os.path.getsize(src)
    tm = f"{sys.executable} -m tokenmill.cli shuffle --workers {args.workers} --no-progress"
    budget_out = max(1 << 20, nbytes // 10)
    budget_in = 2 * nbytes + (64 << 20)
    tools = [
        ("cp", "`cat in > out` (cp)", f"cat {src} > {out}", "-"),
        ("out", f"tokenmill, --memory {budget_out >> 20}M (1/10 of input)",
         f"{tm} {src} -o {out} --memory {budget_out}", "out of memory"),
        ("in", f"tokenmill, --memory {budget_in >> 20}M (> input)", f"{tm} {src} -o {out} --memory {budget_in}",
         "in memory"),
        ("shuf", "GNU `shuf`", f"shuf {src} -o {out}", "in memory"),
        ("sort", f"`sort -R -S {budget_out >> 20}M`",
         f"LC_ALL=C sort -R -S {budget_out} -T {args.dir} {src} -o {out}", "not a shuffle"),
    ]
    wanted = set(args.tools.split(",")) | {"cp"}
    unknown = wanted - {key for key, *_ in tools}
    if unknown:
        raise SystemExit(f"--tools: unknown {', '.join(sorted(unknown))}")
    rows = []
    for key, name, cmd, note in tools:
        if key not in wanted:
            continue
        best = None
        for _ in range(args.repeat if key != "sort" else 1):
            wall, peak = run(cmd)
            best = (wall, peak) if best is None or wall < best[0] else best
        rows.append((key, name, best[0], best[1], note))
        print(f"{name}: {best[0]:.2f} s, {nbytes / best[0] / 1e6:.0f} MB/s, peak {best[1] / 2**20:.0f} MiB",
              file=sys.stderr)
    os.unlink(out)
    walls = {key: wall for key, _, wall, _, _ in rows}
    cp_rate = nbytes / walls["cp"] / 1e6
    limit = cp_rate / 2
    shuf_rate = nbytes / walls["shuf"] / 1e6 if "shuf" in walls else None
    print(f"\nInput: {nbytes / 1e6:.0f} MB, {args.dir}, {os.cpu_count()} CPUs, --workers {args.workers}; "
          f"physical limit = cp / 2 = {limit:.0f} MB/s\n")
    print("| tool | peak RSS | wall | MB/s | vs limit (cp/2) | vs shuf | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for _, name, wall, peak, note in rows:
        rate = nbytes / wall / 1e6
        vs_shuf = f"{rate / shuf_rate:.2f}x" if shuf_rate else "-"
        print(f"| {name} | {peak / 2**20:.0f} MiB | {wall:.2f} s | {rate:.0f} | {rate / limit:.2f}x | "
              f"{vs_shuf} | {note} |")


if __name__ == "__main__":
    main()
