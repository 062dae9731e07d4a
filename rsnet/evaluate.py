"""Detection and classification mAP of RSKP (CVPR 2022), vectorized, number for number.

``evaluate(video_scores, cas, annotations, indices)`` gives what the official RSKP evaluator gives
on the same predictions, without its per-proposal Python loops (``tests/test_evaluate.py`` holds
the agreement, ``bench/eval_speed.py`` measures the speed). The
runs of every (video, class, threshold) come from one pass over the threshold levels of all class
activation sequences; each distinct run is scored once, with numpy's own float32 means on the same
values; the NMS is resolved in a few rounds over the overlapping pairs of all (video, class) groups
at once; the matching runs over classes and IoU thresholds together with integer-interval
arithmetic. Where the official code's order depends on ``np.argsort`` ties (equal scores), the same
``np.argsort`` is called on the same array, so the order is numpy's, whatever its sort kernel.

The RSKP protocol (``protocol="rskp"``), as the official code does it
---------------------------------------------------------------------
- Videos: the evaluated videos that have at least one ground-truth segment; classes: those in
  their ground truth, in the order of their sorted names.
- Proposals of class c in video i, none if ``video_scores[i, c] < 0.1``: for each threshold
  ``theta`` in ``np.arange(0.001, 0.040, 0.002)``, the maximal runs ``[s, e)`` of
  ``CAS[:, c] > theta`` with ``e - s >= 2``; score ``mean(CAS[s:e+1]) - mean(outer)`` (the inner
  mean reaches one snippet past the run, as the official code does; the outer snippets are
  ``[max(0, int(s - L/4)), s)`` and ``[e+1, min(T-1, int(e + L/4 + 1)))`` with ``L = e - s``, mean 0
  when empty); stored as ``(s, e+1, score)``. Means are numpy's, in the CAS dtype (float32).
- NMS per (video, class), threshold 0.5: ``np.argsort`` of the scores, the last remaining one is
  kept and drops every remaining j with ``overlap / (e_j - s_j + 1) > 0.5``, ``overlap =
  max(0, min(e_k, e_j) - max(s_k, s_j) + 1)`` (the other proposal's length + 1, not the union).
- Per class, the kept proposals of all videos are sorted by ``np.argsort(-score)``, those that
  share a snippet with an ambiguous segment of their video (``Ambiguous_test.txt``, rounded to
  snippets like the ground truth) removed, and sorted again the same way.
- Matching at IoU theta: ground truth ``range(round(start*f), round(end*f))`` with ``f = 25/16``
  (``10/4`` for UNT features), prediction ``range(s, e+1)``, IoU of the two integer sets; each
  prediction in order takes the remaining ground truth of its video and class with the highest
  IoU >= theta (the first one on ties), which is then removed. Every ground truth counts as a
  positive, also one no prediction can reach (zero-length after rounding, past the video's end).
- AP: VOC (precision made non-increasing from the right, summed over the recall steps), 0 when
  there is no true positive. A class without any proposal left makes the official code return 0
  for the whole threshold: reproduced, with a warning naming the class; ``lenient=True`` counts
  that class's AP as 0 instead. ``dmap`` is 100 x the mean AP over the classes.
- Classification mAP: per class, videos by ``np.argsort(-score)``, AP = sum of the precisions at
  the positives / number of positives (float32 precisions, as the official code), mean x 100
  over the classes that have a positive video (the official code would give NaN otherwise).

How the two protocols differ
----------------------------
``protocol="rskp"`` reproduces the official RSKP evaluator, which inherits W-TALC's THUMOS14
conventions; ``protocol="anet"`` scores the same proposals the way ActivityNet's
``eval_detection.py`` scores detections. Same in both: the proposals' runs, scores and NMS, the
ambiguous filter, the ranking, the greedy matching (each prediction, best score first, takes the
unmatched ground truth of its video and class with the highest IoU >= theta) and the all-point
interpolated AP over the precision envelope. Different:

- Which classes a video proposes. rskp: those scoring at least 0.1. anet: the same, and a video
  where none does proposes its best-scoring class, as the ActivityNet-capable codebases (ACM-Net,
  CO2-Net, DELU) do: with 100 classes a video's scores are often all below 0.1.

- Time and IoU. rskp compares snippet-index sets: the ground truth is rounded to snippets
  (``round(t * 25/16)``) and the proposal ``[s, e+1)`` carries one extra snippet, so an IoU is a
  ratio of integer counts, and a segment shorter than half a snippet can round to nothing. anet
  works in seconds: a proposal is ``[s, e+1] * 16/25`` s and the IoU is the continuous temporal IoU
  with the unrounded ground truth.
- Ties. Under both, a prediction equally close to two ground truths takes the first listed
  (ActivityNet's code leaves that to ``np.argsort``). The ambiguous filter is rskp's snippet rule.
- A class without a single proposal. rskp returns 0 for the whole IoU threshold (the official
  code's early return; ``lenient=True`` turns that off); anet counts that class's AP as 0 and
  averages as usual, like ActivityNet.
- Thresholds. rskp is defined at 0.1:0.1:0.7 (configurable for exploration); anet defaults to the
  same for comparability and is meant to take ``iou_thresholds`` (``ACTIVITYNET_IOUS``,
  0.5:0.05:0.95, what a training run with ``--protocol anet`` reports, as on ActivityNet1.2).

Command line: ``python -m rsnet.evaluate --predictions P.npz --annotations DIR [--protocol
rskp|anet] [--lenient] [--subset S] [--out R.json]``; ``--detections D.json`` instead of
``--predictions`` scores a detections file in the ActivityNet results format (``python -m
rsnet.infer`` writes one) with the same matching and AP (``evaluate_detections``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import cli, outputs
from .data import Annotations, DataError, check_evaluable, check_lengths, expected_length, load_annotations
from .errors import UserError
from .safe_npy import load_npz

CLASS_THRESHOLD = 0.1
CAS_THRESHOLDS = np.arange(0.001, 0.040, 0.002)
NMS_THRESHOLD = 0.5
OUTER_RATIO = 0.25
DEFAULT_IOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # literals, as the official list (not an arange)
ACTIVITYNET_IOUS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)  # ActivityNet's 0.5:0.05:0.95
# The thresholds a training run reports under each protocol (its config's ``protocol``): the
# benchmark's own. ``evaluate`` itself defaults to DEFAULT_IOUS under both, for comparability.
PROTOCOL_IOUS = {"rskp": DEFAULT_IOUS, "anet": ACTIVITYNET_IOUS}
PROTOCOLS = tuple(PROTOCOL_IOUS)


@dataclass
class EvalResult:
    """Detection mAP (x100) per IoU threshold, their average, and the classification mAP (x100;
    None when scoring a detections file, which has no video scores)."""

    cmap: float | None
    dmap: list[float]
    iou: list[float]
    avg: float
    protocol: str = "rskp"
    classes_without_proposals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "iou": [float(t) for t in self.iou],
            "dmap": [float(d) for d in self.dmap],
            "avg": float(self.avg),
            "cmap": None if self.cmap is None else float(self.cmap),
            "classes_without_proposals": list(self.classes_without_proposals),
        }

    def format_table(self) -> str:
        head = "| protocol | " + " | ".join(f"mAP@{t:g}" for t in self.iou) + " | avg | cmAP |"
        rule = "|" + "---|" * (len(self.iou) + 3)
        cmap = "-" if self.cmap is None else f"{self.cmap:.2f}"
        row = f"| {self.protocol} | " + " | ".join(f"{d:.2f}" for d in self.dmap) + f" | {self.avg:.2f} | {cmap} |"
        return "\n".join([head, rule, row])


# ----------------------------------------------------------------------------------------------
# input checks


def _as_float_array(x, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # a ragged list, a CUDA tensor...
        raise UserError(f"{what} cannot be read as an array: {exc}") from exc
    if arr.dtype not in (np.float32, np.float64):
        if arr.dtype.kind not in "biuf":
            raise UserError(f"{what} has dtype {arr.dtype}; expected real numbers")
        arr = arr.astype(np.float64)
    return arr


def _check_inputs(video_scores, cas, annotations: Annotations, indices, fps_factor: float):
    n_classes = len(annotations.class_names)
    try:
        idx = np.asarray(indices)
    except Exception as exc:
        raise UserError(f"indices cannot be read as an array: {exc}") from exc
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise UserError(f"indices must be a 1-D array of annotation indices, got shape {idx.shape} dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size == 0:
        raise UserError("indices is empty: no video to evaluate")
    if idx.min() < 0 or idx.max() >= len(annotations):
        raise UserError(f"indices must lie in [0, {len(annotations)}) (the annotated videos), got {idx.min()}..{idx.max()}")
    if len(np.unique(idx)) != len(idx):
        raise UserError("indices lists a video more than once")
    scores = _as_float_array(video_scores, "video_scores")
    if scores.ndim != 2 or scores.shape[0] != len(idx) or scores.shape[1] not in (n_classes, n_classes + 1):
        raise UserError(f"video_scores has shape {scores.shape}; expected ({len(idx)}, {n_classes}) or "
                        f"({len(idx)}, {n_classes + 1}): one row per index in `indices`, one column per class (+ background)")
    if not np.isfinite(scores).all():
        raise UserError("video_scores has NaN or infinite values")
    if isinstance(cas, np.ndarray) and cas.dtype != object:
        cas = list(cas) if cas.ndim == 3 else [cas]
    try:
        n_cas = len(cas)
    except TypeError:
        raise UserError("cas must be a list of (T_i, C) arrays, one per video") from None
    if n_cas != len(idx):
        raise UserError(f"cas has {n_cas} videos but indices lists {len(idx)}")
    arrays = []
    for v, c in enumerate(cas):
        a = _as_float_array(c, f"cas[{v}]")
        if a.ndim != 2 or a.shape[1] not in (n_classes, n_classes + 1):
            raise UserError(f"cas[{v}] has shape {a.shape}; expected (T, {n_classes}) or (T, {n_classes + 1})")
        if a.shape[0] < 1:
            raise UserError(f"cas[{v}] has length {a.shape[0]}; a class activation sequence needs at least 1 snippet")
        if not np.isfinite(a).all():
            raise UserError(f"cas[{v}] has NaN or infinite values")
        arrays.append(a)
    check_evaluable(annotations, idx)
    check_lengths(annotations, idx, [len(a) for a in arrays], fps_factor, "class activation sequence")
    # one dtype for all, so that the means are taken as the official code takes them per video
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
    arrays = [a.astype(dtype, copy=False) for a in arrays]
    return scores, arrays, idx


# ----------------------------------------------------------------------------------------------
# classification


def classification_map(video_scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None) -> float:
    """Mean over classes with a positive video of AP = sum of precisions at positives / positives, x100."""
    aps, skipped = [], []
    labels = np.asarray(labels, dtype=np.float64)
    for c in range(labels.shape[1]):
        lab = labels[:, c]
        if not (lab == 1).any():
            skipped.append(class_names[c] if class_names is not None else str(c))
            continue
        order = np.argsort(-video_scores[:, c])
        hits = lab[order] == 1
        tp = np.cumsum(hits).astype(np.float32)
        fp = np.cumsum(~hits).astype(np.float32)
        precision = tp / (fp + tp)
        aps.append(np.sum(hits.astype(np.float32) * precision) / np.sum(lab))
    if skipped:
        warnings.warn(f"classification mAP leaves out classes with no positive video: {', '.join(skipped)}", stacklevel=3)
    if not aps:
        return 0.0
    return float(100 * sum(aps) / len(aps))


# ----------------------------------------------------------------------------------------------
# proposals


def _means(x: np.ndarray, lengths: np.ndarray, index_of) -> np.ndarray:
    """numpy's mean of x[index_of(rows, n)] per row, batched by length (numpy's own pairwise sums)."""
    out = np.zeros(len(lengths), dtype=x.dtype)
    if len(lengths) == 0:
        return out
    order = np.argsort(lengths, kind="stable")
    sorted_len = lengths[order]
    cuts = np.flatnonzero(sorted_len[1:] != sorted_len[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    stops = np.concatenate((cuts, [len(order)]))
    for a, b in zip(starts.tolist(), stops.tolist()):
        n = int(sorted_len[a])
        if n == 0:
            continue
        rows = order[a:b]
        out[rows] = x[index_of(rows, n)].mean(axis=1)
    return out


@dataclass
class Proposals:
    """Kept proposals, one row each: class rank, video (position in the videos proposed for; the
    evaluator's are those with ground truth), stored bounds [s, e) (e = run end + 1) and score
    (float64 of the CAS-dtype value)."""

    cls: np.ndarray
    video: np.ndarray
    s: np.ndarray
    e: np.ndarray
    score: np.ndarray


def proposals(scores: np.ndarray, cas: list[np.ndarray], videos: np.ndarray, classes: np.ndarray,
              best_class_of: int | None = None) -> Proposals:
    """The protocol's proposals of the given classes in the given videos (the evaluator's and
    ``rsnet.infer``'s: one code): threshold runs of the CAS, their outer-inner-contrast scores,
    NMS per (video, class). scores (V, C[+1]) and cas (T_i, C[+1]) as checked by ``evaluate``, in
    one float dtype; rows by class rank, video position (in ``videos``), then best first.

    ``best_class_of=C`` (the anet protocol) adds the rule of the ActivityNet-capable codebases: a
    video none of whose C action classes reaches CLASS_THRESHOLD proposes its best-scoring one."""
    eligible = _eligible(scores, videos, classes, best_class_of)
    g_video, g_rank = np.nonzero(eligible)  # groups, video-major then class rank
    n_groups = len(g_video)
    if n_groups == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Proposals(empty, empty, empty, empty, np.zeros(0))
    g_len = np.array([cas[k].shape[0] for k in videos], dtype=np.int64)[g_video]
    g_off = 1 + np.concatenate(([0], np.cumsum(g_len + 1)[:-1]))
    x = np.full(int(g_off[-1] + g_len[-1] + 1), -np.inf, dtype=cas[0].dtype)  # -inf before, between, after
    for v, c, o, n in zip(videos[g_video].tolist(), classes[g_rank].tolist(), g_off.tolist(), g_len.tolist()):
        x[o:o + n] = cas[v][:, c]
    runs = _runs(x)
    s_abs, e_abs = runs
    gid = np.searchsorted(g_off, s_abs, side="right") - 1
    off, T = g_off[gid], g_len[gid]
    s, e = s_abs - off, e_abs - off  # the run [s, e) in its video
    score = _oic_scores(x, s_abs, s, e, off, T)
    desc = _official_order(x, score, gid, s_abs, e_abs, g_off, g_len)
    ps, pe = s, e + 1  # stored bounds
    keep = _nms(desc, gid, s_abs, ps, pe)
    keep = keep[np.lexsort((g_video[gid[keep]], g_rank[gid[keep]]))]  # class rank, video, best first
    return Proposals(cls=g_rank[gid[keep]], video=g_video[gid[keep]], s=ps[keep], e=pe[keep], score=score[keep])


def _eligible(scores: np.ndarray, videos: np.ndarray, classes: np.ndarray, best_class_of: int | None) -> np.ndarray:
    """(Vg, K): which (video, class) groups propose."""
    video_scores = scores[videos]
    eligible = ~(video_scores[:, classes] < CLASS_THRESHOLD)  # the official comparison
    if best_class_of is not None:
        action = video_scores[:, :best_class_of]
        below = ~(action >= CLASS_THRESHOLD).any(axis=1)
        best = np.argmax(action, axis=1)  # the first of equal scores, as np.argmax in those codebases
        eligible |= below[:, None] & (classes[None, :] == best[:, None])
    return eligible


def _levels(x: np.ndarray) -> np.ndarray:
    """Number of CAS thresholds below each value: ``x > theta_t`` iff ``t < level`` (float64 compare)."""
    return np.searchsorted(CAS_THRESHOLDS, x.astype(np.float64), side="left")


def _runs(x: np.ndarray, all_thresholds: bool = False):
    """The distinct runs [s, e) (absolute in x) of ``x > theta`` over all thresholds with e - s >= 2.

    With ``level`` the number of thresholds below each value, a run of length >= 2 starts at s for
    the thresholds t in [level[s-1], min(level[s], level[s+1])) and ends at e for t in
    [level[e], min(level[e-1], level[e-2])); per threshold the k-th start closes at the k-th end.
    The same run [s, e) is found for t in [max(level[s-1], level[e]), min(level[s:e])) and is
    listed once, at the first. With ``all_thresholds`` every (threshold, run) is listed,
    threshold-major, as (t, s, e). x must begin and end with -inf.
    """
    level = _levels(x)
    lo, mid, hi = level[:-2], level[1:-1], level[2:]
    n_start = np.minimum(mid, hi) - lo  # at s = j + 1
    n_end = np.minimum(mid, lo) - hi  # at e = j + 2
    j_start = np.flatnonzero(n_start > 0)
    j_end = np.flatnonzero(n_end > 0)
    start, t_start = _expand(j_start + 1, lo[j_start], n_start[j_start])
    end, t_end = _expand(j_end + 2, hi[j_end], n_end[j_end])
    o_start = np.argsort(t_start.astype(np.int8), kind="stable")  # radix sort
    o_end = np.argsort(t_end.astype(np.int8), kind="stable")
    start, end, t = start[o_start], end[o_end], t_start[o_start]
    if all_thresholds:
        return t, start, end
    first = t == np.maximum(level[start - 1], level[end])
    return start[first], end[first]


def _expand(position: np.ndarray, base: np.ndarray, count: np.ndarray):
    """Each position repeated count times, with thresholds base, base + 1, ..., base + count - 1."""
    pos = np.repeat(position, count)
    t = np.arange(len(pos)) - np.repeat(np.cumsum(count) - count - base, count)
    return pos, t


def _ramp(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c-1 for each count c, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def _oic_scores(x, s_abs, s, e, off, T) -> np.ndarray:
    """mean(CAS[s:e+1]) - mean(outer) in the CAS dtype, as float64."""
    L = e - s
    inner_len = np.minimum(e + 1, T) - s
    inner = _means(x, inner_len, lambda r, n: s_abs[r, None] + np.arange(n))
    left_s = np.maximum(0, np.trunc(s - OUTER_RATIO * L).astype(np.int64))
    right_e = np.minimum(T - 1, np.trunc(e + OUTER_RATIO * L + 1).astype(np.int64))
    n_left = s - left_s
    n_out = n_left + np.maximum(0, right_e - (e + 1))
    jump = (e + 1) - s  # from the last left snippet (s - 1) + 1 to e + 1

    def outer_index(r, n):
        j = np.arange(n)
        first = s_abs[r, None] - n_left[r, None] + j
        return np.where(j < n_left[r, None], first, first + jump[r, None])

    outer = _means(x, n_out, outer_index)
    return np.where(n_out > 0, inner - outer, inner).astype(np.float64)


def _by_group_then_score(gid: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices by group, then by descending score (equal scores in any order)."""
    order = np.argsort(-score)
    g = gid[order]
    small = np.int16 if gid.size == 0 or gid.max() < np.iinfo(np.int16).max else np.int64  # int16: radix sort
    return order[np.argsort(g.astype(small), kind="stable")]


def _official_order(x, score, gid, s_abs, e_abs, g_off, g_len) -> np.ndarray:
    """Distinct runs in the order the official NMS visits them: per group, ``np.argsort`` of the
    scores of all (threshold, run) proposals, from the last, duplicates after their first copy.

    Equal scores of different runs are the only case where the order is not the score order;
    groups that have them are redone with the official argsort on the official array."""
    desc = _by_group_then_score(gid, score)
    g, sc = gid[desc], score[desc]
    tie = (g[1:] == g[:-1]) & (sc[1:] == sc[:-1])
    if not tie.any():
        return desc
    tied = np.unique(g[1:][tie])
    first_pos = np.searchsorted(g, tied, side="left")
    last_pos = np.searchsorted(g, tied, side="right")
    # every (threshold, run) proposal of the tied groups, in the official (threshold, start) order
    o, n = g_off[tied], g_len[tied]
    sub = np.concatenate([x[i - 1:i + k] for i, k in zip(o.tolist(), n.tolist())] + [x[-1:]])
    sub_off = np.concatenate(([0], np.cumsum(n + 1)[:-1]))  # sub[sub_off] is the separator before
    t, rs, re = _runs(sub, all_thresholds=True)
    which = np.searchsorted(sub_off, rs, side="right") - 1
    official = np.lexsort((rs, t, which))
    shift = (o - 1 - sub_off)[which[official]]
    r_key = (rs[official] + shift) * (len(x) + 1) + (re[official] + shift)
    r_bounds = np.searchsorted(which[official], np.arange(len(tied) + 1))
    key = s_abs * (len(x) + 1) + e_abs
    for j, (a, b) in enumerate(zip(first_pos.tolist(), last_pos.tolist())):
        members = desc[a:b]
        lookup = members[np.argsort(key[members])]
        ids = lookup[np.searchsorted(key[lookup], r_key[r_bounds[j]:r_bounds[j + 1]])]  # proposal -> run
        seq = ids[np.argsort(score[ids])[::-1]]  # the official argsort, on the official array
        _, first = np.unique(seq, return_index=True)
        desc[a:b] = seq[np.sort(first)]
    return desc


def _nms(desc, gid, s_abs, ps, pe) -> np.ndarray:
    """Greedy NMS per group over the distinct runs visited in ``desc`` order; the kept ones, in order.

    k (earlier) drops j when ``max(0, min(e_k, e_j) - max(s_k, s_j) + 1) / (e_j - s_j + 1) > 0.5``
    (pairs that do not overlap cannot drop each other: only those are listed).
    j is kept iff no kept earlier run drops it: resolved in rounds over the overlapping pairs."""
    n = len(desc)
    rank = np.empty(n, dtype=np.int64)
    rank[desc] = np.arange(n)  # groups are contiguous in desc, so rank orders within a group
    by_start = np.argsort(s_abs, kind="stable")
    st, en, gr = ps[by_start], pe[by_start], gid[by_start]
    sa = s_abs[by_start]
    # pairs (a, b), a before b by start, same group, b starting at or before a's stored end
    hi = np.searchsorted(sa, sa + (en - st), side="right")
    count = hi - np.arange(n) - 1
    a = np.repeat(np.arange(n), count)
    b = a + 1 + _ramp(count)
    same = gr[a] == gr[b]
    a, b = a[same], b[same]
    overlap = np.minimum(en[a], en[b]) - np.maximum(st[a], st[b]) + 1
    ra, rb = rank[by_start[a]], rank[by_start[b]]
    src, dst = np.where(ra < rb, a, b), np.where(ra < rb, b, a)
    drops = overlap / (en[dst] - st[dst] + 1) > NMS_THRESHOLD  # the official float comparison
    src, dst = src[drops], dst[drops]
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, 2 dropped
    n_in = np.bincount(dst, minlength=n)
    state[n_in == 0] = 1
    while len(dst):
        from_kept = state[src] == 1
        hit = np.zeros(n, dtype=bool)
        hit[dst[from_kept]] = True
        state[(state == 0) & hit] = 2
        n_dropped = np.bincount(dst[state[src] == 2], minlength=n)
        state[(state == 0) & (n_dropped == n_in)] = 1
        open_ = state[dst] == 0
        src, dst = src[open_], dst[open_]
    kept = np.zeros(n, dtype=bool)
    kept[by_start[state == 1]] = True
    return desc[kept[desc]]


# ----------------------------------------------------------------------------------------------
# ranking, ambiguous filter, matching, AP


def _snippet_range(seconds: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
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
    a0, a1 = _snippet_range(np.concatenate(spans), factor)
    rows, cols = np.repeat(np.arange(len(names)), count), _ramp(count)
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
    gt = by_start[first[pred] + _ramp(count)]
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
class _Detections:
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

    @property
    def missing(self) -> list[str]:
        return [self.names[r] for r in range(len(self.classes)) if self.bounds[r] == self.bounds[r + 1]]


@dataclass
class _Evaluated:
    """What the protocol evaluates among ``indices``: the positions of the videos with ground truth,
    their annotation indices and segment labels, and the classes of that ground truth (by name)."""

    videos: np.ndarray
    gt_videos: list[int]
    seg_labels: list[np.ndarray]
    names: list[str]
    classes: np.ndarray


def _evaluated(annotations: Annotations, idx) -> _Evaluated:
    videos = np.array([k for k, v in enumerate(idx) if len(annotations.segments[v])], dtype=np.int64)
    gt_videos = [int(idx[k]) for k in videos]
    seg_labels = [np.asarray(annotations.segment_labels[v], dtype=np.int64).reshape(-1) for v in gt_videos]
    names = sorted({annotations.class_names[c] for labs in seg_labels for c in labs.tolist()})
    classes = np.array([annotations.class_names.index(n) for n in names], dtype=np.int64)
    return _Evaluated(videos, gt_videos, seg_labels, names, classes)


def _detect(scores, cas, annotations: Annotations, idx, fps_factor: float, protocol: str) -> _Detections:
    ev = _evaluated(annotations, idx)
    props = proposals(scores, cas, ev.videos, ev.classes, best_class_of(protocol, len(annotations.class_names)))
    return _rank(props, ev, annotations, fps_factor)


def best_class_of(protocol: str, n_classes: int) -> int | None:
    """``proposals``' fallback for the protocol: the anet protocol proposes each video's best class
    when no class reaches CLASS_THRESHOLD; the official RSKP evaluator does not."""
    return n_classes if protocol == "anet" else None


def _rank(props: Proposals, ev: _Evaluated, annotations: Annotations, fps_factor: float) -> _Detections:
    videos, gt_videos, seg_labels, names, classes = ev.videos, ev.gt_videos, ev.seg_labels, ev.names, ev.classes
    drop = _ambiguous(props, [annotations.video_names[v] for v in gt_videos], annotations, fps_factor)
    # per class: sort, filter, sort again, each time with the official argsort on the same array
    cut = np.searchsorted(props.cls, np.arange(len(classes) + 1))
    ranked = []
    for r in range(len(classes)):
        a, b = int(cut[r]), int(cut[r + 1])
        sc = props.score[a:b]
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
    return _Detections(videos=videos, classes=classes, names=names, video=props.video[order], s=props.s[order],
                       e=props.e[order], score=props.score[order], cls=props.cls[order], bounds=bounds,
                       gt_key=g_key, gt_seconds=seg, n_pos=np.bincount(g_cls, minlength=len(classes)))


def _validate(protocol, iou_thresholds, fps_factor) -> np.ndarray:
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
    _validate(protocol, None, fps_factor)
    scores, cas, idx = _check_inputs(video_scores, cas, annotations, indices, fps_factor)
    det = _detect(scores, cas, annotations, idx, fps_factor, protocol)
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
    ious = _validate(protocol, iou_thresholds, fps_factor)
    scores, cas, idx = _check_inputs(video_scores, cas, annotations, indices, fps_factor)
    n_classes = len(annotations.class_names)
    cmap = classification_map(scores[:, :n_classes], annotations.video_labels[idx], annotations.class_names)
    return _score(_detect(scores, cas, annotations, idx, fps_factor, protocol), cmap, ious, protocol, lenient, fps_factor)


def _score(det: _Detections, cmap: float | None, ious: np.ndarray, protocol: str, lenient: bool,
           fps_factor: float) -> EvalResult:
    if len(det.classes) == 0:
        warnings.warn("no evaluated video has a ground-truth segment: detection mAP is 0", stacklevel=3)
        return EvalResult(cmap=cmap, dmap=[0.0] * len(ious), iou=ious.tolist(), avg=0.0, protocol=protocol)

    p_key = det.cls * len(det.videos) + det.video
    if protocol == "rskp":
        g_lo, g_hi = _snippet_range(det.gt_seconds, fps_factor)
        tp = _match(p_key, det.s, det.e, det.gt_key, g_lo, g_hi, ious, continuous=False)
    else:
        tp = _match(p_key, det.s / fps_factor, det.e / fps_factor, det.gt_key, det.gt_seconds[:, 0],
                    det.gt_seconds[:, 1], ious, continuous=True)
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


# ----------------------------------------------------------------------------------------------
# detections files (ActivityNet results format)


def evaluate_detections(results: dict, annotations: Annotations, indices, protocol: str = "rskp", lenient: bool = False,
                        iou_thresholds=None, fps_factor: float = 25 / 16) -> EvalResult:
    """Detection mAP of ``results`` ({video name: [{"label", "score", "segment": [start_s, end_s]}]},
    the "results" of an ActivityNet results file, as ``python -m rsnet.infer`` writes) on the videos
    ``indices``, with the matching and AP of ``evaluate`` (cmap None: there are no video scores).

    Segments are taken back to snippets as ``round(t * fps_factor)``: the snippet bounds written by
    ``rsnet.infer`` come back exactly. The detections of a (video, class) are taken in the file's
    order, which is where ``np.argsort`` puts equal scores: in ``rsnet.infer``'s order the result is
    the one ``evaluate`` gives on the same predictions. Detections of classes that no evaluated
    video has in its ground truth, and of videos without ground truth, are not scored (the
    protocol proposes none there). Unknown or missing videos, unknown labels, segments outside the
    video and empty ones (start >= end) are UserErrors naming them. Outside the video: a start
    before 0, or an end past what a proposal of the longest sequence ``check_lengths`` accepts for
    the video can reach (its length + 1 snippet: the stored end carries one snippet past the run),
    so every file ``rsnet.infer`` writes for predictions ``evaluate`` accepts is read.
    """
    ious = _validate(protocol, iou_thresholds, fps_factor)
    idx = np.asarray(indices, dtype=np.int64)
    check_evaluable(annotations, idx)
    ev = _evaluated(annotations, idx)
    props = _read_detections(results, annotations, idx, ev, fps_factor)
    return _score(_rank(props, ev, annotations, fps_factor), None, ious, protocol, lenient, fps_factor)


def _listed(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _read_detections(results, annotations: Annotations, idx: np.ndarray, ev: _Evaluated, fps_factor: float) -> Proposals:
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
        return Proposals(empty, empty, empty, empty, np.zeros(0))
    cls, video = np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64)
    seconds = np.array([(r[2], r[3]) for r in rows], dtype=np.float64)
    s, e = _snippet_range(seconds, fps_factor)
    order = np.lexsort((video, cls))  # stable: the file's order within a (video, class)
    score = np.array([r[4] for r in rows], dtype=np.float64)
    return Proposals(cls=cls[order], video=video[order], s=s[order], e=e[order], score=score[order])


def _detection_fields(det, where: str) -> tuple[str, float, tuple[float, float]]:
    try:
        label, score, segment = det["label"], float(det["score"]), [float(t) for t in det["segment"]]
    except (TypeError, KeyError, ValueError) as exc:
        raise UserError(f"{where}: expected {{'label', 'score', 'segment': [start, end]}}, got {det!r}") from exc
    if len(segment) != 2 or not np.isfinite(segment + [score]).all():
        raise UserError(f"{where}: segment must be 2 finite seconds and score finite, got {det!r}")
    return str(label), score, (segment[0], segment[1])


def load_detections(path: Path) -> dict:
    """The "results" of an ActivityNet results JSON file."""
    if not path.is_file():
        raise UserError(f"detections file not found: {path}")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a JSON file: {exc}") from exc
    if not isinstance(record, dict) or "results" not in record:
        raise UserError(f"{path} has no 'results' (expected the ActivityNet results format)")
    return record["results"]


# ----------------------------------------------------------------------------------------------
# command line


def command_line(given: list[str], annotations: Path | str, subset: str | None, protocol: str, lenient: bool,
                 fps_factor: float = 25 / 16) -> str:
    """The ``python -m rsnet.evaluate`` command that scores ``given`` (``["--predictions", P]`` or
    ``["--detections", D]``) of the videos of ``subset`` (None: the evaluator's default) as a
    training run of this protocol and leniency scores itself: the protocol's thresholds
    (``PROTOCOL_IOUS``, not the evaluator's default under anet) at ``fps_factor`` snippets per second."""
    words = ["python", "-m", "rsnet.evaluate", *map(str, given), "--annotations", str(annotations),
             *(["--subset", subset] if subset else []), "--protocol", protocol]
    if PROTOCOL_IOUS[protocol] != DEFAULT_IOUS:
        words += ["--iou", *map(repr, PROTOCOL_IOUS[protocol])]
    if fps_factor != 25 / 16:
        words += ["--fps-factor", repr(fps_factor)]
    return shlex.join(words + (["--lenient"] if lenient else []))


def _default_subset(annotations: Annotations) -> str:
    subsets = set(annotations.subsets)
    if "test" in subsets:
        return "test"
    if "validation" in subsets:
        return "validation"
    raise DataError(f"{annotations.folder}/subset.npy has neither a 'test' nor a 'validation' subset; pass --subset")


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.evaluate",
                                     description="Detection and classification mAP of saved predictions, or detection mAP of a detections file.")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--detections", type=Path,
                       help="a detections JSON in the ActivityNet results format, as python -m rsnet.infer writes")
    given.add_argument("--predictions", type=Path,
                        help="npz with vid_preds (V, C+1), frm_preds (object array of (T_i, C+1)), as the test vectors")
    parser.add_argument("--annotations", required=True, type=Path, help="annotation folder in the W-TALC layout")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="rskp")
    parser.add_argument("--lenient", action="store_true", help="a class without proposals counts as AP 0 (rskp)")
    parser.add_argument("--subset", default=None, help="subset to evaluate (default: 'test', else 'validation')")
    parser.add_argument("--iou", type=float, nargs="+", default=None, help="IoU thresholds (default 0.1 ... 0.7)")
    parser.add_argument("--fps-factor", type=float, default=25 / 16, help="snippets per second (25/16; 10/4 for UNT)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the result as JSON here (.json; replaced whole, never one of the inputs)")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.out is not None:
        outputs.check_out(args.out, ".json", (args.detections, args.predictions))
    annotations = load_annotations(args.annotations)
    subset = args.subset or _default_subset(annotations)
    indices = annotations.indices(subset)
    if len(indices) == 0:
        raise DataError(f"{args.annotations}/subset.npy has no video of subset {subset!r}")
    options = dict(protocol=args.protocol, lenient=args.lenient, iou_thresholds=args.iou, fps_factor=args.fps_factor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.detections is not None:
            result = evaluate_detections(load_detections(args.detections), annotations, indices, **options)
        else:
            result = evaluate(*_load_predictions(args.predictions), annotations, indices, **options)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(result.format_table())
    if args.out is not None:
        record = {**result.to_dict(), "subset": subset, "n_videos": int(len(indices)),
                  "predictions": str(args.detections or args.predictions), "annotations": str(args.annotations)}
        outputs.write(args.out, (json.dumps(record, indent=2) + "\n").encode())
    return 0


def _load_predictions(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    if not path.is_file():
        raise UserError(f"predictions file not found: {path}")
    archive = load_npz(path)
    for key in ("vid_preds", "frm_preds"):
        if key not in archive:
            raise UserError(f"{path} has no {key!r} array (has {', '.join(archive)})")
    return archive["vid_preds"], list(archive["frm_preds"])


if __name__ == "__main__":
    sys.exit(main())
