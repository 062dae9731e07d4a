"""The datasets the package knows and the features it reads: a leaf (no torch, no numpy).

Each W-TALC dataset's class count and which subsets train and test; the I3D feature layout
(``FEATURE_DIM``: RGB 1024 then flow 1024, one snippet = 16 frames at 25 fps).
"""
from __future__ import annotations

from dataclasses import dataclass

FEATURE_DIM = 2048
SNIPPETS_PER_SECOND = 25 / 16  # I3D: one snippet = 16 frames at 25 fps


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
