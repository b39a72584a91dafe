"""Helpers for tokenmill's own tests and benchmarks (not part of the API)."""
from __future__ import annotations

import os
import signal
import time


def session_members(sessions) -> list[int]:
    """The live processes (pids) of the given session ids, from /proc (zombies left out)."""
    out = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()     # state, ppid, pgrp, session, ...
        except OSError:
            continue
        if int(fields[3]) in sessions and fields[0] != b"Z":
            out.append(int(name))
    return out


def stop_sessions(sessions, grace: float = 15.0) -> None:
    """Stop every process of the given sessions: SIGTERM, then SIGKILL to what is left after
    ``grace`` seconds. A `ray start` run with a session of its own leaves its node's processes
    (and their workers) in that session, so this stops that node and only it, where `ray stop`
    would stop every Ray node of the user on the machine. Needs /proc (Linux)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = session_members(sessions)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = session_members(sessions)
        if not pids:
            return
