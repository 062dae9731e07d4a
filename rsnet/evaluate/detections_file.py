"""Detections files in the ActivityNet results format: read, checked, and scored with the matching
and AP of ``evaluate``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data import Annotations, check_evaluable, expected_length
from ..errors import UserError
from .checks import check_indices
from .matching import Evaluated, check_options, evaluated_videos, rank_detections, score_detections, snippet_range
from .proposals import Proposals
from .result import EvalResult


def evaluate_detections(results: dict, annotations: Annotations, indices, protocol: str = "rskp", lenient: bool = False,
                        iou_thresholds=None, fps_factor: float = 25 / 16) -> EvalResult:
    """Detection mAP of ``results`` ({video name: [{"label", "score", "segment": [start_s, end_s]}]},
    the "results" of an ActivityNet results file, as ``python -m rsnet.infer`` writes) on the videos
    ``indices``, with the matching and AP of ``evaluate`` (cmap None: there are no video scores).

    Under rskp, segments are taken back to snippets as ``round(t * fps_factor)``: the snippet bounds
    written by ``rsnet.infer`` come back exactly. Under anet they are scored in seconds as written,
    as ActivityNet's evaluator scores them (the snippets only meet the ambiguous segments); the
    seconds ``rsnet.infer`` writes are those ``evaluate`` scores. The detections of a (video, class)
    are taken in the file's order (under anet those of a class, videos in the file's order too, as
    ActivityNet's evaluator reads them), which is where ``np.argsort`` puts equal scores: in
    ``rsnet.infer``'s order the result is the one ``evaluate`` gives on the same predictions.
    Detections of classes that no evaluated
    video has in its ground truth, and of videos without ground truth, are not scored (the
    protocol proposes none there). Unknown or missing videos, unknown labels, segments outside the
    video and empty ones (start >= end) are UserErrors naming them. Outside the video: a start
    before 0, or an end past what a proposal of the longest sequence ``check_lengths`` accepts for
    the video can reach (its length + 1 snippet: the stored end carries one snippet past the run),
    so every file ``rsnet.infer`` writes for predictions ``evaluate`` accepts is read.
    """
    ious = check_options(protocol, iou_thresholds, fps_factor)
    idx = check_indices(indices, annotations)
    check_evaluable(annotations, idx)
    ev = evaluated_videos(annotations, idx)
    props = _read_detections(results, annotations, idx, ev, fps_factor, protocol)
    return score_detections(rank_detections(props, ev, annotations, fps_factor, protocol), None, ious, protocol,
                            lenient, fps_factor)


def _listed(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _read_detections(results, annotations: Annotations, idx: np.ndarray, ev: Evaluated, fps_factor: float,
                     protocol: str) -> Proposals:
    if not isinstance(results, dict):
        raise UserError(f"detections: 'results' must map video names to lists of detections, got {type(results).__name__}")
    position = {annotations.video_names[v]: k for k, v in enumerate(idx.tolist())}
    unknown = set(results) - set(position)
    if unknown:
        known = unknown & set(annotations.video_names)
        raise UserError(f"detections for video{'s' if len(unknown) > 1 else ''} {_listed(unknown)} "
                        + ("not in the evaluated subset" if known == unknown else "not in the annotations"))
    missing = set(position) - set(results)
    if missing:
        raise UserError(f"detections have no entry for video{'s' if len(missing) > 1 else ''} {_listed(missing)} "
                        f"of the evaluated subset (a video without detections is listed with [])")
    rank_of = {name: r for r, name in enumerate(ev.names)}
    video_of = {int(k): j for j, k in enumerate(ev.videos.tolist())}
    rows = []  # (class rank, video, s, e, score), in the file's order within each (video, class)
    for name, dets in results.items():
        v = int(idx[position[name]])
        expected, tolerance = expected_length(annotations.durations[v], fps_factor)
        if not isinstance(dets, list):
            raise UserError(f"detections of video {name} must be a list, got {type(dets).__name__}")
        for n, det in enumerate(dets):
            label, score, (start, end) = _detection_fields(det, f"video {name} detection {n}")
            if label not in annotations.class_names:
                raise UserError(f"video {name} detection {n}: unknown label {label!r} (not in the annotations' classlist)")
            # In snippets, as the segment is read back: a proposal's stored end is one past its run,
            # so at most the sequence's length + 1, and the length may be any check_lengths accepts
            # (seconds compared with seconds would refuse some of them by a rounding of t x fps_factor).
            if start < 0 or int(np.rint(end * fps_factor)) - 1 - expected > tolerance:
                raise UserError(f"video {name} detection {n}: segment [{start}, {end}] s is outside the video "
                                f"(duration {annotations.durations[v]:.2f} s: {int(expected)} snippets, tolerance "
                                f"{tolerance:.0f}, + the one snippet a proposal's end carries)")
            if start >= end:
                raise UserError(f"video {name} detection {n}: segment [{start}, {end}] s is empty (start >= end)")
            j = video_of.get(position[name])
            if j is not None and label in rank_of:
                rows.append((rank_of[label], j, start, end, score))
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return Proposals(empty, empty, empty, empty, np.zeros(0), np.zeros((0, 2)))
    cls, video = np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64)
    seconds = np.array([(r[2], r[3]) for r in rows], dtype=np.float64)
    s, e = snippet_range(seconds, fps_factor)
    # stable: the file's order within a (video, class), videos in evaluation order (the RSKP
    # evaluator's arrays); under anet the file's order within a class (ActivityNet's table)
    order = np.argsort(cls, kind="stable") if protocol == "anet" else np.lexsort((video, cls))
    score = np.array([r[4] for r in rows], dtype=np.float64)
    return Proposals(cls=cls[order], video=video[order], s=s[order], e=e[order], score=score[order],
                     seconds=seconds[order])


def _detection_fields(det, where: str) -> tuple[str, float, tuple[float, float]]:
    try:
        label, score, segment = det["label"], float(det["score"]), [float(t) for t in det["segment"]]
    except (TypeError, KeyError, ValueError) as exc:
        raise UserError(f"{where}: expected {{'label', 'score', 'segment': [start, end]}}, got {det!r}") from exc
    if len(segment) != 2 or not np.isfinite(segment + [score]).all():
        raise UserError(f"{where}: segment must be 2 finite seconds and score finite, got {det!r}")
    return str(label), score, (segment[0], segment[1])


class RepeatedKey(Exception):
    """A JSON object naming one key twice."""


def _refusing_repeated_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise RepeatedKey(next(key for key in keys if keys.count(key) > 1))
    return dict(pairs)


def load_detections(path: Path) -> dict:
    """The "results" of an ActivityNet results JSON file."""
    if not path.is_file():
        raise UserError(f"detections file not found: {path}")
    try:
        record = json.loads(path.read_text(), object_pairs_hook=_refusing_repeated_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a JSON file: {exc}") from exc
    except RepeatedKey as repeated:
        raise UserError(f"{path} lists {repeated.args[0]!r} twice in one object (a video's detections split "
                        f"over two entries, of which a JSON reader keeps only the last): merge them") from None
    if not isinstance(record, dict) or "results" not in record:
        raise UserError(f"{path} has no 'results' (expected the ActivityNet results format)")
    return record["results"]
