"""Writing a synthetic dataset in the W-TALC layout: the annotation files, the features, the
manifest that records how they were made, installed whole or not at all; the cached datasets.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..data.activitynet_json import VERSION as JSON_VERSION
from ..data.activitynet_json import load_activitynet_json
from ..data.annotations import load_annotations
from ..data.feature_folder import write_packed
from ..data.feature_store import sha256_of, store_of, write_store
from ..data.safe_npy import load_npy
from ..datasets import DATASETS, features_file
from ..errors import UserError
from ..folder_lock import owned
from ..presets import ACTIVITYNET_DATASETS, GENERATOR_VERSION, PRESETS, SyntheticSpec, json_layout_files
from .features import draw_world, video_features
from .layout import VIDEO_STREAM, WORLD_STREAM, VideoLayout, draw_layouts, read_layouts, stream_rng
from .statistics import (
    AMBIGUOUS_FILE,
    ANNOTATION_FILES,
    CLASSES,
    DATASET,
    EXTRACTED_FPS,
    FEATURE_HALF,
    GENERATOR,
    MANIFEST_FILE,
    ORIGINAL_FPS,
    TEST_SUBSET,
    activitynet_classes,
)

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


def write_json_layout(folder: Path, layouts: list[VideoLayout], videos) -> None:
    """``annotations.json`` in ActivityNet's layout and ``features/``, a packed store of the named
    videos written one video at a time (``rsnet.presets.json_layout_files``)."""
    annotations, features = json_layout_files(folder)
    database = {x.name: {"subset": x.subset, "duration": x.duration,
                         "annotations": [{"segment": list(s), "label": c} for s, c in zip(x.segments, x.labels)]}
                for x in layouts}
    annotations.write_text(json.dumps({"version": JSON_VERSION, "taxonomy": [], "database": database}) + "\n")
    write_packed(features, [x.name for x in layouts], [x.n_snippets for x in layouts], 2 * FEATURE_HALF, videos)


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


def _files_written_here(target: Path) -> set[str] | None:
    """The files this module wrote in ``target``, as its manifest lists them (the manifest too), or
    None when ``target`` holds no manifest of this module's."""
    try:
        manifest = json.loads((target / MANIFEST_FILE).read_text())
        if manifest.get("generator") != GENERATOR:
            return None
        return {*manifest["files"], MANIFEST_FILE}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):  # no manifest, not JSON, not a mapping
        return None


def _check_replaceable(target: Path) -> None:
    """A UserError unless ``target`` is absent, empty, or holds only files this module wrote there:
    replacing it must delete nothing else (a user's file, real features)."""
    present = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} if target.is_dir() else set()
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    ours = _files_written_here(target)
    if ours is None:
        raise UserError(f"{target} exists and is not a synthetic dataset written by python -m rsnet.synthetic (no "
                        f"{MANIFEST_FILE} of its own): refused, since writing there would delete it; choose another "
                        f"--out, or add --overwrite to replace it")
    foreign = sorted(present - ours)
    if foreign:
        named = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(f"{target} holds files python -m rsnet.synthetic did not write there ({named}): refused, "
                        f"since replacing the dataset would delete them; move them, choose another --out, or add "
                        f"--overwrite to delete them")


