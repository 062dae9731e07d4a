"""W-TALC layout datasets (THUMOS14, ActivityNet1.2) as packed variable-length batches.

``ROOT/<dataset>/`` holds ``<dataset>-I3D-JOINTFeatures.npy`` (a pickled object array of per-video
(T, 2048) float arrays: RGB 1024 then flow 1024, one snippet = 16 frames at 25 fps) and the
annotation files ``classlist, subset, videoname, duration, segments, labels, labels_all .npy``
(strings stored as bytes), THUMOS14 also ``Ambiguous_test.txt`` (ActivityNet1.2 has none; its
``url.npy``, the YouTube addresses, is not needed here). Every file is read through
``rsnet.safe_npy``, which refuses a pickle naming anything but numpy arrays, dtypes and strings.
Every inconsistency is an error that names the file and the problem: a silently wrong dataset
costs a researcher days.

``python -m rsnet.data convert ROOT --dataset NAME`` packs the feature file into a memory-mapped
store beside it, or in the folder ``--feature-cache DIR`` (``rsnet.feature_store``), which the loader
then reads instead while it is current.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from rs_kernels.varlen import Varlen

from . import cli
from .datasets import DATASETS, features_file
from .errors import DataError
from .feature_store import FEATURES, identity, load_store, store_of, write_store
from .safe_npy import load_npy

FEATURE_DIM = 2048
SNIPPETS_PER_SECOND = 25 / 16  # I3D: one snippet = 16 frames at 25 fps
# A video of d seconds has int(d x snippets per second) snippets (every real THUMOS14 test video,
# and the synthetic data); extractors that pad or drop the last window, or round the duration
# differently, may differ by a snippet or two, and a duration may be a little off. A length off by
# more than this (the CAS of another video, or features at another rate) is refused.
LENGTH_TOLERANCE = (2, 0.1)  # snippets, fraction of the expected length: whichever is larger


ANNOTATION_FILES = ("classlist", "subset", "videoname", "duration", "segments", "labels", "labels_all")


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass
class Annotations:
    """Ground truth of every video in a W-TALC annotation folder, in file order."""

    folder: Path
    class_names: list[str]
    video_names: list[str]
    subsets: list[str]
    durations: np.ndarray  # (V,) seconds
    segments: list[np.ndarray]  # per video (n_i, 2) seconds
    segment_labels: list[np.ndarray]  # per video (n_i,) class indices
    video_labels: np.ndarray  # (V, C) multi-hot float32
    ambiguous: dict[str, np.ndarray]  # video name -> (n, 2) seconds

    def indices(self, subset: str) -> np.ndarray:
        return np.array([i for i, s in enumerate(self.subsets) if s == subset], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.video_names)


def load_annotations(folder: str | Path) -> Annotations:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"annotation folder not found: {folder}")
    raw = {name: load_npy(folder / f"{name}.npy") for name in ANNOTATION_FILES}
    for name, arr in raw.items():
        if np.ndim(arr) == 0:
            raise DataError(f"{folder / (name + '.npy')} holds a single value, not a list")
    n_videos = len(raw["videoname"])
    for name, arr in raw.items():
        if name != "classlist" and len(arr) != n_videos:
            raise DataError(f"{folder / (name + '.npy')} has {len(arr)} entries but videoname.npy has {n_videos}")
    class_names = [_text(c) for c in raw["classlist"]]
    class_index = {c: i for i, c in enumerate(class_names)}
    video_names = [_text(n) for n in raw["videoname"]]

    def class_indices(labels, v: int, source: str) -> np.ndarray:
        if isinstance(labels, (str, bytes)) or not np.iterable(labels):
            raise DataError(f"{folder / source}: video {video_names[v]} has {labels!r}, not a list of class names")
        names = [_text(label) for label in labels]
        unknown = [name for name in names if name not in class_index]
        if unknown:
            raise DataError(f"{folder / source}: video {video_names[v]} has label {unknown[0]!r}, not in classlist.npy")
        return np.array([class_index[name] for name in names], dtype=np.int64)

    segments, segment_labels = [], []
    video_labels = np.zeros((n_videos, len(class_names)), dtype=np.float32)
    for v in range(n_videos):
        segs = _segments(raw["segments"][v], f"{folder / 'segments.npy'}: video {video_names[v]}")
        labs = class_indices(raw["labels"][v], v, "labels.npy")
        if len(segs) != len(labs):
            raise DataError(f"{folder}: video {video_names[v]} has {len(segs)} segments but {len(labs)} segment labels")
        segments.append(segs)
        segment_labels.append(labs)
        video_labels[v, class_indices(raw["labels_all"][v], v, "labels_all.npy")] = 1.0
    return Annotations(
        folder=folder,
        class_names=class_names,
        video_names=video_names,
        subsets=[_text(s) for s in raw["subset"]],
        durations=_durations(raw["duration"], folder / "duration.npy", video_names),
        segments=segments,
        segment_labels=segment_labels,
        video_labels=video_labels,
        ambiguous=_load_ambiguous(folder / "Ambiguous_test.txt"),
    )


def _numbers(value, shape: tuple[int, ...], problem: str) -> np.ndarray:
    """``value`` as float64 of ``shape`` (-1 as in reshape), or a DataError saying ``problem``."""
    try:
        return np.asarray(value, dtype=np.float64).reshape(shape)
    except (TypeError, ValueError):
        raise DataError(problem) from None


def _segments(value, where: str) -> np.ndarray:
    """(n, 2) segments in seconds of one video (``where``: the file and the video, or the line); a
    segment must be finite and not end before it starts (zero-length ones exist in ActivityNet1.2
    and count, as in the official evaluators)."""
    segs = _numbers(value, (-1, 2), f"{where} has segments that are not (start, end) pairs of numbers")
    bad = ~np.isfinite(segs).all(axis=1) | (segs[:, 1] < segs[:, 0])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where} has segment {k} = [{segs[k, 0]}, {segs[k, 1]}] s, "
                        f"which ends before it starts or is not finite")
    return segs


def _durations(value, path: Path, video_names: list[str]) -> np.ndarray:
    """(V,) seconds, one positive number per video (W-TALC stores them as (V, 1))."""
    n = len(video_names)
    durations = _numbers(value, (n,), f"{path} has shape {np.shape(value)}: expected one duration in seconds per "
                                      f"video, ({n},) or ({n}, 1) numbers")
    bad = ~(np.isfinite(durations) & (durations > 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: video {video_names[k]} has duration {durations[k]}; expected a positive number of seconds")
    return durations


def check_evaluable(annotations: Annotations, indices) -> None:
    """Every video to be evaluated that lists classes in labels_all.npy has ground-truth segments.

    The detection protocol only scores videos with segments (the official evaluator's rule, and
    how THUMOS14's video_test_0000270, with segments but no video-level label, is scored); a video
    with classes but no segment would silently drop out of the detection mAP while counting in
    the classification mAP."""
    for v in np.asarray(indices).tolist():
        if annotations.video_labels[v].any() and len(annotations.segments[v]) == 0:
            classes = [annotations.class_names[c] for c in np.flatnonzero(annotations.video_labels[v])]
            raise DataError(f"{annotations.folder}: video {annotations.video_names[v]} ({annotations.subsets[v]}) "
                            f"has classes {', '.join(classes)} in labels_all.npy but no segment in segments.npy: "
                            f"it cannot be evaluated")


def expected_length(duration: float, snippets_per_second: float) -> tuple[float, float]:
    """(expected, tolerance) in snippets for a video of ``duration`` seconds: ``check_lengths``
    accepts a length L iff ``abs(L - expected) <= tolerance`` (LENGTH_TOLERANCE)."""
    slack, fraction = LENGTH_TOLERANCE
    expected = duration * snippets_per_second
    return expected, max(slack, fraction * expected)


def check_lengths(annotations: Annotations, indices, lengths, snippets_per_second: float, what: str) -> None:
    """Each video's sequence length is int(duration x snippets_per_second), within LENGTH_TOLERANCE."""
    for v, length in zip(np.asarray(indices).tolist(), np.asarray(lengths).tolist()):
        expected, tolerance = expected_length(annotations.durations[v], snippets_per_second)
        if abs(length - expected) > tolerance:
            raise DataError(f"video {annotations.video_names[v]}: {what} of {length} snippets, expected "
                            f"{int(expected)} (duration {annotations.durations[v]:.2f} s x {snippets_per_second:g} "
                            f"snippets/s, tolerance {tolerance:.0f}): another video's, or a different snippet rate?")


def _load_ambiguous(path: Path) -> dict[str, np.ndarray]:
    """``name  start end`` lines; an absent file means no ambiguous segments."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file ({exc.reason} at byte {exc.start})") from None
    spans: dict[str, list[np.ndarray]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: expected 'name start end', got {line!r}")
        spans.setdefault(fields[0], []).append(_segments(fields[1:], f"{path}:{number}: video {fields[0]}"))
    return {name: np.concatenate(s) for name, s in spans.items()}


def load_features(path: Path, n_videos: int, feature_dim: int = FEATURE_DIM) -> list[np.ndarray]:
    """Per-video float32 (T, D) arrays, checked for count, shape and finiteness."""
    raw = load_npy(path)
    if len(raw) != n_videos:
        raise DataError(f"{path} holds {len(raw)} videos but the annotations list {n_videos}")
    features = []
    for v, feat in enumerate(raw):
        feat = np.asarray(feat, dtype=np.float32)
        if feat.ndim != 2 or feat.shape[1] != feature_dim:
            raise DataError(f"{path}: video {v} has features of shape {feat.shape}, expected (T, {feature_dim})")
        if feat.shape[0] == 0:
            raise DataError(f"{path}: video {v} is empty (0 snippets)")
        if not np.isfinite(feat).all():
            raise DataError(f"{path}: video {v} has NaN or infinite features")
        features.append(feat)
    return features


def annotation_folder(dataset_dir: Path, dataset: str) -> Path:
    """W-TALC keeps annotations beside the features or in ``<dataset>-Annotations/``."""
    candidates = [dataset_dir, dataset_dir / f"{dataset}-Annotations", dataset_dir.parent / f"{dataset}-Annotations"]
    for folder in candidates:
        if (folder / "classlist.npy").is_file():
            return folder
    raise DataError(f"no annotations (classlist.npy) in any of: {', '.join(str(c) for c in candidates)}")


def stratified_snippets(length: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted snippet indices of a video of ``length`` snippets: all of them if ``length <= count``,
    else one drawn uniformly from each of ``count`` consecutive bins of (nearly) equal length, the
    fixed-length training sampling of the ActivityNet-capable codebases (``max_seqlen``), which
    keeps every part of a long video in view while bounding its cost. A shorter video stays
    whole: packed variable-length batches need no padding or repeated snippets."""
    if length <= count:
        return np.arange(length)
    edges = np.arange(count + 1) * length // count  # every bin holds >= 1 snippet as length > count
    return edges[:-1] + (rng.random(count) * (edges[1:] - edges[:-1])).astype(np.int64)


def hold_out(video_labels: np.ndarray, indices, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out): about ``fraction`` of the videos ``indices``, stratified by class. The
    videos are ranked by their first class, at random within a class, and every (1/fraction)-th
    is held out, so each class gives its share, rounded, and a class of one video may give it."""
    if not 0 <= fraction < 1:
        raise DataError(f"the held-out fraction must be in [0, 1), got {fraction}")
    indices = np.asarray(indices, dtype=np.int64)
    first_class = video_labels[indices].argmax(axis=1)
    ranked = indices[np.lexsort((np.random.default_rng(seed).random(len(indices)), first_class))]
    position = np.arange(len(indices))
    held = np.floor((position + 1) * fraction) > np.floor(position * fraction)
    return np.sort(ranked[~held]), np.sort(ranked[held])


@dataclass
class PackedBatch:
    """B videos concatenated: x (N, D), varlen their offsets (device and host, built once per batch:
    what the model and losses take), labels (B, C) multi-hot, index (B,) video ids."""

    x: Tensor
    varlen: Varlen
    labels: Tensor
    index: Tensor

    @property
    def cu_seqlens(self) -> Tensor:
        """The (B+1,) offsets on the batch's device."""
        return self.varlen.cu_seqlens

    def to(self, device) -> "PackedBatch":
        """The batch on ``device``; its offsets keep their host values (no read back from the device)."""
        return PackedBatch(self.x.to(device, non_blocking=True), self.varlen.to(device, non_blocking=True),
                           self.labels.to(device, non_blocking=True), self.index.to(device, non_blocking=True))


class WTALCDataset:
    """Features and annotations of one W-TALC dataset folder, served as packed batches."""

    def __init__(self, root: str | Path, dataset: str = "Thumos14reduced", feature_dim: int = FEATURE_DIM,
                 max_seqlen: int = 0, held_out_fraction: float = 0.0, held_out_seed: int = 0,
                 feature_cache: str | Path | None = None):
        """``max_seqlen`` > 0: a training video longer than that is sampled to that many snippets
        each epoch (``stratified_snippets``); the test videos and the memory-bank fill stay whole.
        ``held_out_fraction`` > 0: that share of the training videos (``hold_out``, drawn from
        ``held_out_seed``) leaves ``train_indices`` for ``held_out_indices``, to pick an epoch on.
        ``feature_cache``: a folder ``convert`` wrote the feature store in, searched before the data folder."""
        if max_seqlen < 0:
            raise DataError(f"max_seqlen must be >= 0 (0: whole videos), got {max_seqlen}")
        if dataset not in DATASETS:
            raise DataError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
        self.name = dataset
        self.info = DATASETS[dataset]
        self.max_seqlen = max_seqlen
        dataset_dir = Path(root) / dataset
        if not dataset_dir.is_dir():
            raise DataError(f"dataset folder not found: {dataset_dir} (expected ROOT/{dataset}/ in the W-TALC layout)")
        self.annotations = load_annotations(annotation_folder(dataset_dir, dataset))
        n_classes = len(self.annotations.class_names)
        if n_classes != self.info.n_classes:
            raise DataError(f"{self.annotations.folder}/classlist.npy lists {n_classes} classes; {dataset} has {self.info.n_classes}")
        source = dataset_dir / features_file(dataset)
        self.features = load_store(source, len(self.annotations), feature_dim, feature_cache)  # None: no current store
        if self.features is None:
            self.features = load_features(source, len(self.annotations), feature_dim)
        self.train_indices = self._subset(self.info.train_subset)
        self.test_indices = self._subset(self.info.test_subset)
        self.train_indices, self.held_out_indices = hold_out(self.annotations.video_labels, self.train_indices,
                                                             held_out_fraction, held_out_seed)
        if held_out_fraction > 0 and len(self.held_out_indices) == 0:
            raise DataError(f"a held-out fraction of {held_out_fraction} of {len(self.train_indices)} training videos "
                            f"holds out none")
        # refused here, not after training: the evaluation checks the same, the held-out videos'
        # at the first epoch that evaluates them
        for evaluated in (self.held_out_indices, self.test_indices):
            check_evaluable(self.annotations, evaluated)
            check_lengths(self.annotations, evaluated, self.lengths(evaluated), SNIPPETS_PER_SECOND, "features")

    def _subset(self, subset: str) -> np.ndarray:
        indices = self.annotations.indices(subset)
        if len(indices) == 0:
            raise DataError(f"{self.annotations.folder}/subset.npy has no video of subset {subset!r}")
        return indices

    @property
    def n_classes(self) -> int:
        return self.info.n_classes

    def lengths(self, indices) -> np.ndarray:
        return np.array([self.features[i].shape[0] for i in indices], dtype=np.int64)

    def keep_features_on(self, device) -> bool:
        """Copy every video's features to a CUDA ``device`` once, if they take at most half its free
        memory (THUMOS14: 1.1 GB): batches are then packed there with one torch.cat, instead of
        copied from the host at every step (~50 MB, longer than the step's GPU work). Returns
        whether they moved."""
        device = torch.device(device)
        if device.type != "cuda" or isinstance(self.features[self.train_indices[0]], Tensor):
            return False
        free, _ = torch.cuda.mem_get_info(device)
        if sum(f.nbytes for f in self.features) > free // 2:
            return False
        self.features = [torch.from_numpy(f).to(device) for f in self.features]
        return True

    def pack(self, indices, snippets: list[np.ndarray] | None = None) -> PackedBatch:
        """The videos ``indices`` whole, or only their ``snippets`` (one index array per video)."""
        indices = np.asarray(indices, dtype=np.int64)
        videos = [self.features[i] for i in indices]
        if snippets is not None:
            videos = [video[torch.from_numpy(keep).to(video.device) if isinstance(video, Tensor) else keep]
                      for video, keep in zip(videos, snippets, strict=True)]
        x = torch.cat(videos) if isinstance(videos[0], Tensor) else torch.from_numpy(np.concatenate(videos))
        return PackedBatch(
            x=x,
            varlen=Varlen.from_lengths([len(video) for video in videos]),
            labels=torch.from_numpy(self.annotations.video_labels[indices]),
            index=torch.from_numpy(indices),
        )

    def train_order(self, epoch: int, seed: int) -> np.ndarray:
        """A fresh permutation of the training videos per epoch, seeded by (seed, epoch) so a resumed run draws the same."""
        return np.random.default_rng([seed, epoch]).permutation(self.train_indices)

    def train_batches(self, epoch: int, seed: int, batch_size: int) -> Iterator[PackedBatch]:
        """With ``max_seqlen``, each video's snippets are drawn from (seed, epoch, video), so the draw
        does not depend on the batch a video lands in (see ``pack_for_training``)."""
        order = self.train_order(epoch, seed)
        for start in range(0, len(order), batch_size):
            yield self.pack_for_training(order[start:start + batch_size], epoch, seed)

    def pack_for_training(self, indices: np.ndarray, epoch: int, seed: int) -> PackedBatch:
        """Training videos packed; with ``max_seqlen`` a longer video is sampled to that many snippets,
        one per equal bin, drawn from (seed, epoch, video): the same whatever piece of a step it is in."""
        if self.max_seqlen == 0:
            return self.pack(indices)
        snippets = [stratified_snippets(length, self.max_seqlen, np.random.default_rng([seed, epoch, int(v)]))
                    for v, length in zip(indices.tolist(), self.lengths(indices).tolist())]
        return self.pack(indices, snippets)

    def batches_in_order(self, indices, batch_size: int) -> Iterator[PackedBatch]:
        for start in range(0, len(indices), batch_size):
            yield self.pack(indices[start:start + batch_size])

    def test_batches(self, batch_size: int) -> Iterator[PackedBatch]:
        """The test split in annotation order."""
        return self.batches_in_order(self.test_indices, batch_size)


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


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("convert", help="pack ROOT/<dataset>/'s W-TALC feature file into a memory-mapped store "
                                               "beside it (or in --feature-cache DIR), which the loader reads instead "
                                               "while it is current")
    pack.add_argument("root", help="the loader root: ROOT/<dataset>/ holds the W-TALC files")
    pack.add_argument("--dataset", default="Thumos14reduced", choices=sorted(DATASETS))
    pack.add_argument("--feature-dim", type=int, default=FEATURE_DIM)
    pack.add_argument("--feature-cache", metavar="DIR",
                      help="write the store in DIR instead of beside the W-TALC file (a read-only or shared data "
                           "folder); train with --feature-cache DIR to read it (the run's checkpoint records it)")
    cli.add_debug_flag(pack)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    store = convert(args.root, args.dataset, args.feature_dim, args.feature_cache)
    print(f"{store}: {(store / FEATURES).stat().st_size / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
