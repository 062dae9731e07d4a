"""A dataset from one's own video-level labels: ``python -m rsnet.data build --features DIR --labels
labels.csv --out dataset.json`` writes ActivityNet JSON annotations (``rsnet.data.activitynet_json``)
that ``python -m rsnet.train --annotations dataset.json --features DIR`` trains and evaluates on.

Each CSV row is ``video,label`` (a video-level label: all a training video needs) or
``video,label,start,end`` (a segment in seconds: what a video to evaluate on needs), optionally
followed by a ``subset`` column (``training`` / ``train`` or ``validation`` / ``test``). A first row
starting with ``video`` is a header naming the columns (``video,label,start,end,subset`` in any
order, the last three optional). Without a subset column the videos with segments are the test
videos, or with ``--test-fraction F`` a share F of them (stratified by class, from ``--seed``), the
others training on their labels alone. A video's duration is its feature length over the snippet
rate (``--fps`` / ``--frames-per-snippet``). Every problem is one error naming the CSV row.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..datasets import SNIPPETS_PER_SECOND
from ..errors import DataError
from .activitynet_json import VERSION
from .annotations import hold_out
from .feature_folder import load_feature_folder

COLUMNS = ("video", "label", "start", "end", "subset")
POSITIONAL = {2: ("video", "label"), 3: ("video", "label", "subset"), 4: ("video", "label", "start", "end"),
              5: ("video", "label", "start", "end", "subset")}
SUBSETS = {"training": "training", "train": "training", "validation": "validation", "test": "validation"}


@dataclass
class Video:
    """What the rows say of one video, and the first row that named it."""

    row: int
    labels: dict[str, int] = field(default_factory=dict)  # label -> first row giving it
    segments: list[tuple[float, float, str, int]] = field(default_factory=list)  # start, end, label, row
    subset: tuple[str, int] | None = None  # (subset, row giving it)


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(row number, {column: value}) of every non-empty row; a header row names the columns."""
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    with open(path, newline="") as file:
        rows = [(n, [cell.strip() for cell in cells]) for n, cells in enumerate(csv.reader(file), start=1)
                if any(cell.strip() for cell in cells)]
    if not rows:
        raise DataError(f"{path} holds no row: expected video,label[,start,end][,subset] rows")
    header = None
    if rows[0][1][0].lower() == "video":
        header = [c.lower() for c in rows[0][1]]
        unknown = [c for c in header if c not in COLUMNS]
        if unknown or "label" not in header or ("start" in header) != ("end" in header):
            raise DataError(f"{path}:{rows[0][0]}: header {','.join(rows[0][1])}: expected columns video,label and "
                            f"optionally start,end and subset")
        rows = rows[1:]
    named = []
    for number, cells in rows:
        columns = header or POSITIONAL.get(len(cells))
        if columns is None or len(cells) != len(columns):
            raise DataError(f"{path}:{number}: {len(cells)} fields; expected video,label[,start,end][,subset]")
        named.append((number, dict(zip(columns, cells))))
    return named


def _video_rows(path: Path, rows) -> dict[str, Video]:
    """The rows gathered by video (in order of first appearance), each row's fields checked."""
    videos: dict[str, Video] = {}
    for number, row in rows:
        where = f"{path}:{number}"
        name, label = row["video"], row["label"]
        if not name or not label:
            raise DataError(f"{where}: empty video or label")
        video = videos.setdefault(name, Video(number))
        video.labels.setdefault(label, number)
        if row.get("start") or row.get("end"):
            video.segments.append((*_segment(row.get("start", ""), row.get("end", ""), where), label, number))
        if row.get("subset"):
            subset = SUBSETS.get(row["subset"].lower())
            if subset is None:
                raise DataError(f"{where}: subset {row['subset']!r}; expected training (train) or validation (test)")
            if video.subset is not None and video.subset[0] != subset:
                raise DataError(f"{where}: video {name} is {subset} here but {video.subset[0]} in row {video.subset[1]}")
            video.subset = (subset, number)
    return videos


def _segment(start: str, end: str, where: str) -> tuple[float, float]:
    try:
        s, e = float(start), float(end)
    except ValueError:
        raise DataError(f"{where}: segment [{start!r}, {end!r}] is not two numbers of seconds") from None
    if not (np.isfinite([s, e]).all() and 0 <= s <= e):
        raise DataError(f"{where}: segment [{s}, {e}] s must start at 0 s or later and not end before it starts")
    return s, e


