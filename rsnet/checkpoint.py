"""Checkpoints that are never torn, never silently damaged, and never execute code on load.

File format. A checkpoint is an ordinary ``torch.save`` file (a zip archive) whose zip comment
(the last field of the archive's end record, which zip readers skip) is
``rskp-sha256=<64 hex digits>``: the SHA-256 of every byte of the file before the comment, the
end record's comment length included. So ``torch.load(path, weights_only=True)`` reads it like
any other, and flipping any byte is caught: before the comment it changes the hash, in the
comment it breaks the hash or its marker. ``load`` checks the hash before unpickling anything,
then unpickles with ``weights_only=True``: the state holds only tensors, numbers, strings, None
and containers of them. A run's state (``rsnet.train``) is a dict with the keys ``RUN_KEYS``,
``format`` = ``RUN_FORMAT`` and ``version`` = ``RUN_VERSION``, then ``RUN_OPTIONAL_KEYS``:
``class_names``, the dataset's classes in label order, which a command reading the run (and
``--resume``) checks against the data it is given. Those keys are optional on read: checkpoints
written before rskp recorded them lack them, load and resume as they did, and only their class
count is checked.

Weights to share. ``python -m rsnet.checkpoint export RUN_DIR_OR_CKPT --out model.safetensors``
writes a run's trained model: a safetensors file (no pickle at all) of the model's tensors
(``model.<name>``) and the memory bank's (``bank.<name>``), whose metadata holds, as strings,
``format`` = ``WEIGHTS_FORMAT``, ``version``, ``config`` (JSON, without the keys naming local
folders, ``LOCAL_CONFIG_KEYS``), ``data`` (whether the model was trained on the synthetic data or
on a W-TALC folder), ``class_names`` (JSON) and ``rskp_sha256``: the SHA-256 of the whole file
with those 64 hex digits written as zeros. Every command that takes ``--checkpoint``
(``rsnet.inference``, ``rsnet.infer``, ``rsnet.diagnose``) reads such a file as it reads
``checkpoint.pt``, through ``load_trained``, given ``--data-root`` where it was trained on a W-TALC
folder; a flipped byte is an error naming the file.

The published code's checkpoints. ``load_trained`` (so every command that takes ``--checkpoint``)
reads the state_dict the published RSKP code saves (``OFFICIAL_KEYS``): an unsigned file that
unpickles, weights-only, to a dict of tensors alone with one of those keys, or any file with
``--checkpoint-format official``. It is mapped onto this model with the default config at the sizes its weights have,
for the dataset with as many classes; a key or shape that does not fit is an error naming it.
It records no data, so ``--data-root`` (the folder holding its dataset) is required to read it
and to convert it. ``python -m rsnet.checkpoint convert OFFICIAL.pkl --dataset Thumos14reduced --data-root ROOT --out
model.safetensors`` writes the same mapping as signed safetensors.

Files are written to a temporary file in the same folder, fsynced and renamed over the target,
so a crash mid-write leaves the previous checkpoint in place.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import re
import struct
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from . import cli, outputs
from .config import Config, to_dict, validate
from .data import DATASETS, Annotations
from .errors import UserError
from .memory import MemoryBank
from .model import RSKP

HASH_MARK = b"rskp-sha256="
HASH_TRAILER_BYTES = len(HASH_MARK) + 64  # hex digits of a SHA-256
ZIP_END_SIGNATURE = b"PK\x05\x06"
ZIP_END_BYTES = 22  # the end-of-central-directory record without its comment; the comment length is its last 2 bytes
RUN_FORMAT = "rskp-run"
RUN_VERSION = 2  # 2: the gradients of a step left open at the end of an epoch ("grads")
RUN_KEYS = ("format", "version", "epoch", "config", "model", "bank", "optimizer", "rng", "grads", "best", "metrics")
RUN_OPTIONAL_KEYS = ("class_names",)  # absent from checkpoints written before rskp recorded them
WEIGHTS_FORMAT = "rskp-weights"
WEIGHTS_VERSION = "2"  # safetensors metadata values are strings; 2: no local folders in the config ("data")
WEIGHTS_VERSIONS_READ = ("1", "2")
# Config keys naming this machine's folders: weights to share leave them out (they would publish the
# paths, and send a recipient to folders that are not theirs); "data" says if a data root is needed.
LOCAL_CONFIG_KEYS = ("data_root", "out", "cache_dir", "feature_cache")
TRAINED_ON_SYNTHETIC, TRAINED_ON_A_FOLDER = "synthetic", "a W-TALC folder"
WEIGHTS_SUFFIX = ".safetensors"
WEIGHTS_HASH_KEY = "rskp_sha256"
WEIGHTS_HASH_UNSET = "0" * 64
OFFICIAL_KEYS = {  # the published RSKP code's model (WSTAL) state_dict -> RSKP's
    "feature_embedding.0.weight": "embedding.weight",
    "feature_embedding.0.bias": "embedding.bias",
    "mu": "mu0",
    "ac_center": "head.class_centres",
    "fg_center": "head.fg_centre",
}


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged, unsigned, or not the kind asked for."""


