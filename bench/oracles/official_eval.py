"""An official-style RSKP evaluator: plain Python loops, one rule at a time.

Written from the protocol text of issue 3 (no public code copied). It plays the role of the
official evaluator: the baseline of ``bench/eval_speed.py`` and the oracle that
``tests/rsnet/test_evaluate.py`` compares ``rsnet.evaluate`` with on random cases. Speed is not a goal
here; doing each rule literally (Python sets for the integer-range IoUs, one proposal at a time)
is. ``anet_reference`` is the same kind of oracle for ``protocol="anet"``.
"""
from __future__ import annotations

import numpy as np

CLASS_THRESHOLD = 0.1
CAS_THRESHOLDS = np.arange(0.001, 0.040, 0.002)
NMS_THRESHOLD = 0.5
IOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def _set_iou(a: range, b: range) -> float:
    sa, sb = set(a), set(b)
    return float(len(sa & sb)) / float(len(sa | sb))


def _class_ap(conf: np.ndarray, labels: np.ndarray):
    """Classification AP in the dtype of the inputs (float32 for the usual arrays)."""
    order = np.argsort(-conf)
    ranked = labels[order]
    tp = np.cumsum(ranked == 1).astype(np.float32)
    fp = np.cumsum(ranked != 1).astype(np.float32)
    n_pos = np.sum(labels)
    precision = tp / (fp + tp)
    return np.sum((ranked == 1).astype(np.float32) * precision) / n_pos


def classification_map(video_scores: np.ndarray, labels: np.ndarray) -> float:
    """Classes with no positive video left out (the official code would divide by zero)."""
    labels = np.asarray(labels, dtype=np.float64)  # the official data loader's labels are float64
    aps = [_class_ap(video_scores[:, c], labels[:, c]) for c in range(labels.shape[1]) if labels[:, c].sum() > 0]
    return float(100 * sum(aps) / len(aps)) if aps else 0.0


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [s, e) of True, left to right."""
    runs, start = [], None
    for t, on in enumerate(mask):
        if on and start is None:
            start = t
        elif not on and start is not None:
            runs.append((start, t))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


def _proposals(col: np.ndarray, video: int) -> list[list]:
    """Outer-inner-contrast proposals of one CAS column, all thresholds, in threshold order."""
    n = col.shape[0]
    out = []
    for theta in CAS_THRESHOLDS:
        for s, e in _runs(col > theta):
            length = e - s
            if length < 2:
                continue
            inner = np.mean(col[s:e + 1])
            outer_s = max(0, int(s - 0.25 * length))
            outer_e = min(int(n - 1), int(e + 0.25 * length + 1))
            outer = list(range(outer_s, s)) + list(range(e + 1, outer_e))
            outer_score = 0 if len(outer) == 0 else np.mean(col[outer])
            out.append([video, s, e + 1, inner - outer_score])
    return out


def _nms(props: list[list]) -> list[int]:
    if not props:
        return []
    arr = np.array(props)
    s, e, score = arr[:, 1], arr[:, 2], arr[:, 3]
    remaining = list(np.argsort(score))
    picked = []
    while remaining:
        k = remaining.pop()
        picked.append(k)
        survivors = []
        for j in remaining:
            overlap = max(0.0, min(e[k], e[j]) - max(s[k], s[j]) + 1)
            if not overlap / (e[j] - s[j] + 1) > NMS_THRESHOLD:
                survivors.append(j)
        remaining = survivors
    return picked


def _ambiguous_ranges(annotations, name: str, factor: float) -> list[range]:
    spans = annotations.ambiguous.get(name, np.zeros((0, 2)))
    return [range(int(round(float(a) * factor)), int(round(float(b) * factor))) for a, b in spans]


def _class_predictions(video_scores, cas, annotations, videos, names, c, factor, best_class=False, anet_ranking=False):
    """Kept proposals of class c over the videos, sorted, ambiguous ones removed, sorted again;
    None when nothing is left. ``anet_ranking``: ambiguous ones removed, then ranked as ActivityNet's
    eval_detection.py ranks its table, ``np.argsort(score)[::-1]`` (equal scores fall elsewhere)."""
    collected = []
    for i, k in enumerate(videos):
        if video_scores[k][c] < CLASS_THRESHOLD and not (best_class and _best_class_fallback(video_scores[k], annotations) == c):
            continue
        props = _proposals(cas[k][:, c], i)
        collected += [props[p] for p in _nms(props)]
    if not collected:
        return None
    arr = np.array(collected)
    if not anet_ranking:
        arr = arr[np.argsort(-arr[:, 3])]
    rows = []
    for row in arr:
        pred = range(int(row[1]), int(row[2]))
        if not any(_set_iou(amb, pred) > 0 for amb in _ambiguous_ranges(annotations, names[int(row[0])], factor)):
            rows.append(row)
    if not rows:
        return None
    arr = np.array(rows)
    return arr[np.argsort(arr[:, 3])[::-1]] if anet_ranking else arr[np.argsort(-arr[:, 3])]


def _voc_ap(tp: list[float], n_pos: int) -> float:
    if sum(tp) == 0:
        return 0.0
    tp_c = np.cumsum(tp)
    fp_c = np.cumsum([1.0 - t for t in tp])
    prec = tp_c / (fp_c + tp_c)
    rec = tp_c / n_pos
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def _best_class_fallback(scores, annotations):
    """The ActivityNet codebases' rule: a video with no action class at 0.1 or more proposes its best one."""
    action = list(scores[:len(annotations.class_names)])
    return max(range(len(action)), key=lambda c: (action[c], -c)) if max(action) < CLASS_THRESHOLD else None


