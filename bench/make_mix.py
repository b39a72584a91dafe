"""Builds the mixed benchmark files of ../shared/corpus/BASELINES.md ("Data") from the unpacked corpus.

    sh ../shared/corpus/unpack.sh /tmp/corpus && python bench/make_mix.py /tmp/corpus

mix.train.txt: the first 48 MiB of zh.train + 28 MiB of en.train + 16 MiB of code.train (whole
lines), lines shuffled together with random.Random(7); mix.test.txt: zh.test + en.test +
code.test concatenated. BASELINES.md gives 96.47 MB and 9.79 MB of text for them.
"""
import argparse
import os
import random


def head_lines(path, nbytes):
    with open(path, "rb") as f:
        data = f.read(nbytes)
    return data[:data.rfind(b"\n") + 1].split(b"\n")[:-1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus", nargs="?", default="/tmp/corpus", help="folder with {zh,en,code}.{train,test}.txt")
    args = p.parse_args()
    d = args.corpus
    lines = (head_lines(os.path.join(d, "zh.train.txt"), 48 << 20) + head_lines(os.path.join(d, "en.train.txt"), 28 << 20)
             + head_lines(os.path.join(d, "code.train.txt"), 16 << 20))
    random.Random(7).shuffle(lines)
    with open(os.path.join(d, "mix.train.txt"), "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    with open(os.path.join(d, "mix.test.txt"), "wb") as f:
        for name in ("zh", "en", "code"):
            with open(os.path.join(d, f"{name}.test.txt"), "rb") as g:
                f.write(g.read())
    for name in ("mix.train.txt", "mix.test.txt"):
        print(os.path.join(d, name), os.path.getsize(os.path.join(d, name)))


if __name__ == "__main__":
    main()
