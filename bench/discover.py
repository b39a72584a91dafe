"""New-word discovery benchmark: ``tokenmill discover`` as a lexicon for jieba on SIGHAN 2005 MSR.

Not part of CI. The standard quality check of the discover issue: run ``tokenmill discover`` on a
Chinese training file (a subprocess of this interpreter, so the real command is measured: wall
time, and peak RSS of its process tree sampled every 50 ms), take the first --top words of its
TSV (``word<TAB>count<TAB>cohesion``, best first) as jieba's *only* dictionary (line ``word
count``), segment every line of the MSR test set with ``cut(line, HMM=False)`` and score it
against the gold segmentation. Published reference (Su Jianlin, PKU test set, THUCNews lexicon):
F1 0.742.

For context the same run scores reference lexicons, always with HMM off:
  jieba default dict   jieba's own dict.txt (349k words with counts)
  MSR training words   the gold word list of the MSR training set (no counts), every word with
                       freq 1. jieba picks the path maximising sum(log(freq / total)) and gives
                       unknown characters freq 1, so with equal counts it is the segmentation
                       into the fewest words, whatever the value; a value >= 2 would only break
                       ties between a word and unknown characters (F1 +0.0002). An in-domain
                       upper bound, not a fair competitor.
  single characters    every character a word, without jieba (the floor)

Scoring (``score()``): per line the set of (start, end) character spans of the produced words vs
the gold words, whitespace removed from both; P = matched / produced, R = matched / gold, summed
over all lines, F1 = 2PR / (P + R). OOV R = recall of the gold words that are not in the
lexicon, counting only words jieba can produce (see below); "OOV share" = their share of the gold
words. Offsets run over the whole file, so that the 8 places where the gold file puts a line's
opening quote at the end of the previous line (16 lines differ from msr_test.utf8 only there)
are scored correctly; they are listed as "lines that differ" and the whole text must be equal.
Note that jieba never joins characters outside [\\u4E00-\\u9FD5a-zA-Z0-9+#&._%-] (full-width
digits, punctuation): gold words such as "１７％" cannot be produced with any lexicon.

Usage (from the repo root; jieba is in the anchors venv and in python3):
    PYTHONPATH=src python3 bench/discover.py                        # discover + evaluate
    PYTHONPATH=src python3 bench/discover.py --words W.tsv          # evaluate an existing TSV
Output: a Markdown table on stdout; JSON in --json (default bench/out/discover-<time>.json) and
the discovered TSV next to it (bench/out/ is git-ignored).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from tokenmill.memory import tree_rss

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# What jieba can join into one word (its re_han_default); other characters always come out alone.
JIEBA_WORD = re.compile(r"[\u4E00-\u9FD5a-zA-Z0-9+#&._%\-]+")


def run_monitored(cmd):
    """Run ``cmd``; return (wall seconds, peak RSS of its process tree, sampled every 50 ms)."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid))
            done.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nfailed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return time.time() - t0, peak[0]


