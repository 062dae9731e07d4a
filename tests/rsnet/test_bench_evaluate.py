"""Micro-benchmark of rsnet.evaluate (CPU, numpy) on 24 random videos with THUMOS-like ground truth.

Skipped unless asked for (see conftest.py); bench/eval_speed.py times the real 212-video test split.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from rsnet.data import Annotations
from rsnet.evaluate import evaluate

N_VIDEOS, N_CLASSES = 24, 5


@pytest.fixture(scope="module")
def case():
    """Scores, CAS with bumps over the ground truth (so proposals are made and matched), annotations."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(40, 400, N_VIDEOS)
    segments, labels, cas = [], [], []
    scores = rng.uniform(0, 0.3, (N_VIDEOS, N_CLASSES + 1)).astype(np.float32)
    for v, t in enumerate(lengths):
        c = int(rng.integers(N_CLASSES))
        scores[v, c] = rng.uniform(0.5, 1.0)
        col = rng.random((t, N_CLASSES + 1)).astype(np.float32) * 0.004
        starts = np.sort(rng.uniform(0, t - 20, int(rng.integers(1, 6))))
        ends = starts + rng.uniform(3, 20, len(starts))
        for s, e in zip(starts, ends):
            col[int(s):int(e), c] += rng.uniform(0.02, 0.2)
        segments.append(np.stack([starts, ends], 1) * 16 / 25)
        labels.append(np.full(len(starts), c))
        cas.append(col)
    video_labels = np.zeros((N_VIDEOS, N_CLASSES), dtype=np.float32)
    for v, lab in enumerate(labels):
        video_labels[v, lab] = 1
    ann = Annotations(folder=Path("."), class_names=[f"c{c}" for c in range(N_CLASSES)],
                      video_names=[f"video_test_{v:07d}" for v in range(N_VIDEOS)], subsets=["test"] * N_VIDEOS,
                      durations=lengths * 16 / 25, segments=segments, segment_labels=labels,
                      video_labels=video_labels, ambiguous={"video_test_0000003": np.array([[1.0, 4.0]])})
    return scores, cas, ann, np.arange(N_VIDEOS)


@pytest.mark.parametrize("protocol", ["rskp", "anet"])
def test_evaluate(benchmark, case, protocol):
    benchmark.group = "evaluate cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = benchmark(lambda: evaluate(*case, protocol=protocol))
    assert result.avg > 0  # the case makes detections that match
