"""What the commands need of a trained model, whichever kind of file holds it, and its checks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor

from ..data import Annotations
from .signed import CheckpointError


class TrainedModel(NamedTuple):
    """What the commands that use a trained model need, from a run's checkpoint, exported weights or
    the published code's state_dict."""

    config: dict[str, Any]  # the run's config keys
    model: dict[str, Tensor]  # RSKP's state_dict
    bank: dict[str, Tensor]  # MemoryBank's state_dict
    # the dataset's classes, in label order; None: not recorded (N.pkl, a checkpoint.pt written before rskp recorded them)
    class_names: list[str] | None


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


def data_root_needed(path: Path, why: str, dataset: str | None) -> CheckpointError:
    """The error of a model whose dataset folder must be named (``why``: what it does not record)."""
    return CheckpointError(f"{path} {why}: pass --data-root ROOT, the folder holding {dataset}/")
