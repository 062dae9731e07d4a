"""Videos to VIDEO_ID.npy features: decode at 25 fps, resize, crop, flow, both I3D streams, write.

Per video, frames stream through in batches of ``batch`` snippets (16 frames each, plus the
next frame, whose flow the last frame needs): memory stays bounded whatever the video's length.
A video whose features file exists is skipped (the file is written atomically, so it is whole);
a video that fails (unreadable, no video stream, shorter than a snippet) is reported and the
others go on; the failures are one error at the end.
"""
from __future__ import annotations

import io
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from rsnet import outputs
from rsnet.data import expected_length
from rsnet.devices import resolve_device
from rsnet.errors import DataError, UserError
from rsnet.folder_lock import owned

from .flow import FLOW_METHODS, flow_estimator, to_i3d_input
from .i3d import load_i3d
from .video import Video, center_crop, resize_short_side, upright_rgb

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")


@dataclass(frozen=True)
class Recipe:
    """How frames become I3D inputs (docs/extract.md gives each step's source).

    ``crop`` is 224 for the published features; tests use smaller crops (the short side scales
    with it, 256/224 of the crop) to run in seconds."""

    fps: int = 25
    snippet_frames: int = 16
    crop: int = 224

    @property
    def short_side(self) -> int:
        return round(self.crop * 256 / 224)

    @property
    def snippets_per_second(self) -> float:
        return self.fps / self.snippet_frames


@dataclass
class Stages:
    """Seconds and counts per stage, over all videos, for the summary line."""

    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    UNITS = {"decode": "frames", "resize/crop": "frames", "flow": "frames", "i3d rgb": "snippets",
             "i3d flow": "snippets", "write": "snippets"}

    def _add(self, stage: str, seconds: float, count: int) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.counts[stage] = self.counts.get(stage, 0) + count

    @contextmanager
    def timed(self, stage: str, count: int):
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add(stage, time.perf_counter() - start, count)

    def timed_iter(self, stage: str, items: Iterator) -> Iterator:
        """``items``, the time spent producing each one counted to ``stage``."""
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                self._add(stage, time.perf_counter() - start, 0)
                return
            self._add(stage, time.perf_counter() - start, 1)
            yield item

    def rates(self) -> str:
        """'decode 310 frames/s, ...; slowest: flow' over the stages that ran."""
        parts, slowest = [], None
        for stage, unit in self.UNITS.items():
            if self.counts.get(stage):
                rate = self.counts[stage] / max(self.seconds[stage], 1e-9)
                parts.append(f"{stage} {rate:.3g} {unit}/s")
                if slowest is None or self.seconds[stage] > self.seconds[slowest]:
                    slowest = stage
        return ", ".join(parts) + (f"; slowest: {slowest}" if slowest else "")


def video_files(paths: Iterable[Path]) -> list[Path]:
    """The videos the paths name, in order: a file as given, a folder's video files (by suffix,
    sorted). A UserError for a path that does not exist, a folder without videos, or two videos
    with one name (they would write one VIDEO_ID.npy)."""
    videos = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise UserError(f"{path}: a folder with no video file ({', '.join(VIDEO_SUFFIXES)})")
            videos += found
        elif path.is_file():
            videos.append(path)
        else:
            raise UserError(f"{path}: no such video file or folder")
    by_id: dict[str, Path] = {}
    for video in videos:
        if video.stem in by_id and by_id[video.stem].resolve() != video.resolve():
            raise UserError(f"{by_id[video.stem]} and {video} would both write {video.stem}.npy: rename one")
        by_id[video.stem] = video
    return list(dict.fromkeys(videos))


def features_path(out_dir: Path, video: Path) -> Path:
    return out_dir / f"{video.stem}.npy"


