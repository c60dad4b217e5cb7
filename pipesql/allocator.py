"""Give freed tensor memory back to the system (glibc's malloc, which torch's CPU tensors use).

glibc serves a block of at least ``M_MMAP_THRESHOLD`` bytes with a mapping of its own and
unmaps it when freed. By default that threshold moves: each freed mapping raises it to the
mapping's size (up to 32 MB). After the first few MB-sized tensors are freed, every activation
of a training step (a few MB each for SmolLM2 at 1,600 tokens) comes from the heap instead, and
the heap keeps what is freed wherever a tensor still in use sits above it: a training step of the
main job grew the process by about 2 GB that it no longer used (docs/training.md, memory).

A fixed threshold (:data:`MMAP_THRESHOLD_BYTES`) stops the moving: large blocks are mapped and
unmapped as they come and go, small ones stay on the heap where they cost little.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 256 * 1024


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES` for this process; False where
    the C library is not glibc (musl, macOS), which keeps its own policy."""
    libc = _glibc()
    if libc is None:
        return False
    if not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.warning("mallopt(M_MMAP_THRESHOLD) refused; freed tensor memory may stay with the process")
        return False
    return True
