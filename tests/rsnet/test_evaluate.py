"""rsnet.evaluate gives the official RSKP evaluator's numbers: the test vectors, one hand-made case
per rule, agreement with the official-style loops of bench/official_eval.py on random cases with
ties, bad input, and the command line."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from rsnet.data import Annotations, DataError, check_lengths, load_annotations
from rsnet.errors import UserError
from rsnet.evaluate import PROTOCOLS, EvalResult, detections, evaluate, evaluate_detections
from rsnet.evaluate.command import main
from rsnet.infer import detections_by_video

ROOT = Path(__file__).resolve().parents[1]
from bench.oracles import official_eval as official  # noqa: E402

VECTORS = ("preds_a", "preds_b_muted_class")


# ----------------------------------------------------------------------------------------------
# helpers


def make_annotations(segments, labels, class_names, subsets=None, ambiguous=None, *, lengths,
                     factor=1.0) -> Annotations:
    """lengths: each video's CAS length in snippets (the durations follow at ``factor`` snippets/s)."""
    n = len(segments)
    video_labels = np.zeros((n, len(class_names)), dtype=np.float32)
    for v, labs in enumerate(labels):
        video_labels[v, list(labs)] = 1
    return Annotations(
        folder=Path("."), class_names=list(class_names), video_names=[f"video_{v:03d}" for v in range(n)],
        subsets=list(subsets or ["test"] * n), durations=(np.asarray(lengths, dtype=np.float64) + 0.5) / factor,
        segments=[np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in segments],
        segment_labels=[np.asarray(lab, dtype=np.int64).reshape(-1) for lab in labels], video_labels=video_labels,
        ambiguous={k: np.asarray(a, dtype=np.float64).reshape(-1, 2) for k, a in (ambiguous or {}).items()})


def plateaus(length: int, n_cols: int, spans) -> np.ndarray:
    """A float32 CAS of zeros with value h on [s, e) of column c for each (c, s, e, h)."""
    cas = np.zeros((length, n_cols), dtype=np.float32)
    for c, s, e, h in spans:
        cas[s:e, c] = h
    return cas


NAMES = ["zeta", "alpha", "mid", "beta", "kappa", "c10", "c2", "omega"]  # sorted order != index order


def synthetic_case(seed, n_videos=10, n_classes=4, quantum=0.0025, factor=25 / 16, max_len=120, dtype=np.float32,
                   max_segments=5):
    """Bumpy CAS (quantized: plateaus and exactly tied scores), tied video scores (and videos whose
    every class scores at most 0.1, for the anet protocol's best-class fallback), ground truth
    with zero-length and past-the-end segments, ambiguous segments, test and validation videos."""
    rng = np.random.default_rng(seed)
    names = list(rng.permutation(NAMES)[:n_classes])
    lengths = rng.integers(1, max_len, n_videos)
    lengths[rng.random(n_videos) < 0.15] = rng.integers(1, 4)
    subsets = ["test" if rng.random() < 0.85 else "validation" for _ in range(n_videos)]
    segments, labels, ambiguous = [], [], {}
    for v in range(n_videos):
        n = rng.integers(0, max_segments) if rng.random() < 0.85 else 0
        seconds = lengths[v] / factor
        starts = rng.uniform(-0.1 * seconds, 1.1 * seconds, n).clip(0)
        durations = rng.choice([0.0, 0.2, 0.5, 1, 2, 4, 8, 16], n) * rng.uniform(0.5, 1.5, n)
        segments.append(np.stack([starts, starts + durations], 1))
        labels.append(rng.integers(0, n_classes, n))
        if rng.random() < 0.3:
            a = rng.uniform(0, seconds, rng.integers(1, 3))
            ambiguous[f"video_{v:03d}"] = np.stack([a, a + rng.uniform(0, 3, len(a))], 1)
    ann = make_annotations(segments, labels, names, subsets, ambiguous, lengths=lengths, factor=factor)
    idx = ann.indices("test")
    scores = np.round(rng.random((len(idx), n_classes + 1)) / 0.05) * 0.05
    quiet_videos = np.random.default_rng([seed, 1]).random(len(idx)) < 0.3  # none or few classes at 0.1 or more, ties
    scores[quiet_videos] = np.round(scores[quiet_videos] * 0.1 / 0.01) * 0.01
    scores = scores.astype(np.float32)
    cas = []
    for v in idx:
        t = np.arange(lengths[v])
        col = rng.random((lengths[v], n_classes + 1)) * 0.006
        for c in range(n_classes + 1):
            for _ in range(rng.integers(0, 4)):
                centre, width, height = rng.uniform(0, lengths[v]), rng.uniform(0.5, 12), rng.uniform(0.003, 0.08)
                col[:, c] += height * np.exp(-0.5 * ((t - centre) / width) ** 2)
            if rng.random() < 0.1:
                col[:, c] = 0.0
        if quantum:
            col = np.round(col / quantum) * quantum
        cas.append(col.astype(dtype))
    return ann, idx, scores, cas


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# the official numbers