class Extractor:
    """Both I3D streams and a flow method, loaded once, applied video after video."""

    def __init__(self, rgb_weights: Path, flow_weights: Path, flow: str = "tvl1", device: str = "auto",
                 batch: int = 8, jobs: int | None = None, raft_weights: Path | None = None,
                 recipe: Recipe = Recipe()):
        if flow not in FLOW_METHODS:
            raise UserError(f"--flow {flow!r}: choose one of {', '.join(FLOW_METHODS)}")
        if batch < 1:
            raise UserError(f"--batch must be at least 1, got {batch}")
        self.device = resolve_device(device)
        self.batch, self.recipe = batch, recipe
        self.rgb = load_i3d(rgb_weights, "rgb").to(self.device)
        self.flow_i3d = load_i3d(flow_weights, "flow").to(self.device)
        self.flow = flow_estimator(flow, self.device, batch, jobs, raft_weights)
        self.stages = Stages()

    def close(self) -> None:
        self.flow.close()

    def _clips(self, frames: np.ndarray) -> torch.Tensor:
        """(n x 16, C, C, channels) float32 -> (n, channels, 16, C, C) on the device."""
        snippets = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        n, size = len(frames) // self.recipe.snippet_frames, frames.shape[1]
        return snippets.view(n, self.recipe.snippet_frames, size, size, -1).permute(0, 4, 1, 2, 3)

    @torch.inference_mode()
    def _snippet_features(self, frames: list[np.ndarray], following: np.ndarray | None) -> np.ndarray:
        """(n, 2048) features of n snippets: ``frames`` (n x 16 resized (H, W, 3) uint8) and the frame
        after them (None at the end of a video: the last frame's flow then repeats the one before)."""
        n = len(frames) // self.recipe.snippet_frames
        crop = self.recipe.crop
        with self.stages.timed("flow", len(frames)):
            flows = self.flow(np.stack(frames if following is None else frames + [following]))
            if following is None:
                flows = np.concatenate([flows, flows[-1:]])
            flow_input = to_i3d_input(center_crop(flows, crop))
        with self.stages.timed("resize/crop", 0):  # the frames were counted when resized
            rgb_input = center_crop(np.stack(frames), crop).astype(np.float32) / 127.5 - 1  # [0, 255] -> [-1, 1]
        with self.stages.timed("i3d rgb", n):
            rgb = self.rgb.features(self._clips(rgb_input)).cpu()
        with self.stages.timed("i3d flow", n):
            flow = self.flow_i3d.features(self._clips(flow_input)).cpu()
        return torch.cat([rgb, flow], dim=1).numpy()

    def _resized_frames(self, video: Video) -> Iterator[np.ndarray]:
        """The video's frames at the recipe's rate, upright and resized (a repeated frame converted once)."""
        last_frame = resized = None
        for frame in self.stages.timed_iter("decode", video.frames_at(Fraction(self.recipe.fps))):
            with self.stages.timed("resize/crop", 1):
                if frame is not last_frame:
                    last_frame, resized = frame, resize_short_side(upright_rgb(frame), self.recipe.short_side)
            yield resized

    def video_features(self, path: Path, bar=None) -> np.ndarray:
        """(T, 2048) float32, RGB 1024 then flow 1024, T = int(duration x 25 / 16) snippets
        (``rsnet.data.expected_length``). ``bar`` (a tqdm bar, or None) advances per snippet."""
        per_batch = self.batch * self.recipe.snippet_frames
        chunks, buffer = [], []

        def add(chunk: np.ndarray) -> None:
            chunks.append(chunk)
            if bar is not None:
                bar.update(len(chunk))

        with Video(path) as video:
            if bar is not None and video.stream.duration and video.stream.time_base:
                bar.total = int(float(video.stream.duration * video.stream.time_base) * self.recipe.snippets_per_second)
            for frame in self._resized_frames(video):
                buffer.append(frame)
                if len(buffer) == per_batch + 1:
                    add(self._snippet_features(buffer[:-1], buffer[-1]))
                    buffer = buffer[-1:]
            whole = len(buffer) // self.recipe.snippet_frames * self.recipe.snippet_frames
            if whole:
                add(self._snippet_features(buffer[:whole], buffer[whole] if len(buffer) > whole else None))
            duration = video.duration
        length = int(expected_length(duration, self.recipe.snippets_per_second)[0])
        if length < 1:
            raise DataError(f"{path}: {duration:.2f} s of video, shorter than one snippet "
                            f"({self.recipe.snippet_frames} frames at {self.recipe.fps} fps)")
        return np.concatenate(chunks)[:length].astype(np.float32)


class ExtractionError(DataError):
    """Some videos failed; the others were written (``written``: their paths, in order)."""

    def __init__(self, message: str, written: list[Path]):
        super().__init__(message)
        self.written = written


def save_features(path: Path, features: np.ndarray) -> None:
    """``features`` as a .npy file at ``path``, written atomically (``rsnet.outputs.write``)."""
    buffer = io.BytesIO()
    np.save(buffer, features)
    outputs.write(path, buffer.getvalue())


