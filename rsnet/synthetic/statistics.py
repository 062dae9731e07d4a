"""The measured statistics the synthetic layouts are drawn from (THUMOS14 and ActivityNet1.2
annotations, measured once; never read at run time) and the modelling constants of the features.
"""
from __future__ import annotations

from ..datasets import DATASETS, features_file
from ..presets import ACTIVITYNET

DATASET = "Thumos14reduced"  # the default dataset
FEATURES_FILE = features_file(DATASET)
MANIFEST_FILE = "synthetic.json"
GENERATOR = "rsnet.synthetic"  # the manifest's "generator": a folder this module wrote, which it may replace
AMBIGUOUS_FILE = "Ambiguous_test.txt"
FEATURE_HALF = 1024  # RGB, then flow
SNIPPET_S = 16 / 25  # one I3D snippet: 16 frames at 25 fps
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


def activitynet_classes(dataset: str) -> tuple[str, ...]:
    """Placeholder class names of an ActivityNet version (100 for 1.2, 200 for 1.3). ActivityNet1.3
    is drawn from ActivityNet1.2's statistics: 1.2 is a subset of it (the same videos, durations
    and annotations), and its annotation file is not on these machines to measure 1.3 itself."""
    return tuple(f"Activity{k:03d}" for k in range(DATASETS[dataset].n_classes))

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


