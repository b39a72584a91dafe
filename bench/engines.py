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
work is done by Ray's worker processes). CPU time is the whole machine's user + system time
during the command (/proc/stat; Ray's workers are not the command's children), least of
--repeat: unlike wall time it does not grow when the hypervisor takes the CPUs away, which
the "most stolen" column shows (steal time, the worst run of the row). "Median of pairs":
each repeat runs local then Ray back to back; the median of those pairs' ratios, which a
single slow run moves less than the best-of figures.

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


def machine_cpu() -> tuple[float, float]:
    """(CPU seconds used, CPU seconds stolen by the hypervisor) on the whole machine since boot,
    from /proc/stat: a job's CPU time on Ray is spread over worker processes that are not the
    command's children, so it is measured machine-wide (nothing else runs during the bench
    but the idle cluster)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def run(cmd, env) -> tuple[float, int, float, float]:
    """(wall seconds, VmHWM bytes of the command, machine CPU seconds, stolen seconds)."""
    # VmHWM of /proc/self/status, not getrusage's ru_maxrss: Linux carries ru_maxrss over
    # from the forking parent across exec, so every command would show at least this
    # script's peak
    wrapper = ("import runpy, sys; sys.argv = ['tokenmill'] + sys.argv[1:]\n"
               "try:\n    runpy.run_module('tokenmill', run_name='__main__')\n"
               "finally:\n    print('VMHWM', [l.split()[1] for l in open('/proc/self/status') "
               "if l.startswith('VmHWM')][0], file=sys.stderr)\n")
    cpu0, steal0 = machine_cpu()
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    cpu1, steal1 = machine_cpu()
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    peak = [int(line.split()[1]) * 1024 for line in r.stderr.splitlines() if line.startswith("VMHWM")]
    return wall, peak[-1] if peak else 0, cpu1 - cpu0, steal1 - steal0


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
            with open(path, "wb") as f:
                for _ in range(n):
                    with open(args.train, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 20)
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
            cpus, stolen, walls = {}, {}, {}
            for rep in range(args.repeat):
                for engine in ("local", "ray"):
                    out = os.path.join(work, f"{engine}-{out_name}")
                    if os.path.isdir(out):
                        shutil.rmtree(out)
                    extra = ["--engine", engine] + (["--ray-address", address] if engine == "ray" else [])
                    wall, peak, cpu, steal = run(cmd + extra + ["-o", out, "--no-progress"], env)
                    if engine not in best or wall < best[engine][0]:
                        best[engine] = (wall, peak)
                    walls.setdefault(engine, []).append(wall)
                    cpus.setdefault(engine, []).append(cpu)
                    stolen.setdefault(engine, []).append(steal)
                    print(f"  {name} {engine}: {wall:.2f} s, CPU {cpu:.2f} s, stolen {steal:.2f} s", file=sys.stderr)
                    outs[engine] = out
            identical = same(outs["local"], outs["ray"])
            rows.append({"job": name, "local_s": best["local"][0], "ray_s": best["ray"][0],
                         "ratio": best["ray"][0] / best["local"][0], "local_peak": best["local"][1],
                         "ray_driver_peak": best["ray"][1], "identical": identical,
                         "pair_ratios": [r / l for l, r in zip(walls["local"], walls["ray"])],
                         "local_cpu_s": min(cpus["local"]), "ray_cpu_s": min(cpus["ray"]),
                         "cpu_ratio": min(cpus["ray"]) / max(min(cpus["local"]), 1e-9),
                         "stolen_s": {e: stolen[e] for e in stolen}})
            print(f"{name}: local {best['local'][0]:.2f} s, ray {best['ray'][0]:.2f} s "
                  f"({rows[-1]['ratio']:.2f}x), identical {identical}", file=sys.stderr)
    finally:
        from tokenmill.testing import stop_sessions

        stop_sessions([head.pid])      # this node only (`ray stop` stops every node)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"\n{os.path.basename(args.train)} x {args.copies} (shuffle: x {args.shuffle_copies}), "
          f"{args.cpus} CPUs, best of {args.repeat}\n")
    print("| job | local | Ray | Ray / local | median of pairs | Ray - local | CPU time Ray / local | most stolen | "
          "peak RSS local / Ray driver | outputs identical |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        most = max(max(v) for v in r["stolen_s"].values())
        pairs = sorted(r["pair_ratios"])
        median = (pairs[(len(pairs) - 1) // 2] + pairs[len(pairs) // 2]) / 2
        print(f"| {r['job']} | {r['local_s']:.2f} s | {r['ray_s']:.2f} s | {r['ratio']:.2f}x | {median:.2f}x | "
              f"{r['ray_s'] - r['local_s']:+.2f} s | {r['cpu_ratio']:.2f}x | {most:.2f} s | "
              f"{r['local_peak'] / 2**20:.0f} / {r['ray_driver_peak'] / 2**20:.0f} MB | {r['identical']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
