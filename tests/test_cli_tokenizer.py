"""The encode / decode / inspect commands."""
import json
import subprocess
import sys

import pytest

from conftest import DATA
from tokenmill.cli import main

MODEL = str(DATA / "small-model.json")


def run(capsysbinary, *argv):
    code = main(list(argv))
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def test_encode_decode_round_trip_is_byte_exact(tmp_path, capsysbinary, sample_lines):
    data = b"\n".join(sample_lines[:300]) + b"\nbad \xff\xfe bytes\r\n\x00nul\n\nlast line without newline"
    src = tmp_path / "in.txt"
    src.write_bytes(data)
    code, ids, _ = run(capsysbinary, "encode", "-m", MODEL, str(src))
    assert code == 0
    assert len(ids.splitlines()) == data.count(b"\n") + 1
    id_file = tmp_path / "ids.txt"
    id_file.write_bytes(ids)
    code, back, _ = run(capsysbinary, "decode", "-m", MODEL, str(id_file))
    assert code == 0
    assert back == data + b"\n"  # the last line gets its newline


def test_encode_compressed_input_and_pieces(tmp_path, capsysbinary):
    import gzip
    src = tmp_path / "in.txt.gz"
    with gzip.open(src, "wb") as f:
        f.write("法律 hello\n".encode())
    code, out, _ = run(capsysbinary, "encode", "-m", MODEL, "--pieces", str(src))
    assert code == 0
    pieces = json.loads(out.decode())
    assert "".join(pieces).replace("<0xE6>", "").startswith("")  # valid JSON list of strings
    assert all(isinstance(p, str) for p in pieces)


def test_encode_with_specials_and_sampling(tmp_path, capsysbinary):
    src = tmp_path / "in.txt"
    src.write_text("a<eos>\n")
    _, plain, _ = run(capsysbinary, "encode", "-m", MODEL, str(src))
    _, special, _ = run(capsysbinary, "encode", "-m", MODEL, "--allow-special", "<eos>", str(src))
    assert plain.split()[-1] != b"2" and special.split()[-1] == b"2"
    _, s1, _ = run(capsysbinary, "encode", "-m", MODEL, "--alpha", "0.5", "--seed", "3", str(src))
    _, s2, _ = run(capsysbinary, "encode", "-m", MODEL, "--alpha", "0.5", "--seed", "3", str(src))
    assert s1 == s2


def test_decode_bad_line_names_file_and_line(tmp_path, capsysbinary):
    src = tmp_path / "ids.txt"
    src.write_text("1 2 3\n4 x 5\n")
    code, _, err = run(capsysbinary, "decode", "-m", MODEL, str(src))
    assert code == 2
    assert f"{src}:2" in err and "integer token ids" in err and err.count("\n") == 1
    src.write_text("99999\n")
    code, _, err = run(capsysbinary, "decode", "-m", MODEL, str(src))
    assert code == 2 and "out of range" in err


def test_bad_model_is_a_one_line_error(tmp_path, capsysbinary):
    bad = tmp_path / "m.json"
    bad.write_text('{"format": "tokenmill-model", "version": 1')
    code, _, err = run(capsysbinary, "encode", "-m", str(bad), str(bad))
    assert code == 2 and str(bad) in err and err.count("\n") == 1


def test_missing_input_file(tmp_path, capsysbinary):
    code, _, err = run(capsysbinary, "encode", "-m", MODEL, str(tmp_path / "nope.txt"))
    assert code == 2 and "nope.txt" in err


def test_inspect(capsysbinary):
    code, out, _ = run(capsysbinary, "inspect", MODEL)
    text = out.decode()
    assert code == 0
    assert "vocab size:      2004" in text and "<|endoftext|>=2003" in text
    assert "piece lengths" in text
    code, out, _ = run(capsysbinary, "inspect", "--json", MODEL)
    info = json.loads(out)
    assert info["vocab_size"] == 2004
    assert sum(info["piece_length_histogram"].values()) == 2000


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "tokenmill.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for verb in ("encode", "decode", "inspect"):
        assert verb in out.stdout
    out = subprocess.run([sys.executable, "-m", "tokenmill.cli", "encode", "--help"], capture_output=True, text=True)
    assert "--alpha" in out.stdout and "--allow-special" in out.stdout


def test_import_is_light_and_the_command_keeps_blas_single_threaded():
    """``import tokenmill`` loads neither numpy nor the compiled core; the command sets
    OPENBLAS_NUM_THREADS=1 before numpy starts its (spinning) thread pool."""
    code = ("import os, sys; os.environ.pop('OPENBLAS_NUM_THREADS', None); import tokenmill; "
            "assert 'numpy' not in sys.modules and 'tokenmill._core' not in sys.modules; "
            "import tokenmill.cli; assert os.environ['OPENBLAS_NUM_THREADS'] == '1'; "
            "assert tokenmill.Tokenizer.__name__ == 'Tokenizer'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
