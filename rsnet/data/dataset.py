"""W-TALC layout datasets (THUMOS14, ActivityNet1.2) as packed variable-length batches.

``ROOT/<dataset>/`` holds ``<dataset>-I3D-JOINTFeatures.npy`` (a pickled object array of per-video
(T, 2048) float arrays: RGB 1024 then flow 1024, one snippet = 16 frames at 25 fps) and the
annotation files ``classlist, subset, videoname, duration, segments, labels, labels_all .npy``
(strings stored as bytes), THUMOS14 also ``Ambiguous_test.txt`` (ActivityNet1.2 has none; its
``url.npy``, the YouTube addresses, is not needed here). Every file is read through
``rsnet.data.safe_npy``, which refuses a pickle naming anything but numpy arrays, dtypes and strings.
Every inconsistency is an error that names the file and the problem: a silently wrong dataset
costs a researcher days.

``python -m rsnet.data convert ROOT --dataset NAME`` packs the feature file into a memory-mapped
store beside it, or in the folder ``--feature-cache DIR`` (``rsnet.data.feature_store``), which the loader
then reads instead while it is current.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from rs_kernels.varlen import Varlen

from ..datasets import DATASETS, FEATURE_DIM, SNIPPETS_PER_SECOND, WTALC_DATASETS, features_file
from ..errors import DataError
from .annotations import Annotations, annotation_folder, check_evaluable, check_lengths, hold_out, load_annotations
from .feature_store import load_store
from .safe_npy import load_npy


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


class VideoDataset:
    """Videos' features and ground truth, served as packed batches: what training, evaluation and
    every command read, whichever layout the data came in (``WTALCDataset``, the W-TALC folders;
    ``rsnet.data.json_dataset.JSONDataset``, ActivityNet JSON with per-video features)."""

    skipped: tuple[str, ...] | list[str] = ()  # videos of the annotations left out for want of features (--skip-missing)

    def __init__(self, annotations: Annotations, features: list, train_indices, test_indices,
                 max_seqlen: int = 0, held_out_fraction: float = 0.0, held_out_seed: int = 0,
                 snippets_per_second: float = SNIPPETS_PER_SECOND, test_subset: str = ""):
        """``features[v]``: video v's (T, D) array. ``max_seqlen`` > 0: a training video longer than
        that is sampled to that many snippets each epoch (``stratified_snippets``); the test videos
        and the memory-bank fill stay whole. ``held_out_fraction`` > 0: that share of the training
        videos (``hold_out``, drawn from ``held_out_seed``) leaves ``train_indices`` for
        ``held_out_indices``, to pick an epoch on. ``snippets_per_second``: the features' rate, by
        which a video's length must follow its duration. ``test_subset``: the test split's subset
        name(s), as the evaluate command takes them."""
        if max_seqlen < 0:
            raise DataError(f"max_seqlen must be >= 0 (0: whole videos), got {max_seqlen}")
        self.annotations, self.features, self.max_seqlen = annotations, features, max_seqlen
        self.snippets_per_second, self.test_subset = snippets_per_second, test_subset
        self.test_indices = np.asarray(test_indices, dtype=np.int64)
        self.train_indices, self.held_out_indices = hold_out(self.annotations.video_labels, train_indices,
                                                             held_out_fraction, held_out_seed)
        if held_out_fraction > 0 and len(self.held_out_indices) == 0:
            raise DataError(f"a held-out fraction of {held_out_fraction} of {len(self.train_indices)} training videos "
                            f"holds out none")
        # refused here, not after training: the evaluation checks the same, the held-out videos'
        # at the first epoch that evaluates them
        for evaluated in (self.held_out_indices, self.test_indices):
            check_evaluable(self.annotations, evaluated)
            check_lengths(self.annotations, evaluated, self.lengths(evaluated), snippets_per_second, "features")


    def report_skipped(self) -> None:
        """One line on stderr counting the videos left out for want of features, if any."""
        if self.skipped:
            shown = ", ".join(self.skipped[:3]) + (" ..." if len(self.skipped) > 3 else "")
            print(f"rskp: --skip-missing: {len(self.skipped)} videos without features left out ({shown})",
                  file=sys.stderr)

    @property
    def n_classes(self) -> int:
        return len(self.annotations.class_names)

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


class WTALCDataset(VideoDataset):
    """Features and annotations of one W-TALC dataset folder, served as packed batches."""

    def __init__(self, root: str | Path, dataset: str = "Thumos14reduced", feature_dim: int = FEATURE_DIM,
                 max_seqlen: int = 0, held_out_fraction: float = 0.0, held_out_seed: int = 0,
                 feature_cache: str | Path | None = None, snippets_per_second: float = SNIPPETS_PER_SECOND):
        """``feature_cache``: a folder ``convert`` wrote the feature store in, searched before the
        data folder; the other arguments as ``VideoDataset``'s."""
        if dataset not in WTALC_DATASETS:
            raise DataError(f"unknown dataset {dataset!r} in the W-TALC layout; expected one of "
                            f"{sorted(WTALC_DATASETS)} (others come as --annotations FILE.json --features DIR)")
        self.name = dataset
        self.info = DATASETS[dataset]
        dataset_dir = Path(root) / dataset
        if not dataset_dir.is_dir():
            raise DataError(f"dataset folder not found: {dataset_dir} (expected ROOT/{dataset}/ in the W-TALC layout)")
        annotations = load_annotations(annotation_folder(dataset_dir, dataset))
        n_classes = len(annotations.class_names)
        if n_classes != self.info.n_classes:
            raise DataError(f"{annotations.folder}/classlist.npy lists {n_classes} classes; {dataset} has {self.info.n_classes}")
        source = dataset_dir / features_file(dataset)
        features = load_store(source, len(annotations), feature_dim, feature_cache)  # None: no current store
        if features is None:
            features = load_features(source, len(annotations), feature_dim)
        self.annotations = annotations
        super().__init__(annotations, features, self._subset(self.info.train_subset),
                         self._subset(self.info.test_subset), max_seqlen, held_out_fraction, held_out_seed,
                         snippets_per_second, self.info.test_subset)

    def _subset(self, subset: str) -> np.ndarray:
        indices = self.annotations.indices(subset)
        if len(indices) == 0:
            raise DataError(f"{self.annotations.folder}/subset.npy has no video of subset {subset!r}")
        return indices
