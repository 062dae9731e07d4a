"""Freed host memory kept by the process for reuse, instead of handed back to the kernel.

glibc gives every freed block above its mmap threshold (32 MiB at most) back to the kernel, so each
step's packed tensors on a CPU (tens of MB: the batch's features, X, the walked branch) come back
as fresh pages that the kernel must fault in and zero again, at every step. Measured with
``python -m bench.train_speed --dataset activitynet1.2`` on the 2-core AMD EPYC (one thread): the
test pass took 630,000 page faults and 1.0 s of system time out of 3.5 s; the official-style loop,
whose per-video tensors are small enough for the heap, took none. Every ``python -m rsnet.*``
command calls :func:`keep_freed_memory` as it starts (``rsnet.cli.command``), as do the benchmarks.
It changes where memory comes from, never a value.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_BYTES = 2**31 - 1  # free memory at the heap's top handed back only beyond this (an int in C)


@functools.cache
def keep_freed_memory() -> bool:
    """Large blocks from the heap (no mmap) and the heap never trimmed below 2 GiB of free space;
    True where the C library has glibc's ``mallopt`` (Linux), False elsewhere (nothing changes)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
