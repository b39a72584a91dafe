"""Training benchmark: tokenmill against SentencePiece (unigram, BPE), HF byte-level BPE and
bytepiece 0.6.3, in one run, on the same data, vocabulary sizes and thread count.

For every (tool, vocab size) a fresh subprocess trains a model; the wall time of the training
call is reported by the child (``TRAIN_SECONDS``), and the peak RSS of the child's whole process
tree is sampled from /proc every 0.1 s by this script. A second subprocess then encodes every
line of each held-out file (without its newline) and reports bytes/token. With ``--scaling`` tokenmill
is also trained on the first 25 % / 50 % / 100 % of the training file.

Not run in CI. Anchors run with ``--anchors-python`` (a venv with sentencepiece, tokenizers,
bytepiece; see bench/README.md); tokenmill with this interpreter.

    python bench/train.py --train zh --sizes 32000 64000 --scaling
    python bench/train.py --tools tokenmill,tokenmill-norefine --sizes 32000   # tokenmill only
    python bench/train.py --tools o6,tokenmill --sizes 64000 --variant "o6=order=6, min_count=2"

Output: a Markdown table on stdout, JSON in ``--out`` (default bench/out/train-<time>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from tokenmill.memory import tree_rss

HERE = os.path.dirname(os.path.abspath(__file__))

TRAIN = {
    "tokenmill": """
import sys, time
from tokenmill.trainer import Trainer
from tokenmill.spec import TrainerSpec
t0 = time.time()
[tok] = Trainer(TrainerSpec(vocab_size=[V], workers=W, progress=False EXTRA)).train([DATA])
tok.save(OUT)
print("TRAIN_SECONDS", time.time() - t0)
""",
    "sp": """
import time, sentencepiece as spm
t0 = time.time()
spm.SentencePieceTrainer.train(input=DATA, model_type=TYPE, vocab_size=V, byte_fallback=True,
    character_coverage=0.9995, max_sentence_length=1 << 20, input_sentence_size=0,
    normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
    num_threads=W, model_prefix=OUT[:-6], minloglevel=2 EXTRA)
print("TRAIN_SECONDS", time.time() - t0)
""",
    "hf": """
import os, time
os.environ["RAYON_NUM_THREADS"] = str(W)
from tokenizers import ByteLevelBPETokenizer
t0 = time.time()
tok = ByteLevelBPETokenizer(add_prefix_space=False)
tok.train(files=[DATA], vocab_size=V, min_frequency=2, special_tokens=[], show_progress=False)
tok.save(OUT)
print("TRAIN_SECONDS", time.time() - t0)
""",
    "bytepiece": """
import time
from bytepiece import Trainer
class Corpus:  # re-readable: bytepiece iterates its input twice (n-grams, then pieces)
    def __iter__(self):
        with open(DATA, encoding="utf-8", errors="surrogateescape") as f:
            yield from f
t0 = time.time()
tr = Trainer(order=6, max_vocab_size=V)
tr.train(Corpus(), workers=W, batch_size=1000)
tr.save(OUT)
print("TRAIN_SECONDS", time.time() - t0)
""",
}

EVAL = {
    "tokenmill": """
from tokenmill import Tokenizer
tok = Tokenizer.load(MODEL)
count = lambda lines: sum(len(x) for x in tok.encode_batch(lines, num_threads=2))
""",
    "sp": """
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=MODEL)
count = lambda lines: sum(len(x) for x in sp.encode([l.decode("utf-8", "replace") for l in lines], num_threads=2))
""",
    "hf": """
from tokenizers import Tokenizer
tok = Tokenizer.from_file(MODEL)
count = lambda lines: sum(len(e.ids) for e in tok.encode_batch([l.decode("utf-8", "replace") for l in lines]))
""",
    "bytepiece": """
from bytepiece import Tokenizer
tok = Tokenizer(MODEL)
count = lambda lines: sum(len(tok.encode(l.decode("utf-8", "replace"))) for l in lines)
""",
}

EVAL_TAIL = """
import json
out = {}
for name, path in FILES:
    with open(path, "rb") as f:
        lines = f.read().split(b"\\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out[name] = sum(map(len, lines)) / count(lines)
print("BPT", json.dumps(out))
"""

# tool name -> (kind, python to use, extra keyword text, model file extension)
TOOLS = {
    "tokenmill": ("tokenmill", "self", "", ".json"),
    "tokenmill-norefine": ("tokenmill", "self", ", refine=False", ".json"),
    "tokenmill-order7": ("tokenmill", "self", ", order=7", ".json"),
    "tokenmill-em": ("tokenmill", "self", ", refine_loss='likelihood', refine_estimate='em'", ".json"),
    "sp-unigram": ("sp", "anchors", "", ".model"),
    "sp-unigram-fair": ("sp", "anchors", ", split_by_whitespace=False, max_sentencepiece_length=36", ".model"),
    "sp-bpe": ("sp", "anchors", "", ".model"),
    "sp-bpe-fair": ("sp", "anchors", ", split_by_whitespace=False, max_sentencepiece_length=36", ".model"),
    "hf-bpe": ("hf", "anchors", "", ".json"),
    "bytepiece": ("bytepiece", "anchors", "", ".model"),
}




def run_monitored(cmd, env=None):
    """Run ``cmd``; return (stdout, wall seconds, peak tree RSS)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err.decode(errors='replace')[-2000:]}")
    return out.decode(), time.time() - t0, peak[0]


def fill(template, **values):
    for k, v in values.items():
        template = template.replace(k, v)
    return template


