"""rskp's ``anet`` protocol gives the numbers of ActivityNet's official detection evaluator.

The oracle is ``bench/oracles/activitynet_detection.py``, a Python 3 port of ActivityNet's
``Evaluation/eval_detection.py`` (its header lists the changes). Both score the same detections
(the ActivityNet results format) against the same ground truth: rskp through
``rsnet.evaluate.evaluate_detections(..., protocol="anet")`` at ``ACTIVITYNET_IOUS``, the oracle
through the dicts the two JSON files would load as, at its default ``np.linspace(0.5, 0.95, 10)``.
The random files hold random segments (on and off the snippet grid, ending past the video),
random and tied scores, exact duplicates, videos without detections, detections of classes
absent from their video, and list the videos in a random order.

Where the two differ by design, the comparison is made on equal terms:

- Ambiguous segments (THUMOS14's ``Ambiguous_test.txt``): rskp drops a detection that shares a
  snippet with one, ActivityNet knows none. Compared with them removed from rskp's annotations,
  and, with them, against the oracle on the file without the detections rskp's rule drops.
  ActivityNet1.2 has none.
- rskp refuses (UserError) a segment that starts before 0, ends more than a snippet past what the
  video's accepted lengths allow, or is empty, and a label outside the classlist; the official
  code scores them (or fails on an unknown label). The files hold none. A class of the classlist
  absent from the subset's ground truth: the official code fails (KeyError), rskp ignores its
  detections (``test_a_class_without_ground_truth``).
- Detections of a video without ground truth count as false positives for ActivityNet and are
  not scored by rskp (its protocol evaluates videos with ground truth): neither test subset has
  such a video (asserted).
- The ninth threshold: ``np.linspace`` gives 0.8999999999999999, ``ACTIVITYNET_IOUS`` 0.9; only a
  tIoU of exactly 0.8999999999999999 scores differently, which random segments do not meet.
- A prediction with the same tIoU (>= the threshold) with two unmatched ground truths of its
  class and video: rskp takes the first listed, ActivityNet the first of ``argsort()[::-1]``,
  which numpy's unstable sort decides. Random segments do not meet that either; duplicated ground
  truth (ActivityNet1.2 has 7 pairs) does, but either choice then scores the same.
"""
import dataclasses
import functools
import warnings
from pathlib import Path

import numpy as np
import pytest

from bench.oracles.activitynet_detection import ANETdetection
from rsnet.data import Annotations, load_annotations
from rsnet.evaluate import ACTIVITYNET_IOUS, evaluate_detections

FACTOR = 25 / 16  # snippets per second, rskp's default (I3D, 16 frames at 25 fps)


def ground_truth_file(ann: Annotations) -> dict:
    """What ActivityNet's ground-truth JSON loads as: every video, its subset and segments."""
    return {"version": "W-TALC arrays", "taxonomy": [], "database": {
        name: {"subset": subset, "duration": float(duration),
               "annotations": [{"label": ann.class_names[c], "segment": [float(a), float(b)]}
                               for (a, b), c in zip(segments, labels)]}
        for name, subset, duration, segments, labels
        in zip(ann.video_names, ann.subsets, ann.durations, ann.segments, ann.segment_labels)}}


def official(ann: Annotations, subset: str, results: dict) -> tuple[np.ndarray, float]:
    """The oracle's mAP per IoU (0.5:0.05:0.95, its default) and their average, x100 as rskp's."""
    oracle = ANETdetection(ground_truth_file(ann), {"version": "", "external_data": {}, "results": results},
                           subset=subset)
    oracle.evaluate()
    return 100 * oracle.mAP, 100 * oracle.average_mAP


def rskp(ann: Annotations, subset: str, results: dict) -> tuple[np.ndarray, float]:
    """rskp's anet protocol at its thresholds (ACTIVITYNET_IOUS) on the subset's videos."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes without detections are named in a warning
        got = evaluate_detections(results, ann, ann.indices(subset), protocol="anet", iou_thresholds=ACTIVITYNET_IOUS)
    return np.array(got.dmap), got.avg


def small_annotations(segments, labels, class_names, durations) -> Annotations:
    """Hand-made ground truth, every video in ActivityNet1.2's test subset ('validation')."""
    n = len(segments)
    video_labels = np.zeros((n, len(class_names)), dtype=np.float32)
    for v, labs in enumerate(labels):
        video_labels[v, list(labs)] = 1
    return Annotations(folder=Path("."), class_names=list(class_names), video_names=[f"v{k}" for k in range(n)],
                       subsets=["validation"] * n, durations=np.asarray(durations, dtype=np.float64),
                       segments=[np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in segments],
                       segment_labels=[np.asarray(lab, dtype=np.int64) for lab in labels], video_labels=video_labels,
                       ambiguous={})


def on_grid(s: int, e: int) -> list[float]:
    """Snippet bounds in seconds, as rskp reads them back (t = k / FACTOR)."""
    return [s / FACTOR, e / FACTOR]


