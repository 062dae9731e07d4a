"""The datasets the package knows and the features it reads: a leaf (no torch, no numpy).

Each dataset's class count and which subsets train and test; the I3D feature layout
(``FEATURE_DIM``: RGB 1024 then flow 1024, one snippet = 16 frames at 25 fps). THUMOS14 and
ActivityNet1.2 come as W-TALC folders (``--data-root``) or as ActivityNet JSON annotations with
per-video features (``--annotations FILE.json --features DIR``); ActivityNet1.3 and ``custom``
(a dataset of one's own, e.g. ``python -m rsnet.data build``) in the JSON layout only.
"""
from __future__ import annotations

from dataclasses import dataclass

FEATURE_DIM = 2048
FPS, FRAMES_PER_SNIPPET = 25.0, 16.0  # I3D as W-TALC extracted it: one snippet = 16 frames at 25 fps
SNIPPETS_PER_SECOND = FPS / FRAMES_PER_SNIPPET
CUSTOM = "custom"  # any dataset in the ActivityNet JSON layout: no class count, the official (THUMOS14) settings


@dataclass(frozen=True)
class DatasetInfo:
    n_classes: int | None  # None: whatever the annotations list (custom)
    train_subset: str
    test_subset: str
    # subsets of the JSON layout that neither train nor test and are left out without a word:
    # ActivityNet's 'testing' videos, whose ground truth is not public
    ignored_subsets: tuple[str, ...] = ()
    wtalc: bool = True  # also comes as a W-TALC folder (--data-root)


DATASETS = {
    "Thumos14reduced": DatasetInfo(n_classes=20, train_subset="validation", test_subset="test"),
    "ActivityNet1.2": DatasetInfo(n_classes=100, train_subset="training", test_subset="validation",
                                  ignored_subsets=("testing",)),
    "ActivityNet1.3": DatasetInfo(n_classes=200, train_subset="training", test_subset="validation",
                                  ignored_subsets=("testing",), wtalc=False),
    CUSTOM: DatasetInfo(n_classes=None, train_subset="training", test_subset="validation",
                        ignored_subsets=("testing",), wtalc=False),
}
WTALC_DATASETS = tuple(name for name, info in DATASETS.items() if info.wtalc)


def features_file(dataset: str) -> str:
    """The W-TALC name of a dataset's feature file, beside its annotations in ``ROOT/<dataset>/``."""
    return f"{dataset}-I3D-JOINTFeatures.npy"