def _with_hash(archive: bytes) -> bytes:
    """The torch.save archive with the SHA-256 comment appended (see the module docstring)."""
    end = len(archive) - ZIP_END_BYTES
    if archive[end:end + 4] != ZIP_END_SIGNATURE or archive[-2:] != b"\0\0":
        raise RuntimeError("torch.save wrote an archive without a plain zip end record; cannot sign it")
    signed = archive[:-2] + struct.pack("<H", HASH_TRAILER_BYTES)
    return signed + HASH_MARK + hashlib.sha256(signed).hexdigest().encode("ascii")


def _verified(data: bytes, path: Path) -> bytes:
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
    return _unpickled(_verified(_checkpoint_bytes(path), path), path)


def _checkpoint_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path.read_bytes()


def _unpickled(data: bytes, path: Path) -> dict[str, Any]:
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
    return _checked_run(load(path), path)


def _checked_run(state: dict[str, Any], path: str | Path) -> dict[str, Any]:
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


class TrainedModel(NamedTuple):
    """What the commands that use a trained model need, from a run's checkpoint, exported weights or
    the published code's state_dict."""

    config: dict[str, Any]  # the run's config keys
    model: dict[str, Tensor]  # RSKP's state_dict
    bank: dict[str, Tensor]  # MemoryBank's state_dict
    # the dataset's classes, in label order; None: not recorded (N.pkl, a checkpoint.pt written before rskp recorded them)
    class_names: list[str] | None


CHECKPOINT_FORMATS = ("auto", "official")  # auto: by suffix, signature and keys


def load_trained(path: str | Path, checkpoint_format: str = "auto", data_root: str | None = None) -> TrainedModel:
    """The trained model of a run's checkpoint (``checkpoint.pt``), of its exported ``.safetensors``,
    or of the published RSKP code's ``state_dict`` (``N.pkl``, see ``official_trained``).

    ``checkpoint_format`` "auto" tells them apart by the suffix, the rskp signature, and, for an
    unsigned file, by what it unpickles to (weights-only): a dict of tensors alone with a key of the
    published code's (``OFFICIAL_KEYS``) is its state_dict; "official" takes the file as that
    state_dict whatever it looks like (a key prefixed by ``module.`` is then named as unknown).
    """
    path = Path(path)
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise UserError(f"--checkpoint-format {checkpoint_format!r}: expected one of {', '.join(CHECKPOINT_FORMATS)}")
    if checkpoint_format == "official":
        return official_trained(_unpickled(_checkpoint_bytes(path), path), path, data_root)
    if path.suffix == WEIGHTS_SUFFIX:
        return load_weights(path, data_root)
    data = _checkpoint_bytes(path)
    state_dict = _unsigned_state_dict(data, path)
    if state_dict is not None:
        return official_trained(state_dict, path, data_root)
    return run_trained(_checked_run(_unpickled(_verified(data, path), path), path))


def run_trained(state: dict[str, Any]) -> TrainedModel:
    """The trained model of a run's state (its class names None where the run predates them)."""
    return TrainedModel(state["config"], state["model"], state["bank"], state.get("class_names"))


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --checkpoint-format and --data-root: the flags of every command that reads a trained model."""
    parser.add_argument("--checkpoint", required=True,
                        help="OUT/checkpoint.pt of a run, its weights exported by python -m rsnet.checkpoint export, "
                             "or a checkpoint of the published RSKP code (ckpt/<dataset>/<id>/<epoch>.pkl)")
    parser.add_argument("--checkpoint-format", choices=CHECKPOINT_FORMATS, default="auto",
                        help="auto: told apart by suffix, signature and keys; official: the published code's state_dict")
    parser.add_argument("--data-root", default=None,
                        help="W-TALC root holding the checkpoint's dataset (default: the one recorded in checkpoint.pt; "
                             "exported weights need it where trained on a W-TALC folder, and the published code's "
                             "checkpoints always: they record none)")


def _unsigned_state_dict(data: bytes, path: Path) -> dict[str, Tensor] | None:
    """The file's dict of tensors if it is unsigned and unpickles (weights-only) to one with a key
    of the published code's, else None (the run checks then name what is wrong with the file)."""
    if data[-HASH_TRAILER_BYTES:].startswith(HASH_MARK):
        return None
    try:
        state = _unpickled(data, path)
    except CheckpointError:
        return None
    official = bool(set(state) & set(OFFICIAL_KEYS)) and all(isinstance(v, Tensor) for v in state.values())
    return state if official else None