@pytest.mark.parametrize("name", VECTORS)
def test_official_test_vectors(shared_data, name):
    ann = load_annotations(shared_data / "Thumos14reduced-Annotations")
    with np.load(shared_data / "eval-vectors" / f"{name}.npz", allow_pickle=True) as z:
        vid_preds, frm_preds = z["vid_preds"], list(z["frm_preds"])
    expected = json.loads((shared_data / "eval-vectors" / f"{name}.expected.json").read_text())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(vid_preds, frm_preds, ann, ann.indices("test"))
    assert result.iou == expected["iou"]
    assert np.abs(np.array(result.dmap) - expected["dmap"]).max() <= 1e-12
    assert abs(result.avg - expected["avg"]) <= 1e-12
    assert abs(result.cmap - expected["cmap"]) <= 1e-12
    muted = [str(w.message) for w in caught if "no proposal" in str(w.message)]
    if name == "preds_b_muted_class":  # class 5 silenced everywhere: 0 at every IoU, with a warning
        assert result.dmap == [0.0] * 7 and len(muted) == 1 and ann.class_names[5] in muted[0]
    else:
        assert not muted


# ----------------------------------------------------------------------------------------------
# one rule at a time (fps_factor=1: ground truth seconds are snippets)


def test_inner_mean_reaches_one_snippet_past_the_run():
    col = np.array([0.0, 0.1, 0.5, 0.5, 0.5, 0.5, 0.2, 0.0, 0.05, 0.0, 0.0, 0.0], dtype=np.float32)
    cas = np.zeros((12, 2), dtype=np.float32)
    cas[:, 0] = col
    ann = make_annotations([[[1, 7]]], [[0]], ["a"], lengths=[12])
    rows = detections(np.array([[0.9, 0.0]], np.float32), [cas], ann, [0], fps_factor=1.0)["a"]
    # the run [1, 7) (the lone 0.05 is too short): inner mean over [1, 8), outer {0} and {8}
    expected = np.float32(np.mean(col[1:8]) - np.mean(col[[0, 8]]))
    assert rows.tolist() == [[0, 1, 8, float(expected)]]
    assert expected != np.float32(np.mean(col[1:7]) - np.mean(col[[0, 8]]))


def test_nms_divides_overlap_by_the_other_length_plus_one():
    # long run [2, 10) at 0.02 holds a core [5, 8) at 0.03: the long one scores higher, and the
    # core (stored [5, 9), area 5) overlaps it by 5 snippets: 5 / 5 > 0.5, dropped (a union IoU
    # would be 5 / 10 = 0.5, kept)
    cas = plateaus(14, 2, [(0, 2, 10, 0.02), (0, 5, 8, 0.03)])
    ann = make_annotations([[[2, 10]]], [[0]], ["a"], lengths=[14])
    rows = detections(np.array([[0.9, 0.0]], np.float32), [cas], ann, [0], fps_factor=1.0)["a"]
    assert rows[:, :3].tolist() == [[0, 2, 11]]
    # flat shoulders instead: the short run [4, 9) (stored [4, 10), area 7) inside the long run
    # [1, 12) (stored [1, 13)) keeps 6 of 7 snippets: dropped; a run beside it overlapping by
    # 3 of 7 (3 / 7 <= 0.5) is kept
    cas = plateaus(30, 2, [(0, 1, 12, 0.01), (0, 4, 9, 0.5), (0, 14, 20, 0.01), (0, 10, 12, 0.0)])
    ann = make_annotations([[[2, 10]]], [[0]], ["a"], lengths=[30])
    got = detections(np.array([[0.9, 0.0]], np.float32), [cas], ann, [0], fps_factor=1.0)["a"]
    ref = official._class_predictions(np.array([[0.9, 0.0]], np.float32), [cas], ann, [0], ["video_000"], 0, 1.0)
    assert got.tolist() == ref.tolist()


