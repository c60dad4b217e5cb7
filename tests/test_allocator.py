"""Freed tensor memory goes back to the system once pipesql has set glibc's mmap threshold."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")

from pipesql.allocator import _glibc  # noqa: E402

# A training step in miniature, in a process of its own (the threshold is process-wide): 100
# activations of 4 MB, one in ten still in use when the rest are freed. The freed 16 MB tensor
# first raises glibc's moving threshold above 4 MB, as a training step's first large temporaries do.
STEP = """
import os, sys, torch
from pipesql.cli import main
if sys.argv[1] == "cli":
    try:
        main(["decompile", "--help"])
    except SystemExit:
        pass
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
first = torch.ones(4 << 20)
del first
start = rss_mb()
activations = [torch.ones(1 << 20) for _ in range(100)]
in_use = activations[::10]
del activations
print(rss_mb() - start)
"""


def _retained_mb(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", STEP, mode], capture_output=True, text=True, timeout=120, check=True)
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(_glibc() is None, reason="glibc's mallopt only")
def test_the_cli_gives_freed_activations_back():
    # glibc's default keeps most of the 360 MB freed (the heap cannot shrink below a tensor in
    # use); with pipesql's threshold only the 40 MB still in use stay.
    assert _retained_mb("default") > 200
    assert _retained_mb("cli") < 80
