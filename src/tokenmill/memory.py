"""Memory measurement of a process tree, as the benchmarks and the memory tests do it."""
from __future__ import annotations

import os


def peak_rss() -> int:
    """Peak resident set size of this process (bytes): its VmHWM. Not ``getrusage``'s
    ``ru_maxrss``, which Linux carries over from the parent across ``exec``, so that a process
    started by a bigger one (a test suite, a notebook) would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tree_rss(pid: int) -> int:
    """Summed VmRSS (bytes) of process ``pid`` and all its descendants, read from /proc.

    Processes that end while being read are skipped; 0 where /proc is missing.
    """
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total
