"""The W-TALC datasets the package knows: class count and which subsets train and test.

Kept apart from ``rsnet.data`` (which imports torch) so that the synthetic generator can name
them without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    n_classes: int
    train_subset: str
    test_subset: str


DATASETS = {
    "Thumos14reduced": DatasetInfo(n_classes=20, train_subset="validation", test_subset="test"),
    "ActivityNet1.2": DatasetInfo(n_classes=100, train_subset="training", test_subset="validation"),
}


def features_file(dataset: str) -> str:
    """The W-TALC name of a dataset's feature file, beside its annotations in ``ROOT/<dataset>/``."""
    return f"{dataset}-I3D-JOINTFeatures.npy"