def check_classes(trained: TrainedModel, annotations: Annotations, path: str | Path) -> None:
    """A CheckpointError unless ``trained`` classifies the classes ``annotations`` lists (their
    number, and their names where the checkpoint records them)."""
    classes = annotations.class_names
    centres = trained.model.get("head.class_centres")
    if centres is not None and centres.shape[0] - 1 != len(classes):
        raise CheckpointError(f"{path} holds a model of {centres.shape[0] - 1} classes; {annotations.folder} "
                              f"lists {len(classes)}: a checkpoint of another dataset")
    if trained.class_names is not None and trained.class_names != classes:
        raise CheckpointError(f"{path} was trained on other classes ({', '.join(trained.class_names)}) "
                              f"than {annotations.folder} lists ({', '.join(classes)})")


def _hash_field(digest: str) -> bytes:
    """The digest's key and value as the safetensors header (compact JSON) holds them."""
    return json.dumps({WEIGHTS_HASH_KEY: digest}, separators=(",", ":"))[1:-1].encode("ascii")


def weights_metadata(trained: TrainedModel) -> dict[str, str]:
    """The safetensors metadata of ``trained`` but its checksum: the config without local folders."""
    config = {key: value for key, value in trained.config.items() if key not in LOCAL_CONFIG_KEYS}
    data = TRAINED_ON_SYNTHETIC if trained.config.get("data_root") is None else TRAINED_ON_A_FOLDER
    return {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "config": json.dumps(config), "data": data,
            "class_names": json.dumps(trained.class_names)}


def save_weights(trained: TrainedModel, path: str | Path) -> None:
    """Write ``trained`` as signed safetensors (see the module docstring), atomically."""
    from safetensors.torch import save

    tensors = {f"{part}.{name}": value.detach().cpu().contiguous()
               for part, state in (("model", trained.model), ("bank", trained.bank)) for name, value in state.items()}
    metadata = {**weights_metadata(trained), WEIGHTS_HASH_KEY: WEIGHTS_HASH_UNSET}
    unsigned = save(tensors, metadata)
    header_end = 8 + struct.unpack("<Q", unsigned[:8])[0]
    if unsigned.count(_hash_field(WEIGHTS_HASH_UNSET), 0, header_end) != 1:
        raise RuntimeError("safetensors wrote a header without the checksum field as expected; cannot sign it")
    signed_header = unsigned[:header_end].replace(_hash_field(WEIGHTS_HASH_UNSET),
                                                  _hash_field(hashlib.sha256(unsigned).hexdigest()))
    outputs.write(Path(path), signed_header + unsigned[header_end:])


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


def load_weights(path: str | Path, data_root: str | None = None) -> TrainedModel:
    """The trained model exported by ``save_weights``, its checksum verified; one trained on a
    W-TALC folder, or converted from the published code's (no class names: files converted before
    ``--data-root`` was required say "synthetic"), needs ``data_root``, the folder holding its dataset here."""
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
        raise _data_root_needed(path, "holds a model of the published RSKP code, which records no data",
                                config.get("dataset"))
    if metadata.get("data") == TRAINED_ON_A_FOLDER and data_root is None:
        raise _data_root_needed(path, "was trained on a W-TALC folder, which shared weights do not record",
                                config.get("dataset"))
    parts = {part: {name.split(".", 1)[1]: value for name, value in tensors.items() if name.startswith(part + ".")}
             for part in ("model", "bank")}
    return TrainedModel(config, parts["model"], parts["bank"], class_names)


def _data_root_needed(path: Path, why: str, dataset: str | None) -> CheckpointError:
    """The error of a model whose dataset folder must be named (``why``: what it does not record)."""
    return CheckpointError(f"{path} {why}: pass --data-root ROOT, the folder holding {dataset}/")


def export(source: Path, out: Path) -> TrainedModel:
    """Export the run in ``source`` (its folder or checkpoint.pt) to ``out`` (.safetensors)."""
    outputs.check_out(out, WEIGHTS_SUFFIX, (source,))
    from .train import restore  # rsnet.train imports this module

    trainer = restore(source / "checkpoint.pt" if source.is_dir() else source, "cpu")
    trained = TrainedModel(to_dict(trainer.cfg), trainer.model.state_dict(), trainer.bank.state_dict(),
                           trainer.dataset.annotations.class_names)
    save_weights(trained, out)
    return trained


