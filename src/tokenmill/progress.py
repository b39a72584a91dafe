"""A tiny, dependency-free, thread-safe progress bar on stderr.

Shows bytes and/or items, rate, percentage and ETA when a total is known, and elapsed time.
It is silent when the stream is not a terminal (pipes, CI logs) unless ``enabled=True``.

Example::

    with Progress("scatter", total_bytes=size, item_name="lines") as bar:
        for chunk in chunks:
            ...
            bar.update(len(chunk), chunk.count(b"\\n"))
    # stderr, redrawn in place at most 10 times a second:
    # scatter  42%  1.3 GB/3.1 GB  8.2 M lines  412 MB/s  ETA 0:04  0:03
"""
from __future__ import annotations

import sys
import threading
import time


def format_bytes(n: float) -> str:
    """``format_bytes(1_234_567) -> '1.2 MB'`` (decimal units, as rates are usually quoted)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def format_count(n: float) -> str:
    """``format_count(8_200_000) -> '8.2 M'``."""
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000 or unit == "G":
            return f"{n:.0f}" if unit == "" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} G"  # pragma: no cover


def format_duration(seconds: float) -> str:
    """``format_duration(3725) -> '1:02:05'``, ``format_duration(65) -> '1:05'``."""
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of one phase; ``update(n_bytes, n_items)`` may be called from any thread."""

    def __init__(self, label: str = "", *, total_bytes: int | None = None, total_items: int | None = None,
                 item_name: str = "items", stream=None, enabled: bool | None = None,
                 min_interval: float = 0.1):
        self.label = label
        self.total_bytes = total_bytes
        self.total_items = total_items
        self.item_name = item_name
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.min_interval = min_interval
        self.bytes = 0
        self.items = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._width = 0
        self._closed = False
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(summary=exc_type is None)
        return False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def update(self, n_bytes: int = 0, n_items: int = 0) -> None:
        with self._lock:
            self.bytes += n_bytes
            self.items += n_items
            if not self.enabled or self._closed:
                return
            now = time.monotonic()
            if now - self._last_draw < self.min_interval:
                return
            self._last_draw = now
            self._draw(self.line())

    def line(self, final: bool = False) -> str:
        """The text of the bar (or, with ``final``, of the summary line)."""
        elapsed = max(self.elapsed, 1e-9)
        parts = [self.label] if self.label else []
        fraction = None
        if self.total_bytes:
            fraction = self.bytes / self.total_bytes
        elif self.total_items:
            fraction = self.items / self.total_items
        if fraction is not None and not final:
            parts.append(f"{min(fraction, 1.0) * 100:3.0f}%")
        if self.total_bytes is not None and not final:
            parts.append(f"{format_bytes(self.bytes)}/{format_bytes(self.total_bytes)}")
        elif self.total_bytes is not None or self.bytes:
            parts.append(format_bytes(self.bytes))
        if self.items or self.total_items:
            parts.append(f"{format_count(self.items)} {self.item_name}")
        if self.bytes:
            parts.append(f"{format_bytes(self.bytes / elapsed)}/s")
        elif self.items:
            parts.append(f"{format_count(self.items / elapsed)} {self.item_name}/s")
        if final:
            parts.append(f"in {elapsed:.1f} s")
        else:
            if fraction and 0 < fraction < 1:
                parts.append(f"ETA {format_duration(elapsed * (1 - fraction) / fraction)}")
            parts.append(format_duration(elapsed))
        return "  ".join(parts)

    def _draw(self, text: str, end: str = "") -> None:
        pad = " " * max(0, self._width - len(text))
        self._width = len(text)
        try:
            self.stream.write("\r" + text + pad + end)
            self.stream.flush()
        except (OSError, ValueError):  # closed or broken stderr: progress is best effort
            self.enabled = False

    def close(self, summary: bool = True) -> None:
        """Stop drawing; when enabled, replace the bar by a summary line (or erase it)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self.enabled:
                return
            if summary:
                self._draw(self.line(final=True), end="\n")
            else:
                self._draw("", end="\r")
