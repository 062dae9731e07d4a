"""The built-in synthetic datasets and the schedules they train with: each preset defined once.

A preset names a synthetic dataset (its ``SyntheticSpec``: sizes and feature-model knobs, which
``rsnet.synthetic`` generates) and the config keys a run on it changes (``overrides``, which
``rsnet.config`` applies when no ``--data-root`` is given). A leaf: no torch, no numpy.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

GENERATOR_VERSION = 1  # bump when the same spec and seed would give different files
ACTIVITYNET = "ActivityNet1.2"
ACTIVITYNET13 = "ActivityNet1.3"
ACTIVITYNET_DATASETS = (ACTIVITYNET, ACTIVITYNET13)
# where a synthetic dataset in the JSON layout keeps its annotations and features, in ROOT/<dataset>/
JSON_ANNOTATIONS, JSON_FEATURES = "annotations.json", "features"


def json_layout_files(folder):
    """(annotations file, features folder) of a synthetic dataset in the JSON layout in ``folder``."""
    return folder / JSON_ANNOTATIONS, folder / JSON_FEATURES


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and feature-model knobs. Gains are norms in the latent code, where a scene has norm ~1."""

    dataset: str = "Thumos14reduced"  # whose statistics and files: Thumos14reduced | ActivityNet1.2 | ActivityNet1.3
    # wtalc: ROOT/<dataset>/ in the W-TALC layout; json: ROOT/<dataset>/annotations.json (ActivityNet's
    # layout) and ROOT/<dataset>/features/, a packed store of named videos (ActivityNet1.3 has no W-TALC release)
    layout: str = "wtalc"
    # sizes
    n_train: int = 80  # videos of the dataset's training subset ('validation' for THUMOS14)
    n_test: int = 80
    length_scale: float = 0.35  # multiplies video durations: median ~55 s = 85 snippets, ~9-10k per split
    feature_store: bool = False  # features as a packed store written video by video (rsnet.data.feature_store),
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
        """A short hash of every knob and the generator version, for cache keys (a knob at its
        default is left out, so that adding one keeps the keys of the caches already written)."""
        knobs = {k: v for k, v in dataclasses.asdict(self).items() if not (k == "layout" and v == "wtalc")}
        payload = json.dumps({"version": GENERATOR_VERSION, **knobs}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Preset:
    spec: SyntheticSpec  # the data it generates
    overrides: dict[str, Any] = field(default_factory=dict)  # the config keys a run on it changes


PRESETS: dict[str, Preset] = {
    # trains in minutes on a 2-core CPU: lr 2e-4 so that 30 epochs converge; lenient because on 80
    # small test videos the official rule (a class without proposals zeroes the IoU threshold)
    # would report 0 for whole epochs.
    "default": Preset(SyntheticSpec(), {"epochs": 30, "warmup_epochs": 15, "eval_every": 10, "lr": 2e-4,
                                        "lenient": True}),
    # THUMOS14-sized, the official schedule (for a GPU)
    "thumos14-synthetic": Preset(SyntheticSpec(n_train=200, n_test=212, length_scale=1.0)),
    # ActivityNet1.2-sized: 1.25 M snippets, 10 GB of features, written video by video
    "activitynet1.2-synthetic": Preset(SyntheticSpec(dataset=ACTIVITYNET, n_train=4819, n_test=2383, length_scale=1.0,
                                                     feature_store=True), {"dataset": ACTIVITYNET}),
    # 100 classes as ActivityNet1.2, two training videos of each, videos a fifth of the real length;
    # the dataset's defaults, but lr 2e-4 and 20 epochs (400 steps) for a short run on a CPU,
    # max_seqlen scaled with its videos. docs/results.md has its result.
    "activitynet1.2-synthetic-small": Preset(
        SyntheticSpec(dataset=ACTIVITYNET, n_train=200, n_test=100, length_scale=0.2),
        {"dataset": ACTIVITYNET, "epochs": 20, "warmup_epochs": 10, "eval_every": 10, "lr": 2e-4, "max_seqlen": 12}),
    # ActivityNet1.3-sized (10,024 training and 4,926 validation videos of 200 classes, at the real
    # length: ~2.8 M snippets, 23 GB of features), in ActivityNet's JSON layout with a packed store
    "activitynet1.3-synthetic": Preset(SyntheticSpec(dataset=ACTIVITYNET13, n_train=10024, n_test=4926, length_scale=1.0,
                                                     feature_store=True, layout="json"), {"dataset": ACTIVITYNET13}),
    # the pipeline check: 200 classes, two training videos of each, videos a fifth of the real length,
    # the dataset's defaults but lr 2e-4 and 20 epochs for a short run on a CPU, max_seqlen scaled with its videos
    "activitynet1.3-synthetic-small": Preset(
        SyntheticSpec(dataset=ACTIVITYNET13, n_train=400, n_test=200, length_scale=0.2, feature_store=True,
                      layout="json"),
        {"dataset": ACTIVITYNET13, "epochs": 20, "warmup_epochs": 10, "eval_every": 10, "lr": 2e-4, "max_seqlen": 15}),
}
