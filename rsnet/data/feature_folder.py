"""Per-video features of the JSON layout: a folder of ``VIDEO_ID.npy`` arrays (T, D) (what
``python -m rsnet.extract`` writes, and most released ActivityNet features), or a packed store.

A packed store here is the W-TALC store (``rsnet.data.feature_store``: ``features.npy``,
``offsets.npy``, ``source.json``) whose source record names its videos in row order,
``{"videos": [...], "files": {VIDEO_ID: [bytes, mtime_ns]} | null}``. ``--features DIR`` may be such
a store itself (the synthetic ActivityNet1.3 preset writes one), or a folder of ``.npy`` files
that ``python -m rsnet.data convert --annotations FILE.json --features DIR`` packed into
``DIR.store`` beside it, or into ``--feature-cache``. A packed store is read while it is current:
every file it was packed from is absent or has its recorded size and modification time; a stale
one is warned of and the files are read instead. Every array is read through ``safe_npy`` and
checked: two dimensions, at least one snippet, the same dimension in every video, finite values.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import DataError
from .feature_store import FEATURES, OFFSETS, SOURCE, read_store, store_of, write_store
from .safe_npy import load_npy


def is_packed(folder: Path) -> bool:
    """Whether ``folder`` is a packed store of named videos (not a folder of VIDEO_ID.npy files)."""
    return (folder / OFFSETS).is_file() and (folder / FEATURES).is_file() and _videos_of(folder) is not None


def _record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / SOURCE).read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def _videos_of(folder: Path) -> list[str] | None:
    record = _record(folder)
    videos = record.get("videos") if record else None
    return videos if isinstance(videos, list) else None


def _file_identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _is_current(store: Path, folder: Path) -> bool:
    files = (_record(store) or {}).get("files") or {}
    for name, identity in files.items():
        path = folder / f"{name}.npy"
        if path.is_file() and _file_identity(path) != identity:
            warnings.warn(f"{store} was packed from another version of {path}: not read "
                          f"(python -m rsnet.data convert --annotations ... --features {folder} packs it again)",
                          stacklevel=3)
            return False
    return True


def _packed(store: Path, feature_dim: int | None) -> dict[str, np.ndarray]:
    names = _videos_of(store)
    if feature_dim is None:  # any: the store's own, checked against the other videos by the caller
        feature_dim = np.load(store / FEATURES, mmap_mode="r", allow_pickle=False).shape[-1]
    return dict(zip(names, read_store(store, len(names), feature_dim), strict=True))


def _stores(folder: Path, cache: str | Path | None) -> list[Path]:
    """Where a packed copy of ``folder`` may be: in ``cache``, then beside it (``DIR.store``)."""
    return ([store_of(folder, cache)] if cache is not None else []) + [folder.parent / f"{folder.name}.store"]


def load_feature_folder(folder: str | Path, names: Iterable[str], feature_dim: int | None,
                        cache: str | Path | None = None) -> dict[str, np.ndarray]:
    """The features of the videos ``names`` that ``folder`` holds, by name (a video it lacks is
    absent: the caller names it, or skips it), each float32 (T, feature_dim), checked
    (``feature_dim`` None: any, the same in every video)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--features {folder}: no such folder (expected one VIDEO_ID.npy per video, or a packed store)")
    names = list(names)
    store = folder if is_packed(folder) else next(
        (s for s in _stores(folder, cache) if is_packed(s) and _is_current(s, folder)), None)
    packed = _packed(store, feature_dim) if store is not None else {}
    found, reference = {}, None
    for name in names:
        if name in packed:
            feat, where = packed[name], f"{store}: video {name}"
        elif (folder / f"{name}.npy").is_file():
            feat, where = np.asarray(load_npy(folder / f"{name}.npy")), str(folder / f"{name}.npy")
        else:
            continue
        reference = reference or (where, feat.shape[-1] if feat.ndim == 2 else None)
        found[name] = _checked(feat, where, reference, feature_dim)
    return found


def _checked(feat: np.ndarray, where: str, reference: tuple[str, int | None], feature_dim: int | None) -> np.ndarray:
    if feat.ndim != 2 or feat.shape[0] == 0 or feat.dtype.kind not in "biuf":
        raise DataError(f"{where}: features of shape {feat.shape} dtype {feat.dtype}; expected (T >= 1, D) numbers")
    first, dim = reference
    if feat.shape[1] != dim:
        raise DataError(f"{where} has {feat.shape[1]}-d features but {first} has {dim}-d: every video's features "
                        f"must have the same dimension (the same extractor)")
    if feature_dim is not None and dim != feature_dim:
        raise DataError(f"{where} has {dim}-d features; the run takes {feature_dim}-d (--feature-dim)")
    if not np.isfinite(feat).all():
        raise DataError(f"{where} has NaN or infinite features")
    return feat if feat.dtype == np.float32 else feat.astype(np.float32)


def pack_folder(folder: str | Path, names: list[str], feature_dim: int, cache: str | Path | None = None) -> Path:
    """Pack the videos ``names`` of a folder of VIDEO_ID.npy files into a store (beside the folder,
    or in ``cache``) that ``load_feature_folder`` reads instead while it is current; returns it."""
    folder = Path(folder)
    features = load_feature_folder(folder, names, feature_dim)
    missing = [n for n in names if n not in features]
    if missing:
        raise DataError(f"--features {folder} has no {missing[0]}.npy ({len(missing)} of the annotations' "
                        f"{len(names)} videos missing): nothing packed")
    store = _stores(folder, cache)[0]
    record = {"videos": names, "files": {n: _file_identity(folder / f"{n}.npy") for n in names}}
    write_store(store, [len(features[n]) for n in names], feature_dim, (features[n] for n in names), record)
    return store


def write_packed(folder: Path, names: list[str], lengths: list[int], dim: int, videos: Iterable[np.ndarray]) -> None:
    """A store of named videos written directly (no source files), video by video."""
    write_store(folder, lengths, dim, videos, {"videos": names, "files": None})
