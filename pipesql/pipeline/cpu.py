"""How many CPU threads torch gets in the main job: the cores idle when it starts."""

from __future__ import annotations

import os
import sys
import time

from pipesql.config.machine import usable_cores
from pipesql.pipeline.settings import Settings


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)  # idle + iowait


def idle_cores(sample_s: float = 1.0) -> int:
    """The cores no other work is using right now (CPU idle time over ``sample_s``; the 1-minute
    load average where /proc/stat is missing); at least one.

    On a busy machine torch's default (a thread per core) is the slowest choice: its threads
    wait for one another at every operation, and one of them is always waiting for a core.
    Measured on a 2-core machine at load 4-5 (SmolLM2, one 733-token prompt): one thread
    decoded 7.6x and prefilled 2x faster than two."""
    cores = usable_cores()
    before = _cpu_times()
    if before is not None:
        time.sleep(sample_s)
        after = _cpu_times()
        total = after[1] - before[1] if after else 0
        if total > 0:
            return max(1, min(cores, round(cores * (after[0] - before[0]) / total)))
    try:
        busy = round(os.getloadavg()[0])
    except OSError:  # no load average on this platform
        busy = 0
    return max(1, cores - busy)


def use_threads(settings: Settings) -> int | None:
    try:
        import torch
    except ImportError:  # train and evaluate will be skipped as not installed
        return None
    threads = settings.threads or idle_cores()
    torch.set_num_threads(threads)
    print(f"pipeline: torch on {threads} CPU thread(s)", file=sys.stderr)
    return threads
