"""Ground truth in ActivityNet's JSON layout, read into the same ``Annotations`` the W-TALC loader
fills (numpy only: the evaluator imports it), and written back from any ``Annotations``.

The layout is ActivityNet's annotation file::

    {"version": ..., "taxonomy": ..., "database": {
        VIDEO_ID: {"subset": "training", "duration": 123.4,
                   "annotations": [{"segment": [12.0, 40.5], "label": "Archery"}, ...]}, ...}}

with two optional keys per video that ActivityNet's own file does not need and W-TALC's ground
truth does: ``"labels"``, the video-level classes when they are not the set of its annotations'
labels (a training video known by its labels alone, or THUMOS14's video_test_0000270, which has
segments but no video-level label), and ``"ambiguous"``, ``[[start, end], ...]`` seconds that the
rskp protocol ignores (THUMOS14's ``Ambiguous_test.txt``). Other keys (``url``, ``resolution``,
ActivityNet's ``taxonomy``) are ignored.

The class list is the sorted set of the labels the file uses, so that the same data gets the same
class indices as the W-TALC layout (both W-TALC class lists are sorted), unless a class file (one
name a line) fixes another order. Videos keep the file's order. Subset names are kept as written;
the dataset maps them to its training and test splits (``rsnet.data.dataset``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .annotations import Annotations, _segments

LAYOUT = ('{"database": {VIDEO_ID: {"subset": NAME, "duration": SECONDS, '
          '"annotations": [{"segment": [START, END], "label": CLASS}, ...]}, ...}}')
VERSION = "rskp export 1.0"


def load_activitynet_json(path: str | Path, classes: str | Path | None = None) -> Annotations:
    """The ground truth of an ActivityNet JSON file; ``classes``: a file fixing the class order."""
    path = Path(path)
    database = _database(_read_json(path), path)
    videos = {name: _video(entry, f"{path}: video {name}") for name, entry in database.items()}
    used = sorted({label for video in videos.values() for label in video["labels"] + video["segment_labels"]})
    class_names = read_class_list(classes) if classes is not None else used
    if not class_names:
        raise DataError(f"{path} lists no label: a dataset needs at least one class")
    class_index = {c: i for i, c in enumerate(class_names)}
    names = list(videos)
    video_labels = np.zeros((len(names), len(class_names)), dtype=np.float32)
    segment_labels = []
    for v, name in enumerate(names):
        video = videos[name]
        unknown = [label for label in video["labels"] + video["segment_labels"] if label not in class_index]
        if unknown:
            raise DataError(f"{path}: video {name} has label {unknown[0]!r}, not in the class file {classes}")
        segment_labels.append(np.array([class_index[c] for c in video["segment_labels"]], dtype=np.int64))
        video_labels[v, [class_index[c] for c in video["labels"]]] = 1.0
    return Annotations(
        folder=path,
        class_names=list(class_names),
        video_names=names,
        subsets=[videos[n]["subset"] for n in names],
        durations=np.array([videos[n]["duration"] for n in names], dtype=np.float64),
        segments=[videos[n]["segments"] for n in names],
        segment_labels=segment_labels,
        video_labels=video_labels,
        ambiguous={n: videos[n]["ambiguous"] for n in names if len(videos[n]["ambiguous"])},
    )


def read_class_list(path: str | Path) -> list[str]:
    """One class name a line (blank lines skipped), each once."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"class file not found: {path}")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"{path} lists {repeated[0]!r} twice: each class once, one a line")
    return names


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text file ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _database(data: Any, path: Path) -> dict:
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict) or not database:
        found = f"keys {', '.join(map(repr, list(data)[:5]))}" if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path} is not ActivityNet-shaped annotations (found {found}): expected {LAYOUT}")
    return database


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _names(value: Any, what: str, where: str) -> list[str]:
    if not (isinstance(value, list) and all(isinstance(x, str) and x.strip() for x in value)):
        raise DataError(f"{where}: {what} must be a list of class names, got {value!r}")
    return value


def _video(entry: Any, where: str) -> dict:
    """One database entry checked: subset, duration, segments and their labels, video-level labels, ambiguous spans."""
    if not isinstance(entry, dict):
        raise DataError(f"{where} is {type(entry).__name__}, not an object: expected {LAYOUT}")
    subset, duration, annotations = entry.get("subset"), entry.get("duration"), entry.get("annotations", [])
    if not isinstance(subset, str) or not subset:
        raise DataError(f"{where} has subset {subset!r}; expected a name such as 'training' or 'validation'")
    if not (_number(duration) and duration > 0):
        raise DataError(f"{where} has duration {duration!r}; expected a positive number of seconds")
    if not (isinstance(annotations, list) and all(isinstance(a, dict) for a in annotations)):
        raise DataError(f"{where}: annotations must be a list of {{\"segment\": [start, end], \"label\": class}}")
    segment_labels = _names([a.get("label") for a in annotations], "each annotation's label", where)
    segments = _segments([a.get("segment") for a in annotations] if annotations else np.zeros((0, 2)), where)
    labels = _names(entry["labels"], "labels", where) if "labels" in entry else list(dict.fromkeys(segment_labels))
    ambiguous = _segments(entry.get("ambiguous", np.zeros((0, 2))), f"{where} (ambiguous)")
    return {"subset": subset, "duration": float(duration), "segments": segments, "segment_labels": segment_labels,
            "labels": labels, "ambiguous": ambiguous}


def to_activitynet_json(annotations: Annotations) -> dict:
    """The ActivityNet JSON of ``annotations``, every number as the float64 it holds (JSON keeps
    them bit for bit); "labels" only where they are not the set of the segments' labels."""
    repeated = sorted({n for n in annotations.video_names if annotations.video_names.count(n) > 1})
    if repeated:
        raise DataError(f"{annotations.folder} lists video {repeated[0]} twice: a JSON database keys videos by name")
    database = {}
    for v, name in enumerate(annotations.video_names):
        segment_labels = [annotations.class_names[c] for c in annotations.segment_labels[v].tolist()]
        labels = [annotations.class_names[c] for c in np.flatnonzero(annotations.video_labels[v]).tolist()]
        entry = {"subset": annotations.subsets[v], "duration": float(annotations.durations[v]),
                 "annotations": [{"segment": [float(s), float(e)], "label": label}
                                 for (s, e), label in zip(annotations.segments[v].tolist(), segment_labels)]}
        if set(labels) != set(segment_labels):
            entry["labels"] = labels
        if name in annotations.ambiguous:
            entry["ambiguous"] = annotations.ambiguous[name].reshape(-1, 2).tolist()
        database[name] = entry
    return {"version": VERSION, "taxonomy": [], "database": database}


def write_activitynet_json(annotations: Annotations, out: str | Path) -> Path | None:
    """Write ``annotations`` as ActivityNet JSON to ``out``; where the sorted set of the labels used
    is not the class list (a class never used, or not in sorted order), also ``OUT.classes.txt``,
    the class list that ``--classes`` takes to keep its indices. Returns that file, or None."""
    out = Path(out)
    data = to_activitynet_json(annotations)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data) + "\n")
    used = sorted({label for entry in data["database"].values()
                   for label in entry.get("labels", []) + [a["label"] for a in entry["annotations"]]})
    classes_file = out.with_suffix(".classes.txt")
    if used == annotations.class_names:
        classes_file.unlink(missing_ok=True)
        return None
    classes_file.write_text("".join(f"{c}\n" for c in annotations.class_names))
    return classes_file
