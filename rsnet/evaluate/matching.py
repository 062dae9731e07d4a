"""Ranking, the ambiguous filter, matching detections with the ground truth at each IoU, and AP:
both protocols' scoring of ranked detections (the package docstring describes them).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..data import Annotations
from ..errors import UserError
from ..protocols import DEFAULT_IOUS, PROTOCOLS, best_class_of
from .checks import check_inputs
from .classification import classification_map
from .proposals import Proposals, proposals, ramp
from .result import EvalResult


def snippet_range(seconds: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``int(round(t * factor))`` of both ends (Python rounds half to even, as np.rint)."""
    return np.rint(seconds[:, 0] * factor).astype(np.int64), np.rint(seconds[:, 1] * factor).astype(np.int64)


def _ambiguous(props: Proposals, names: list[str], annotations: Annotations, factor: float) -> np.ndarray:
    """True for proposals sharing a snippet with an ambiguous segment of their video."""
    spans = [np.asarray(annotations.ambiguous.get(n, np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2) for n in names]
    count = np.array([len(a) for a in spans], dtype=np.int64)
    hit = np.zeros(len(props.s), dtype=bool)
    if count.sum() == 0 or len(props.s) == 0:
        return hit
    width = int(count.max())
    a0, a1 = snippet_range(np.concatenate(spans), factor)
    rows, cols = np.repeat(np.arange(len(names)), count), ramp(count)
    lo = np.zeros((len(names), width), dtype=np.int64)
    hi = np.zeros((len(names), width), dtype=np.int64)  # padding: empty ranges
    lo[rows, cols], hi[rows, cols] = a0, a1
    inter = np.minimum(hi[props.video], props.e[:, None]) - np.maximum(lo[props.video], props.s[:, None])
    return (inter > 0).any(axis=1)


def _voc_ap(tp: np.ndarray, n_pos: int) -> np.ndarray:
    """AP per row of tp (thresholds x ranked predictions of one class)."""
    tp = tp.astype(np.float64)
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(1.0 - tp, axis=1)
    prec = tp_c / (fp_c + tp_c)
    rec = tp_c / n_pos
    n = tp.shape[0]
    mprec = np.hstack([np.zeros((n, 1)), prec, np.zeros((n, 1))])
    mrec = np.hstack([np.zeros((n, 1)), rec, np.ones((n, 1))])
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    step = mrec[:, 1:] - mrec[:, :-1]
    ap = np.sum(np.where(mrec[:, 1:] != mrec[:, :-1], step * mprec[:, 1:], 0.0), axis=1)
    return np.where(tp_c[:, -1] > 0, ap, 0.0)


def _match(p_key, p_lo, p_hi, g_key, g_lo, g_hi, ious: np.ndarray, continuous: bool) -> np.ndarray:
    """Greedy best-IoU matching; tp (n_ious, P). Predictions in rank order per (class, video) key;
    ground truth in (key, original) order, ties in IoU going to the first."""
    n_t, n_p = len(ious), len(p_key)
    tp = np.zeros((n_t, n_p), dtype=bool)
    if n_p == 0 or len(g_key) == 0:
        return tp
    # candidates: ground truth of the same key that starts inside (p_lo - longest gt, p_hi), found
    # on (key, start) sorted ground truth with a float key and a margin (a superset is enough)
    by_start = np.lexsort((g_lo, g_key))
    lo_min = min(float(g_lo.min()), float(p_lo.min()))
    longest = float(np.max(g_hi - g_lo, initial=0.0)) + 2.0
    span = max(float(g_hi.max()), float(p_hi.max())) - lo_min + 2 * longest + 4.0
    g_pos = g_key[by_start] * span + (g_lo[by_start] - lo_min)
    base = p_key * span - lo_min
    first = np.searchsorted(g_pos, base + p_lo - longest, side="left")
    count = np.searchsorted(g_pos, base + p_hi + 1.0, side="right") - first
    pred = np.repeat(np.arange(n_p), count)
    gt = by_start[first[pred] + ramp(count)]
    same = g_key[gt] == p_key[pred]
    pred, gt = pred[same], gt[same]
    lo, hi = np.maximum(p_lo[pred], g_lo[gt]), np.minimum(p_hi[pred], g_hi[gt])
    if continuous:
        inter = np.maximum(0.0, hi - lo)
        union = (p_hi[pred] - p_lo[pred]) + (g_hi[gt] - g_lo[gt]) - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    else:  # sizes of integer ranges: |gt| is 0 when the rounded end is not after the start
        inter = np.maximum(0, hi - lo)
        union = np.maximum(0, g_hi[gt] - g_lo[gt]) + (p_hi[pred] - p_lo[pred]) - inter
        iou = inter / np.maximum(union, 1)
    ok = (inter > 0) & (iou >= ious.min())
    pred, gt, iou = pred[ok], gt[ok], iou[ok]
    # one row per (threshold, pair) that clears it
    clears = iou[None, :] >= ious[:, None]
    t_idx, pair = np.nonzero(clears)
    pred, gt, iou = pred[pair], gt[pair], iou[pair]
    order = np.lexsort((gt, -iou, pred, t_idx))  # per prediction: best IoU first, then first gt
    t_idx, pred, gt = t_idx[order], pred[order], gt[order]
    # step of a (threshold, prediction): its rank among the predictions of its (threshold, class,
    # video) that reach some ground truth; predictions of one step never compete with each other
    head = np.ones(len(pred), dtype=bool)
    head[1:] = (t_idx[1:] != t_idx[:-1]) | (pred[1:] != pred[:-1])
    h_t, h_p = t_idx[head], pred[head]
    h_group = h_t * (int(p_key.max()) + 1) + p_key[h_p]
    h_order = np.argsort(h_group, kind="stable")
    sorted_group = h_group[h_order]
    g_start = np.searchsorted(sorted_group, sorted_group, side="left")
    h_step = np.empty(len(h_p), dtype=np.int64)
    h_step[h_order] = np.arange(len(h_p)) - g_start
    step = h_step[np.cumsum(head) - 1]
    order = np.argsort(step, kind="stable")
    t_idx, pred, gt, step = t_idx[order], pred[order], gt[order], step[order]
    used = np.zeros((n_t, len(g_key)), dtype=bool)
    cuts = np.flatnonzero(step[1:] != step[:-1]) + 1
    for a, b in zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [len(step)])).tolist()):
        t, p, g = t_idx[a:b], pred[a:b], gt[a:b]
        free = ~used[t, g]
        t, p, g = t[free], p[free], g[free]
        if len(t) == 0:
            continue
        lead = np.ones(len(t), dtype=bool)
        lead[1:] = (t[1:] != t[:-1]) | (p[1:] != p[:-1])
        used[t[lead], g[lead]] = True
        tp[t[lead], p[lead]] = True
    return tp


