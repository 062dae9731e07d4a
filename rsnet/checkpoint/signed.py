"""Signed checkpoints: never torn, never silently damaged, never executing code on load (the
package docstring gives the format); a training run's state in them.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import torch

from .. import outputs
from ..errors import UserError

HASH_MARK = b"rskp-sha256="


HASH_TRAILER_BYTES = len(HASH_MARK) + 64  # hex digits of a SHA-256


ZIP_END_SIGNATURE = b"PK\x05\x06"


ZIP_END_BYTES = 22  # the end-of-central-directory record without its comment; the comment length is its last 2 bytes


RUN_CHECKPOINT = "checkpoint.pt"  # a run folder's checkpoint (rsnet.train)
RUN_FORMAT = "rskp-run"


RUN_VERSION = 2  # 2: the gradients of a step left open at the end of an epoch ("grads")


RUN_KEYS = ("format", "version", "epoch", "config", "model", "bank", "optimizer", "rng", "grads", "best", "metrics")


RUN_OPTIONAL_KEYS = ("class_names",)  # absent from checkpoints written before rskp recorded them


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged, unsigned, or not the kind asked for."""


def _with_hash(archive: bytes) -> bytes:
    """The torch.save archive with the SHA-256 comment appended (see the module docstring)."""
    end = len(archive) - ZIP_END_BYTES
    if archive[end:end + 4] != ZIP_END_SIGNATURE or archive[-2:] != b"\0\0":
        raise RuntimeError("torch.save wrote an archive without a plain zip end record; cannot sign it")
    signed = archive[:-2] + struct.pack("<H", HASH_TRAILER_BYTES)
    return signed + HASH_MARK + hashlib.sha256(signed).hexdigest().encode("ascii")


def verified(data: bytes, path: Path) -> bytes:
    """``data`` without its hash comment, or a CheckpointError naming the file."""
    body, trailer = data[:-HASH_TRAILER_BYTES], data[-HASH_TRAILER_BYTES:]
    if len(data) <= HASH_TRAILER_BYTES or not trailer.startswith(HASH_MARK):
        raise CheckpointError(f"{path} carries no rskp checksum: a weights-only or foreign file, one written "
                              f"before rskp signed its checkpoints, or one damaged at its end")
    if hashlib.sha256(body).hexdigest().encode("ascii") != trailer[len(HASH_MARK):]:
        raise CheckpointError(f"{path} is damaged: its content does not match its SHA-256 checksum")
    return body


def _refused_global(exc: pickle.UnpicklingError) -> str:
    """`` (it names io.open)`` when torch's message names the function or class it refused, else ''."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
    return f" (it names {found.group(1)})" if found else ""


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with its checksum to a temporary file in the same folder, fsync, rename over ``path``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    outputs.write(Path(path), _with_hash(buffer.getvalue()))


def load(path: str | Path) -> dict[str, Any]:
    """The state saved by ``save_atomic``, its checksum verified, unpickled with weights_only=True."""
    path = Path(path)
    return unpickled(verified(checkpoint_bytes(path), path), path)


def checkpoint_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path.read_bytes()


def unpickled(data: bytes, path: Path) -> dict[str, Any]:
    """A torch.save archive's dict, unpickled with weights_only=True, or a CheckpointError naming the file."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler met something it does not build
        raise CheckpointError(f"{path} holds objects other than tensors/numbers/strings/containers"
                              f"{_refused_global(exc)}: refused, since unpickling them could run code") from exc
    except Exception as exc:  # not a torch.save archive, or a damaged one
        raise CheckpointError(f"{path} cannot be loaded: {' '.join(str(exc).split())[:300]}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint's dict of state")
    return state


def load_run(path: str | Path) -> dict[str, Any]:
    """A training run's state (``rsnet.train``), checked to be one."""
    return checked_run(load(path), path)


def checked_run(state: dict[str, Any], path: str | Path) -> dict[str, Any]:
    if state.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path} is not a training run's checkpoint (format {state.get('format')!r}, "
                              f"expected {RUN_FORMAT!r})")
    if state.get("version") != RUN_VERSION:
        raise CheckpointError(f"{path} is a version {state.get('version')!r} run checkpoint; "
                              f"this rskp reads version {RUN_VERSION}")
    missing = [k for k in RUN_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a complete run checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
