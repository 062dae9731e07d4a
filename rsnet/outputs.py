"""The result files the commands write (``--out``): refused before the work, written whole.

``check_out`` runs before a command computes anything, so that a bad ``--out`` costs nothing: a
file of another format than its suffix says, a folder, or one of the command's own inputs (which
the result would replace). ``write`` writes atomically (a temporary file in the same folder, fsynced,
renamed over the target; checkpoints are written so too): an interrupted command
leaves the previous file whole, never a torn one.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def check_out(path: Path, suffix: str, inputs: tuple[str | Path | None, ...] = ()) -> None:
    """A UserError naming why ``path`` cannot take the command's result: its suffix is not
    ``suffix``, it is a folder, it is one of ``inputs`` (None: an input not given), or the folder it
    goes in cannot be made or written."""
    if path.suffix != suffix:
        raise UserError(f"--out {path} must end in {suffix}")
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; give the {suffix} file to write")
    for given in inputs:
        if given is not None and path.exists() and Path(given).exists() and path.samefile(given):
            raise UserError(f"--out {path} is the input {given}: the result would replace it")
    folder = next(p for p in path.absolute().parents if p.exists())
    if not folder.is_dir():
        raise UserError(f"--out {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--out {path}: cannot write in {folder}")


def write(path: Path, data: bytes) -> None:
    """``data`` into ``path``, atomically (its folder made if needed): a temporary file in the same
    folder, fsynced, renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