def extract_videos(videos: list[Path], out_dir: Path, rgb_weights: Path, flow_weights: Path, flow: str = "tvl1",
                   device: str = "auto", batch: int = 8, progress: bool = True, *, jobs: int | None = None,
                   raft_weights: Path | None = None, recipe: Recipe = Recipe()) -> list[Path]:
    """Writes ``out_dir/VIDEO_ID.npy``, (T, 2048) float32 (RGB 1024 then flow 1024), for each video
    of ``videos`` (video files, or folders: their video files by suffix, sorted; VIDEO_ID: the
    file's name without suffix), and returns those paths in order.

    - ``rgb_weights``, ``flow_weights``: the pytorch-i3d files (``rgb_imagenet.pt``, ``flow_imagenet.pt``).
    - ``flow``: ``tvl1`` (the published features' flow, CPU), ``raft`` or ``raft_small`` (torchvision's,
      with ``raft_weights`` or torchvision's cached file; never downloaded).
    - ``device``: ``auto`` (the GPU if any), ``cpu``, ``cuda``...; ``batch``: snippets per I3D forward
      (and flow pairs per RAFT call); ``jobs``: TV-L1 threads (default: every core).
    - ``progress``: a bar over the videos and one per video, and a summary line, on stderr.
    - ``recipe``: the frame rate, snippet length and crop (default: the published features').

    A video whose file exists is skipped (files are written atomically: an existing one is whole).
    Bad arguments raise ``UserError`` before any work; videos that fail (unreadable, no video
    stream, shorter than a snippet) raise one ``ExtractionError`` (a ``DataError``) after the others
    are written, naming each failed file and why.
    """
    out_dir = Path(out_dir)
    videos = video_files(videos)
    outputs.check_out_folder(out_dir)
    _check_distinct_ids(videos)
    for video in videos:
        outputs.check_out(features_path(out_dir, video), ".npy", (video,))
    needed = any(not features_path(out_dir, v).exists() for v in videos)
    # built before the folder is taken: bad arguments (a flow, a device, a weights file) are refused first
    extractor = Extractor(rgb_weights, flow_weights, flow, device, batch, jobs, raft_weights, recipe) if needed else None
    with owned(out_dir, "a feature extraction"):
        return _extract_into(videos, out_dir, progress, extractor)


def _check_distinct_ids(videos: list[Path]) -> None:
    """Two videos of one name would write one VIDEO_ID.npy: the second would be skipped as done."""
    seen: dict[str, Path] = {}
    for video in videos:
        if video.stem in seen:
            raise UserError(f"{seen[video.stem]} and {video} have the same video id {video.stem!r}: their features "
                            f"would be one file; rename one")
        seen[video.stem] = video


def _extract_into(videos: list[Path], out_dir: Path, progress: bool, extractor: Extractor | None) -> list[Path]:
    """The pipeline over ``videos`` not done yet, under the folder's lock (see ``extract_videos``)."""
    from tqdm import tqdm

    todo = [v for v in videos if not features_path(out_dir, v).exists()] if extractor else []
    failures: list[str] = []
    start = time.perf_counter()
    try:
        for video in tqdm(todo, desc="videos", unit="video", disable=not progress):
            with tqdm(desc=video.name, unit="snippet", leave=False, disable=not progress) as bar:
                try:
                    features = extractor.video_features(video, bar)
                except DataError as exc:
                    failures.append(str(exc))
                    continue
            with extractor.stages.timed("write", len(features)):
                save_features(features_path(out_dir, video), features)
    finally:
        if extractor is not None:
            extractor.close()
    if progress:
        _print_summary(len(videos), len(videos) - len(todo), len(failures), time.perf_counter() - start,
                       extractor.stages if extractor else Stages())
    written = [features_path(out_dir, v) for v in videos if features_path(out_dir, v).exists()]
    if failures:
        raise ExtractionError(f"{len(failures)} of {len(videos)} videos failed (the others are in {out_dir}): "
                              + "; ".join(failures), written)
    return written


def _print_summary(n_videos: int, skipped: int, failed: int, seconds: float, stages: Stages) -> None:
    snippets = stages.counts.get("write", 0)
    print(f"extract: {n_videos} videos ({n_videos - skipped - failed} extracted, {skipped} already there, "
          f"{failed} failed), {snippets} snippets in {seconds:.1f} s ({snippets / max(seconds, 1e-9):.3g} snippets/s)"
          + (f": {stages.rates()}" if snippets else ""), file=sys.stderr)
