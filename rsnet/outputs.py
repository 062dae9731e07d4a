"""The result files the commands write (``--out``): refused before the work, written whole.

``check_out`` (a file) and ``check_out_folder`` (a run's, an extraction's or a dataset's folder)
run before a command computes anything, so that a bad ``--out`` costs nothing: a file of another
format than its suffix says, a folder where a file is wanted or a file where a folder is, one of
the command's own inputs (which the result would replace), or a place that cannot be made or
written. ``write`` writes atomically (a temporary file in the same folder, fsynced, renamed over
the target; checkpoints are written so too): an interrupted command leaves the previous file
whole, never a torn one, and the next write to the same file removes what a killed one left. A
file gets the permissions the umask gives, as ``open`` gives them: results are shared.
``json_bytes`` is the JSON the commands write: never NaN or Infinity, which JSON does not have.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import UserError

TMP_SUFFIX = ".tmp"


def check_out(path: Path, suffix: str | tuple[str, ...], inputs: tuple[str | Path | None, ...] = ()) -> None:
    """A UserError naming why ``path`` cannot take the command's result: its suffix is not
    ``suffix`` (or one of them), it is a folder, it is one of ``inputs`` (None: an input not given),
    or the folder it goes in cannot be made or written."""
    suffixes = (suffix,) if isinstance(suffix, str) else suffix
    if path.suffix.lower() not in suffixes:
        raise UserError(f"--out {path} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; give the {path.suffix} file to write")
    for given in inputs:
        if given is not None and path.exists() and Path(given).exists() and path.samefile(given):
            raise UserError(f"--out {path} is the input {given}: the result would replace it")
    _check_writable_within(path, "--out")


def check_out_folder(path: Path, flag: str = "--out") -> None:
    """A UserError naming why the folder ``path`` cannot hold the command's results: a file is
    there, or it cannot be made or written."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path}: cannot write in {path}")
        return
    _check_writable_within(path, flag)


def _check_writable_within(path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` is a folder this process may write in."""
    folder = next(p for p in path.absolute().parents if p.exists())
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: cannot write in {folder}")


def json_bytes(record: Any, indent: int | None = None) -> bytes:
    """``record`` as JSON text; a NaN or infinite number in it is a bug upstream (a diverged model,
    an unchecked input) and raises, rather than writing a file no JSON reader accepts."""
    try:
        return (json.dumps(record, indent=indent, allow_nan=False) + "\n").encode()
    except ValueError as exc:
        raise ValueError(f"refusing to write NaN or Infinity into JSON: {exc}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(path: Path) -> None:
    """What a write to ``path`` killed before its rename left behind (one writer per file: a run
    folder has one owner, ``rsnet.folder_lock``)."""
    for stale in path.parent.glob(f"{path.name}.*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def write(path: Path, data: bytes) -> None:
    """``data`` into ``path``, atomically (its folder made if needed): a temporary file in the same
    folder, fsynced, given the umask's permissions, renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would keep shared weights from the group
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