def test_ambiguous_segments_remove_overlapping_proposals_only():
    cas = plateaus(40, 2, [(0, 2, 6, 0.5), (0, 10, 15, 0.6), (0, 25, 30, 0.7)])
    # [3.4, 4.2] s -> snippets range(3, 4): inside the first proposal [2, 7);
    # [15.6, 16.4] -> range(16, 16) is empty: the second one [10, 16) stays;
    # [31, 35] -> range(31, 35) starts at the third one's stored end 31: it stays
    ann = make_annotations([[[2, 6], [10, 15]]], [[0, 0]], ["a"],
                           ambiguous={"video_000": [[3.4, 4.2], [15.6, 16.4], [31, 35]]}, lengths=[40])
    rows = detections(np.array([[0.9, 0.0]], np.float32), [cas], ann, [0], fps_factor=1.0)["a"]
    assert rows[:, 1:3].tolist() == [[25, 31], [10, 16]]


def test_each_prediction_takes_the_best_iou_ground_truth():
    # p1 = [7, 19) (higher score) overlaps A = [0, 10) with IoU 3/19 and B = [12, 20) with 7/13;
    # p2 = [0, 6) overlaps A with IoU 0.6. Taking the first ground truth over the threshold would
    # give p1 -> A and leave p2 a false positive.
    cas = plateaus(25, 2, [(0, 7, 18, 0.9), (0, 0, 5, 0.5)])
    ann = make_annotations([[[0, 10], [12, 20]]], [[0, 0]], ["a"], lengths=[25])
    scores = np.array([[0.9, 0.0]], np.float32)
    rows = detections(scores, [cas], ann, [0], fps_factor=1.0)["a"]
    assert rows[:, 1:3].tolist() == [[7, 19], [0, 6]]
    result = evaluate(scores, [cas], ann, [0], fps_factor=1.0)
    assert result.dmap == [100.0, 100.0, 100.0, 100.0, 100.0, 25.0, 0.0]
    assert result.avg == pytest.approx(525 / 7, abs=1e-12)


def test_unreachable_ground_truth_still_counts():
    # video of 12 snippets: [30, 40) lies past its end, [5.2, 5.4] rounds to the empty range(5, 5)
    # (even under a prediction covering it); only [2, 9) is found: recall 1/3 at precision 1
    cas = plateaus(12, 2, [(0, 2, 8, 0.5)])
    ann = make_annotations([[[2, 9], [30, 40], [5.2, 5.4]]], [[0, 0, 0]], ["a"], lengths=[12])
    result = evaluate(np.array([[0.9, 0.0]], np.float32), [cas], ann, [0], fps_factor=1.0)
    assert result.dmap == pytest.approx([100 / 3] * 7, abs=1e-12)
    ref = official.official_evaluate(np.array([[0.9, 0.0]], np.float32), [cas], ann, [0], factor=1.0)
    assert result.dmap == pytest.approx(ref["dmap"], abs=1e-12)


def _two_class_case(muted_score=0.05):
    cas = plateaus(30, 3, [(0, 2, 8, 0.5), (1, 12, 20, 0.6)])
    ann = make_annotations([[[2, 9], [12, 21]]], [[0, 1]], ["run", "jump"], lengths=[30])
    return np.array([[0.9, muted_score, 0.0]], np.float32), [cas], ann


def test_class_without_proposals_zeroes_every_threshold_with_a_warning():
    scores, cas, ann = _two_class_case()  # "jump" scores 0.05 < 0.1: no proposal
    with pytest.warns(UserWarning, match="jump"):
        result = evaluate(scores, cas, ann, [0], fps_factor=1.0)
    assert result.dmap == [0.0] * 7 and result.avg == 0.0
    assert result.classes_without_proposals == ["jump"]
    with pytest.warns(UserWarning, match="jump"):
        lenient = evaluate(scores, cas, ann, [0], fps_factor=1.0, lenient=True)
    assert lenient.dmap == [50.0] * 7  # "run" AP 1, "jump" AP 0
    with pytest.warns(UserWarning, match="jump"):
        anet = evaluate(scores, cas, ann, [0], fps_factor=1.0, protocol="anet")
    assert anet.dmap == [50.0] * 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate(*_two_class_case(0.1), [0], fps_factor=1.0).dmap == [100.0] * 7  # 0.1 is not < 0.1


