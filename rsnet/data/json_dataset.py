"""A dataset in the JSON layout: ActivityNet JSON annotations (``rsnet.data.activitynet_json``)
with per-video features (``rsnet.data.feature_folder``), served as ``VideoDataset`` serves the
W-TALC folders, so that packing, training, evaluation and checkpoints are shared.

The file's subsets map to the training and test splits by name: ``train_subsets`` and
``test_subsets`` (comma-separated; default: the dataset's, ActivityNet's 'training' and
'validation' for ActivityNet and ``custom``, THUMOS14's 'validation' and 'test' for
Thumos14reduced). A subset of the file that maps to neither is an error, except the dataset's
ignored ones (ActivityNet's 'testing', whose ground truth is not public), which are left out.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets import CUSTOM, DATASETS, FEATURE_DIM, SNIPPETS_PER_SECOND
from ..errors import DataError
from .activitynet_json import load_activitynet_json
from .annotations import Annotations
from .dataset import VideoDataset
from .feature_folder import load_feature_folder


def subset_names(given: str | None, default: str) -> list[str]:
    """Comma-separated subset names (a flag's value), or the dataset's default."""
    names = [n.strip() for n in (given or default).split(",") if n.strip()]
    if not names:
        raise DataError(f"no subset name in {given!r}")
    return names


def split_subsets(annotations: Annotations, train: list[str], test: list[str], ignored: tuple[str, ...],
                  flags: str = "--train-subsets / --test-subsets") -> tuple[np.ndarray, np.ndarray]:
    """(training, test) video indices; every subset of the file maps to one split or is ignored."""
    both = sorted(set(train) & set(test))
    if both:
        raise DataError(f"subset {both[0]!r} is both a training and a test subset ({flags})")
    present = list(dict.fromkeys(annotations.subsets))
    for name in train + test:
        if name not in present:
            raise DataError(f"{annotations.folder} has no video of subset {name!r} (its subsets: "
                            f"{', '.join(present)}); {flags} name the file's subsets")
    unmapped = [s for s in present if s not in train + test + list(ignored)]
    if unmapped:
        count = annotations.subsets.count(unmapped[0])
        raise DataError(f"{annotations.folder}: subset {unmapped[0]!r} ({count} videos) maps nowhere: training is "
                        f"{', '.join(train)} and testing {', '.join(test)}; add it to one of {flags}")
    return (np.array([v for v, s in enumerate(annotations.subsets) if s in train], dtype=np.int64),
            np.array([v for v, s in enumerate(annotations.subsets) if s in test], dtype=np.int64))


class JSONDataset(VideoDataset):
    """ActivityNet JSON annotations and a folder of per-video features (or a packed store)."""

    def __init__(self, annotations_file: str | Path, features_dir: str | Path, dataset: str = CUSTOM,
                 feature_dim: int = FEATURE_DIM, max_seqlen: int = 0, held_out_fraction: float = 0.0,
                 held_out_seed: int = 0, feature_cache: str | Path | None = None,
                 snippets_per_second: float = SNIPPETS_PER_SECOND, classes: str | Path | None = None,
                 train_subsets: str | None = None, test_subsets: str | None = None, skip_missing: bool = False):
        """``classes``: a file fixing the class order (default: the sorted labels); ``skip_missing``:
        videos without features are left out (``skipped`` lists them) instead of refused; the other
        arguments as ``VideoDataset``'s and ``WTALCDataset``'s."""
        if dataset not in DATASETS:
            raise DataError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
        self.name, self.info = dataset, DATASETS[dataset]
        annotations = load_activitynet_json(annotations_file, classes)
        n_classes = len(annotations.class_names)
        if self.info.n_classes is not None and n_classes != self.info.n_classes:
            raise DataError(f"{annotations_file} uses {n_classes} classes; {dataset} has {self.info.n_classes} "
                            f"(--dataset {CUSTOM} takes any)")
        train, test = split_subsets(annotations, subset_names(train_subsets, self.info.train_subset),
                                    subset_names(test_subsets, self.info.test_subset), self.info.ignored_subsets)
        used = np.sort(np.concatenate([train, test]))
        names = [annotations.video_names[v] for v in used.tolist()]
        features = load_feature_folder(features_dir, names, feature_dim, feature_cache)
        missing = [v for v in used.tolist() if annotations.video_names[v] not in features]
        if missing and not skip_missing:
            v = missing[0]
            raise DataError(f"video {annotations.video_names[v]} ({annotations.subsets[v]}) of {annotations_file} has "
                            f"no features in {features_dir} (no {annotations.video_names[v]}.npy; {len(missing)} of "
                            f"{len(used)} videos missing): --skip-missing trains and evaluates without them")
        self.skipped = [annotations.video_names[v] for v in missing]
        kept = np.setdiff1d(used, missing)
        position = {int(v): k for k, v in enumerate(kept)}  # file index -> index among the kept videos
        splits = {split: [position[v] for v in indices.tolist() if v in position]
                  for split, indices in (("training", train), ("test", test))}
        for split, indices in splits.items():
            if not indices:
                raise DataError(f"no {split} video left in {annotations_file} with features in {features_dir}")
        annotations = annotations.select(kept)
        super().__init__(annotations, [features[n] for n in annotations.video_names], splits["training"],
                         splits["test"], max_seqlen, held_out_fraction, held_out_seed, snippets_per_second,
                         ",".join(subset_names(test_subsets, self.info.test_subset)))