def read_words(path):
    """The rows (word, count, cohesion) of a discover TSV, in file order (headers and # lines skipped)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or line.startswith("#") or not parts[1].strip().isdigit():
                continue
            rows.append((parts[0], int(parts[1]), float(parts[2]) if len(parts) > 2 else 0.0))
    return rows


def read_lines(path):
    """Lines of a UTF-8 file without their line ends (CRLF or LF)."""
    with open(path, encoding="utf-8") as f:  # universal newlines: \r\n -> \n
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def score(produced_lines, gold_lines, lexicon=None):
    """Span P/R/F1 of a segmentation. Each line is a list of words or a whitespace-separated string.

    Whitespace is removed from both sides. Spans are (start, end) offsets into the concatenation
    of all lines, so a word moved across a line end (as the MSR gold file does with some opening
    quotes) still matches; lines whose texts differ are reported in ``differing_lines`` (1-based)
    and ValueError is raised if the texts of the whole files differ. With ``lexicon`` (a set of
    words) also the recall of the gold words that are not in it (``oov_recall``), counting only
    words jieba can produce (JIEBA_WORD: no punctuation, no full-width digits).
    """
    if len(produced_lines) != len(gold_lines):
        raise ValueError(f"{len(produced_lines)} produced lines vs {len(gold_lines)} gold lines")

    def words(line):
        line = line.split() if isinstance(line, str) else line
        return [w for w in ("".join(x.split()) for x in line) if w]

    produced, gold, differing = set(), {}, []
    p_pos = g_pos = 0
    for i, (p_line, g_line) in enumerate(zip(produced_lines, gold_lines), 1):
        p_words, g_words = words(p_line), words(g_line)
        if "".join(p_words) != "".join(g_words):
            differing.append(i)
        for w in p_words:
            produced.add((p_pos, p_pos + len(w)))
            p_pos += len(w)
        for w in g_words:
            gold[(g_pos, g_pos + len(w))] = w
            g_pos += len(w)
    if p_pos != g_pos:
        raise ValueError(f"texts differ: {p_pos} produced vs {g_pos} gold characters; lines {differing[:10]}")
    matched = produced & gold.keys()
    p = len(matched) / len(produced) if produced else 0.0
    r = len(matched) / len(gold) if gold else 0.0
    out = {"produced": len(produced), "gold": len(gold), "matched": len(matched), "precision": p,
           "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "differing_lines": differing}
    if lexicon is not None:
        oov = [span for span, w in gold.items() if w not in lexicon and JIEBA_WORD.fullmatch(w)]
        out["oov_gold"] = len(oov)
        out["oov_recall"] = sum(span in matched for span in oov) / len(oov) if oov else 0.0
    return out


def jieba_segment(test_lines, dictionary, tmp):
    """Segment with a fresh jieba.Tokenizer (HMM off) whose cache goes to ``tmp``; return (lines, lexicon)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tok = jieba.Tokenizer() if dictionary is None else jieba.Tokenizer(dictionary=dictionary)
    tok.tmp_dir = tmp  # jieba caches the prefix dict as <tmp_dir>/jieba*.cache; default /tmp
    tok.initialize()
    lexicon = {w for w, f in tok.FREQ.items() if f > 0}
    return [list(tok.cut("".join(line.split()), HMM=False)) for line in test_lines], lexicon


def write_dictionary(path, entries):
    """jieba dictionary file: ``word freq`` per line. Words with whitespace cannot be written: skipped."""
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for word, freq in entries:
            if word and not any(c.isspace() for c in word):
                f.write(f"{word} {max(int(freq), 1)}\n")
                written += 1
    return written


