"""Ground truth in the W-TALC layout, with numpy only (no torch: the evaluator imports it): the
annotation files read and checked, and the rules a video's sequence length must follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .safe_npy import load_npy

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
    """Ground truth of every video in a W-TALC annotation folder (or an ActivityNet JSON file,
    ``rsnet.data.activitynet_json``), in file order."""

    folder: Path  # the W-TALC annotation folder, or the JSON file
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

    def select(self, indices) -> Annotations:
        """The videos ``indices`` alone, in that order (the classes unchanged): a dataset that leaves
        videos out (``--skip-missing``) indexes its features and ground truth alike."""
        keep = np.asarray(indices, dtype=np.int64).tolist()
        names = [self.video_names[v] for v in keep]
        return Annotations(
            folder=self.folder, class_names=list(self.class_names), video_names=names,
            subsets=[self.subsets[v] for v in keep], durations=self.durations[keep],
            segments=[self.segments[v] for v in keep], segment_labels=[self.segment_labels[v] for v in keep],
            video_labels=self.video_labels[keep],
            ambiguous={name: spans for name, spans in self.ambiguous.items() if name in set(names)},
        )


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
    check_unique_names(video_names, folder / "videoname.npy")

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


def check_unique_names(video_names: list[str], source: Path) -> None:
    """Every video named once: detections and predictions are keyed by name, so a second video of
    the same name would silently take the first one's place."""
    first: dict[str, int] = {}
    for position, name in enumerate(video_names):
        if name in first:
            raise DataError(f"{source} names video {name!r} twice (positions {first[name]} and {position}): "
                            f"each video needs its own name")
        first[name] = position


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


def is_json(annotations: Annotations) -> bool:
    """Whether the ground truth came from an ActivityNet JSON file (error messages name its fields)."""
    return annotations.folder.suffix == ".json"


def check_evaluable(annotations: Annotations, indices) -> None:
    """Every video to be evaluated that lists classes in labels_all.npy has ground-truth segments.

    The detection protocol only scores videos with segments (the official evaluator's rule, and
    how THUMOS14's video_test_0000270, with segments but no video-level label, is scored); a video
    with classes but no segment would silently drop out of the detection mAP while counting in
    the classification mAP."""
    for v in np.asarray(indices).tolist():
        if annotations.video_labels[v].any() and len(annotations.segments[v]) == 0:
            classes = [annotations.class_names[c] for c in np.flatnonzero(annotations.video_labels[v])]
            where = ("in its labels but no segment in its annotations" if is_json(annotations)
                     else "in labels_all.npy but no segment in segments.npy")
            raise DataError(f"{annotations.folder}: video {annotations.video_names[v]} ({annotations.subsets[v]}) "
                            f"has classes {', '.join(classes)} {where}: it cannot be evaluated")


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


def annotation_folder(dataset_dir: Path, dataset: str) -> Path:
    """W-TALC keeps annotations beside the features or in ``<dataset>-Annotations/``."""
    candidates = [dataset_dir, dataset_dir / f"{dataset}-Annotations", dataset_dir.parent / f"{dataset}-Annotations"]
    for folder in candidates:
        if (folder / "classlist.npy").is_file():
            return folder
    raise DataError(f"no annotations (classlist.npy) in any of: {', '.join(str(c) for c in candidates)}")


