"""`tokenmill demo`, the README's first command, works end to end on the bundled sample."""
import subprocess
import sys


def test_demo_trains_encodes_and_round_trips(tmp_path):
    model = tmp_path / "demo.json"
    out = subprocess.run([sys.executable, "-m", "tokenmill.cli", "demo", "-o", str(model)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "round trip byte-exact: yes" in out.stdout
    bpt = float(out.stdout.split(" bytes/token")[0].rsplit(" ", 1)[1])
    assert bpt > 3.0  # law text and Python code compress well at 8k
    from tokenmill import Tokenizer
    tok = Tokenizer.load(model)
    assert tok.vocab_size == 8000
    assert tok.trainer_options["vocab_size"] == [8000]
