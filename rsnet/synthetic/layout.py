"""Where the synthetic videos' actions are: standalone layouts drawn from the measured statistics,
or the ground truth of a real W-TALC annotation folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.safe_npy import load_npy
from ..datasets import DATASETS
from ..presets import ACTIVITYNET_DATASETS, SyntheticSpec
from .statistics import (
    ACTION_FRACTION_LOG_RESIDUAL_QUANTILES,
    ACTION_FRACTION_MAX,
    ACTION_FRACTION_MEDIAN,
    ACTIVITYNET_ACTION_FRACTION_QUANTILES,
    ACTIVITYNET_DURATION_BANDS_S,
    ACTIVITYNET_DURATION_QUANTILES_S,
    ACTIVITYNET_INSTANCE_COUNTS,
    ACTIVITYNET_TWO_CLASS_VIDEOS,
    AMBIGUOUS_FILE,
    AMBIGUOUS_LOG_SIGMA,
    AMBIGUOUS_MEDIAN_S,
    AMBIGUOUS_PER_INSTANCE,
    DURATION_LOG_RESIDUAL_QUANTILES,
    DURATION_MEDIAN_S,
    INSTANCE_LOG_SIGMA_BETWEEN_VIDEOS,
    INSTANCE_LOG_SIGMA_WITHIN_VIDEO,
    INSTANCE_MAX_S,
    INSTANCE_MEDIAN_S,
    INSTANCE_MIN_S,
    MIN_DURATION_S,
    MULTI_CLASS_VIDEOS,
    SINGLE_CLASS_VIDEOS,
    TEST_SUBSET,
    TRAIN_SUBSET,
    activitynet_classes,
)


@dataclass
class VideoLayout:
    """The ground truth of one video; times in seconds."""

    name: str
    subset: str
    duration: float
    segments: list[list[float]]
    labels: list[str]
    ambiguous: list[list[float]]

    @property
    def n_snippets(self) -> int:
        return max(1, int(self.duration * 25 / 16))


# --- Standalone layouts ----------------------------------------------------------------------------


def stream_rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent PCG64 stream per purpose (and per video), so changing one part leaves the others."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=stream)))


LAYOUT_STREAM, WORLD_STREAM, VIDEO_STREAM = 0, 1, 2


def _from_quantiles(table, rng: np.random.Generator) -> float:
    """A value drawn by inverse CDF from a quantile table at 0, 5, ..., 100 %, linearly interpolated."""
    return float(np.interp(rng.random(), np.linspace(0.0, 1.0, len(table)), table))


def _log_residual(table, rng: np.random.Generator) -> float:
    """exp(r), r drawn from a quantile table of log residuals."""
    return float(np.exp(_from_quantiles(table, rng)))


def _class_median(table: dict[str, float], classes) -> float:
    """A multi-class video takes the geometric mean of its classes' medians."""
    return float(np.exp(np.mean([np.log(table[c]) for c in classes])))


