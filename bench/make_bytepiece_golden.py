"""Write tests/data/bytepiece_golden.jsonl.gz: BytePiece 0.6.3's own segmentations (golden data).

The golden file records, for a fixed set of texts, what the reference implementation
(bytepiece 0.6.3, ``bytepiece.Tokenizer``) produces with the BytePiece model
``bytepiece.eu.plus.80k`` (shared/models/bytepiece.eu.plus.80k.zip, Apache-2.0). tokenmill's
tests compare ``Tokenizer.from_bytepiece(...)`` against it without needing bytepiece installed.

This script is NOT run by the tests or CI; it needs bytepiece, which is not a dependency of
tokenmill. To re-create the committed file exactly:

    python3 -m venv /work/anchors-venv && . /work/anchors-venv/bin/activate
    pip install -U pip wheel setuptools
    pip install numpy tqdm Cython
    # bytepiece needs the *bytes* build of pyahocorasick (the PyPI wheel is the unicode build)
    AHOCORASICK_BYTES=1 pip install --no-binary pyahocorasick --no-cache-dir pyahocorasick
    python -c "import ahocorasick; assert ahocorasick.unicode == 0"
    # bytepiece's setup.py imports Cython but does not declare it: build without isolation
    pip install --no-build-isolation --no-deps bytepiece==0.6.3
    python bench/make_bytepiece_golden.py \
        --model /work/shared/models/bytepiece.eu.plus.80k.zip   # from the repo root

(versions used: bytepiece 0.6.3, pyahocorasick 2.3.1, numpy 2.4.6, CPython 3.11.7.)

Input texts:
  (a) 1500 distinct lines drawn with random.Random(20261122) from src/tokenmill/data/sample.txt.gz
      (one document per line; the line's newline is not part of the text), in the order drawn;
  (b) hand-written edge cases (empty string, newline runs, tabs, CR, mixed scripts, emoji,
      control characters, a ~20 kB line, ...), see ``edge_cases()``.
Only texts that are already NFC are kept (bytepiece NFC-normalises its input, so a non-NFC
text would not round-trip and its pieces would describe a different string).

Each output line is a JSON object
    {"text": str, "pieces": [base64(piece bytes), ...], "ids": [int, ...]}
with pieces = tk.tokenize(text) and ids = tk.encode(text) (no BOS/EOS; ids 0/1/2 are
BytePiece's <pad>/<bos>/<eos>, 3..258 the single bytes). The file is gzip with mtime=0 and no
file name in its header, so re-running the script gives a byte-identical file.

Offline check (not committed): ``--full-dump OUTDIR --corpus DIR`` additionally writes
OUTDIR/bytepiece_full_<name>.jsonl.gz for DIR/<name>.test.txt (name in zh, en, code), one
record per line of the file (text without its newline): {"i": line index, "text": ...,
"pieces": [...], "ids": [...]}. Those are plain gzip, not made deterministic.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import random
import sys
import unicodedata
import zipfile
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "src" / "tokenmill" / "data" / "sample.txt.gz"
OUT = REPO / "tests" / "data" / "bytepiece_golden.jsonl.gz"
SEED = 20261122
N_SAMPLE = 1500


def load_tokenizer(path: str):
    """bytepiece.Tokenizer from a .model JSON file or a zip holding exactly one .model."""
    from bytepiece import Tokenizer

    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".model")]
            if len(names) != 1:
                raise SystemExit(f"{path}: expected one .model member, found {names}")
            pieces = json.loads(z.read(names[0]).decode("utf-8"))
        return Tokenizer(pieces)
    return Tokenizer(path)


def sample_lines() -> tuple[list[str], list[str]]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    distinct = list(dict.fromkeys(lines))  # code lines such as "pass" repeat; keep first
    idx = random.Random(SEED).sample(range(len(distinct)), N_SAMPLE)
    return [distinct[i] for i in idx], lines


def edge_cases(all_lines: list[str]) -> list[str]:
    zh = [l for l in all_lines if l.startswith("第")]
    code = [l for l in all_lines if not l.startswith("第")]
    cases = [
        "",
        "a",
        "\n",
        "\n\n",
        "\n" * 150,               # a newline run longer than 100
        "x\n",
        "\nx",
        "a\n\n\nb",
        "a\nb\nc",
        "a\n\n\nb\n\n",
        "\t",
        "\t\t\t",
        "a\tb\t\tc",
        "def f(x):\n\treturn x\n",
        "\r",
        "\r\n",
        "a\r\nb\r\n",
        "a\rb\r\rc",
        "\r\n\r\n\n\r",
        " ",
        "   ",
        " leading space",
        "trailing space ",
        "    indented = 4  # comment",
        "中文English混合123，测试😀👍🏽 2024年11月22日",
        "emoji 😀😃😄 family 👨‍👩‍👧‍👦 flag 🇨🇳🇺🇸 keycap 1️⃣",
        "数字0123456789 ０１２３４５６７８９ 3.14159 -42 1e-10 0xFF",
        "全角标点：，。！？“引号”（括号）【方括号】《书名》…—",
        "第一条　为了规范……，制定本法。",
        "日本語のテキストとカタカナ、ひらがな。",
        "한국어 텍스트 (NFC 완성형)",
        "Ελληνικά και Русский текст and العربية",
        "café naïve Ångström façade résumé — already NFC",
        "𠀀𠀁𠀂 CJK extension B (4-byte UTF-8)",
        "\x00\x01\x02\x1b[0m\x7f control bytes",
        "\x0b\x0c vertical tab and form feed",
        "\u2028line separator\u2029paragraph separator\x85nel",
        "\u200b zero width\ufeff bom \u00a0nbsp",
        "a" * 1000,
        "的" * 500,
        "ab" * 300 + "\n" + "ha" * 200,
        "http://example.com/path?query=1&x=2#frag user@example.com",
        "import os, sys\nfrom typing import Any\n\n\nclass A:\n    pass\n",
        "if (x && y) { return *p++; } else { x <<= 2; }",
        "fn main() -> Result<(), Box<dyn Error>> { println!(\"{}\", 1); }",
        "\n".join(zh[:20]),         # several zh documents separated by newlines
        "\n\n".join(code[:40]),     # code lines separated by blank lines
    ]
    # a ~20 kB single line made by joining sample lines with a space
    long_line, i = [], 0
    while len(" ".join(long_line).encode()) < 20000:
        long_line.append(all_lines[(i * 7919) % len(all_lines)])
        i += 1
    cases.append(" ".join(long_line))
    return cases


def record(tk, text: str) -> dict:
    pieces = tk.tokenize(text)
    ids = tk.encode(text)
    assert b"".join(pieces) == text.encode("utf-8"), repr(text[:80])
    assert len(ids) == len(pieces)
    return {
        "text": text,
        "pieces": [base64.b64encode(p).decode("ascii") for p in pieces],
        "ids": ids,
    }


def write_golden(tk, out: Path) -> None:
    sampled, all_lines = sample_lines()
    texts, seen, dropped = [], set(), 0
    for t in sampled + edge_cases(all_lines):
        if unicodedata.normalize("NFC", t) != t:
            dropped += 1
            continue
        if t in seen:
            continue
        seen.add(t)
        texts.append(t)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for t in texts:
            line = json.dumps(record(tk, t), ensure_ascii=False, separators=(",", ":"))
            gz.write(line.encode("utf-8") + b"\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    print(f"wrote {out}: {len(texts)} records ({dropped} non-NFC dropped), "
          f"{len(buf.getvalue())} bytes", file=sys.stderr)


_TK = None


def _init(model):
    global _TK
    _TK = load_tokenizer(model)


def _dump_chunk(args):
    start, lines = args
    out = []
    for i, t in enumerate(lines, start):
        pieces = _TK.tokenize(t)
        out.append(json.dumps({
            "i": i, "text": t,
            "pieces": [base64.b64encode(p).decode("ascii") for p in pieces],
            "ids": _TK.pieces_to_ids(pieces),
        }, ensure_ascii=False, separators=(",", ":")))
    return out


def full_dump(model: str, corpus: Path, outdir: Path, workers: int) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    with Pool(workers, initializer=_init, initargs=(model,)) as pool:
        for name in ("zh", "en", "code"):
            with open(corpus / f"{name}.test.txt", encoding="utf-8", newline="") as f:
                lines = f.read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            chunks = [(s, lines[s:s + 2000]) for s in range(0, len(lines), 2000)]
            path = outdir / f"bytepiece_full_{name}.jsonl.gz"
            with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as gz:
                for part in pool.imap(_dump_chunk, chunks):
                    for line in part:
                        gz.write(line + "\n")
            print(f"wrote {path}: {len(lines)} lines", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="/work/shared/models/bytepiece.eu.plus.80k.zip")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--full-dump", type=Path, metavar="OUTDIR",
                    help="also dump bytepiece's pieces for every line of CORPUS/{zh,en,code}.test.txt")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/corpus"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-golden", action="store_true")
    args = ap.parse_args()
    if not args.skip_golden:
        write_golden(load_tokenizer(args.model), args.out)
    if args.full_dump:
        full_dump(args.model, args.corpus, args.full_dump, args.workers)


if __name__ == "__main__":
    main()