def convert_official(path: Path, dataset: str, data_root: str | None = None) -> TrainedModel:
    """``official_trained`` of the published code's checkpoint file, for ``dataset``."""
    return official_trained(_unpickled(_checkpoint_bytes(path), path), path, data_root, dataset)


def _dataset_of(official: dict[str, Any]) -> str:
    """The dataset with as many classes as the state_dict's class centres (but background), else the default."""
    centres = official.get("ac_center")
    n_classes = centres.shape[0] - 1 if isinstance(centres, Tensor) and centres.dim() == 2 else None
    return next((name for name, info in DATASETS.items() if info.n_classes == n_classes), Config.dataset)


def official_trained(official: dict[str, Any], path: Path, data_root: str | None = None,
                     dataset: str | None = None) -> TrainedModel:
    """The model of the published RSKP code's ``state_dict`` (its ``N.pkl``) as ours: the default
    config for ``dataset`` (default: the one with as many classes as the weights) with the sizes the
    weights have, an empty memory bank (the published code does not save its bank) and no class names.
    The state_dict records no data: ``data_root``, the folder holding the dataset, is required."""
    unknown, missing = sorted(set(official) - set(OFFICIAL_KEYS)), sorted(set(OFFICIAL_KEYS) - set(official))
    if unknown or missing:
        raise CheckpointError(f"{path} is not the published RSKP model's state_dict: "
                              f"unknown keys {unknown or 'none'}, missing keys {missing or 'none'}")
    not_tensors = [key for key, value in official.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: {', '.join(not_tensors)} should hold tensors")
    weight, mu = official["feature_embedding.0.weight"], official["mu"]
    if weight.dim() != 2 or mu.dim() != 2:
        raise CheckpointError(f"{path}: feature_embedding.0.weight and mu should be matrices; their shapes are "
                              f"{tuple(weight.shape)} and {tuple(mu.shape)}")
    dataset = dataset or _dataset_of(official)
    (embed_dim, feature_dim), n_representatives = weight.shape, mu.shape[0]
    cfg = Config(dataset=dataset, data_root=data_root, feature_dim=feature_dim, embed_dim=embed_dim,
                 n_representatives=n_representatives)
    validate(cfg)
    expected = RSKP(cfg, DATASETS[dataset].n_classes).state_dict()
    for key, ours in OFFICIAL_KEYS.items():
        if official[key].shape != expected[ours].shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(official[key].shape)}; {dataset} with "
                                  f"{feature_dim}-d features into {embed_dim}-d needs {tuple(expected[ours].shape)}")
    if data_root is None:
        raise _data_root_needed(path, "is a checkpoint of the published RSKP code, which records no data", dataset)
    bank = MemoryBank(DATASETS[dataset].n_classes, cfg.bank_slots, embed_dim).state_dict()
    return TrainedModel(to_dict(cfg), {OFFICIAL_KEYS[key]: value for key, value in official.items()}, bank, None)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.checkpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="a run's trained model as signed .safetensors to share")
    exporting.add_argument("source", type=Path, help="a run's folder (OUT) or its checkpoint.pt")
    converting = commands.add_parser("convert", help="a checkpoint of the published RSKP code as .safetensors")
    converting.add_argument("official", type=Path, help="the published code's checkpoint (ckpt/<dataset>/<id>/<epoch>.pkl)")
    converting.add_argument("--dataset", required=True, help=f"the dataset it was trained on: {', '.join(DATASETS)}")
    converting.add_argument("--data-root", help="the folder holding DATASET/ (required: the checkpoint records no data)")
    for subcommand in (exporting, converting):
        subcommand.add_argument("--out", required=True, type=Path, help="the file to write (.safetensors)")
        cli.add_debug_flag(subcommand)
    args = parser.parse_args(argv)
    if args.command == "export":
        trained = export(args.source, args.out)
        print(f"{args.out}: the model, memory bank, {len(trained.class_names)} class names and config of "
              f"{args.source}; read it with python -m rsnet.inference --checkpoint {args.out}"
              + ("" if trained.config.get("data_root") is None else " --data-root ROOT (the folder holding "
                 f"{trained.config['dataset']}/: shared weights do not record it)"))
    else:
        outputs.check_out(args.out, WEIGHTS_SUFFIX, (args.official,))
        save_weights(convert_official(args.official, args.dataset, args.data_root), args.out)
        print(f"{args.out}: the model of {args.official} for {args.dataset}; read it with "
              f"python -m rsnet.inference --checkpoint {args.out} --data-root ROOT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