def test_anet_proposes_the_best_class_of_a_video_where_no_class_reaches_the_threshold():
    scores, cas, ann = _two_class_case()
    scores[0, :2] = [0.09, 0.05]  # no class at 0.1: "run" is the best, the background column does not count
    scores[0, 2] = 0.5
    with pytest.warns(UserWarning, match="jump, run"):
        assert evaluate(scores, cas, ann, [0], fps_factor=1.0, lenient=True).dmap == [0.0] * 7
    with pytest.warns(UserWarning, match="jump") as caught:
        anet = evaluate(scores, cas, ann, [0], fps_factor=1.0, protocol="anet")
    assert anet.dmap == [50.0] * 7 and anet.classes_without_proposals == ["jump"] and "run" not in str(caught[0].message)
    scores[0, :2] = [0.05, 0.05]  # equal scores: the first class, as np.argmax
    assert quiet(evaluate, scores, cas, ann, [0], fps_factor=1.0, protocol="anet").classes_without_proposals == ["jump"]
    scores[0, 1] = 0.1  # a class at the threshold: no fallback, "run" proposes nothing
    assert quiet(evaluate, scores, cas, ann, [0], fps_factor=1.0, protocol="anet").classes_without_proposals == ["run"]


def test_class_whose_proposals_are_all_ambiguous_counts_as_without_proposals():
    scores, cas, ann = _two_class_case(0.9)
    ann.ambiguous["video_000"] = np.array([[14.0, 15.0]])
    with pytest.warns(UserWarning, match="jump"):
        assert evaluate(scores, cas, ann, [0], fps_factor=1.0).dmap == [0.0] * 7


def test_anet_protocol_uses_seconds_and_continuous_iou():
    # ground truth [2.0, 2.9] s: rskp rounds it to range(2, 3), IoU 1/3 with the prediction [2, 5);
    # anet keeps 0.9 s of overlap, IoU 0.3
    cas = plateaus(12, 2, [(0, 2, 4, 0.5)])
    ann = make_annotations([[[2.0, 2.9]]], [[0]], ["a"], lengths=[12])
    scores = np.array([[0.9, 0.0]], np.float32)
    assert evaluate(scores, [cas], ann, [0], fps_factor=1.0, iou_thresholds=[0.32]).dmap == [100.0]
    assert evaluate(scores, [cas], ann, [0], fps_factor=1.0, iou_thresholds=[0.32], protocol="anet").dmap == [0.0]
    assert evaluate(scores, [cas], ann, [0], fps_factor=1.0, iou_thresholds=[0.3], protocol="anet").dmap == [100.0]


# ----------------------------------------------------------------------------------------------
# agreement with the official-style loops


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_official_style_loops(seed):
    quantum = 0.0025 if seed % 2 == 0 else 0.0
    factor = 25 / 16 if seed < 6 else 10 / 4
    ann, idx, scores, cas = synthetic_case(seed, quantum=quantum, factor=factor, max_segments=5 if seed < 3 else 16)
    for lenient in (False, True):
        ours = quiet(evaluate, scores, cas, ann, idx, lenient=lenient, fps_factor=factor)
        ref = quiet(official.official_evaluate, scores, cas, ann, idx, factor=factor, lenient=lenient)
        assert np.abs(np.array(ours.dmap) - ref["dmap"]).max() <= 1e-9
        assert abs(ours.avg - ref["avg"]) <= 1e-9 and abs(ours.cmap - ref["cmap"]) <= 1e-9
    ours = quiet(evaluate, scores, cas, ann, idx, protocol="anet", fps_factor=factor)
    ref = quiet(official.anet_reference, scores, cas, ann, idx, factor=factor)
    assert np.abs(np.array(ours.dmap) - ref["dmap"]).max() <= 1e-9
    # the ranked detections themselves, row for row
    got = detections(scores, cas, ann, idx, fps_factor=factor)
    videos = [k for k, v in enumerate(idx) if len(ann.segments[v])]
    names = [ann.video_names[idx[k]] for k in videos]
    for name, rows in got.items():
        c = ann.class_names.index(name)
        ref = official._class_predictions(scores, cas, ann, videos, names, c, factor)
        ref = np.zeros((0, 4)) if ref is None else ref.copy()
        ref[:, 0] = np.array(videos)[ref[:, 0].astype(int)] if len(ref) else ref[:, 0]
        assert rows.tolist() == ref.tolist()