def discover(args, out_tsv):
    """Run ``tokenmill discover`` on args.train into ``out_tsv``; return (seconds, peak RSS)."""
    # `python -m tokenmill` needs tokenmill/__main__.py; tokenmill.cli is the same entry point.
    module = "tokenmill" if importlib.util.find_spec("tokenmill.__main__") else "tokenmill.cli"
    cmd = [sys.executable, "-m", module, "discover", args.train, "-o", out_tsv, "--order", str(args.order),
           "--min-count", str(args.min_count), "--min-pmi", args.min_pmi]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    if args.memory:
        cmd += ["--memory", args.memory]
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    return run_monitored(cmd)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="/tmp/corpus/zh.train.txt",
                   help="Chinese text to discover words in (default %(default)s; make it with "
                   "`sh ../shared/corpus/unpack.sh /tmp/corpus` from the repo root)")
    p.add_argument("--words", metavar="FILE",
                   help="skip discovery and evaluate this TSV (word<TAB>count[<TAB>cohesion], best first)")
    p.add_argument("--top", type=int, default=50000,
                   help="how many words of the TSV (from the top) make jieba's dictionary (default %(default)s)")
    p.add_argument("--order", type=int, default=4, help="passed to discover: n-gram order (default %(default)s)")
    p.add_argument("--min-count", type=int, default=32,
                   help="passed to discover: minimum n-gram/word count (default %(default)s)")
    p.add_argument("--min-pmi", default="0,2,4,6",
                   help="passed to discover: lowest ln cohesion for n-grams of length 1, 2, ... (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="passed to discover: threads, 0 = all CPUs (default: its own)")
    p.add_argument("--memory", default=None, help="passed to discover: memory budget, e.g. 2G (default: its own)")
    p.add_argument("--segmentation", default=os.path.join(os.path.dirname(REPO), "shared", "segmentation"),
                   metavar="DIR", help="folder with msr_test.utf8, msr_test_gold.utf8, msr_training_words.utf8 "
                   "(default %(default)s)")
    p.add_argument("--json", metavar="OUT", help="results file (default bench/out/discover-<time>.json)")
    args = p.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_json = args.json or os.path.join(HERE, "out", f"discover-{stamp}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    seg = args.segmentation
    test_lines = read_lines(os.path.join(seg, "msr_test.utf8"))
    gold_lines = read_lines(os.path.join(seg, "msr_test_gold.utf8"))
    msr_words = [w.strip() for w in read_lines(os.path.join(seg, "msr_training_words.utf8")) if w.strip()]

    discovery = {}
    if args.words:
        words_tsv = args.words
    else:
        if not os.path.exists(args.train):
            raise SystemExit(f"{args.train} not found: run `sh ../shared/corpus/unpack.sh /tmp/corpus` "
                             "from the repo root (or pass --train FILE, or --words FILE)")
        words_tsv = os.path.splitext(out_json)[0] + ".words.tsv"
        seconds, peak = discover(args, words_tsv)
        discovery = {"seconds": seconds, "peak_rss": peak, "train_bytes": os.path.getsize(args.train)}
    rows = read_words(words_tsv)
    if any(a[1] < b[1] for a, b in zip(rows, rows[1:])):
        print(f"warning: {words_tsv} is not sorted by count; taking its first {args.top} rows", file=sys.stderr)

    tmp = tempfile.mkdtemp(prefix="tokenmill-bench-discover-")
    results = []
    try:
        lexicons = [
            (f"discover top {args.top}", [(w, c) for w, c, _ in rows[:args.top]]),
            ("jieba default dict", None),
            ("MSR training words (freq 1)", [(w, 1) for w in msr_words]),
        ]
        for name, entries in lexicons:
            t0 = time.time()
            path, size = None, None
            if entries is not None:
                path = os.path.join(tmp, f"dict{len(results)}.txt")
                size = write_dictionary(path, entries)
            produced, lexicon = jieba_segment(test_lines, path, tmp)
            r = {"lexicon": name, "words": size or len(lexicon), **score(produced, gold_lines, lexicon),
                 "seconds": time.time() - t0}
            if name.startswith("discover"):
                r.update(discovered=len(rows), **{f"discovery_{k}": v for k, v in discovery.items()})
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "differing_lines"}), file=sys.stderr, flush=True)
        chars = [list("".join(line.split())) for line in test_lines]
        results.append({"lexicon": "single characters", "words": None, **score(chars, gold_lines)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    differing = results[0]["differing_lines"]
    print(f"\n## jieba (HMM off) on SIGHAN 2005 MSR test ({len(gold_lines)} lines, "
          f"{results[0]['gold']} gold words), lexicon = {os.path.basename(words_tsv)} / references\n")
    print("| lexicon | words | P | R | F1 | OOV share | OOV R | discovery wall | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        oov = (f"{r['oov_gold'] / r['gold']:.1%} | {r['oov_recall']:.3f}" if "oov_gold" in r else "– | –")
        run = (f"{r['discovery_seconds']:.1f} s | {r['discovery_peak_rss'] / 2**30:.2f} GB"
               if "discovery_seconds" in r else "– | –")
        print(f"| {r['lexicon']} | {r['words'] or '–'} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['f1']:.3f} | {oov} | {run} |")
    print(f"\n{len(rows)} words in the TSV. {len(differing)} lines differ between msr_test.utf8 and the gold "
          f"file (misplaced opening quotes, scored over the whole text): {differing}")
    gold_words = [w for line in gold_lines for w in line.split()]
    never = sum(len(w) > 1 and not JIEBA_WORD.fullmatch(w) for w in gold_words)
    print(f"{never} gold words ({never / len(gold_words):.1%}) have characters jieba never joins "
          "(e.g. full-width digits): no lexicon recovers them.")
    print("Reference: Su Jianlin, PKU test set, THUCNews lexicon: F1 0.742.")
    with open(out_json, "w") as f:
        json.dump({"args": vars(args), "words_tsv": words_tsv, "results": results}, f, indent=1)
    print(f"\n(JSON: {out_json})")


if __name__ == "__main__":
    main()
