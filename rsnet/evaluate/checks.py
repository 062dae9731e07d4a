"""The checks of ``evaluate``'s inputs: one UserError naming what is wrong, before any work.
"""
from __future__ import annotations

import numpy as np

from ..data import Annotations, check_evaluable, check_lengths
from ..errors import UserError


def as_float_array(x, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # a ragged list, a CUDA tensor...
        raise UserError(f"{what} cannot be read as an array: {exc}") from exc
    if arr.dtype not in (np.float32, np.float64):
        if arr.dtype.kind not in "biuf":
            raise UserError(f"{what} has dtype {arr.dtype}; expected real numbers")
        arr = arr.astype(np.float64)
    return arr


def check_indices(indices, annotations: Annotations) -> np.ndarray:
    """``indices`` as int64 annotation indices of distinct videos, or a UserError naming what is wrong."""
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
    return idx


def check_inputs(video_scores, cas, annotations: Annotations, indices, fps_factor: float):
    n_classes = len(annotations.class_names)
    idx = check_indices(indices, annotations)
    scores = as_float_array(video_scores, "video_scores")
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
        a = as_float_array(c, f"cas[{v}]")
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
