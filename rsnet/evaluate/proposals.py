"""Proposals from class activation sequences: the runs of every (video, class, threshold), their
outer-inner contrast scores, and the per-(video, class) NMS, as the official RSKP code makes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..protocols import CLASS_THRESHOLD

CAS_THRESHOLDS = np.arange(0.001, 0.040, 0.002)
NMS_THRESHOLD = 0.5
OUTER_RATIO = 0.25


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
    (float64 of the CAS-dtype value); seconds: a detections file's own (start, end), None for
    proposals."""

    cls: np.ndarray
    video: np.ndarray
    s: np.ndarray
    e: np.ndarray
    score: np.ndarray
    seconds: np.ndarray | None = None


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


def ramp(counts: np.ndarray) -> np.ndarray:
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
    b = a + 1 + ramp(count)
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
