"""CPU time each process of the node used during a load, per thousand readings.

Why: on two cores every process of the node takes its share of the same CPU, so a
throughput figure is the sum of what each process spends per reading. A sampling
profile says where a process's time goes, but counts a thread blocked in a C call
(a transaction commit, a socket write) as running; the kernel's own account of
each process (``/proc/<pid>/stat``: user and system time) says how much CPU each
really took.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds used so far by each process (gone: left out)."""
    used = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return used


def cpu_lines(
    before: dict[str, float], after: dict[str, float], readings: int, seconds: float
) -> list[str]:
    """One line per process, most first: CPU ms per 1,000 readings and share of the
    run's wall time (1.00 = one core all along); then the node's total."""
    spent = {name: after[name] - before[name] for name in after if name in before}
    lines = [
        f"    {name:<18} {used * 1e6 / readings:8.1f} ms per 1,000 readings  "
        f"{used / seconds:5.2f} cores"
        for name, used in sorted(spent.items(), key=lambda item: -item[1])
    ]
    total = sum(spent.values())
    lines.append(
        f"    {'all processes':<18} {total * 1e6 / readings:8.1f} ms per 1,000 readings  "
        f"{total / seconds:5.2f} cores"
    )
    return lines
