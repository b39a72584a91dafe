import gzip
import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BYTEPIECE_ZIP = SHARED / "models" / "bytepiece.eu.plus.80k.zip"


@pytest.fixture(scope="session")
def small_tok():
    from tokenmill import Tokenizer

    return Tokenizer.load(DATA / "small-model.json")


@pytest.fixture(scope="session")
def sample_lines():
    """Lines of the text sample the package ships (Chinese law articles, Python code)."""
    import tokenmill

    path = Path(tokenmill.__file__).parent / "data" / "sample.txt.gz"
    with gzip.open(path, "rb") as f:
        return f.read().split(b"\n")[:-1]


@pytest.fixture(scope="session")
def bytepiece_zip():
    if not BYTEPIECE_ZIP.exists():
        pytest.skip(f"the released BytePiece model is not here ({BYTEPIECE_ZIP}); it lives in ../shared")
    return BYTEPIECE_ZIP


def vocab_of(tok):
    """piece bytes -> (id, score): the reference implementation's view of a tokenizer."""
    return {p: (tok.piece_to_id(p), s) for p, s in tok.pieces}


# ----------------------------------------------------------------------------- Ray cluster

def _ray_cli():
    """The `ray` command of the Python running the tests (its virtualenv's)."""
    import sys

    return str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster of two nodes, started here and stopped at the end (only its own
    processes: other Ray nodes on the machine are left alone): a head with 1 CPU and a second
    node with 2, each `ray start` in a session of its own (so a job of three or more tasks at
    once has to use both). Yields
    ``(address, fault_dir)``: tasks die at a fault point whose file a test puts in
    ``fault_dir`` (see ``tokenmill.engine.fault_point``)."""
    import importlib.util
    import secrets
    import socket
    import subprocess
    import time

    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (pip install \".[test]\" or \"tokenmill[ray]\")")

    fault_dir = tmp_path_factory.mktemp("faults")
    # Ray's token authentication, with a token of this test session's own (the driver, the
    # CLI subprocesses and both nodes get it through the environment; Ray reads it when it is
    # first imported)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)
    # the workers import the tokenmill these tests import (installed, or PYTHONPATH=src)
    env = dict(os.environ, TOKENMILL_FAULT_DIR=str(fault_dir), RAY_USAGE_STATS_ENABLED="0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    ray = _ray_cli()
    # Ray's session files (logs, sockets) in a short folder of our own, removed at the end
    import shutil
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="tm-ray-")

    sessions = []        # each `ray start` leads a session of its own, which its node's processes keep

    def start(*args):
        proc = subprocess.Popen([ray, "start", *args, "--disable-usage-stats", f"--temp-dir={ray_tmp}"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        sessions.append(proc.pid)
        _, err = proc.communicate(timeout=120)
        if proc.returncode:
            raise RuntimeError(f"ray start failed: {err.decode(errors='replace')[-2000:]}")

    try:
        start("--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
              "--include-dashboard=false")
        start(f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=2")
        import ray as ray_mod

        ray_mod.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", configure_logging=False)
        deadline = time.monotonic() + 60
        while len([n for n in ray_mod.nodes() if n["Alive"]]) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the second Ray node did not join")
            time.sleep(0.5)
        yield address, fault_dir
    finally:
        try:
            import ray as ray_mod

            ray_mod.shutdown()
        except ImportError:
            pass
        if os.path.isdir("/proc"):
            from tokenmill.testing import stop_sessions

            stop_sessions(sessions)          # these nodes only (`ray stop` stops every node)
        else:
            subprocess.run([ray, "stop", "--force"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
