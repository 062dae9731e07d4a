"""Packing a W-TALC feature file into the memory-mapped feature store the loader reads instead."""
from __future__ import annotations

import os
from pathlib import Path

from ..datasets import DATASETS, FEATURE_DIM, features_file
from ..errors import DataError
from .annotations import annotation_folder, load_annotations
from .dataset import load_features
from .feature_store import identity, store_of, write_store


def convert(root: str | Path, dataset: str, feature_dim: int = FEATURE_DIM,
            feature_cache: str | Path | None = None) -> Path:
    """Pack ROOT/<dataset>/'s W-TALC feature file into its store, beside it or in ``feature_cache``
    (checked as the loader checks it); returns the store."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    dataset_dir = Path(root) / dataset
    if not dataset_dir.is_dir():
        raise DataError(f"dataset folder not found: {dataset_dir} (expected ROOT/{dataset}/ in the W-TALC layout)")
    source = dataset_dir / features_file(dataset)
    store = store_of(source, feature_cache)
    _check_writable(store.parent, feature_cache is not None)
    record = identity(source) if source.is_file() else None  # before reading: a later change makes the store stale
    features = load_features(source, len(load_annotations(annotation_folder(dataset_dir, dataset))), feature_dim)
    write_store(store, [len(f) for f in features], feature_dim, features, record)
    return store


def _check_writable(folder: Path, is_cache: bool) -> None:
    """Refused before the W-TALC file is read (minutes for ActivityNet1.2), not after."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the feature cache {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        elsewhere = "" if is_cache else ": give --feature-cache DIR to write the store in DIR instead"
        raise DataError(f"cannot write in {folder}{elsewhere}")


