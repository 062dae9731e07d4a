"""A synthetic THUMOS14-like or ActivityNet1.2-like dataset in the W-TALC layout, for running the
pipeline without I3D features.

The I3D features cannot be downloaded here, so this module writes a dataset that the ordinary
loader (``rsnet.data.dataset.WTALCDataset(root, dataset)``) reads unchanged. THUMOS14 (the default,
``SyntheticSpec.dataset``): ``ROOT/Thumos14reduced/``
with ``Thumos14reduced-I3D-JOINTFeatures.npy`` (an object array of float32 (T, 2048) arrays, RGB
1024 then flow 1024, one snippet = 16 frames at 25 fps = 0.64 s, T = int(duration * 25 / 16))
and the annotation files of the real release (``classlist subset videoname duration segments
labels labels_all extracted_fps original_fps .npy``, ``Ambiguous_test.txt``), plus
``synthetic.json``, the manifest that records how the files were made. ActivityNet1.2:
``ROOT/ActivityNet1.2/`` with that release's files (no fps files, no ambiguous spans), subsets
'training' and 'validation', 100 classes (named ``Activity000`` ...). A spec with
``feature_store=True`` (the ActivityNet1.2-sized preset: 10 GB of features) writes the features
video by video into a packed store (``rsnet.data.feature_store``) instead of the W-TALC pickle, which
would have to be built whole in memory. ActivityNet1.3 (200 classes, drawn from ActivityNet1.2's
statistics, which are 1.3's on the same videos) has no W-TALC release: a spec with ``layout="json"``
writes ``ROOT/<dataset>/annotations.json`` in ActivityNet's layout and ``features/``, a packed store
of the named videos, which ``--annotations`` and ``--features`` read (``rsnet.presets.json_layout_files``).

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

The package: ``statistics`` (the measured statistics), ``layout`` (where the actions are),
``features`` (the feature model), ``writer`` (the W-TALC files, the manifest, the cache),
``command`` (the command line); the presets are ``rsnet.presets``.
"""
from ..presets import PRESETS, SyntheticSpec
from .layout import VideoLayout, draw_layouts, read_layouts
from .statistics import DATASET, FEATURES_FILE, MANIFEST_FILE
from .writer import annotated_dataset, describe, ensure_synthetic, generate, write_annotations

__all__ = ["PRESETS", "SyntheticSpec", "VideoLayout", "draw_layouts", "read_layouts", "DATASET", "FEATURES_FILE",
           "MANIFEST_FILE", "annotated_dataset", "describe", "ensure_synthetic", "generate", "write_annotations"]
