"""Weights to share: a trained model as signed safetensors (the package docstring gives the format).
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

from .. import outputs
from .signed import CheckpointError
from .state import TrainedModel, data_root_needed

WEIGHTS_FORMAT = "rskp-weights"


WEIGHTS_VERSION = "2"  # safetensors metadata values are strings; 2: no local folders in the config ("data")


WEIGHTS_VERSIONS_READ = ("1", "2")


# Config keys naming this machine's folders: weights to share leave them out (they would publish the
# paths, and send a recipient to folders that are not theirs); "data" says if a data root is needed.
LOCAL_CONFIG_KEYS = ("data_root", "out", "cache_dir", "feature_cache", "annotations", "features", "classes")


TRAINED_ON_SYNTHETIC, TRAINED_ON_A_FOLDER, TRAINED_ON_JSON = "synthetic", "a W-TALC folder", "ActivityNet JSON"


WEIGHTS_SUFFIX = ".safetensors"


WEIGHTS_HASH_KEY = "rskp_sha256"


WEIGHTS_HASH_UNSET = "0" * 64


def _hash_field(digest: str) -> bytes:
    """The digest's key and value as the safetensors header (compact JSON) holds them."""
    return json.dumps({WEIGHTS_HASH_KEY: digest}, separators=(",", ":"))[1:-1].encode("ascii")


def weights_metadata(trained: TrainedModel) -> dict[str, str]:
    """The safetensors metadata of ``trained`` but its checksum: the config without local folders."""
    config = {key: value for key, value in trained.config.items() if key not in LOCAL_CONFIG_KEYS}
    data = (TRAINED_ON_A_FOLDER if trained.config.get("data_root") is not None
            else TRAINED_ON_JSON if trained.config.get("annotations") is not None else TRAINED_ON_SYNTHETIC)
    return {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "config": json.dumps(config), "data": data,
            "class_names": json.dumps(trained.class_names)}


def save_weights(trained: TrainedModel, path: str | Path) -> None:
    """Write ``trained`` as signed safetensors (see the module docstring), atomically."""
    from safetensors.torch import save

    tensors = {f"{part}.{name}": value.detach().cpu().contiguous()
               for part, state in (("model", trained.model), ("bank", trained.bank)) for name, value in state.items()}
    metadata = {**weights_metadata(trained), WEIGHTS_HASH_KEY: WEIGHTS_HASH_UNSET}
    unsigned = _canonical(save(tensors, metadata))
    header_end = 8 + struct.unpack("<Q", unsigned[:8])[0]
    if unsigned.count(_hash_field(WEIGHTS_HASH_UNSET), 0, header_end) != 1:
        raise RuntimeError("safetensors wrote a header without the checksum field as expected; cannot sign it")
    signed_header = unsigned[:header_end].replace(_hash_field(WEIGHTS_HASH_UNSET),
                                                  _hash_field(hashlib.sha256(unsigned).hexdigest()))
    outputs.write(Path(path), signed_header + unsigned[header_end:])


def _canonical(safetensors: bytes) -> bytes:
    """The same file with its header's keys in sorted order (safetensors writes its metadata map in
    an arbitrary order): the same trained model gives the same bytes, so a published checksum can
    be reproduced. The tensors' offsets are relative to the data, which does not move."""
    header_end = 8 + struct.unpack("<Q", safetensors[:8])[0]
    header = json.loads(safetensors[8:header_end])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(dict(sorted(header.items())), separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data stays 8-byte aligned, as safetensors aligns it
    return struct.pack("<Q", len(text)) + text + safetensors[header_end:]


def _weights_header(data: bytes, path: Path) -> tuple[int, dict[str, Any]]:
    """(where the safetensors header ends, the header), or a CheckpointError naming the file."""
    header_end = 8 + struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0
    try:
        header = json.loads(data[8:header_end]) if 8 < header_end <= len(data) else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a safetensors file, or is damaged in its header")
    return header_end, header


def _verified_weights(data: bytes, path: Path) -> dict[str, str]:
    """The metadata of signed safetensors whose checksum matches, or a CheckpointError naming the file."""
    header_end, header = _weights_header(data, path)
    metadata = header.get("__metadata__")
    digest = metadata.get(WEIGHTS_HASH_KEY) if isinstance(metadata, dict) else None
    field = _hash_field(digest) if isinstance(digest, str) else b""
    if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest) and data.count(field, 0, header_end) == 1):
        raise CheckpointError(f"{path} carries no rskp checksum: safetensors not exported by "
                              f"python -m rsnet.checkpoint export, or damaged in its header")
    unsigned = data[:header_end].replace(field, _hash_field(WEIGHTS_HASH_UNSET)) + data[header_end:]
    if hashlib.sha256(unsigned).hexdigest() != digest:
        raise CheckpointError(f"{path} is damaged: its content does not match its SHA-256 checksum")
    return metadata


def load_weights(path: str | Path, data_root: str | None = None, dataset_needed: bool = True) -> TrainedModel:
    """The trained model exported by ``save_weights``, its checksum verified; one trained on a
    W-TALC folder, or converted from the published code's (no class names: files converted before
    ``--data-root`` was required say "synthetic"), needs ``data_root``, the folder holding its dataset
    here; one trained on a W-TALC folder only where the dataset is needed (``dataset_needed``: not to
    score features alone, since the file records its class names)."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    data = path.read_bytes()
    metadata = _verified_weights(data, path)
    if metadata.get("format") != WEIGHTS_FORMAT or metadata.get("version") not in WEIGHTS_VERSIONS_READ:
        raise CheckpointError(f"{path} holds format {metadata.get('format')!r} version {metadata.get('version')!r}; "
                              f"this rskp reads {WEIGHTS_FORMAT!r} versions {', '.join(WEIGHTS_VERSIONS_READ)}")
    try:  # its checksum matched: exported so by rsnet or forged, but not readable
        tensors = load(data)
        config, class_names = json.loads(metadata["config"]), json.loads(metadata["class_names"])
    except Exception as exc:
        raise CheckpointError(f"{path} cannot be read: {' '.join(str(exc).split())[:300]}") from exc
    if class_names is None and data_root is None:  # what convert writes: the published code's model
        raise data_root_needed(path, "holds a model of the published RSKP code, which records no data",
                                config.get("dataset"))
    if metadata.get("data") == TRAINED_ON_A_FOLDER and data_root is None and dataset_needed:
        raise data_root_needed(path, "was trained on a W-TALC folder, which shared weights do not record",
                                config.get("dataset"))
    if metadata.get("data") == TRAINED_ON_JSON and data_root is None and dataset_needed:
        raise CheckpointError(f"{path} was trained on ActivityNet JSON annotations, which shared weights do not "
                              f"record: pass --annotations FILE.json --features DIR (and --classes FILE if it "
                              f"was trained with one)")
    parts = {part: {name.split(".", 1)[1]: value for name, value in tensors.items() if name.startswith(part + ".")}
             for part in ("model", "bank")}
    return TrainedModel(config, parts["model"], parts["bank"], class_names)


