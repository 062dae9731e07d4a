"""The published RSKP code's checkpoints (its ``N.pkl`` state_dict), mapped onto this model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import Config, to_dict, validate
from ..datasets import DATASETS
from ..model import RSKP, MemoryBank
from .signed import HASH_MARK, HASH_TRAILER_BYTES, CheckpointError, checkpoint_bytes, unpickled
from .state import TrainedModel, data_root_needed

OFFICIAL_KEYS = {  # the published RSKP code's model (WSTAL) state_dict -> RSKP's
    "feature_embedding.0.weight": "embedding.weight",
    "feature_embedding.0.bias": "embedding.bias",
    "mu": "mu0",
    "ac_center": "head.class_centres",
    "fg_center": "head.fg_centre",
}


def unsigned_state_dict(data: bytes, path: Path) -> dict[str, Tensor] | None:
    """The file's dict of tensors if it is unsigned and unpickles (weights-only) to one with a key
    of the published code's, else None (the run checks then name what is wrong with the file)."""
    if data[-HASH_TRAILER_BYTES:].startswith(HASH_MARK):
        return None
    try:
        state = unpickled(data, path)
    except CheckpointError:
        return None
    official = bool(set(state) & set(OFFICIAL_KEYS)) and all(isinstance(v, Tensor) for v in state.values())
    return state if official else None


def convert_official(path: Path, dataset: str, data_root: str | None = None) -> TrainedModel:
    """``official_trained`` of the published code's checkpoint file, for ``dataset``."""
    return official_trained(unpickled(checkpoint_bytes(path), path), path, data_root, dataset)


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
        raise data_root_needed(path, "is a checkpoint of the published RSKP code, which records no data", dataset)
    bank = MemoryBank(DATASETS[dataset].n_classes, cfg.bank_slots, embed_dim).state_dict()
    return TrainedModel(to_dict(cfg), {OFFICIAL_KEYS[key]: value for key, value in official.items()}, bank, None)