def _class_sets(n: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """The classes of n videos of one split: the real share of multi-class videos, the real mix of
    co-occurring sets, and the single-class videos spread over the classes in the real proportions
    (THUMOS14 is balanced, ~10 videos per class and split) so that a small split still trains and
    tests every class."""
    multi_sets = list(MULTI_CLASS_VIDEOS)
    multi_counts = np.array(list(MULTI_CLASS_VIDEOS.values()), dtype=np.float64)
    single_counts = np.array(list(SINGLE_CLASS_VIDEOS.values()), dtype=np.float64)
    n_multi = int(round(n * multi_counts.sum() / (multi_counts.sum() + single_counts.sum())))
    sets = [multi_sets[i] for i in rng.choice(len(multi_sets), size=n_multi, p=multi_counts / multi_counts.sum())]
    # Largest-remainder apportionment of the single-class videos, ties broken at random.
    quota = (n - n_multi) * single_counts / single_counts.sum()
    count = np.floor(quota).astype(int)
    remainder_order = np.lexsort((rng.random(len(quota)), -(quota - count)))
    count[remainder_order[:n - n_multi - count.sum()]] += 1
    sets += [(c,) for c, k in zip(SINGLE_CLASS_VIDEOS, count) for _ in range(k)]
    return [sets[i] for i in rng.permutation(n)]


def _draw_instances(classes, action_s: float, duration: float, rng) -> tuple[list[float], list[str]]:
    """Instance lengths and labels adding up to about action_s; every class of the video appears once at least.

    A video's instances share a log-length offset. A video of short instances holds more of them,
    which would pull the median over all instances below the class median (the measured one): the
    offsets are centred at +sigma^2, the exact correction for this count weighting of a log-normal.
    """
    video_log_offset = {c: rng.normal(INSTANCE_LOG_SIGMA_BETWEEN_VIDEOS ** 2, INSTANCE_LOG_SIGMA_BETWEEN_VIDEOS)
                        for c in classes}
    class_share = rng.dirichlet(np.ones(len(classes)))
    lengths: list[float] = []
    labels: list[str] = []
    room = 0.95 * duration
    while True:
        required = len(labels) < len(classes)
        label = classes[len(labels)] if required else classes[rng.choice(len(classes), p=class_share)]
        log_len = (np.log(INSTANCE_MEDIAN_S[label]) + video_log_offset[label]
                   + rng.normal(0.0, INSTANCE_LOG_SIGMA_WITHIN_VIDEO))
        length = float(np.clip(np.exp(log_len), INSTANCE_MIN_S, INSTANCE_MAX_S))
        if required:  # one per class must fit, even in a very short video
            length = min(length, room / len(classes))
        elif sum(lengths) + length / 2 > action_s or sum(lengths) + length > room:
            return lengths, labels  # the count whose total lands nearest action_s, or a full video
        lengths.append(length)
        labels.append(label)


def _place(lengths: list[float], duration: float, rng) -> list[list[float]]:
    """Non-overlapping spans in random order with uniformly random gaps, rounded to 0.1 s like the real ones."""
    gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * (duration - sum(lengths))
    last_tenth = np.floor(duration * 10) / 10  # rounding up must not leave the video
    spans, t = [], 0.0
    for length, gap in zip(lengths, gaps):
        t += gap
        start = min(round(t, 1), last_tenth - 0.1)
        spans.append([start, min(max(round(t + length, 1), round(start + 0.1, 1)), last_tenth)])
        t += length
    return spans


def _place_ambiguous(n: int, segments, duration: float, rng) -> list[list[float]]:
    """Spans of partial actions in the gaps between instances (a gap too short holds none)."""
    edges = [0.0] + [x for s in segments for x in s] + [duration]
    gaps = [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
    spans = []
    for _ in range(n):
        length = float(np.exp(np.log(AMBIGUOUS_MEDIAN_S) + rng.normal(0.0, AMBIGUOUS_LOG_SIGMA)))
        fitting = [g for g in gaps if g[1] - g[0] > length + 0.2]
        if not fitting:
            continue
        lo, hi = fitting[rng.integers(len(fitting))]
        start = round(float(rng.uniform(lo + 0.1, hi - length - 0.1)), 1)
        spans.append([start, round(start + length, 1)])
    return sorted(spans)


def draw_layouts(spec: SyntheticSpec, seed: int) -> list[VideoLayout]:
    """Standalone ground truth of spec.dataset: spec.n_train training videos, then spec.n_test test videos."""
    draw = _draw_activitynet_layouts if spec.dataset in ACTIVITYNET_DATASETS else _draw_thumos_layouts
    return draw(spec, stream_rng(seed, LAYOUT_STREAM))


def _draw_thumos_layouts(spec: SyntheticSpec, rng: np.random.Generator) -> list[VideoLayout]:
    layouts = []
    for subset, count in ((TRAIN_SUBSET, spec.n_train), (TEST_SUBSET, spec.n_test)):
        for i, classes in enumerate(_class_sets(count, rng)):
            duration = _class_median(DURATION_MEDIAN_S, classes) * _log_residual(DURATION_LOG_RESIDUAL_QUANTILES, rng)
            duration = round(max(spec.length_scale * duration, MIN_DURATION_S), 3)
            fraction = _class_median(ACTION_FRACTION_MEDIAN, classes)
            fraction = min(fraction * _log_residual(ACTION_FRACTION_LOG_RESIDUAL_QUANTILES, rng), ACTION_FRACTION_MAX)
            lengths, labels = _draw_instances(classes, fraction * duration, duration, rng)
            order = rng.permutation(len(lengths))  # the instances drawn first (one per class) may fall anywhere
            segments = _place([lengths[j] for j in order], duration, rng)
            n_ambiguous = int(rng.binomial(len(segments), AMBIGUOUS_PER_INSTANCE))
            layouts.append(VideoLayout(
                name=f"video_{subset}_{i + 1:07d}", subset=subset, duration=duration, segments=segments,
                labels=[labels[j] for j in order],
                ambiguous=_place_ambiguous(n_ambiguous, segments, duration, rng),
            ))
    return layouts


def _activitynet_class_sets(n: int, class_names: tuple[str, ...], rng: np.random.Generator) -> list[tuple[str, ...]]:
    """The classes of n videos of one split: every class equally often (ActivityNet1.2 has 17 to
    36 validation videos of each), the remainder at random, and the real share of two-class videos."""
    n_classes = len(class_names)
    rounds = [rng.permutation(n_classes) for _ in range(-(-n // n_classes))]
    first = np.concatenate([np.zeros(0, np.int64), *rounds])[:n]
    sets = [(class_names[c],) for c in first.tolist()]
    for v in rng.choice(n, size=int(round(n * ACTIVITYNET_TWO_CLASS_VIDEOS)), replace=False).tolist():
        second = (first[v] + 1 + rng.integers(n_classes - 1)) % n_classes
        sets[v] += (class_names[second],)
    return sets


def _activitynet_layout(name: str, subset: str, classes: tuple[str, ...], spec: SyntheticSpec, rng) -> VideoLayout:
    """A real-length duration, an instance count drawn for that length, the action fraction drawn
    for that count, split among the instances at random and placed with random gaps."""
    real_duration = _from_quantiles(ACTIVITYNET_DURATION_QUANTILES_S, rng)
    counts = np.array(ACTIVITYNET_INSTANCE_COUNTS[int(np.searchsorted(ACTIVITYNET_DURATION_BANDS_S, real_duration))],
                      dtype=np.float64)
    n = max(len(classes), 1 + int(rng.choice(len(counts), p=counts / counts.sum())))
    fraction = _from_quantiles(ACTIVITYNET_ACTION_FRACTION_QUANTILES[min(n, 3) - 1], rng)
    duration = round(max(spec.length_scale * real_duration, MIN_DURATION_S), 3)
    lengths = np.maximum(rng.dirichlet(np.ones(n)) * fraction * duration, INSTANCE_MIN_S)
    lengths *= min(1.0, duration / lengths.sum())  # the floor must not push the instances past the video
    labels = list(classes) + [classes[rng.integers(len(classes))] for _ in range(n - len(classes))]
    order = rng.permutation(n)
    return VideoLayout(name=name, subset=subset, duration=duration,
                       segments=_place([float(lengths[j]) for j in order], duration, rng),
                       labels=[labels[j] for j in order], ambiguous=[])


def _draw_activitynet_layouts(spec: SyntheticSpec, rng: np.random.Generator) -> list[VideoLayout]:
    info, class_names = DATASETS[spec.dataset], activitynet_classes(spec.dataset)
    return [_activitynet_layout(f"video_{subset}_{i + 1:07d}", subset, classes, spec, rng)
            for subset, count in ((info.train_subset, spec.n_train), (info.test_subset, spec.n_test))
            for i, classes in enumerate(_activitynet_class_sets(count, class_names, rng))]


# --- The ground truth of a real annotation folder ----------------------------------------------------


def read_layouts(annotations: Path) -> tuple[list[str], list[VideoLayout]]:
    """The class list and ground truth of a W-TALC annotation folder, in file order."""
    def load(name):
        return load_npy(annotations / f"{name}.npy")

    def text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    ambiguous: dict[str, list[list[float]]] = {}
    if (annotations / AMBIGUOUS_FILE).is_file():
        for line in (annotations / AMBIGUOUS_FILE).read_text().splitlines():
            if line.split():
                name, start, end = line.split()
                ambiguous.setdefault(name, []).append([float(start), float(end)])
    names, subsets, durations = load("videoname"), load("subset"), load("duration").reshape(-1)
    segments, labels = load("segments"), load("labels")
    layouts = [
        VideoLayout(
            name=text(names[v]), subset=text(subsets[v]), duration=float(durations[v]),
            segments=[[float(s), float(e)] for s, e in segments[v]], labels=[text(c) for c in labels[v]],
            ambiguous=ambiguous.get(text(names[v]), []),
        )
        for v in range(len(names))
    ]
    return [text(c) for c in load("classlist")], layouts