def _check_segments(path: Path, videos: dict[str, Video], lengths: dict[str, int], rate: float) -> None:
    """A segment may end at most one snippet past the features' end (an extractor drops the last partial one)."""
    for name, video in videos.items():
        duration = lengths[name] / rate
        for start, end, _, number in video.segments:
            if end > duration + 1 / rate:
                raise DataError(f"{path}:{number}: segment [{start}, {end}] s ends beyond video {name}'s duration "
                                f"{duration:.2f} s ({lengths[name]} snippets at {rate:g}/s)")


def _subsets(path: Path, videos: dict[str, Video], test_fraction: float | None, seed: int) -> dict[str, str]:
    """Each video's subset: its column, else test if it has segments (a share of them with --test-fraction)."""
    names = list(videos)
    given = [videos[n].subset is not None for n in names]
    if any(given) and not all(given):
        missing = names[given.index(False)]
        raise DataError(f"{path}:{videos[missing].row}: video {missing} has no subset while other rows give theirs")
    if all(given):
        if test_fraction is not None:
            raise DataError("--test-fraction splits videos when the CSV has no subset column; this one has")
        return {n: videos[n].subset[0] for n in names}
    with_segments = np.array([v for v, n in enumerate(names) if videos[n].segments], dtype=np.int64)
    test = with_segments
    if test_fraction is not None:
        classes = sorted({label for n in names for label in videos[n].labels})
        first_class = np.zeros((len(names), len(classes)), dtype=np.float32)
        for v, n in enumerate(names):
            first_class[v, classes.index(next(iter(videos[n].labels)))] = 1.0
        _, test = hold_out(first_class, with_segments, test_fraction, seed)
        if len(test) == 0:
            raise DataError(f"--test-fraction {test_fraction} of the {len(with_segments)} videos with segments in "
                            f"{path} selects none to evaluate on")
    return {n: "validation" if v in set(test.tolist()) else "training" for v, n in enumerate(names)}


def _check_classes(path: Path, videos: dict[str, Video], subsets: dict[str, str]) -> None:
    """Every class has a training video, and no label names a single video (a typo, most often);
    every video to evaluate on has segments."""
    for name, video in videos.items():
        if subsets[name] == "validation" and not video.segments:
            raise DataError(f"{path}:{video.row}: video {name} is to evaluate on but has no segment row "
                            f"(video,label,start,end): its actions cannot be scored")
    first_row: dict[str, int] = {}
    users: dict[str, set[str]] = {}
    for name, video in videos.items():
        for label, number in video.labels.items():
            first_row[label] = min(number, first_row.get(label, number))
            users.setdefault(label, set()).add(name)
    for label, names in users.items():
        if len(names) == 1:
            raise DataError(f"{path}:{first_row[label]}: label {label!r} is used by one video only ({next(iter(names))}): "
                            f"a typo? a class needs videos to train on and to evaluate on")
        if not any(subsets[n] == "training" for n in names):
            raise DataError(f"{path}:{first_row[label]}: class {label!r} has no training video (its {len(names)} "
                            f"videos are all to evaluate on): the model cannot learn it")


def build(features: str | Path, labels: str | Path, out: str | Path, test_fraction: float | None = None,
          seed: int = 0, snippets_per_second: float = SNIPPETS_PER_SECOND) -> dict[str, int]:
    """Write ``out``, the ActivityNet JSON of the CSV ``labels`` over the videos of ``features``;
    returns the number of training and test videos and classes."""
    labels, features = Path(labels), Path(features)
    videos = _video_rows(labels, read_rows(labels))
    arrays = load_feature_folder(features, list(videos), None)
    for name, video in videos.items():
        if name not in arrays:
            raise DataError(f"{labels}:{video.row}: video {name} has no features in {features} (no {name}.npy): "
                            f"unknown video, or its features not extracted yet")
    lengths = {name: len(arrays[name]) for name in videos}
    _check_segments(labels, videos, lengths, snippets_per_second)
    subsets = _subsets(labels, videos, test_fraction, seed)
    _check_classes(labels, videos, subsets)
    database = {name: {"subset": subsets[name], "duration": lengths[name] / snippets_per_second,
                       "annotations": [{"segment": [s, e], "label": c} for s, e, c, _ in video.segments],
                       "labels": list(video.labels)}
                for name, video in videos.items()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"version": VERSION, "taxonomy": [], "database": database}, indent=1) + "\n")
    counts = {"training": 0, "validation": 0}
    for subset in subsets.values():
        counts[subset] += 1
    return {**counts, "classes": len({label for video in videos.values() for label in video.labels})}
