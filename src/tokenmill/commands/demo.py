"""tokenmill demo: the main job end to end on the text sample the package ships."""
from __future__ import annotations

import time

HELP = "train a tokenizer on the bundled sample text, then encode, decode and report"
DESCRIPTION = """\
Train a byte-level unigram tokenizer on 90% of the 2 MB text sample shipped with tokenmill
(Chinese law articles and Python standard-library code; see tokenmill/data/SAMPLE-CREDITS.md),
then encode the held-out 10%, decode it back, and print compression (bytes per token), speed
and a few example segmentations. Takes well under a minute.
"""


def add_arguments(p):
    p.add_argument("--vocab-size", type=int, default=8000, metavar="N",
                   help="vocabulary size of the demo model (default: 8000)")
    p.add_argument("-o", "--output", default=None, metavar="MODEL",
                   help="also save the trained model to this file (e.g. demo-model.json)")


def load_sample() -> list[bytes]:
    import gzip
    from importlib import resources

    with resources.files("tokenmill").joinpath("data/sample.txt.gz").open("rb") as raw:
        with gzip.open(raw) as f:
            return f.read().split(b"\n")[:-1]


def _rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / max(seconds, 1e-9) / 1e6:.1f} MB/s"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args) -> int:
    import os

    from ..spec import TrainerSpec
    from ..trainer import Trainer

    lines = load_sample()
    train = [x for i, x in enumerate(lines) if i % 10]
    held_out = [x for i, x in enumerate(lines) if i % 10 == 0]
    n_train = sum(map(len, train))
    n_held = sum(map(len, held_out))
    print(f"sample: {len(lines):,} lines, {n_train / 1e6:.2f} MB to train on, {n_held / 1e6:.2f} MB held out")

    t0 = time.perf_counter()
    spec = TrainerSpec(vocab_size=[args.vocab_size], special_tokens=["<pad>", "<bos>", "<eos>"])
    tok = Trainer(spec).train(train)[0]
    t_train = time.perf_counter() - t0
    print(f"trained: {tok.vocab_size:,} tokens in {t_train:.1f} s ({_rate(n_train, t_train)})")

    cores = os.cpu_count() or 1
    ids = tok.encode_batch(held_out, num_threads=1)
    n_tokens = sum(map(len, ids))
    back = [tok.decode_bytes(x) for x in ids]
    exact = back == held_out and tok.encode_batch(held_out, num_threads=cores) == ids
    print(f"encoded held-out text: {n_tokens:,} tokens, {n_held / n_tokens:.2f} bytes/token; "
          f"round trip byte-exact: {'yes' if exact else 'NO'}")
    # speed: the held-out lines ten times over (2 MB), best of three
    lines = held_out * 10
    speed = {}
    for threads in (1, cores):
        best = min(_timed(lambda: tok.encode_batch(lines, num_threads=threads)) for _ in range(3))
        speed[threads] = _rate(10 * n_held, best)
    t_dec = min(_timed(lambda: [tok.decode_bytes(x) for x in ids * 10]) for _ in range(3))
    print(f"encode speed: {speed[1]} on 1 thread" + (f", {speed[cores]} on {cores} threads" if cores > 1 else ""))
    print(f"decode speed: {_rate(10 * n_held, t_dec)}")
    examples = [held_out[0].decode("utf-8"), next(x for x in held_out if x.startswith(b" ")).decode("utf-8")]
    for text in examples:
        pieces = [p.decode("utf-8", "backslashreplace") for p in tok.tokenize(text)]
        print(f"  {text[:60]!r}\n    -> {' | '.join(pieces[:24])}{' ...' if len(pieces) > 24 else ''}")
    if args.output:
        tok.save(args.output)
        print(f"model saved to {args.output} (try: tokenmill inspect {args.output})")
    return 0 if exact else 1
