"""The ``tokenmill`` command: one sub-command per verb.

Each verb lives in ``tokenmill/commands/<verb>.py`` and defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports happen inside ``run`` so that
``tokenmill --help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

# The commands never use multi-threaded BLAS, but numpy's OpenBLAS starts a thread per core at
# import that spins for a while, taking CPU from the command's own threads (a tenth of a
# second per run on 2 cores). Set before numpy is imported (``import tokenmill`` does not).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import TokenmillError

# Order is the order shown by --help.
VERBS = (
    "demo",
    "train",
    "encode",
    "decode",
    "inspect",
    "shuffle",
    "count",
    "discover",
    "encode-corpus",
    "export",
    "import",
)


def _load(verb: str):
    try:
        return importlib.import_module(f"tokenmill.commands.{verb.replace('-', '_')}")
    except ModuleNotFoundError as exc:
        if exc.name == f"tokenmill.commands.{verb.replace('-', '_')}":
            return None  # verb not built yet
        raise


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="tokenmill",
        description="Byte-level unigram tokenizer and corpus tools for language-model training data.",
    )
    parser.add_argument("--version", action="version", version=f"tokenmill {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True
    for verb in VERBS:
        module = _load(verb)
        if module is None:
            continue
        p = sub.add_parser(verb, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Turn SIGTERM into KeyboardInterrupt so that cleanup code (temp files) runs.
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    except ValueError:  # not the main thread
        pass
    try:
        return int(args._run(args) or 0)
    except TokenmillError as exc:
        print(f"tokenmill: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # e.g. `tokenmill encode ... | head`: stop quietly.
        try:
            sys.stdout = None
        finally:
            return 0
    except KeyboardInterrupt:
        print("tokenmill: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        name = exc.filename if exc.filename is not None else ""
        prefix = f"{name}: " if name else ""
        print(f"tokenmill: error: {prefix}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
