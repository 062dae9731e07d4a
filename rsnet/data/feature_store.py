"""A dataset's features packed: one contiguous (N, D) float32 array and (V+1,) int64 offsets.

W-TALC ships the features as one pickled object array (``<dataset>-I3D-JOINTFeatures.npy``): every
load unpickles all of it into memory (ActivityNet1.2: 7,202 videos), and nothing can be written
or read a video at a time. The store holds the same values, video ``v`` being rows
``offsets[v]:offsets[v+1]`` of ``features.npy``, in plain ``.npy`` files written and read with
``allow_pickle=False`` and memory-mapped, so a load touches only the pages a batch reads, and a
generator can write it video by video. It lives in ``<dataset>-I3D-JOINTFeatures.store/`` beside
the W-TALC file, or in a feature cache folder of the user's choice when the data are read-only or
shared (``store_of``), with ``source.json``: the size, modification time and SHA-256 of the file it
was converted from (``null`` for a store written directly, e.g. by the synthetic generator).

A store is *current* when its source file is absent, or has the recorded size and either the
recorded modification time or, failing that, the recorded SHA-256. A stale store is never read:
the loader warns and reads the next current store or the W-TALC file.
``python -m rsnet.data convert ROOT --dataset NAME [--feature-cache DIR]`` writes one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError

FEATURES, OFFSETS, SOURCE = "features.npy", "offsets.npy", "source.json"


def store_of(features_path: Path, cache: str | Path | None = None) -> Path:
    """The store folder of a W-TALC feature file: ``X-I3D-JOINTFeatures.npy`` -> ``X-I3D-JOINTFeatures.store``
    beside it, or ``cache/X-I3D-JOINTFeatures-<hash>.store``: the hash of the file's absolute path
    keeps apart the stores of data roots that hold a dataset of the same name."""
    if cache is None:
        return features_path.with_suffix(".store")
    path_hash = hashlib.sha256(str(features_path.resolve()).encode()).hexdigest()[:12]
    return Path(cache) / f"{features_path.stem}-{path_hash}.store"


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):  # 1 MB: the hash needs no more memory
            sha.update(block)
    return sha.hexdigest()


def identity(path: Path) -> dict:
    """What the store records of its source file."""
    stat = path.stat()
    return {"name": path.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_of(path)}


def write_store(folder: Path, lengths: Sequence[int], dim: int, videos: Iterable[np.ndarray],
                source: dict | None) -> None:
    """Write the store of videos of the given lengths, taking one (T, dim) array at a time from
    ``videos``; built in a staging folder and renamed into place, so a crash leaves no half store."""
    folder = Path(folder)
    offsets = np.concatenate(([0], np.cumsum(np.asarray(lengths, dtype=np.int64))))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    staging.chmod(0o755)
    try:
        packed = np.lib.format.open_memmap(staging / FEATURES, mode="w+", dtype=np.float32,
                                           shape=(int(offsets[-1]), dim))
        count = 0
        for v, video in enumerate(videos):
            if v >= len(lengths):
                raise ValueError(f"more videos than the {len(lengths)} the store expects")
            if video.shape != (lengths[v], dim):
                raise ValueError(f"video {v} has shape {video.shape}, the store expects ({lengths[v]}, {dim})")
            packed[offsets[v]:offsets[v + 1]] = video
            count += 1
        if count != len(lengths):
            raise ValueError(f"{count} videos written, the store expects {len(lengths)}")
        packed.flush()
        del packed
        np.save(staging / OFFSETS, offsets, allow_pickle=False)
        (staging / SOURCE).write_text(json.dumps({"source": source}, indent=1) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_current(folder: Path, source_path: Path) -> bool:
    """The store was converted from ``source_path`` as it is now (or written directly and no W-TALC file is there)."""
    recorded = json.loads((folder / SOURCE).read_text())["source"]
    if not source_path.is_file():
        return True
    if recorded is None:
        return False  # written directly, but a W-TALC file has appeared beside it: which is meant is unclear
    stat = source_path.stat()
    if stat.st_size != recorded["bytes"]:
        return False
    return stat.st_mtime_ns == recorded["mtime_ns"] or sha256_of(source_path) == recorded["sha256"]


def load_store(source_path: Path, n_videos: int, feature_dim: int,
               cache: str | Path | None = None) -> list[np.ndarray] | None:
    """The per-video (T, D) views of the first current store of ``source_path``, in ``cache`` then
    beside the file (memory-mapped, copy on write), checked like the W-TALC file; None when there is
    none. A stale store, or a cache without a store of the file, is warned of."""
    beside = store_of(source_path)
    searched = [beside] if cache is None else [store_of(source_path, cache), beside]
    stores = [folder for folder in searched if (folder / SOURCE).is_file()]
    for folder in stores:
        if _is_current_or_warned(folder, source_path):
            return read_store(folder, n_videos, feature_dim)
    if cache is not None and searched[0] not in stores:
        warnings.warn(f"{cache} holds no store of {source_path}: reading the W-TALC file "
                      f"(python -m rsnet.data convert --feature-cache {cache} writes one)", stacklevel=2)
    return None


def _is_current_or_warned(folder: Path, source_path: Path) -> bool:
    try:
        current = is_current(folder, source_path)
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{folder / SOURCE} is not a store's source record; remove {folder} or convert again") from None
    if not current:
        warnings.warn(f"{folder} was converted from another version of {source_path.name}: not read "
                      f"(python -m rsnet.data convert updates the store)", stacklevel=3)
    return current


def read_store(folder: Path, n_videos: int, feature_dim: int) -> list[np.ndarray]:
    """The per-video (T, D) views of a store's ``n_videos`` videos (memory-mapped, copy on write), checked."""
    try:
        packed = np.load(folder / FEATURES, mmap_mode="c", allow_pickle=False)
        offsets = np.load(folder / OFFSETS, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder} cannot be read: {' '.join(str(exc).split())}") from None
    _check(folder, packed, offsets, n_videos, feature_dim)
    return [packed[offsets[v]:offsets[v + 1]] for v in range(n_videos)]


def _check(folder: Path, packed: np.ndarray, offsets: np.ndarray, n_videos: int, feature_dim: int) -> None:
    if packed.ndim != 2 or packed.shape[1] != feature_dim or packed.dtype != np.float32:
        raise DataError(f"{folder / FEATURES} holds {packed.dtype} {packed.shape}, expected float32 (N, {feature_dim})")
    if offsets.shape != (n_videos + 1,) or offsets.dtype != np.int64:
        raise DataError(f"{folder / OFFSETS} holds {offsets.dtype} {offsets.shape}, expected int64 ({n_videos + 1},): "
                        f"one offset per video of the annotations, and the end")
    lengths = np.diff(offsets)
    if offsets[0] != 0 or offsets[-1] != len(packed) or (lengths < 1).any():
        raise DataError(f"{folder / OFFSETS} does not cut {len(packed)} rows into {n_videos} non-empty videos")
    # A sum in float64 is NaN or infinite iff a value is (finite float32 values cannot overflow it),
    # and unlike np.isfinite it allocates nothing per value; in slices, as the store may not fit in memory.
    for start in range(0, len(packed), 1 << 16):
        if not np.isfinite(packed[start:start + (1 << 16)].sum(dtype=np.float64)):
            raise DataError(f"{folder / FEATURES} has NaN or infinite features near row {start}")
