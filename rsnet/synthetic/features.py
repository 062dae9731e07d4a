"""The synthetic feature model: latent scenes, contexts, motion and actions mapped to I3D-like
non-negative features (the package docstring describes it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..presets import SyntheticSpec
from .layout import VideoLayout
from .statistics import FEATURE_HALF, HALF_GAINS, SHARED_CONTEXT_GROUPS, SHARED_STAGE_GROUPS, SNIPPET_S

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