def test_equal_scores_are_ranked_as_activitynet_ranks_them():
    """A hit (v0) and a miss (v1) with equal scores: ActivityNet ranks a class by
    ``np.argsort(score)[::-1]`` on its table, in the file's order, so the file's order decides
    which comes first (AP 1 or 1/2). rskp's anet protocol ranked by ``np.argsort(-score)`` with the
    videos in evaluation order, the same number for both files; it follows the file now."""
    ann = small_annotations([[[2.0, 6.0]], [[0.0, 1.0]]], [[0], [0]], ["a"], [10.0, 10.0])
    hit = {"label": "a", "score": 0.5, "segment": on_grid(3, 9)}
    miss = {"label": "a", "score": 0.5, "segment": on_grid(10, 14)}
    hit_first, miss_first = {"v0": [hit], "v1": [miss]}, {"v1": [miss], "v0": [hit]}
    numbers = []
    for results in (hit_first, miss_first):
        want, want_avg = official(ann, "validation", results)
        got, got_avg = rskp(ann, "validation", results)
        assert np.abs(got - want).max() <= 1e-12 and abs(got_avg - want_avg) <= 1e-12
        numbers.append(want_avg)
    assert numbers[0] != numbers[1]  # the order matters: the test can tell the two rankings apart


def test_segments_are_scored_in_seconds_as_written():
    """[2, 4.05] s against the ground truth [2, 6] s: tIoU 0.5125, a hit at 0.5 for ActivityNet.
    rskp's anet protocol took the file back to snippets first (round(t x 25/16): [1.92, 3.84] s,
    tIoU 0.45, a miss); it scores the seconds as written now."""
    ann = small_annotations([[[2.0, 6.0]]], [[0]], ["a"], [10.0])
    written = {"v0": [{"label": "a", "score": 0.5, "segment": [2.0, 4.05]}]}
    snapped = {"v0": [{"label": "a", "score": 0.5, "segment": on_grid(3, 6)}]}
    want, want_avg = official(ann, "validation", written)
    got, got_avg = rskp(ann, "validation", written)
    assert np.abs(got - want).max() <= 1e-12 and abs(got_avg - want_avg) <= 1e-12
    assert want[0] == 100.0 and official(ann, "validation", snapped)[0][0] == 0.0  # rounding would miss it


def test_a_class_without_ground_truth():
    """A class of the classlist absent from the subset's ground truth: ActivityNet's code fails on
    its label (KeyError), rskp leaves its detections out, as the file without them scores."""
    ann = small_annotations([[[2.0, 6.0]]], [[0]], ["a", "b"], [10.0])
    hit = {"label": "a", "score": 0.5, "segment": [2.0, 5.5]}
    other = {"label": "b", "score": 0.9, "segment": [2.0, 5.5]}
    with pytest.raises(KeyError):
        official(ann, "validation", {"v0": [hit, other]})
    want, want_avg = official(ann, "validation", {"v0": [hit]})
    got, got_avg = rskp(ann, "validation", {"v0": [hit, other]})
    assert np.abs(got - want).max() <= 1e-12 and abs(got_avg - want_avg) <= 1e-12 and want_avg > 0


# ----------------------------------------------------------------------------------------------
# random detections files over the real ground truth


@functools.cache
def annotations(folder: Path) -> Annotations:
    return load_annotations(folder)


def random_segment(ann: Annotations, v: int, rng: np.random.Generator) -> list[float]:
    """Near one of the video's ground-truth segments (tIoUs across the thresholds), anywhere, or
    ending past the video (by at most a snippet, which rskp accepts); half on the snippet grid."""
    duration = float(ann.durations[v])
    kind = rng.random()
    if kind < 0.5:
        g0, g1 = ann.segments[v][rng.integers(len(ann.segments[v]))]
        length = max(g1 - g0, 1.0)
        start, end = g0 + rng.normal(0, 0.15) * length, g1 + rng.normal(0, 0.15) * length
    elif kind < 0.9:
        start = rng.uniform(0, duration)
        end = start + rng.uniform(0.3, duration)
    else:
        start, end = rng.uniform(0, duration), duration + rng.uniform(0, 1 / FACTOR)
    # inside what rskp accepts (THUMOS14 has ground truth past its video's end, which stays so)
    start, end = min(max(0.0, float(start)), duration), min(float(end), duration + 1 / FACTOR)
    if rng.random() < 0.5:  # on the grid, as rsnet.infer writes snippet bounds
        s = int(np.floor(start * FACTOR))
        e = max(s + 1, int(np.floor(end * FACTOR)))
        return [s * (1 / FACTOR), e * (1 / FACTOR)]
    return [start, end if end > start else min(start + 0.25, duration + 1 / FACTOR)]


def random_score(rng: np.random.Generator) -> float:
    """A third of the scores from ten values: many equal scores, hits and misses among them."""
    return float(rng.integers(0, 10)) / 10 if rng.random() < 0.3 else float(rng.random())