def _as_json_results(ann, idx, scores, cas, factor, protocol="rskp"):
    """What python -m rsnet.infer writes for these predictions, through a JSON text."""
    per_video = detections_by_video(scores, cas, ann.class_names, 1 / factor, protocol=protocol)
    return json.loads(json.dumps({ann.video_names[v]: d for v, d in zip(idx.tolist(), per_video)}))


@pytest.mark.parametrize("seed", range(8))
def test_detections_file_scores_exactly_as_the_predictions(seed):
    """Ties in scores (quantized CAS), ambiguous segments, classes and videos the protocol does not
    evaluate, both protocols and rates: the detections file gives evaluate's numbers exactly."""
    factor = 25 / 16 if seed < 6 else 10 / 4
    ann, idx, scores, cas = synthetic_case(seed, quantum=0.0025 if seed % 2 == 0 else 0.0, factor=factor,
                                           max_segments=5 if seed < 3 else 16)
    for protocol, lenient in (("rskp", False), ("rskp", True), ("anet", False)):
        results = _as_json_results(ann, idx, scores, cas, factor, protocol)
        ours = quiet(evaluate, scores, cas, ann, idx, protocol=protocol, lenient=lenient, fps_factor=factor)
        got = quiet(evaluate_detections, results, ann, idx, protocol=protocol, lenient=lenient, fps_factor=factor)
        assert got.dmap == ours.dmap and got.avg == ours.avg and got.cmap is None
        assert got.classes_without_proposals == ours.classes_without_proposals


def test_detections_file_order_decides_equal_scores():
    """Equal scores are ranked by np.argsort on the file's order (as the evaluator ranks them on its
    own arrays): another order of the equal scores can score differently, which is why rsnet.infer
    writes them in the evaluator's order."""
    ann, idx, scores, cas = synthetic_case(5, quantum=0.0025)
    results = _as_json_results(ann, idx, scores, cas, 25 / 16)
    ours = quiet(evaluate, scores, cas, ann, idx, lenient=True)
    reordered = {v: sorted(d, key=lambda x: (-x["score"], -x["segment"][0])) for v, d in results.items()}
    assert quiet(evaluate_detections, reordered, ann, idx, lenient=True).dmap != ours.dmap
    assert quiet(evaluate_detections, results, ann, idx, lenient=True).dmap == ours.dmap


def _ending_in_an_action(durations, extra, factor=25 / 16):
    """One video per duration, its CAS int(duration x factor) + extra snippets long with an action
    in its last 3 snippets, and a ground-truth segment there."""
    lengths = [int(d * factor) + extra for d in durations]
    ann = make_annotations([[[max(0.0, d - 2 / factor), d]] for d in durations], [[0]] * len(durations), ["a"],
                           lengths=lengths, factor=factor)
    ann.durations = np.asarray(durations, dtype=np.float64)
    cas = [plateaus(n, 2, [(0, max(0, n - 3), n, 0.5)]) for n in lengths]
    return ann, np.arange(len(durations)), np.full((len(durations), 2), 0.5, np.float32), cas


@pytest.mark.parametrize("extra", [0, 1, 2])
def test_detections_reaching_past_the_end_of_any_accepted_length_are_read(extra):
    """A proposal's stored end is one snippet past its run, so past the video: a video of a whole
    number of snippets (3.84 s: 7 x 0.64 = 4.48 s > 3.84 + 0.64 s in floats), and sequences one or
    two snippets longer than int(duration x 25/16), which the length check accepts."""
    ann, idx, scores, cas = _ending_in_an_action([k * 16 / 25 for k in range(3, 60)], extra)
    check_lengths(ann, idx, [len(c) for c in cas], 25 / 16, "CAS")
    for protocol in PROTOCOLS:
        ours = quiet(evaluate, scores, cas, ann, idx, protocol=protocol, lenient=True)
        got = quiet(evaluate_detections, _as_json_results(ann, idx, scores, cas, 25 / 16, protocol), ann, idx,
                    protocol=protocol, lenient=True)
        assert got.dmap == ours.dmap and ours.avg > 0


