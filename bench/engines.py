"""Benchmark: every job on the local engine and on Ray, on this one machine (not in CI).

    PYTHONPATH=src python3 bench/engines.py [--train /tmp/corpus/zh.train.txt] [--cpus 2]
        [--repeat 2] [--jobs count-1KB,count,shuffle,discover,encode-corpus,train] [--model M.json]

Starts a one-node Ray cluster (`ray start --head --num-cpus CPUS`, its own token), then runs
each job as a fresh `python -m tokenmill ...` subprocess with `--engine local` and with
`--engine ray --ray-address` that cluster, alternately, best of --repeat; compares the outputs
byte for byte, and prints a Markdown table with the Ray / local time ratio (the issue's
target: overhead <= 15 %, i.e. a ratio <= 1.15) and the difference in seconds. The cluster
(only it) is stopped at the end. Wall times include everything the command does (connecting
to Ray included); peak RSS is each command's VmHWM (on Ray that of the driver only: the
work is done by Ray's worker processes).

`count-1KB` counts a file of a few lines: what it measures is each engine's fixed cost per
job (on Ray: importing Ray, connecting, starting the job's worker processes, disconnecting).

Inputs: zh.train.txt of ../shared/corpus (unpack with sh ../shared/corpus/unpack.sh
/tmp/corpus); the shuffle's is --shuffle-copies copies of it, with --memory a tenth of that.
encode-corpus needs a model: --model, else the job trains one first (32k).
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jobs(train: str, big: str, model: str, tiny: str):
    return {
        "count-1KB": (["count", tiny, "--unit", "char", "--order", "2"], "tiny.tsv"),
        "count": (["count", train, "--unit", "char", "--order", "4", "--min-count", "2", "--memory", "4G"], "count.tsv"),
        "shuffle": (["shuffle", big, "--memory", f"{max(os.path.getsize(big) // 10, 1 << 20)}", "--seed", "1"],
                    "shuffled.txt"),
        "discover": (["discover", train], "words.tsv"),
        "encode-corpus": (["encode-corpus", train, "-m", model], "shards"),
        "train": (["train", train, "--vocab-size", "32000"], "model.json"),
    }


def same(a: str, b: str) -> bool:
    if os.path.isdir(a):
        names = sorted(os.listdir(a))
        return names == sorted(os.listdir(b)) and all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False)
                                                      for n in names)
    return filecmp.cmp(a, b, shallow=False)


def run(cmd, env) -> tuple[float, int]:
    """(wall seconds, VmHWM bytes of the command)."""
    wrapper = ("import resource, runpy, sys; sys.argv = ['tokenmill'] + sys.argv[1:]\n"
               "try:\n    runpy.run_module('tokenmill', run_name='__main__')\n"
               "finally:\n    print('VMHWM', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    peak = [int(line.split()[1]) * 1024 for line in r.stderr.splitlines() if line.startswith("VMHWM")]
    return wall, peak[-1] if peak else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", default="/tmp/corpus/zh.train.txt")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--jobs", default="count-1KB,count,shuffle,discover,encode-corpus,train")
    ap.add_argument("--model", default=None, help="model for encode-corpus (default: train one)")
    ap.add_argument("--shuffle-copies", type=int, default=10,
                    help="the shuffle's input is this many copies of --train (it takes a second locally)")
    ap.add_argument("--copies", type=int, default=1,
                    help="the other jobs' input is this many copies of --train (to see the fixed costs "
                         "of Ray amortized)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    if not os.path.exists(args.train):
        raise SystemExit(f"{args.train}: not found (sh ../shared/corpus/unpack.sh /tmp/corpus)")
    work = tempfile.mkdtemp(prefix="tokenmill-bench-engines-")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(16), OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    ray_tmp = tempfile.mkdtemp(prefix="tm-ray-")     # Ray's session files, removed at the end
    head = subprocess.Popen([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                             f"--num-cpus={args.cpus}", "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={ray_tmp}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)     # the node's processes keep this session
    log, _ = head.communicate()
    if head.returncode:
        raise SystemExit(f"ray start failed:\n{log.decode(errors='replace')}")
    rows = []
    try:
        model = args.model
        wanted = args.jobs.split(",")
        def copies(n, name):
            if n <= 1:
                return args.train
            path = os.path.join(work, name)
            with open(path, "wb") as f, open(args.train, "rb") as src:
                data = src.read()
                for _ in range(n):
                    f.write(data)
            return path

        big = copies(args.shuffle_copies, "shuffle-input.txt") if "shuffle" in wanted else args.train
        train = copies(args.copies, "input.txt")
        tiny = os.path.join(work, "tiny.txt")
        with open(args.train, "rb") as src, open(tiny, "wb") as f:
            f.write(b"".join(src.readline() for _ in range(50))[:1024].rsplit(b"\n", 1)[0] + b"\n")
        if "encode-corpus" in wanted and model is None:
            model = os.path.join(work, "bench-model.json")
            run(["train", train, "--vocab-size", "32000", "-o", model, "--no-progress"], env)
        for name in wanted:
            cmd, out_name = jobs(train, big, model, tiny)[name]
            best = {}
            outs = {}
            for rep in range(args.repeat):
                for engine in ("local", "ray"):
                    out = os.path.join(work, f"{engine}-{out_name}")
                    if os.path.isdir(out):
                        shutil.rmtree(out)
                    extra = ["--engine", engine] + (["--ray-address", address] if engine == "ray" else [])
                    wall, peak = run(cmd + extra + ["-o", out, "--no-progress"], env)
                    if engine not in best or wall < best[engine][0]:
                        best[engine] = (wall, peak)
                    outs[engine] = out
            identical = same(outs["local"], outs["ray"])
            rows.append({"job": name, "local_s": best["local"][0], "ray_s": best["ray"][0],
                         "ratio": best["ray"][0] / best["local"][0], "local_peak": best["local"][1],
                         "ray_driver_peak": best["ray"][1], "identical": identical})
            print(f"{name}: local {best['local'][0]:.2f} s, ray {best['ray'][0]:.2f} s "
                  f"({rows[-1]['ratio']:.2f}x), identical {identical}", file=sys.stderr)
    finally:
        from tokenmill.testing import stop_sessions

        stop_sessions([head.pid])      # this node only (`ray stop` stops every node)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"\n{os.path.basename(args.train)} x {args.copies} (shuffle: x {args.shuffle_copies}), "
          f"{args.cpus} CPUs, best of {args.repeat}\n")
    print("| job | local | Ray | Ray / local | Ray - local | peak RSS local / Ray driver | outputs identical |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['job']} | {r['local_s']:.2f} s | {r['ray_s']:.2f} s | {r['ratio']:.2f}x | "
              f"{r['ray_s'] - r['local_s']:+.2f} s | {r['local_peak'] / 2**20:.0f} / {r['ray_driver_peak'] / 2**20:.0f} MB | "
              f"{r['identical']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
