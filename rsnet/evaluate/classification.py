"""Classification mAP of video-level scores, as the official RSKP evaluator computes it.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np


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