@dataclass
class Detections:
    """Ranked detections of every evaluated class and the ground truth they are matched with.

    videos: positions (in ``indices``) of the videos with ground truth; classes: class indices of
    the evaluated classes, by name; per class r, rows ``bounds[r]:bounds[r+1]`` of video (index
    into ``videos``), s, e (stored bounds) and score, best first; gt_*: ground truth in (class
    rank, video, segment) order, seconds."""

    videos: np.ndarray
    classes: np.ndarray
    names: list[str]
    video: np.ndarray
    s: np.ndarray
    e: np.ndarray
    score: np.ndarray
    cls: np.ndarray
    bounds: np.ndarray
    gt_key: np.ndarray
    gt_seconds: np.ndarray
    n_pos: np.ndarray
    seconds: np.ndarray | None = None  # a detections file's (start, end), ranked; None for proposals

    @property
    def missing(self) -> list[str]:
        return [self.names[r] for r in range(len(self.classes)) if self.bounds[r] == self.bounds[r + 1]]


@dataclass
class Evaluated:
    """What the protocol evaluates among ``indices``: the positions of the videos with ground truth,
    their annotation indices and segment labels, and the classes of that ground truth (by name)."""

    videos: np.ndarray
    gt_videos: list[int]
    seg_labels: list[np.ndarray]
    names: list[str]
    classes: np.ndarray