def test_detections_past_any_accepted_length_are_refused():
    """64 s = 100 snippets, accepted up to 110 (10 %): a segment may end at snippet 111, not 112."""
    ann, idx, _, _ = _ending_in_an_action([64.0], 0)
    results = {ann.video_names[0]: [{"label": "a", "score": 0.5, "segment": [60.0, 111 * 16 / 25]}]}
    assert quiet(evaluate_detections, results, ann, idx, lenient=True).avg >= 0
    results[ann.video_names[0]][0]["segment"][1] = 112 * 16 / 25
    with pytest.raises(UserError, match=r"video_000 detection 0: segment \[60.0, 71.68\] s is outside the video"):
        evaluate_detections(results, ann, idx, lenient=True)


def test_agrees_on_many_videos_float64_and_more_classes():
    ann, idx, scores, cas = synthetic_case(100, n_videos=30, n_classes=8, quantum=0.005, max_len=200, dtype=np.float64)
    ours = quiet(evaluate, scores, cas, ann, idx, iou_thresholds=[0.15, 0.5, 0.75])
    ref = quiet(official.official_evaluate, scores, cas, ann, idx, iou_thresholds=[0.15, 0.5, 0.75], lenient=False)
    assert np.abs(np.array(ours.dmap) - ref["dmap"]).max() <= 1e-9 and abs(ours.cmap - ref["cmap"]) <= 1e-9


def test_videos_without_proposals_or_ground_truth():
    # T = 1 videos, an all-zero CAS, a test video without ground truth: nothing breaks
    ann = make_annotations([[[0, 1]], [], [[0, 3]]], [[0], [], [1]], ["a", "b"], lengths=[1, 1, 5], factor=25 / 16)
    cas = [np.zeros((1, 3), np.float32), np.full((1, 3), 0.5, np.float32), np.zeros((5, 3), np.float32)]
    scores = np.full((3, 3), 0.9, np.float32)
    with pytest.warns(UserWarning, match="no proposal"):
        result = evaluate(scores, cas, ann, [0, 1, 2])
    assert result.dmap == [0.0] * 7
    assert quiet(official.official_evaluate, scores, cas, ann, [0, 1, 2])["dmap"] == result.dmap


# ----------------------------------------------------------------------------------------------
# bad input, output


def _small():
    scores, cas, ann = _two_class_case(0.9)
    return scores, cas, ann


@pytest.mark.parametrize("change, message", [
    (lambda s, c, a, i: (s[:, :1], c, a, i), "video_scores has shape"),
    (lambda s, c, a, i: (np.where(s > 0.5, np.nan, s), c, a, i), "NaN or infinite"),
    (lambda s, c, a, i: (np.where(s > 0.5, np.inf, s), c, a, i), "NaN or infinite"),
    (lambda s, c, a, i: (s, c + c, a, i), "cas has 2 videos but indices lists 1"),
    (lambda s, c, a, i: (np.concatenate([s, s]), c + c, a, [0, 0]), "more than once"),
    (lambda s, c, a, i: (s, [c[0][:0]], a, i), "at least 1 snippet"),
    (lambda s, c, a, i: (s, [c[0][:, :1]], a, i), r"cas\[0\] has shape"),
    (lambda s, c, a, i: (s, [np.where(c[0] > 0.5, np.nan, c[0])], a, i), r"cas\[0\] has NaN"),
    (lambda s, c, a, i: (s, c, a, [3]), "indices must lie in"),
    (lambda s, c, a, i: (s, c, a, [[0]]), "1-D array"),
])
def test_bad_input_is_a_named_value_error(change, message):
    s, c, a = _small()
    with pytest.raises(ValueError, match=message):
        evaluate(*change(s, c, a, [0]), fps_factor=1.0)


@pytest.mark.parametrize("indices, message", [([3], "indices must lie in"), ([-1], "indices must lie in"),
                                              ([[0]], "1-D array"), ([0, 0], "more than once"), ([], "is empty")])
def test_a_detections_files_indices_are_checked_as_the_predictions_are(indices, message):
    """evaluate_detections used to skip these checks: an index past the annotations was an IndexError."""
    _, _, ann = _small()
    with pytest.raises(UserError, match=message):
        evaluate_detections({}, ann, indices, fps_factor=1.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"protocol": "voc"}, "protocol"), ({"iou_thresholds": [0.0, 0.5]}, "iou_thresholds"),
    ({"iou_thresholds": []}, "iou_thresholds"), ({"fps_factor": -1.0}, "fps_factor"),
])
def test_bad_options_are_named_value_errors(kwargs, message):
    s, c, a = _small()
    with pytest.raises(ValueError, match=message):
        evaluate(s, c, a, [0], **kwargs)


