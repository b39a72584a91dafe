import io
import threading

from tokenmill.progress import Progress, format_bytes, format_duration


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_silent_when_not_a_terminal():
    out = io.StringIO()
    with Progress("x", total_bytes=10, stream=out) as bar:
        bar.update(10, 1)
    assert out.getvalue() == ""


def test_bar_and_summary_on_a_terminal_and_thread_safety():
    out = Tty()
    with Progress("scatter", total_bytes=4000, item_name="lines", stream=out, min_interval=0) as bar:
        threads = [threading.Thread(target=lambda: [bar.update(1, 1) for _ in range(1000)]) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert bar.bytes == 4000 and bar.items == 4000
    text = out.getvalue()
    assert "scatter" in text and "%" in text and "lines" in text
    assert text.endswith("\n") and "in " in text.splitlines()[-1].split("\r")[-1]


def test_formatting():
    assert format_bytes(1_234_567) == "1.2 MB"
    assert format_duration(3725) == "1:02:05"
