"""What a checkpoint holds of a trained model, read from any of the three kinds of file (or a run
folder, for its checkpoint.pt).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from .official import official_trained, unsigned_state_dict
from .signed import RUN_CHECKPOINT, CheckpointError, checked_run, checkpoint_bytes, unpickled, verified
from .state import TrainedModel
from .weights import WEIGHTS_SUFFIX, load_weights

CHECKPOINT_FORMATS = ("auto", "official")  # auto: by suffix, signature and keys


def load_trained(path: str | Path, checkpoint_format: str = "auto", data_root: str | None = None,
                 dataset_needed: bool = True) -> TrainedModel:
    """The trained model of a run's checkpoint (``checkpoint.pt``), of its exported ``.safetensors``,
    or of the published RSKP code's ``state_dict`` (``N.pkl``, see ``official_trained``).

    ``checkpoint_format`` "auto" tells them apart by the suffix, the rskp signature, and, for an
    unsigned file, by what it unpickles to (weights-only): a dict of tensors alone with a key of the
    published code's (``OFFICIAL_KEYS``) is its state_dict; "official" takes the file as that
    state_dict whatever it looks like (a key prefixed by ``module.`` is then named as unknown).
    ``dataset_needed`` False: the caller reads no dataset (``load_weights``).
    """
    path = run_checkpoint(Path(path))
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise UserError(f"--checkpoint-format {checkpoint_format!r}: expected one of {', '.join(CHECKPOINT_FORMATS)}")
    if checkpoint_format == "official":
        return official_trained(unpickled(checkpoint_bytes(path), path), path, data_root)
    if path.suffix == WEIGHTS_SUFFIX:
        return load_weights(path, data_root, dataset_needed)
    data = checkpoint_bytes(path)
    state_dict = unsigned_state_dict(data, path)
    if state_dict is not None:
        return official_trained(state_dict, path, data_root)
    return run_trained(checked_run(unpickled(verified(data, path), path), path))


def run_checkpoint(path: Path) -> Path:
    """``path``, or the checkpoint.pt of the run folder ``path`` names (as export takes it)."""
    if not path.is_dir():
        return path
    if not (path / RUN_CHECKPOINT).is_file():
        raise CheckpointError(f"{path} is a folder without a {RUN_CHECKPOINT}: give a run folder (the --out of "
                              f"python -m rsnet.train), its {RUN_CHECKPOINT}, exported .safetensors or an N.pkl")
    return path / RUN_CHECKPOINT


def run_trained(state: dict[str, Any]) -> TrainedModel:
    """The trained model of a run's state (its class names None where the run predates them)."""
    return TrainedModel(state["config"], state["model"], state["bank"], state.get("class_names"))