def test_result_dict_and_table():
    s, c, a = _small()
    result = evaluate(s, c, a, [0], fps_factor=1.0, iou_thresholds=[0.3, 0.5])
    assert isinstance(result, EvalResult)
    d = result.to_dict()
    assert d["dmap"] == result.dmap and d["iou"] == [0.3, 0.5] and d["avg"] == result.avg and d["cmap"] == result.cmap
    json.dumps(d)
    table = result.format_table().splitlines()
    assert table[0] == "| protocol | mAP@0.3 | mAP@0.5 | avg | cmAP |" and table[2].startswith("| rskp | 100.00 |")


# ----------------------------------------------------------------------------------------------
# command line


def _write_wtalc_folder(folder: Path, ann: Annotations) -> None:
    folder.mkdir(parents=True)
    enc = lambda xs: np.array([x.encode() for x in xs])  # noqa: E731
    obj = lambda xs: np.array(xs + [None], dtype=object)[:-1]  # noqa: E731 (ragged object array)
    np.save(folder / "classlist.npy", enc(ann.class_names))
    np.save(folder / "videoname.npy", enc(ann.video_names))
    np.save(folder / "subset.npy", enc(ann.subsets))
    np.save(folder / "duration.npy", ann.durations.reshape(-1, 1))
    np.save(folder / "segments.npy", obj([s.tolist() for s in ann.segments]))
    labels = [[ann.class_names[c].encode() for c in labs] for labs in ann.segment_labels]
    np.save(folder / "labels.npy", obj(labels))
    np.save(folder / "labels_all.npy", obj([sorted(set(lab)) for lab in labels]))
    lines = [f"{name}  {a} {b}" for name, spans in ann.ambiguous.items() for a, b in spans]
    (folder / "Ambiguous_test.txt").write_text("\n".join(lines) + "\n")


def _write_predictions(path: Path, scores, cas) -> None:
    frm = np.empty(len(cas), dtype=object)
    frm[:] = cas
    np.savez(path, vid_preds=scores, frm_preds=frm, vid_lens=np.array([len(c) for c in cas]))


def test_cli_end_to_end(tmp_path):
    ann, idx, scores, cas = synthetic_case(3)
    _write_wtalc_folder(tmp_path / "ann", ann)
    _write_predictions(tmp_path / "p.npz", scores, cas)
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "rsnet.evaluate", "--predictions", str(tmp_path / "p.npz"),
                           "--annotations", str(tmp_path / "ann"), "--lenient", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("| protocol | mAP@0.1 |")
    record = json.loads(out.read_text())
    expected = quiet(evaluate, scores, cas, load_annotations(tmp_path / "ann"), idx, lenient=True)
    assert record["dmap"] == expected.dmap and record["avg"] == expected.avg and record["cmap"] == expected.cmap
    assert record["iou"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7] and record["subset"] == "test"


