"""One owner per folder: a run, a sweep cell, an extraction's output, a dataset being written.

``owned(folder, what)`` holds an exclusive ``fcntl.flock`` on ``folder/.rskp.lock`` for the life of
the work; a second process asking for the same folder is refused at once with one line naming the
folder and the owner's PID. The operating system releases the lock when its process dies, however
it dies, so a lock left by a killed run never blocks a rerun; the lock file itself stays (removing
it would let a third process lock a file the second still waits on).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_FILE = ".rskp.lock"


class FolderInUse(UserError):
    """Another live process owns the folder."""


@contextlib.contextmanager
def owned(folder: Path, what: str, wait: bool = False) -> Iterator[Path]:
    """Hold ``folder`` (made if needed) for ``what`` (e.g. "a training run") while the block runs;
    ``wait``: behind the current owner (work that the owner may be doing for both, as a cache),
    instead of being refused."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUse(f"{folder} is in use by process {owner} ({what}): wait for it to end, or choose "
                              f"another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing releases the lock