def _setup(video_scores, cas, annotations, indices, factor, best_class=False):
    indices = [int(v) for v in indices]
    videos = [k for k, v in enumerate(indices) if len(annotations.segments[v])]
    names = [annotations.video_names[indices[k]] for k in videos]
    class_names = sorted({annotations.class_names[lab] for k in videos for lab in annotations.segment_labels[indices[k]]})
    classes = [annotations.class_names.index(n) for n in class_names]
    predictions = {c: _class_predictions(video_scores, cas, annotations, videos, names, c, factor, best_class,
                                         anet_ranking=best_class)  # best_class: the anet protocol
                   for c in classes}
    gts = {c: [(i, float(seg[0]), float(seg[1]))
               for i, k in enumerate(videos)
               for seg, lab in zip(annotations.segments[indices[k]], annotations.segment_labels[indices[k]]) if lab == c]
           for c in classes}
    return indices, classes, predictions, gts


def official_evaluate(video_scores, cas, annotations, indices, factor=25 / 16, iou_thresholds=IOUS, lenient=False) -> dict:
    """dmap (x100) per IoU, their average and the classification mAP, the official way."""
    indices, classes, predictions, gts = _setup(video_scores, cas, annotations, indices, factor)
    cmap = classification_map(np.asarray(video_scores), annotations.video_labels[indices])
    dmap = []
    for th in iou_thresholds:
        aps, zeroed = [], False
        for c in classes:
            preds = predictions[c]
            if preds is None:
                if lenient:
                    aps.append(0.0)
                    continue
                zeroed = True
                break
            remaining = list(gts[c])
            tp = []
            for row in preds:
                best_j, best_iou = None, 0.0
                for j, (video, gs, ge) in enumerate(remaining):
                    if video != row[0]:
                        continue
                    iou = _set_iou(range(int(round(gs * factor)), int(round(ge * factor))), range(int(row[1]), int(row[2])))
                    if iou >= th and iou > best_iou:
                        best_j, best_iou = j, iou
                if best_j is not None:
                    del remaining[best_j]
                tp.append(1.0 if best_j is not None else 0.0)
            aps.append(_voc_ap(tp, len(gts[c])))
        dmap.append(0.0 if zeroed or not aps else float(100 * np.mean(aps)))  # no class at all: 0
    total = 0
    for d in dmap:
        total = total + d
    return {"iou": list(iou_thresholds), "dmap": dmap, "avg": float(total / len(dmap)), "cmap": cmap}


def anet_reference(video_scores, cas, annotations, indices, factor=25 / 16, iou_thresholds=IOUS) -> dict:
    """The ActivityNet-style protocol, in loops: the best-class fallback, ActivityNet's ranking
    (``np.argsort(score)[::-1]``), seconds, continuous IoU, no whole-threshold zero."""
    indices, classes, predictions, gts = _setup(video_scores, cas, annotations, indices, factor, best_class=True)
    cmap = classification_map(np.asarray(video_scores), annotations.video_labels[indices])
    dmap = []
    for th in iou_thresholds:
        aps = []
        for c in classes:
            preds = predictions[c]
            if preds is None:
                aps.append(0.0)
                continue
            used = [False] * len(gts[c])
            tp = []
            for row in preds:
                ps, pe = row[1] * (1 / factor), row[2] * (1 / factor)  # the seconds rsnet.infer writes
                best_j, best_iou = None, -1.0
                for j, (video, gs, ge) in enumerate(gts[c]):
                    if video != row[0] or used[j]:
                        continue
                    inter = max(0.0, min(pe, ge) - max(ps, gs))
                    union = (pe - ps) + (ge - gs) - inter
                    iou = inter / union if union > 0 else 0.0
                    if iou >= th and iou > best_iou:
                        best_j, best_iou = j, iou
                if best_j is not None:
                    used[best_j] = True
                tp.append(1.0 if best_j is not None else 0.0)
            aps.append(_voc_ap(tp, len(gts[c])))
        dmap.append(float(100 * np.mean(aps)) if aps else 0.0)
    return {"iou": list(iou_thresholds), "dmap": dmap, "avg": float(sum(dmap) / len(dmap)), "cmap": cmap}