def evaluated_videos(annotations: Annotations, idx) -> Evaluated:
    videos = np.array([k for k, v in enumerate(idx) if len(annotations.segments[v])], dtype=np.int64)
    gt_videos = [int(idx[k]) for k in videos]
    seg_labels = [np.asarray(annotations.segment_labels[v], dtype=np.int64).reshape(-1) for v in gt_videos]
    names = sorted({annotations.class_names[c] for labs in seg_labels for c in labs.tolist()})
    classes = np.array([annotations.class_names.index(n) for n in names], dtype=np.int64)
    return Evaluated(videos, gt_videos, seg_labels, names, classes)


def detect(scores, cas, annotations: Annotations, idx, fps_factor: float, protocol: str) -> Detections:
    ev = evaluated_videos(annotations, idx)
    props = proposals(scores, cas, ev.videos, ev.classes, best_class_of(protocol, len(annotations.class_names)))
    return rank_detections(props, ev, annotations, fps_factor, protocol)


def rank_detections(props: Proposals, ev: Evaluated, annotations: Annotations, fps_factor: float,
                    protocol: str) -> Detections:
    videos, gt_videos, seg_labels, names, classes = ev.videos, ev.gt_videos, ev.seg_labels, ev.names, ev.classes
    drop = _ambiguous(props, [annotations.video_names[v] for v in gt_videos], annotations, fps_factor)
    cut = np.searchsorted(props.cls, np.arange(len(classes) + 1))
    ranked = []
    for r in range(len(classes)):
        a, b = int(cut[r]), int(cut[r + 1])
        sc = props.score[a:b]
        if protocol == "anet":
            # ActivityNet's ranking: np.argsort(score)[::-1] on the class's detections in their
            # order (the file's), so equal scores fall where its sort puts them, not by -score
            kept = np.flatnonzero(~drop[a:b])
            ranked.append(a + kept[np.argsort(sc[kept])[::-1]])
            continue
        # the RSKP evaluator's: sort, filter, sort again, each time with its argsort on the same array
        first = np.argsort(-sc)
        first = first[~drop[a:b][first]]
        ranked.append(a + first[np.argsort(-sc[first])] if len(first) else first)
    order = np.concatenate(ranked) if ranked else np.zeros(0, dtype=np.int64)
    bounds = np.concatenate(([0], np.cumsum([len(r) for r in ranked]))).astype(np.int64)

    rank_of = np.full(len(annotations.class_names), -1, dtype=np.int64)
    rank_of[classes] = np.arange(len(classes))
    if gt_videos:
        seg = np.concatenate([np.asarray(annotations.segments[v], dtype=np.float64).reshape(-1, 2) for v in gt_videos])
        g_cls = rank_of[np.concatenate(seg_labels)]
        g_key = g_cls * len(videos) + np.repeat(np.arange(len(videos)), [len(lab) for lab in seg_labels])
        g_order = np.argsort(g_key, kind="stable")
        seg, g_key = seg[g_order], g_key[g_order]
    else:
        seg, g_key, g_cls = np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return Detections(videos=videos, classes=classes, names=names, video=props.video[order], s=props.s[order],
                       e=props.e[order], score=props.score[order], cls=props.cls[order], bounds=bounds,
                       gt_key=g_key, gt_seconds=seg, n_pos=np.bincount(g_cls, minlength=len(classes)),
                       seconds=None if props.seconds is None else props.seconds[order])