def train_one(tool, data, size, workdir, args):
    kind, which, extra, ext = TOOLS[tool]
    python = sys.executable if which == "self" else args.anchors_python
    model = os.path.join(workdir, f"{tool}-{os.path.basename(data)}-{size}{ext}")
    code = fill(TRAIN[kind], DATA=repr(data), OUT=repr(model), V=str(size), W=str(args.threads),
                EXTRA=extra, TYPE=repr("bpe" if "bpe" in tool else "unigram"))
    out, wall, peak = run_monitored([python, "-c", code])
    seconds = float(next(line.split()[1] for line in out.splitlines() if line.startswith("TRAIN_SECONDS")))
    return model, seconds, peak


def eval_one(tool, model, args):
    kind, which, _, _ = TOOLS[tool]
    python = sys.executable if which == "self" else args.anchors_python
    files = [(name, os.path.join(args.corpus, f"{name}.test.txt")) for name in args.test]
    code = fill(EVAL[kind], MODEL=repr(model)) + fill(EVAL_TAIL, FILES=repr(files))
    out, _, _ = run_monitored([python, "-c", code])
    return json.loads(next(line[4:] for line in out.splitlines() if line.startswith("BPT ")))


def prefix_file(path, fraction, workdir):
    """The first ``fraction`` of ``path``'s lines (whole lines), as a new file."""
    out = os.path.join(workdir, f"{os.path.basename(path)}.{int(fraction * 100)}pct")
    with open(path, "rb") as f:
        data = f.read()
    cut = data.rfind(b"\n", 0, int(len(data) * fraction)) + 1 if fraction < 1 else len(data)
    with open(out, "wb") as f:
        f.write(data[:cut])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="/tmp/corpus", help="folder with {zh,en,code}.{train,test}.txt")
    p.add_argument("--train", default="zh", help="training file name (zh, en, code)")
    p.add_argument("--test", nargs="+", default=["zh", "en", "code"])
    p.add_argument("--sizes", nargs="+", type=int, default=[32000, 64000])
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, from {', '.join(TOOLS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--anchors-python", default="/work/anchors-venv/bin/python")
    p.add_argument("--scaling", action="store_true", help="also tokenmill at 25/50/100%% of the train file")
    p.add_argument("--workdir", default=None, help="where models go (default: a temporary folder)")
    p.add_argument("--out", default=None, help="JSON results path")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS",
                   help="an extra tokenmill tool with Trainer options, e.g. 'o7rf2=order=7, refine_factor=2.0' "
                        "(then list NAME in --tools)")
    args = p.parse_args(argv)
    for v in args.variant:
        name, _, opts = v.partition("=")
        TOOLS[name] = ("tokenmill", "self", ", " + opts, ".json")
    tools = [t for t in args.tools.split(",") if t]
    workdir = args.workdir or tempfile.mkdtemp(prefix="tokenmill-bench-train-")
    os.makedirs(workdir, exist_ok=True)
    data = os.path.join(args.corpus, f"{args.train}.train.txt")
    results = []
    for size in args.sizes:
        for tool in tools:
            model, seconds, peak = train_one(tool, data, size, workdir, args)
            bpt = eval_one(tool, model, args)
            row = {"tool": tool, "size": size, "train_seconds": seconds, "peak_rss": peak, "bpt": bpt}
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    scaling = []
    if args.scaling:
        for fraction in (0.25, 0.5, 1.0):
            part = prefix_file(data, fraction, workdir)
            model, seconds, peak = train_one("tokenmill", part, args.sizes[0], workdir, args)
            scaling.append({"fraction": fraction, "bytes": os.path.getsize(part), "train_seconds": seconds,
                            "peak_rss": peak})
            print(json.dumps(scaling[-1]), file=sys.stderr, flush=True)
    # report
    print(f"\n## Training on {args.train}.train.txt ({os.path.getsize(data) / 1e6:.1f} MB), "
          f"{args.threads} threads, one run\n")
    print("| tool | vocab | train wall | peak RSS (tree) | " + " | ".join(f"{t}.test B/tok" for t in args.test) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(args.test))
    for r in results:
        print(f"| {r['tool']} | {r['size']} | {r['train_seconds']:.1f} s | {r['peak_rss'] / 2**30:.2f} GB | "
              + " | ".join(f"{r['bpt'][t]:.3f}" for t in args.test) + " |")
    for size in args.sizes:
        rows = {r["tool"]: r for r in results if r["size"] == size}
        if "tokenmill" not in rows:
            continue
        tm = rows["tokenmill"]
        anchors = {k: v for k, v in rows.items() if TOOLS[k][0] != "tokenmill"}   # variants are not anchors
        if anchors:
            print(f"\nRatios at {size} (tokenmill / anchor):")
            for t in args.test:
                best = max(anchors.values(), key=lambda r: r["bpt"][t])
                print(f"- {t}.test B/tok: {tm['bpt'][t] / best['bpt'][t]:.3f}x the best anchor ({best['tool']})")
            for name in ("bytepiece", "sp-unigram"):
                if name in anchors:
                    print(f"- train time: {tm['train_seconds'] / anchors[name]['train_seconds']:.2f}x {name}'s")
            lean = min(anchors.values(), key=lambda r: r["peak_rss"])
            print(f"- peak RSS: {tm['peak_rss'] / lean['peak_rss']:.2f}x the leanest anchor's ({lean['tool']})")
    if scaling:
        print("\n| fraction of train file | MB | train wall | peak RSS |\n|---:|---:|---:|---:|")
        for s in scaling:
            print(f"| {int(s['fraction'] * 100)} % | {s['bytes'] / 1e6:.1f} | {s['train_seconds']:.1f} s | "
                  f"{s['peak_rss'] / 2**20:.0f} MB |")
    out = args.out or os.path.join(HERE, "out", f"train-{time.strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"args": vars(args), "results": results, "scaling": scaling}, f, indent=1)
    print(f"\n(JSON: {out})")


if __name__ == "__main__":
    main()