def test_cli_validation_subset_anet_and_errors(tmp_path, capsys):
    ann, idx, scores, cas = synthetic_case(5)
    ann.subsets = ["validation" if s == "test" else "training" for s in ann.subsets]  # ActivityNet1.2 style
    _write_wtalc_folder(tmp_path / "ann", ann)
    _write_predictions(tmp_path / "p.npz", scores, cas)
    args = ["--predictions", str(tmp_path / "p.npz"), "--annotations", str(tmp_path / "ann")]
    assert quiet(main, args + ["--protocol", "anet", "--iou", "0.5", "0.75", "--out", str(tmp_path / "r.json")]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["subset"] == "validation" and record["protocol"] == "anet" and record["iou"] == [0.5, 0.75]
    expected = quiet(evaluate, scores, cas, ann, idx, protocol="anet", iou_thresholds=[0.5, 0.75])
    assert record["dmap"] == expected.dmap
    assert main(args + ["--subset", "training"]) == 2  # other videos than the predictions
    assert "video_scores has shape" in capsys.readouterr().err
    assert main(["--predictions", str(tmp_path / "nope.npz"), "--annotations", str(tmp_path / "ann")]) == 2


def test_cli_out_is_checked_before_the_evaluation(tmp_path, capsys):
    """A folder, another suffix, or the detections file being scored: one error line before any
    table is printed (the evaluation did not run), the input left as it was."""
    ann, idx, scores, cas = synthetic_case(3)
    _write_wtalc_folder(tmp_path / "ann", ann)
    _write_predictions(tmp_path / "p.npz", scores, cas)
    detections = tmp_path / "d.json"
    detections.write_text(json.dumps({"results": _as_json_results(ann, idx, scores, cas, 25 / 16)}))
    before = detections.read_text()
    (tmp_path / "folder.json").mkdir()
    annotations = ["--annotations", str(tmp_path / "ann")]
    for given, out, message in [
            (["--predictions", str(tmp_path / "p.npz")], tmp_path / "folder.json", "is a folder"),
            (["--predictions", str(tmp_path / "p.npz")], tmp_path / "r.npz", "must end in .json"),
            (["--detections", str(detections)], detections, f"is the input {detections}"),
            (["--detections", str(detections)], tmp_path / "." / "d.json", "is the input"),
            (["--detections", str(detections)], tmp_path / "p.npz" / "r.json", "is a file, not a folder")]:
        capsys.readouterr()
        assert main([*given, *annotations, "--out", str(out)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith(f"error: --out {out}") and message in captured.err
        assert len(captured.err.splitlines()) == 1
    assert detections.read_text() == before


def test_cli_out_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """The result goes to a temporary file renamed over --out: a write that fails leaves the
    previous result as it was, and no temporary file."""
    ann, idx, scores, cas = synthetic_case(3)
    _write_wtalc_folder(tmp_path / "ann", ann)
    _write_predictions(tmp_path / "p.npz", scores, cas)
    out = tmp_path / "r.json"
    out.write_text("previous")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        quiet(main, ["--predictions", str(tmp_path / "p.npz"), "--annotations", str(tmp_path / "ann"), "--out", str(out)])
    assert out.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["ann", "p.npz", "r.json"]


def test_cli_on_the_test_vectors(shared_data, tmp_path):
    out = tmp_path / "r.json"
    code = quiet(main, ["--predictions", str(shared_data / "eval-vectors" / "preds_a.npz"),
                        "--annotations", str(shared_data / "Thumos14reduced-Annotations"), "--out", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    expected = json.loads((shared_data / "eval-vectors" / "preds_a.expected.json").read_text())
    assert np.abs(np.array(record["dmap"]) - expected["dmap"]).max() <= 1e-12
    assert abs(record["avg"] - expected["avg"]) <= 1e-12 and abs(record["cmap"] - expected["cmap"]) <= 1e-12


def test_cli_refuses_a_cas_of_half_the_videos_length(tmp_path, capsys):
    """Such a CAS used to be scored as if the video were half as long."""
    ann, idx, scores, cas = synthetic_case(3)
    _write_wtalc_folder(tmp_path / "ann", ann)
    k = int(np.argmax([len(c) for c in cas]))
    name, length = ann.video_names[idx[k]], len(cas[k])
    cas[k] = cas[k][: length // 2]
    _write_predictions(tmp_path / "p.npz", scores, cas)
    assert main(["--predictions", str(tmp_path / "p.npz"), "--annotations", str(tmp_path / "ann")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: video {name}: class activation sequence of {length // 2} snippets, expected {length} ")
    assert len(err.splitlines()) == 1


def test_every_real_test_video_length_passes_and_half_of_it_does_not(shared_data):
    """The rule int(duration x 25/16) and its tolerance against the 212 real THUMOS14 test videos."""
    ann = load_annotations(shared_data / "Thumos14reduced-Annotations")
    idx = ann.indices("test")
    with np.load(shared_data / "eval-vectors" / "preds_a.npz", allow_pickle=True) as z:
        lengths = z["vid_lens"]
    assert (lengths == (ann.durations[idx] * 25 / 16).astype(int)).all()
    check_lengths(ann, idx, lengths, 25 / 16, "CAS")
    for v, length in zip(idx, lengths):
        with pytest.raises(DataError, match=ann.video_names[v]):
            check_lengths(ann, [v], [length // 2], 25 / 16, "CAS")


def test_a_test_video_with_classes_but_no_segment_is_refused():
    scores, cas, ann = _two_class_case(0.9)
    ann.segments[0], ann.segment_labels[0] = np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    with pytest.raises(DataError, match="video video_000 \\(test\\) has classes run, jump in labels_all.npy but no segment"):
        evaluate(scores, cas, ann, [0], fps_factor=1.0)