def check_options(protocol, iou_thresholds, fps_factor) -> np.ndarray:
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    try:
        ious = np.array(DEFAULT_IOUS if iou_thresholds is None else iou_thresholds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UserError(f"iou_thresholds must be a list of numbers: {exc}") from exc
    if ious.size == 0 or not np.isfinite(ious).all() or (ious <= 0).any() or (ious > 1).any():
        raise UserError(f"iou_thresholds must be a non-empty list of values in (0, 1], got {ious.tolist()}")
    if not (isinstance(fps_factor, (int, float, np.floating)) and np.isfinite(fps_factor) and fps_factor > 0):
        raise UserError(f"fps_factor must be a positive number, got {fps_factor!r}")
    return ious


def detections(video_scores, cas, annotations: Annotations, indices, fps_factor: float = 25 / 16,
               protocol: str = "rskp") -> dict[str, np.ndarray]:
    """The ranked detections the protocol scores: per evaluated class name, an (n, 4) float64 array
    of rows (video position in ``indices``, start snippet s, stored end e + 1, score), best first,
    after NMS and the ambiguous filter. Seconds: multiply s and e by 1 / fps_factor (16/25)."""
    check_options(protocol, None, fps_factor)
    scores, cas, idx = check_inputs(video_scores, cas, annotations, indices, fps_factor)
    det = detect(scores, cas, annotations, idx, fps_factor, protocol)
    return {name: np.stack([det.videos[det.video[a:b]], det.s[a:b], det.e[a:b], det.score[a:b]], axis=1).astype(np.float64)
            for name, a, b in zip(det.names, det.bounds[:-1].tolist(), det.bounds[1:].tolist())}


def evaluate(video_scores, cas, annotations: Annotations, indices, protocol: str = "rskp", lenient: bool = False,
             iou_thresholds=None, fps_factor: float = 25 / 16) -> EvalResult:
    """Detection mAP (x100) at each IoU threshold, their average, and the classification mAP.

    video_scores: (V, C+1) or (V, C) video-level class scores; cas: V arrays (T_i, C+1) or (T_i, C);
    indices: the annotation indices of the V videos, in order (the test subset); fps_factor:
    snippets per second (25/16 for I3D at 25 fps, 10/4 for UNT); lenient: under "rskp", a class
    without proposals counts as AP 0 instead of zeroing the whole threshold. Bad input raises
    UserError (a ValueError): among others a CAS whose length is not the video's duration at
    fps_factor (``rsnet.data.check_lengths``), and a video with classes but no segment. See the
    module docstring for the protocols.
    """
    ious = check_options(protocol, iou_thresholds, fps_factor)
    scores, cas, idx = check_inputs(video_scores, cas, annotations, indices, fps_factor)
    n_classes = len(annotations.class_names)
    cmap = classification_map(scores[:, :n_classes], annotations.video_labels[idx], annotations.class_names)
    return score_detections(detect(scores, cas, annotations, idx, fps_factor, protocol), cmap, ious, protocol, lenient, fps_factor)


def score_detections(det: Detections, cmap: float | None, ious: np.ndarray, protocol: str, lenient: bool,
           fps_factor: float) -> EvalResult:
    if len(det.classes) == 0:
        warnings.warn("no evaluated video has a ground-truth segment: detection mAP is 0", stacklevel=3)
        return EvalResult(cmap=cmap, dmap=[0.0] * len(ious), iou=ious.tolist(), avg=0.0, protocol=protocol)

    p_key = det.cls * len(det.videos) + det.video
    if protocol == "rskp":
        g_lo, g_hi = snippet_range(det.gt_seconds, fps_factor)
        tp = _match(p_key, det.s, det.e, det.gt_key, g_lo, g_hi, ious, continuous=False)
    else:
        # a detections file's seconds as written, as ActivityNet scores them; the proposals' as
        # rsnet.infer writes them (snippet x seconds per snippet), so that its file scores the same
        per_snippet = 1 / fps_factor
        p_lo, p_hi = (det.s * per_snippet, det.e * per_snippet) if det.seconds is None else det.seconds.T
        tp = _match(p_key, p_lo, p_hi, det.gt_key, det.gt_seconds[:, 0], det.gt_seconds[:, 1], ious, continuous=True)
    aps = np.zeros((len(ious), len(det.classes)))
    for r, (a, b) in enumerate(zip(det.bounds[:-1].tolist(), det.bounds[1:].tolist())):
        if b > a:
            aps[:, r] = _voc_ap(tp[:, a:b], int(det.n_pos[r]))
    missing = det.missing
    zero_all = protocol == "rskp" and bool(missing) and not lenient
    if missing:
        what = ("the official RSKP evaluator returns 0 at every IoU threshold (lenient=True counts its AP as 0)"
                if zero_all else "its AP counts as 0")
        warnings.warn(f"no proposal left for class{'es' if len(missing) > 1 else ''} {', '.join(missing)}: {what}",
                      stacklevel=3)
    dmap = [0.0 if zero_all else float(100 * np.mean(aps[j])) for j in range(len(ious))]
    total = 0.0
    for d in dmap:
        total = total + d
    return EvalResult(cmap=cmap, dmap=dmap, iou=ious.tolist(), avg=float(total / len(dmap)), protocol=protocol,
                      classes_without_proposals=missing)