def _resolve(spec_or_preset: SyntheticSpec | str) -> tuple[SyntheticSpec, str | None]:
    if isinstance(spec_or_preset, SyntheticSpec):
        if spec_or_preset.dataset not in DATASETS:
            raise UserError(f"unknown synthetic dataset {spec_or_preset.dataset!r}; expected one of {sorted(DATASETS)}")
        return spec_or_preset, None
    if spec_or_preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {spec_or_preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[spec_or_preset].spec, spec_or_preset


def _standalone(spec: SyntheticSpec, seed: int) -> tuple[list[str], list[VideoLayout]]:
    """The classes and the drawn layouts of a dataset without real ground truth."""
    classes = activitynet_classes(spec.dataset) if spec.dataset in ACTIVITYNET_DATASETS else CLASSES
    return list(classes), draw_layouts(spec, seed)


def generate(root: str | Path, spec_or_preset: SyntheticSpec | str = "default", seed: int = 0,
             annotations: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write ROOT/<spec.dataset>/ and return ROOT, the loader's root. A synthetic dataset written
    there before is replaced where it holds only the files this module wrote (its manifest lists
    them); any other folder, or one holding other files too, only with ``overwrite`` (it is
    deleted): else a UserError, before anything is written. The process owns ROOT meanwhile
    (``rsnet.folder_lock``).

    With ``annotations`` the ground truth and its files come from that W-TALC annotation folder,
    the dataset is the one whose classes and subsets it holds, and the spec's sizes are unused.
    Everything is written into a hidden staging folder beside the target and renamed into place
    at the end, so a crash never leaves a half dataset.
    """
    spec, preset = _resolve(spec_or_preset)
    if annotations is None:
        classes, layouts = _standalone(spec, seed)
    else:
        annotations = Path(annotations)
        load_annotations(annotations)  # the loader's checks first: a bad folder is a DataError naming it
        classes, layouts = read_layouts(annotations)
        spec = dataclasses.replace(spec, dataset=annotated_dataset(annotations))
    root = Path(root)
    if not overwrite:  # before the folder is taken: a refusal leaves nothing behind
        _check_replaceable(root / spec.dataset)
    with owned(root, "writing a synthetic dataset"):
        _write(root, spec, preset, seed, classes, layouts, annotations)
    return root


def _write(root: Path, spec: SyntheticSpec, preset: str | None, seed: int, classes: list[str],
           layouts: list[VideoLayout], annotations: Path | None) -> None:
    """The dataset's files, staged beside the target and swapped in whole."""
    world = draw_world(spec, classes, stream_rng(seed, WORLD_STREAM))
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.dataset}.partial-"))
    staging.chmod(0o755)  # mkdtemp's 0700 would make a shared cache unreadable to others
    try:
        videos = (video_features(spec, world, layout, stream_rng(seed, VIDEO_STREAM, v)) for v, layout in enumerate(layouts))
        if spec.layout == "json":
            write_json_layout(staging, layouts, videos)
        elif spec.feature_store:  # one video in memory at a time
            write_store(store_of(staging / features_file(spec.dataset)), [x.n_snippets for x in layouts],
                        2 * FEATURE_HALF, videos, source=None)
        else:
            np.save(staging / features_file(spec.dataset), _object_array(list(videos)), allow_pickle=True)
        if annotations is None:
            if spec.layout != "json":  # the JSON layout's annotations.json went with its features
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
                # a manifest written before the spec had a layout is of a W-TALC folder
                and {"layout": "wtalc", **manifest["spec"]} == json.loads(json.dumps(dataclasses.asdict(spec)))
                and manifest["annotations"] is None
                and _file_digests(dataset_dir) == files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_synthetic(cache_dir: str | Path, preset: str = "default", seed: int = 0) -> Path:
    """The loader root of the cached dataset of (preset, seed, spec hash); generated if absent or damaged."""
    spec, _ = _resolve(preset)
    root = Path(cache_dir) / f"synthetic-{preset}-seed{seed}-{spec.key()}"
    # several runs of a sweep may ask at once: the first generates, the others wait and find it intact
    with owned(root, "generating the cached synthetic dataset", wait=True):
        if not _is_intact(root / spec.dataset, spec, seed):  # the cache's own folder: a broken copy is replaced
            _write(root, spec, preset, seed, *_standalone(spec, seed), None)
    return root


def describe(root: str | Path, dataset: str = DATASET) -> str:
    """A one-paragraph summary of ROOT/<dataset>/, from its annotations (W-TALC files or annotations.json)."""
    folder = Path(root) / dataset
    train_subset, test_subset = DATASETS[dataset].train_subset, DATASETS[dataset].test_subset
    json_annotations, json_features = json_layout_files(folder)
    if json_annotations.is_file():
        ann, where = load_activitynet_json(json_annotations), f"a packed store in {json_features}"
    else:
        ann, where = load_annotations(folder), features_file(dataset)
    snippets = np.maximum(1, (ann.durations * 25 / 16).astype(int))
    instances = np.array([len(s) for s in ann.segments])
    lengths = np.concatenate([s[:, 1] - s[:, 0] for s in ann.segments])
    classes_per_video = ann.video_labels.sum(axis=1)
    n_ambiguous = sum(len(spans) for spans in ann.ambiguous.values())
    return (
        f"{folder}: {len(ann)} videos ({ann.subsets.count(train_subset)} train '{train_subset}', "
        f"{ann.subsets.count(test_subset)} '{test_subset}'), {len(ann.class_names)} classes, "
        f"{snippets.sum():,} snippets of 0.64 s (median {np.median(snippets):.0f} per video = "
        f"{np.median(ann.durations):.0f} s, p10 {np.percentile(snippets, 10):.0f}, p90 {np.percentile(snippets, 90):.0f}), "
        f"{instances.sum():,} action instances (per video median {np.median(instances):.0f}, mean "
        f"{instances.mean():.1f}, max {instances.max()}; length median {np.median(lengths):.1f} s), "
        f"{np.mean(classes_per_video > 1):.0%} of videos with several classes, {n_ambiguous} ambiguous test spans; "
        f"features float32 (T, {2 * FEATURE_HALF}) in {where}."
    )