def random_results(ann: Annotations, subset: str, seed: int) -> dict:
    """A random detections file over the subset's videos, listed in a random order."""
    rng = np.random.default_rng(seed)
    idx = ann.indices(subset)
    subset_classes = sorted({ann.class_names[c] for v in idx for c in ann.segment_labels[v]})
    results = {}
    for v in rng.permutation(idx).tolist():
        detections = []
        if rng.random() >= 0.2:  # else: a video without detections
            own = [ann.class_names[c] for c in ann.segment_labels[v]]
            for _ in range(int(rng.integers(1, 7))):
                pool = own if rng.random() < 0.7 else subset_classes  # the video's classes, or any of the subset
                label = pool[rng.integers(len(pool))]
                detections.append({"label": label, "score": random_score(rng), "segment": random_segment(ann, v, rng)})
            while rng.random() < 0.3:  # an exact duplicate, anywhere in the video's list
                copy = dict(detections[rng.integers(len(detections))])
                detections.insert(int(rng.integers(len(detections) + 1)), copy)
        results[ann.video_names[v]] = detections
    return results


def what_the_file_holds(ann: Annotations, results: dict) -> dict:
    """Counts of the cases the comparison is meant to cover."""
    index = {name: v for v, name in enumerate(ann.video_names)}
    rows = [(name, d["label"], d["score"], tuple(d["segment"])) for name, dets in results.items() for d in dets]
    scores = [r[2] for r in rows]
    return {
        "videos without detections": sum(not dets for dets in results.values()),
        "exact duplicates": len(rows) - len(set(rows)),
        "tied scores": len(scores) - len(set(scores)),
        "classes absent from their video": sum(
            ann.class_names.index(label) not in ann.segment_labels[index[name]].tolist() for name, label, _, _ in rows),
        "segments past the video's end": sum(bool(seg[1] > ann.durations[index[name]]) for name, _, _, seg in rows),
        "segments off the snippet grid": sum(bool(seg[0] * FACTOR != np.rint(seg[0] * FACTOR)) for _, _, _, seg in rows),
    }


def assert_same_numbers(got, want) -> float:
    """rskp's and the oracle's mAP per IoU and average agree to 1e-12, and are not trivial."""
    (got_map, got_avg), (want_map, want_avg) = got, want
    assert len(got_map) == len(want_map) == 10
    diff = max(float(np.abs(got_map - want_map).max()), abs(got_avg - want_avg))
    assert diff <= 1e-12, f"rskp {got_map.tolist()} vs official {want_map.tolist()}"
    assert want_map.max() > 1 and len(set(want_map.round(6).tolist())) > 5  # not all 0, not all equal
    return diff


DATASETS = [("ActivityNet1.2-Annotations", "validation", 0), ("ActivityNet1.2-Annotations", "validation", 1),
            *(pytest.param("ActivityNet1.2-Annotations", "validation", seed, marks=pytest.mark.slow) for seed in (2, 3)),
            ("Thumos14reduced-Annotations", "test", 0), ("Thumos14reduced-Annotations", "test", 1)]


@pytest.mark.parametrize("folder, subset, seed", DATASETS)
def test_random_detections_files_score_as_activitynet_scores_them(shared_data, folder, subset, seed):
    """Ground truth of the test subset (ActivityNet1.2 'validation', THUMOS14 'test'), a random
    file, ambiguous segments left out on rskp's side (ActivityNet's code has none)."""
    ann = annotations(shared_data / folder)
    assert all(len(ann.segments[v]) for v in ann.indices(subset))  # no video without ground truth
    results = random_results(ann, subset, seed)
    assert min(what_the_file_holds(ann, results).values()) > 0
    no_ambiguous = dataclasses.replace(ann, ambiguous={})
    assert_same_numbers(rskp(no_ambiguous, subset, results), official(ann, subset, results))


def shares_an_ambiguous_snippet(ann: Annotations, name: str, segment) -> bool:
    """rskp's ambiguous rule, written out: the detection's snippets [round(t0 f), round(t1 f)) meet
    those of an ambiguous segment of its video."""
    s, e = round(segment[0] * FACTOR), round(segment[1] * FACTOR)
    return any(min(e, round(b * FACTOR)) > max(s, round(a * FACTOR)) for a, b in ann.ambiguous.get(name, []))


@pytest.mark.parametrize("seed", [0, 1])
def test_with_thumos14s_ambiguous_segments_rskp_scores_the_file_without_the_dropped(shared_data, seed):
    ann = annotations(shared_data / "Thumos14reduced-Annotations")
    assert ann.ambiguous
    results = random_results(ann, "test", seed)
    kept = {name: [d for d in dets if not shares_an_ambiguous_snippet(ann, name, d["segment"])]
            for name, dets in results.items()}
    assert sum(map(len, kept.values())) < sum(map(len, results.values()))  # some are dropped
    assert_same_numbers(rskp(ann, "test", results), official(ann, "test", kept))
