"""A synthetic THUMOS14-like or ActivityNet1.2-like dataset in the W-TALC layout, for running the
pipeline without I3D features.

The I3D features cannot be downloaded here, so this module writes a dataset that the ordinary
loader (``rsnet.data.WTALCDataset(root, dataset)``) reads unchanged. THUMOS14 (the default,
``SyntheticSpec.dataset``): ``ROOT/Thumos14reduced/``
with ``Thumos14reduced-I3D-JOINTFeatures.npy`` (an object array of float32 (T, 2048) arrays, RGB
1024 then flow 1024, one snippet = 16 frames at 25 fps = 0.64 s, T = int(duration * 25 / 16))
and the annotation files of the real release (``classlist subset videoname duration segments
labels labels_all extracted_fps original_fps .npy``, ``Ambiguous_test.txt``), plus
``synthetic.json``, the manifest that records how the files were made. ActivityNet1.2:
``ROOT/ActivityNet1.2/`` with that release's files (no fps files, no ambiguous spans), subsets
'training' and 'validation', 100 classes (named ``Activity000`` ...). A spec with
``feature_store=True`` (the ActivityNet1.2-sized preset: 10 GB of features) writes the features
video by video into a packed store (``rsnet.feature_store``) instead of the W-TALC pickle, which
would have to be built whole in memory.

Two ways to lay out the videos:

- *standalone*: video durations, classes per video, action fraction and instance lengths are drawn
  from distributions measured once on the real annotations (constants below; the package never
  reads them at run time). ActivityNet1.2's videos are short (2-239 s) and mostly one long
  instance (1.49 per video, 64 % of the time inside actions): a duration, an instance count for
  that duration and an action fraction for that count are drawn, the fraction split at random
  among the instances; the THUMOS14 model follows. The number of instances follows from the action
  fraction and the instance lengths, as in the real data where it grows with the video length.
  ``length_scale`` shortens the videos (not the instances, whose snippet-level shape matters), so
  a small preset keeps THUMOS-like instances, with fewer of them per video. Instances never
  overlap here (9 % of the real neighbouring pairs do).
- *annotations* (``annotations=DIR``): the real ground truth of DIR (names, subsets, durations,
  segments, labels, ambiguous spans), THUMOS14's or ActivityNet1.2's (told apart by their classes
  and subsets); its files are copied byte for byte and only the features are synthetic, so the
  evaluation runs on the real test structure.

The feature model. Each snippet has a latent code, an appearance half and a motion half of
``latent_dim`` each, summed from:

- a *scene*: broadcasts cut between a few camera set-ups (a per-video palette of perturbed
  prototypes shared across videos), shots of ~``scene_mean_s`` seconds, with a slow drift;
- a *class context*: the venue of the video's classes (a pool, a cricket ground), related classes
  sharing part of it, present in venue shots inside and outside the actions — the cue that makes
  weakly supervised localizers fire on background;
- *generic motion* (mostly in the flow half) during actions, and in bursts in the background
  (camera pans, people walking), so motion alone does not localize actions;
- *actions* made of three sub-stages: an approach (long, weakly class-specific, and for some
  related classes partly shared, e.g. the run-up of jumps and javelin), a key moment (one to
  two and a half snippets, strongly class-specific) and a follow-through (long, weakly
  class-specific). Every snippet of an instance also carries an *instance component* (this
  attempt's actor, pose and viewpoint) and a per-video *actor component*, so cosine similarity
  ties the weak stages to the key moment of the same instance and video, while the weak stages'
  own class evidence is too small to classify a snippet alone;
- a few *ambiguous* partial actions (a false start: approach only) between instances, listed in
  ``Ambiguous_test.txt`` for the test videos at the real rate;
- temporally correlated nuisance (pose, camera) that averaging neighbours does not remove.

The latent code is smoothed over ~one snippet (I3D's 16-frame windows overlap), mapped to 1024
dims per half by fixed random matrices, offset by a per-dimension bias, perturbed by per-value
noise and passed through a softplus: non-negative features, as I3D's pooled ReLU activations,
with RGB and flow halves of different scales.

Deterministic: ``numpy.random.Generator(PCG64)`` streams spawned from the seed; the same seed,
spec and numpy version give identical bytes on a machine (another CPU may round a few float32
values differently).

CLI: ``python -m rsnet.synthetic --out DIR [--preset default|thumos14-synthetic|
activitynet1.2-synthetic|activitynet1.2-synthetic-small] [--seed 0] [--annotations DIR]
[--overwrite]``. It replaces ``DIR/<dataset>/`` when that is a synthetic dataset it wrote before
(its ``synthetic.json`` says so); any other folder there (real features, the user's files) is
refused unless ``--overwrite`` says to delete it.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cli
from .datasets import DATASETS, features_file
from .errors import UserError
from .feature_store import sha256_of, store_of, write_store
from .safe_npy import load_npy

DATASET = "Thumos14reduced"  # the default dataset
FEATURES_FILE = features_file(DATASET)
ACTIVITYNET = "ActivityNet1.2"
MANIFEST_FILE = "synthetic.json"
GENERATOR = "rsnet.synthetic"  # the manifest's "generator": a folder this module wrote, which it may replace
AMBIGUOUS_FILE = "Ambiguous_test.txt"
FEATURE_HALF = 1024  # RGB, then flow
SNIPPET_S = 16 / 25  # one I3D snippet: 16 frames at 25 fps
GENERATOR_VERSION = 1  # bump when the same spec and seed would give different files
TRAIN_SUBSET, TEST_SUBSET = DATASETS[DATASET].train_subset, DATASETS[DATASET].test_subset
# Every file of the W-TALC releases (THUMOS14's fps files and ambiguous spans, ActivityNet1.2's
# YouTube addresses); in annotations mode those present are copied as they are.
ANNOTATION_FILES = (
    "classlist.npy", "subset.npy", "videoname.npy", "duration.npy", "segments.npy", "labels.npy",
    "labels_all.npy", "extracted_fps.npy", "original_fps.npy", AMBIGUOUS_FILE, "url.npy", "LICENSE.wtalc",
)

# --- THUMOS14 statistics -----------------------------------------------------------------------
# Measured once on W-TALC's Thumos14reduced annotations (412 videos: 200 'validation', 212 'test';
# the project's shared data/Thumos14reduced-Annotations/). Quantile tables are at 0, 5, ..., 100 %.
CLASSES = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
    "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
    "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
)
# Durations and action fractions depend on the class (athletics videos are long, a baseball pitch
# is short): per-class medians, over the videos whose most frequent label is the class, times a
# pooled residual exp(r), with r drawn from its quantile table. Overall: duration median 155 s,
# p10 43, p90 430, max 1673; action fraction (union of the instances over the duration) median
# 0.244; the two residuals are nearly uncorrelated (r = -0.12).
DURATION_MEDIAN_S = {
    "BaseballPitch": 86.0, "BasketballDunk": 238.0, "Billiards": 168.0, "CleanAndJerk": 166.0, "CliffDiving": 170.0,
    "CricketBowling": 120.0, "CricketShot": 110.0, "Diving": 184.0, "FrisbeeCatch": 52.0, "GolfSwing": 130.0,
    "HammerThrow": 288.0, "HighJump": 258.0, "JavelinThrow": 370.0, "LongJump": 291.0, "PoleVault": 295.0,
    "Shotput": 121.0, "SoccerPenalty": 76.0, "TennisSwing": 110.0, "ThrowDiscus": 116.0, "VolleyballSpiking": 103.0,
}
DURATION_LOG_RESIDUAL_QUANTILES = (
    -2.963, -1.365, -0.961, -0.788, -0.587, -0.418, -0.294, -0.203, -0.143, -0.054, 0.0, 0.036, 0.127, 0.23,
    0.308, 0.405, 0.521, 0.636, 0.787, 1.067, 2.002,
)
ACTION_FRACTION_MEDIAN = {
    "BaseballPitch": 0.084, "BasketballDunk": 0.24, "Billiards": 0.135, "CleanAndJerk": 0.489, "CliffDiving": 0.289,
    "CricketBowling": 0.184, "CricketShot": 0.181, "Diving": 0.315, "FrisbeeCatch": 0.349, "GolfSwing": 0.238,
    "HammerThrow": 0.308, "HighJump": 0.325, "JavelinThrow": 0.214, "LongJump": 0.324, "PoleVault": 0.373,
    "Shotput": 0.25, "SoccerPenalty": 0.17, "TennisSwing": 0.171, "ThrowDiscus": 0.344, "VolleyballSpiking": 0.287,
}
ACTION_FRACTION_LOG_RESIDUAL_QUANTILES = (
    -3.807, -1.532, -1.055, -0.793, -0.642, -0.483, -0.369, -0.247, -0.158, -0.077, 0.0, 0.044, 0.139, 0.242,
    0.313, 0.392, 0.475, 0.643, 0.769, 0.931, 1.562,
)
MIN_DURATION_S = 1.0  # a floor for tiny length scales (the real minimum is 8.9 s)
ACTION_FRACTION_MAX = 0.95  # a few real annotations run past the video end (fraction up to 1.14)
# Median instance length per class in seconds (all instances: median 3.0, p10 1.0, p90 8.5). Log
# lengths spread 0.61 around the class median: 0.46 between videos, 0.5 within a video (RMS).
INSTANCE_MEDIAN_S = {
    "BaseballPitch": 3.0, "BasketballDunk": 1.5, "Billiards": 2.2, "CleanAndJerk": 8.75, "CliffDiving": 2.7,
    "CricketBowling": 1.2, "CricketShot": 1.1, "Diving": 2.5, "FrisbeeCatch": 2.3, "GolfSwing": 4.2,
    "HammerThrow": 7.1, "HighJump": 4.5, "JavelinThrow": 6.3, "LongJump": 7.1, "PoleVault": 6.4,
    "Shotput": 4.65, "SoccerPenalty": 2.9, "TennisSwing": 1.5, "ThrowDiscus": 4.25, "VolleyballSpiking": 1.7,
}
INSTANCE_LOG_SIGMA_BETWEEN_VIDEOS = 0.46
INSTANCE_LOG_SIGMA_WITHIN_VIDEO = 0.5
INSTANCE_MIN_S, INSTANCE_MAX_S = 0.2, 118.0  # the real extremes
# Classes per video: 360 videos have one class (counts below), 50 two, 1 three (1 lists none).
# CliffDiving never comes alone: its instances are also annotated as Diving.
SINGLE_CLASS_VIDEOS = {
    "BaseballPitch": 21, "BasketballDunk": 19, "Billiards": 20, "CleanAndJerk": 20, "CliffDiving": 0,
    "CricketBowling": 14, "CricketShot": 10, "Diving": 20, "FrisbeeCatch": 17, "GolfSwing": 17,
    "HammerThrow": 18, "HighJump": 20, "JavelinThrow": 20, "LongJump": 20, "PoleVault": 20, "Shotput": 23,
    "SoccerPenalty": 21, "TennisSwing": 19, "ThrowDiscus": 18, "VolleyballSpiking": 23,
}
MULTI_CLASS_VIDEOS = {
    ("CliffDiving", "Diving"): 26, ("CricketBowling", "CricketShot"): 15, ("Shotput", "ThrowDiscus"): 2,
    ("BaseballPitch", "FrisbeeCatch"): 1, ("HammerThrow", "ThrowDiscus"): 1, ("JavelinThrow", "Shotput"): 1,
    ("CleanAndJerk", "Diving"): 1, ("FrisbeeCatch", "GolfSwing"): 1, ("FrisbeeCatch", "ThrowDiscus"): 1,
    ("BaseballPitch", "BasketballDunk"): 1, ("CliffDiving", "CricketShot", "Diving"): 1,
}
# Ambiguous_test.txt: 99 spans for 3358 test instances; span length median 2.9 s, p10 1.2, p90 15.8.
AMBIGUOUS_PER_INSTANCE = 99 / 3358
AMBIGUOUS_MEDIAN_S, AMBIGUOUS_LOG_SIGMA = 2.9, 0.9
EXTRACTED_FPS, ORIGINAL_FPS = 10, 30.0  # the values of nearly every real video

# --- ActivityNet1.2 statistics ----------------------------------------------------------------------
# Measured once on W-TALC's ActivityNet1.2 annotations (7,202 videos: 4,819 'training', 2,383
# 'validation'; 100 classes; the project's shared data/ActivityNet1.2-Annotations/). Quantile
# tables are at 0, 5, ..., 100 %. Durations run from 2.3 to 239 s, nearly uniformly (median 111 s).
ACTIVITYNET_DURATION_QUANTILES_S = (
    2.3, 16.2, 28.6, 39.2, 50.6, 60.2, 69.1, 78.6, 89.0, 98.9, 110.7, 122.2, 132.8, 145.0, 158.9, 171.1, 184.2,
    197.1, 210.6, 224.4, 239.0,
)
# Instances per video (mean 1.49; 76 % of the videos hold one, the most 23), counted in four bands
# of duration (0-60, 60-120, 120-180, 180-240 s): longer videos hold more (mean 1.17, 1.47, 1.63, 1.73).
ACTIVITYNET_DURATION_BANDS_S = (60.0, 120.0, 180.0)
ACTIVITYNET_INSTANCE_COUNTS = (  # per band: videos with 1, 2, 3, ... instances
    (1552, 188, 22, 9, 7, 0, 0, 1, 1),
    (1540, 341, 115, 49, 26, 10, 7, 5, 3, 0, 1),
    (1222, 304, 92, 47, 29, 12, 18, 8, 4, 4, 5, 1),
    (1130, 229, 81, 53, 22, 23, 12, 5, 7, 5, 1, 1, 1, 0, 1, 1, 2, 2, 1, 1, 0, 0, 1),
)
# The union of a video's instances over its duration (mean 0.64; time-weighted 0.63), by instance
# count (one, two, three or more): a single instance covers more of its video.
ACTIVITYNET_ACTION_FRACTION_QUANTILES = (
    (0.0, 0.13, 0.247, 0.342, 0.441, 0.521, 0.582, 0.635, 0.683, 0.725, 0.765, 0.802, 0.834, 0.863, 0.886, 0.91,
     0.933, 0.956, 0.983, 1.0, 1.0),
    (0.025, 0.106, 0.172, 0.223, 0.278, 0.332, 0.386, 0.437, 0.48, 0.532, 0.58, 0.624, 0.665, 0.694, 0.724, 0.754,
     0.786, 0.821, 0.863, 0.902, 1.0),
    (0.042, 0.113, 0.151, 0.194, 0.223, 0.263, 0.296, 0.328, 0.356, 0.383, 0.414, 0.448, 0.495, 0.525, 0.56, 0.598,
     0.641, 0.689, 0.738, 0.824, 0.999),
)
ACTIVITYNET_TWO_CLASS_VIDEOS = 10 / 7202  # the other videos have one class
ACTIVITYNET_CLASSES = tuple(f"Activity{k:03d}" for k in range(DATASETS[ACTIVITYNET].n_classes))  # placeholders

# --- Related classes: a plausible grouping by motion and venue, a modelling choice (not measured).
SHARED_STAGE_GROUPS = (  # the approach stage is partly common to the group
    ("CliffDiving", "Diving"),
    ("CricketBowling", "CricketShot"),
    ("HammerThrow", "Shotput", "ThrowDiscus"),
    ("HighJump", "JavelinThrow", "LongJump", "PoleVault"),
    ("BasketballDunk", "VolleyballSpiking"),
)
SHARED_CONTEXT_GROUPS = (  # the venue is partly common to the group
    ("CliffDiving", "Diving"),
    ("CricketBowling", "CricketShot"),
    ("HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "ThrowDiscus"),
)
# How much of each component reaches the (appearance, motion) halves of the latent code.
HALF_GAINS = {
    "scene": (1.0, 0.35),  # scenery is appearance; the camera moves a little
    "context": (1.0, 0.25),
    "motion": (0.3, 1.0),
    "instance": (1.0, 0.7),
    "actor": (1.0, 0.3),
    "stage": (0.8, 1.0),
}


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and feature-model knobs. Gains are norms in the latent code, where a scene has norm ~1."""

    dataset: str = DATASET  # whose statistics and files: Thumos14reduced | ActivityNet1.2
    # sizes
    n_train: int = 80  # videos of the dataset's training subset ('validation' for THUMOS14)
    n_test: int = 80
    length_scale: float = 0.35  # multiplies video durations: median ~55 s = 85 snippets, ~9-10k per split
    feature_store: bool = False  # features as a packed store written video by video (rsnet.feature_store),
    # not the W-TALC pickle, which must be built whole in memory: for sizes that do not fit there
    # latent code
    latent_dim: int = 128  # per half (appearance, motion)
    n_scene_prototypes: int = 48  # camera set-ups shared across videos
    scene_spread: float = 0.6  # how far a video's version of a prototype departs from it
    scene_palette_mean: float = 2.5  # camera set-ups per video (1 + Poisson)
    scene_mean_s: float = 20.0  # mean shot length
    drift_gain: float = 0.3  # slow within-shot change, knots every drift_period_s
    drift_period_s: float = 8.0
    context_gain: float = 0.7  # venue strength in venue shots
    context_shared: float = 0.5  # share of a class's venue common to its related classes
    venue_shot_prob: float = 0.6  # shots that show the venue (actions always do)
    motion_gain: float = 0.6  # generic motion during actions
    background_motion_per_min: float = 3.0  # bursts of motion outside actions
    background_motion_gain: float = 0.4
    instance_gain: float = 0.8  # shared by all snippets of one instance
    actor_gain: float = 0.4  # shared by the instances of a class in a video
    key_gain: float = 0.8  # key moment, strongly class-specific
    key_snippets: tuple[float, float] = (1.0, 2.5)  # key-moment length range
    weak_gain: float = 0.08  # approach and follow-through, weakly class-specific
    shared_stage_gain: float = 0.3  # part of the approach common to related classes
    nuisance_std: float = 0.04  # per latent dimension, temporally correlated
    nuisance_smooth_s: float = 1.0
    receptive_smooth_snippets: float = 0.6  # Gaussian sigma of the I3D window overlap
    # output features
    bias_mean: float = -1.0  # per-dimension offset before the softplus: sparse-ish activations
    bias_std: float = 0.5
    value_noise: float = 0.3  # per-value noise before the softplus
    rgb_scale: float = 0.5
    flow_scale: float = 1.0

    def key(self) -> str:
        """A short hash of every knob and the generator version, for cache keys."""
        payload = json.dumps({"version": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


PRESETS = {
    "default": SyntheticSpec(),  # trains in minutes on a 2-core CPU
    "thumos14-synthetic": SyntheticSpec(n_train=200, n_test=212, length_scale=1.0),  # THUMOS14-sized
    # ActivityNet1.2-sized: 1.25 M snippets, 10 GB of features, written video by video
    "activitynet1.2-synthetic": SyntheticSpec(dataset=ACTIVITYNET, n_train=4819, n_test=2383, length_scale=1.0,
                                              feature_store=True),
    # 100 classes as ActivityNet1.2, two training videos of each, videos a fifth of the real length
    "activitynet1.2-synthetic-small": SyntheticSpec(dataset=ACTIVITYNET, n_train=200, n_test=100, length_scale=0.2),
}


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


def _rng(seed: int, *stream: int) -> np.random.Generator:
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
    draw = _draw_activitynet_layouts if spec.dataset == ACTIVITYNET else _draw_thumos_layouts
    return draw(spec, _rng(seed, LAYOUT_STREAM))


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


def _activitynet_class_sets(n: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """The classes of n videos of one split: every class equally often (ActivityNet1.2 has 17 to
    36 validation videos of each), the remainder at random, and the real share of two-class videos."""
    n_classes = len(ACTIVITYNET_CLASSES)
    rounds = [rng.permutation(n_classes) for _ in range(-(-n // n_classes))]
    first = np.concatenate([np.zeros(0, np.int64), *rounds])[:n]
    sets = [(ACTIVITYNET_CLASSES[c],) for c in first.tolist()]
    for v in rng.choice(n, size=int(round(n * ACTIVITYNET_TWO_CLASS_VIDEOS)), replace=False).tolist():
        second = (first[v] + 1 + rng.integers(n_classes - 1)) % n_classes
        sets[v] += (ACTIVITYNET_CLASSES[second],)
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
    info = DATASETS[ACTIVITYNET]
    return [_activitynet_layout(f"video_{subset}_{i + 1:07d}", subset, classes, spec, rng)
            for subset, count in ((info.train_subset, spec.n_train), (info.test_subset, spec.n_test))
            for i, classes in enumerate(_activitynet_class_sets(count, rng))]


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


# --- Feature model ---------------------------------------------------------------------------------


def _unit(rng, *shape) -> np.ndarray:
    v = rng.standard_normal(shape)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _component(rng, kind: str, latent_dim: int, count: int = 1) -> np.ndarray:
    """count random directions (count, 2, latent_dim), weighted per half by HALF_GAINS[kind]."""
    return _unit(rng, count, 2, latent_dim) * np.array(HALF_GAINS[kind])[None, :, None]


def _membership(classes: list[str], groups) -> np.ndarray:
    """(C, G) 1 where class c belongs to group g."""
    return np.array([[float(c in group) for group in groups] for c in classes]).reshape(len(classes), len(groups))


@dataclass
class FeatureWorld:
    """The fixed directions, projections and biases shared by every video of a dataset."""

    classes: list[str]
    scenes: np.ndarray  # (P, 2, r)
    context: np.ndarray  # (C, 2, r)
    motion: np.ndarray  # (2, r)
    key: np.ndarray  # (C, 2, r)
    approach: np.ndarray  # (C, 2, r): weak class part plus, for grouped classes, the shared part
    follow: np.ndarray  # (C, 2, r)
    projection: np.ndarray  # (2, r, FEATURE_HALF)
    bias: np.ndarray  # (2, FEATURE_HALF)


def draw_world(spec: SyntheticSpec, classes: list[str], rng: np.random.Generator) -> FeatureWorld:
    r, n = spec.latent_dim, len(classes)
    # A grouped class's venue is sqrt(1 - shared) its own plus sqrt(shared) its group's.
    venue_groups = _membership(classes, SHARED_CONTEXT_GROUPS)
    own_venue = _component(rng, "context", r, n)
    group_venue = np.einsum("cg,ghr->chr", venue_groups, _component(rng, "context", r, len(SHARED_CONTEXT_GROUPS)))
    grouped = venue_groups.any(axis=1)[:, None, None]
    mixed_venue = np.sqrt(1 - spec.context_shared) * own_venue + np.sqrt(spec.context_shared) * group_venue
    context = np.where(grouped, mixed_venue, own_venue)
    # A grouped class's approach adds its group's shared stage to its own weak one.
    stage_groups = _membership(classes, SHARED_STAGE_GROUPS)
    shared_stage = spec.shared_stage_gain * _component(rng, "stage", r, len(SHARED_STAGE_GROUPS))
    return FeatureWorld(
        classes=classes,
        scenes=_component(rng, "scene", r, spec.n_scene_prototypes),
        context=context,
        motion=_component(rng, "motion", r)[0],
        key=spec.key_gain * _component(rng, "stage", r, n),
        approach=spec.weak_gain * _component(rng, "stage", r, n) + np.einsum("cg,ghr->chr", stage_groups, shared_stage),
        follow=spec.weak_gain * _component(rng, "stage", r, n),
        projection=rng.standard_normal((2, r, FEATURE_HALF)).astype(np.float32),
        bias=rng.normal(spec.bias_mean, spec.bias_std, (2, FEATURE_HALF)).astype(np.float32),
    )


def _coverage(start: float, end: float, snippets: np.ndarray) -> np.ndarray:
    """Fraction of each snippet's 0.64 s window inside [start, end]."""
    t0 = snippets * SNIPPET_S
    return np.clip(np.minimum(end, t0 + SNIPPET_S) - np.maximum(start, t0), 0.0, SNIPPET_S) / SNIPPET_S


def _span(start: float, end: float, n: int) -> slice:
    """The snippets of a video of n snippets that [start, end] touches."""
    return slice(min(n, max(0, int(start // SNIPPET_S))), min(n, max(0, int(np.ceil(end / SNIPPET_S)))))


def _gaussian_taps(sigma: float) -> np.ndarray:
    """The normalized taps of a Gaussian of sigma snippets, cut at 3 sigma (one tap at sigma = 0)."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2) if radius else np.ones(1)
    return taps / taps.sum()


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth along axis 0 with a Gaussian of sigma snippets, edges reflected."""
    taps = _gaussian_taps(sigma)
    radius = len(taps) // 2
    if radius == 0:
        return x
    padded = np.pad(x, [(radius, radius)] + [(0, 0)] * (x.ndim - 1), mode="reflect" if len(x) > radius else "edge")
    return sum(w * padded[k:k + len(x)] for k, w in enumerate(taps))


def _scene_track(spec: SyntheticSpec, world: FeatureWorld, layout: VideoLayout, classes, rng) -> np.ndarray:
    """(T, 2, r) shots cut between the video's camera set-ups, with venue context and slow drift."""
    n, r = layout.n_snippets, spec.latent_dim
    palette_ids = rng.choice(len(world.scenes), size=1 + rng.poisson(spec.scene_palette_mean - 1))
    palette = world.scenes[palette_ids] + spec.scene_spread * _component(rng, "scene", r, len(palette_ids))
    palette /= np.linalg.norm(palette.reshape(len(palette), -1), axis=1)[:, None, None]
    is_venue = rng.random(len(palette)) < spec.venue_shot_prob
    is_venue[0] = True  # actions are filmed at the venue: set-up 0
    n_cuts = rng.poisson(layout.duration / spec.scene_mean_s)
    cuts = np.sort(rng.uniform(0, layout.duration, n_cuts))
    shot_setup = rng.integers(len(palette), size=n_cuts + 1)
    for start, end in layout.segments + layout.ambiguous:  # the shot around an action shows the venue
        shot_setup[np.searchsorted(cuts, (start + end) / 2)] = 0
    shot_of_snippet = np.searchsorted(cuts, (np.arange(n) + 0.5) * SNIPPET_S)
    setup = shot_setup[shot_of_snippet]
    venue = world.context[[world.classes.index(c) for c in classes]].mean(axis=0)
    venue_strength = spec.context_gain * rng.uniform(0.6, 1.0, len(palette)) * is_venue
    z = palette[setup] + venue_strength[setup][:, None, None] * venue
    n_knots = int(layout.duration / spec.drift_period_s) + 2
    knots = rng.standard_normal((n_knots, 2, r)) * spec.drift_gain / np.sqrt(2 * r)
    pos = np.arange(n) * SNIPPET_S / spec.drift_period_s
    frac = (pos - np.floor(pos))[:, None, None]
    return z + (1 - frac) * knots[pos.astype(int)] + frac * knots[pos.astype(int) + 1]


def _background_motion(spec: SyntheticSpec, world: FeatureWorld, layout: VideoLayout, rng) -> np.ndarray:
    """(T, 2, r) bursts of generic motion anywhere in the video."""
    snippets = np.arange(layout.n_snippets)
    strength = np.zeros(len(snippets))
    for _ in range(rng.poisson(spec.background_motion_per_min * layout.duration / 60)):
        start = rng.uniform(0, layout.duration)
        end = start + rng.uniform(1, 6)
        strength += spec.background_motion_gain * rng.uniform(0.5, 1.0) * _coverage(start, end, snippets)
    return strength[:, None, None] * world.motion


def _add_action(z: np.ndarray, spec: SyntheticSpec, world: FeatureWorld, start: float, end: float, c: int,
                actor: np.ndarray, rng, partial: bool = False) -> None:
    """Add one instance to z (T, 2, r): approach, key moment, follow-through, plus its instance and actor parts.

    A partial action (an ambiguous span) is an approach that never reaches its key moment.
    """
    length = end - start
    key_len = min(length, rng.uniform(*spec.key_snippets) * SNIPPET_S)
    key_start = start + (length - key_len) * rng.uniform(0.3, 0.8)
    shared = (spec.instance_gain * _component(rng, "instance", spec.latent_dim)[0] + actor
              + spec.motion_gain * rng.uniform(0.7, 1.3) * world.motion)
    span = _span(start, end, len(z))
    snippets = np.arange(span.start, span.stop)

    def cover(a, b):
        return _coverage(a, b, snippets)[:, None, None]

    if partial:
        z[span] += cover(start, end) * (shared + world.approach[c])
        return
    z[span] += (cover(start, end) * shared + cover(start, key_start) * world.approach[c]
                + cover(key_start, key_start + key_len) * world.key[c] + cover(key_start + key_len, end) * world.follow[c])


def video_features(spec: SyntheticSpec, world: FeatureWorld, layout: VideoLayout, rng) -> np.ndarray:
    """float32 (T, 2048) features of one video: RGB half, then flow half."""
    n, r = layout.n_snippets, spec.latent_dim
    classes = list(dict.fromkeys(layout.labels)) or [world.classes[rng.integers(len(world.classes))]]
    z = _scene_track(spec, world, layout, classes, rng) + _background_motion(spec, world, layout, rng)
    actors = {c: spec.actor_gain * _component(rng, "actor", r)[0] for c in classes}
    for (start, end), label in zip(layout.segments, layout.labels):
        _add_action(z, spec, world, start, end, world.classes.index(label), actors[label], rng)
    for start, end in layout.ambiguous:
        label = classes[rng.integers(len(classes))]
        _add_action(z, spec, world, start, end, world.classes.index(label), actors[label], rng, partial=True)
    nuisance_sigma = spec.nuisance_smooth_s / SNIPPET_S
    nuisance = _gaussian_smooth(rng.standard_normal((n, 2, r)), nuisance_sigma)
    z += nuisance * spec.nuisance_std / np.sqrt(_smoothing_variance(nuisance_sigma))
    z = _gaussian_smooth(z, spec.receptive_smooth_snippets)
    pre = np.matmul(z.transpose(1, 0, 2).astype(np.float32), world.projection)  # (2, T, 1024)
    pre += world.bias[:, None, :]
    pre += np.float32(spec.value_noise) * rng.standard_normal(pre.shape, dtype=np.float32)
    x = _softplus_(pre) * np.array([spec.rgb_scale, spec.flow_scale], dtype=np.float32)[:, None, None]
    return np.ascontiguousarray(x.transpose(1, 0, 2).reshape(n, 2 * FEATURE_HALF))


def _softplus_(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x) computed in place as max(x, 0) + log1p(e^-|x|): stable, and 8x faster than np.logaddexp."""
    positive = np.maximum(x, 0)
    np.abs(x, out=x)
    np.negative(x, out=x)
    np.exp(x, out=x)
    np.log1p(x, out=x)
    x += positive
    return x


def _smoothing_variance(sigma: float) -> float:
    """Variance left in unit white noise after _gaussian_smooth (sum of squared taps)."""
    return float(np.sum(_gaussian_taps(sigma) ** 2))


# --- Writing ---------------------------------------------------------------------------------------


def _object_array(items) -> np.ndarray:
    """A 1-D object array of the items (np.array would make lists of equal length a 2-D array)."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def write_annotations(folder: Path, classes: list[str], layouts: list[VideoLayout], dataset: str) -> None:
    """The W-TALC annotation files of the dataset's release, with the real files' dtypes (strings as
    bytes); ActivityNet1.2's has no fps files and no ambiguous spans (its url.npy is not written)."""
    v = len(layouts)
    arrays = {
        "classlist": np.array([c.encode() for c in classes]),
        "subset": np.array([x.subset.encode() for x in layouts]),
        "videoname": np.array([x.name.encode() for x in layouts]),
        "duration": np.array([x.duration for x in layouts], dtype=np.float64).reshape(v, 1),
        "segments": _object_array([[list(s) for s in x.segments] for x in layouts]),
        "labels": _object_array([list(x.labels) for x in layouts]),
        "labels_all": _object_array([list(dict.fromkeys(x.labels)) for x in layouts]),
    }
    if dataset != DATASET:
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", array)
        return
    arrays["extracted_fps"] = np.full(v, EXTRACTED_FPS, dtype=np.int64)
    arrays["original_fps"] = np.full(v, ORIGINAL_FPS, dtype=np.float64)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    lines = [f"{x.name}  {s} {e}\n" for x in layouts if x.subset == TEST_SUBSET for s, e in x.ambiguous]
    (folder / AMBIGUOUS_FILE).write_text("".join(lines))


def _file_digests(folder: Path) -> dict[str, dict[str, int | str]]:
    """Size and SHA-256 of every file under the folder (a feature store's too), by relative path."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    return {path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
            for path in files}


def _install(staging: Path, target: Path) -> None:
    """Swap the finished staging folder in: a reader sees the old dataset, none, or the new one, never half."""
    if target.exists():
        retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, retired / target.name)
        os.replace(staging, target)
        shutil.rmtree(retired)
    else:
        os.replace(staging, target)


def _is_ours(target: Path) -> bool:
    """Whether ``target`` is absent, an empty folder, or a dataset this module wrote (its manifest names it)."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return True
    try:
        return json.loads((target / MANIFEST_FILE).read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):  # no manifest, not JSON, not a mapping
        return False


def _resolve(spec_or_preset: SyntheticSpec | str) -> tuple[SyntheticSpec, str | None]:
    if isinstance(spec_or_preset, SyntheticSpec):
        if spec_or_preset.dataset not in DATASETS:
            raise UserError(f"unknown synthetic dataset {spec_or_preset.dataset!r}; expected one of {sorted(DATASETS)}")
        return spec_or_preset, None
    if spec_or_preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {spec_or_preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[spec_or_preset], spec_or_preset


def generate(root: str | Path, spec_or_preset: SyntheticSpec | str = "default", seed: int = 0,
             annotations: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write ROOT/<spec.dataset>/ and return ROOT, the loader's root. A synthetic dataset written
    there before is replaced; any other folder there only with ``overwrite`` (it is deleted): else
    a UserError, before anything is written.

    With ``annotations`` the ground truth and its files come from that W-TALC annotation folder,
    the dataset is the one whose classes and subsets it holds, and the spec's sizes are unused.
    Everything is written into a hidden staging folder beside the target and renamed into place
    at the end, so a crash never leaves a half dataset.
    """
    spec, preset = _resolve(spec_or_preset)
    if annotations is None:
        classes = list(ACTIVITYNET_CLASSES if spec.dataset == ACTIVITYNET else CLASSES)
        layouts = draw_layouts(spec, seed)
    else:
        from .data import load_annotations  # imports torch: only here

        annotations = Path(annotations)
        load_annotations(annotations)  # the loader's checks first: a bad folder is a DataError naming it
        classes, layouts = read_layouts(annotations)
        spec = dataclasses.replace(spec, dataset=annotated_dataset(annotations))
    root = Path(root)
    if not (overwrite or _is_ours(root / spec.dataset)):
        raise UserError(f"{root / spec.dataset} exists and is not a synthetic dataset written by python -m "
                        f"rsnet.synthetic (no {MANIFEST_FILE} of its own): refused, since writing there would "
                        f"delete it; choose another --out, or add --overwrite to replace it")
    world = draw_world(spec, classes, _rng(seed, WORLD_STREAM))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.dataset}.partial-"))
    staging.chmod(0o755)  # mkdtemp's 0700 would make a shared cache unreadable to others
    try:
        videos = (video_features(spec, world, layout, _rng(seed, VIDEO_STREAM, v)) for v, layout in enumerate(layouts))
        if spec.feature_store:  # one video in memory at a time
            write_store(store_of(staging / features_file(spec.dataset)), [x.n_snippets for x in layouts],
                        2 * FEATURE_HALF, videos, source=None)
        else:
            np.save(staging / features_file(spec.dataset), _object_array(list(videos)), allow_pickle=True)
        if annotations is None:
            write_annotations(staging, classes, layouts, spec.dataset)
        else:
            for name in ANNOTATION_FILES:
                if (annotations / name).is_file():
                    shutil.copyfile(annotations / name, staging / name)
        manifest = {
            "generator": GENERATOR, "version": GENERATOR_VERSION, "preset": preset, "seed": seed,
            "spec": dataclasses.asdict(spec), "annotations": None if annotations is None else str(annotations),
            "files": _file_digests(staging),
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        _install(staging, root / spec.dataset)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def annotated_dataset(annotations: str | Path) -> str:
    """The dataset whose class count and training and test subsets a W-TALC annotation folder has."""
    annotations = Path(annotations)
    classes = load_npy(annotations / "classlist.npy")
    subsets = {s.decode() if isinstance(s, bytes) else str(s) for s in load_npy(annotations / "subset.npy")}
    for name, info in DATASETS.items():
        if info.n_classes == len(classes) and {info.train_subset, info.test_subset} <= subsets:
            return name
    raise UserError(f"{annotations} holds {len(classes)} classes and subsets {', '.join(sorted(subsets))}: "
                    f"none of {', '.join(DATASETS)} (" + "; ".join(
                        f"{n}: {i.n_classes} classes, {i.train_subset} and {i.test_subset}" for n, i in DATASETS.items())
                    + ")")


def _is_intact(dataset_dir: Path, spec: SyntheticSpec, seed: int) -> bool:
    """The manifest matches this spec and seed, and every file it lists has its recorded size and hash."""
    try:
        manifest = json.loads((dataset_dir / MANIFEST_FILE).read_text())
        files = manifest["files"]
        return (manifest["version"] == GENERATOR_VERSION and manifest["seed"] == seed
                and manifest["spec"] == json.loads(json.dumps(dataclasses.asdict(spec)))
                and manifest["annotations"] is None
                and _file_digests(dataset_dir) == files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_synthetic(cache_dir: str | Path, preset: str = "default", seed: int = 0) -> Path:
    """The loader root of the cached dataset of (preset, seed, spec hash); generated if absent or damaged."""
    spec, _ = _resolve(preset)
    root = Path(cache_dir) / f"synthetic-{preset}-seed{seed}-{spec.key()}"
    if _is_intact(root / spec.dataset, spec, seed):
        return root
    return generate(root, preset, seed, overwrite=True)  # the cache's own folder: whatever is there is a broken copy


def describe(root: str | Path, dataset: str = DATASET) -> str:
    """A one-paragraph summary of ROOT/<dataset>/, from its annotation files."""
    folder = Path(root) / dataset
    train_subset, test_subset = DATASETS[dataset].train_subset, DATASETS[dataset].test_subset

    def load(name):
        return load_npy(folder / f"{name}.npy")

    subsets = [s.decode() for s in load("subset")]
    durations = load("duration").reshape(-1)
    snippets = np.maximum(1, (durations * 25 / 16).astype(int))
    segments = load("segments")
    instances = np.array([len(s) for s in segments])
    lengths = np.array([e - s for video in segments for s, e in video])
    classes_per_video = np.array([len(c) for c in load("labels_all")])
    ambiguous = folder / AMBIGUOUS_FILE
    n_ambiguous = sum(1 for line in ambiguous.read_text().splitlines() if line.strip()) if ambiguous.is_file() else 0
    return (
        f"{folder}: {len(subsets)} videos ({subsets.count(train_subset)} train '{train_subset}', "
        f"{subsets.count(test_subset)} '{test_subset}'), {len(load('classlist'))} classes, "
        f"{snippets.sum():,} snippets of 0.64 s (median {np.median(snippets):.0f} per video = "
        f"{np.median(durations):.0f} s, p10 {np.percentile(snippets, 10):.0f}, p90 {np.percentile(snippets, 90):.0f}), "
        f"{instances.sum():,} action instances (per video median {np.median(instances):.0f}, mean "
        f"{instances.mean():.1f}, max {instances.max()}; length median {np.median(lengths):.1f} s), "
        f"{np.mean(classes_per_video > 1):.0%} of videos with several classes, {n_ambiguous} ambiguous test spans; "
        f"features float32 (T, {2 * FEATURE_HALF}) in {features_file(dataset)}."
    )


@cli.command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsnet.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="root folder; the dataset goes to OUT/<dataset>/")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--annotations",
                        help="a W-TALC annotation folder whose ground truth to use (the preset's sizes are unused)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT/<dataset>/ even if it is not a synthetic dataset written by this command "
                             "(it is deleted: real features, any file there)")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder")
    started = time.perf_counter()
    root = generate(args.out, args.preset, args.seed, annotations=args.annotations, overwrite=args.overwrite)
    dataset = annotated_dataset(args.annotations) if args.annotations else PRESETS[args.preset].dataset
    source = f"ground truth of {args.annotations}" if args.annotations else "standalone layout"
    print(f"{describe(root, dataset)} Preset {args.preset!r}, seed {args.seed}, {source}; "
          f"generated in {time.perf_counter() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
