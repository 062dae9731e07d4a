"""The synthetic THUMOS14-like dataset: determinism, THUMOS statistics, I3D-like features, the
real-annotations mode, the cache, and that the W-TALC loader reads what is written."""
from __future__ import annotations

import dataclasses
import json
import tracemalloc
from collections import Counter

import numpy as np
import pytest

from rsnet import synthetic
from rsnet.errors import UserError
from rsnet.folder_lock import LOCK_FILE
from rsnet.presets import Preset
from rsnet.synthetic import DATASET, FEATURES_FILE, PRESETS, SyntheticSpec, draw_layouts, ensure_synthetic, generate
from rsnet.synthetic.command import main as synthetic_main
from rsnet.synthetic.statistics import CLASSES

# A dozen short videos: enough to exercise every file, fast enough to generate many times.
SMALL = SyntheticSpec(n_train=6, n_test=6, length_scale=0.2)
# THUMOS14-sized layouts (no features): the statistics below are those of 412 real videos.
THUMOS_SIZED = PRESETS["thumos14-synthetic"].spec


def files_of(root):
    folder = root / DATASET
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def load(root, name):
    return np.load(root / DATASET / f"{name}.npy", allow_pickle=True)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("small"), SMALL, seed=0)


def test_same_seed_gives_identical_bytes(small_root, tmp_path):
    again = generate(tmp_path, SMALL, seed=0)
    assert files_of(again) == files_of(small_root)


def test_different_seed_gives_different_data(small_root, tmp_path):
    other = generate(tmp_path, SMALL, seed=1)
    assert load(other, "segments").tolist() != load(small_root, "segments").tolist()
    first, second = load(small_root, FEATURES_FILE[:-4])[0], load(other, FEATURES_FILE[:-4])[0]
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_files_have_the_real_release_format(small_root):
    names = load(small_root, "videoname")
    assert load(small_root, "classlist").dtype.kind == "S" and len(load(small_root, "classlist")) == 20
    assert names.dtype.kind == "S" and load(small_root, "subset").dtype.kind == "S"
    assert [s.decode() for s in load(small_root, "subset")] == ["validation"] * 6 + ["test"] * 6
    duration = load(small_root, "duration")
    assert duration.dtype == np.float64 and duration.shape == (12, 1)
    segments, labels, labels_all = load(small_root, "segments"), load(small_root, "labels"), load(small_root, "labels_all")
    assert segments.dtype == object and segments.shape == (12,)
    for v in range(12):
        assert isinstance(segments[v], list) and all(isinstance(s, list) and len(s) == 2 for s in segments[v])
        assert all(0 <= s < e <= duration[v, 0] for s, e in segments[v])
        assert len(labels[v]) == len(segments[v]) and all(isinstance(c, str) for c in labels[v])
        assert labels_all[v] == list(dict.fromkeys(labels[v]))
    assert load(small_root, "extracted_fps").dtype == np.int64 and load(small_root, "original_fps").dtype == np.float64
    for line in (small_root / DATASET / "Ambiguous_test.txt").read_text().splitlines():
        name, times = line.split("  ")
        assert name.startswith("video_test_") and len(times.split(" ")) == 2


def test_features_are_i3d_like(small_root):
    features = load(small_root, FEATURES_FILE[:-4])
    durations = load(small_root, "duration")[:, 0]
    assert features.dtype == object and len(features) == 12
    for x, duration in zip(features, durations):
        assert x.dtype == np.float32 and x.shape == (max(1, int(duration * 25 / 16)), 2048)
        assert np.isfinite(x).all() and (x >= 0).all()
    x = np.concatenate(list(features))
    rgb, flow = x[:, :1024].mean(), x[:, 1024:].mean()
    assert max(rgb, flow) > 1.3 * min(rgb, flow), "the two I3D streams should have different scales"
    longest = max(features, key=len)
    unit = longest / np.linalg.norm(longest, axis=1, keepdims=True)
    adjacent = np.sum(unit[1:] * unit[:-1], axis=1).mean()
    distant = np.sum(unit[len(unit) // 2:] * unit[:len(unit) - len(unit) // 2], axis=1).mean()
    assert adjacent > distant + 0.02, "neighbouring snippets should be more alike than distant ones"


def test_written_annotations_follow_the_layouts(small_root):
    layouts = draw_layouts(SMALL, seed=0)
    assert [x.name.encode() for x in layouts] == load(small_root, "videoname").tolist()
    assert [x.segments for x in layouts] == load(small_root, "segments").tolist()
    assert [x.labels for x in layouts] == load(small_root, "labels").tolist()


def test_standalone_statistics_match_thumos14():
    """Loose bounds around the real figures (quoted in each comment), for one 412-video draw."""
    layouts = draw_layouts(THUMOS_SIZED, seed=0)
    duration = np.array([x.duration for x in layouts])
    instances = np.array([len(x.segments) for x in layouts])
    lengths = np.array([e - s for x in layouts for s, e in x.segments])
    fraction = np.array([sum(e - s for s, e in x.segments) / x.duration for x in layouts])
    n_classes = np.array([len(set(x.labels)) for x in layouts])
    assert 120 < np.median(duration) < 190  # 155 s
    assert 30 < np.percentile(duration, 10) < 60  # 43 s
    assert 320 < np.percentile(duration, 90) < 600  # 430 s
    assert 5 <= np.median(instances) <= 12  # 8
    assert 10 < instances.mean() < 22 and 80 < instances.max() < 600  # mean 15, max 218
    assert 2.2 < np.median(lengths) < 3.8  # 3.0 s
    assert 0.6 <= np.percentile(lengths, 10) <= 1.4  # 1.0 s
    assert 6.5 < np.percentile(lengths, 90) < 11  # 8.5 s
    assert 0.18 < np.median(fraction) < 0.32  # 0.24
    assert 330 <= np.sum(n_classes == 1) <= 385 and 30 <= np.sum(n_classes == 2) <= 75  # 360 and 50 of 412
    test_instances = sum(len(x.segments) for x in layouts if x.subset == "test")
    ambiguous = sum(len(x.ambiguous) for x in layouts if x.subset == "test")
    assert 0.01 < ambiguous / test_instances < 0.06  # 99 / 3358
    assert sum(x.subset == "validation" for x in layouts) == 200 and len(layouts) == 412


def test_default_preset_stays_small_enough_to_train_on_a_cpu():
    snippets = np.array([x.n_snippets for x in draw_layouts(PRESETS["default"].spec, seed=0)])
    assert 60 <= np.median(snippets) <= 120
    assert snippets[:PRESETS["default"].spec.n_train].sum() < 16000


def real_subset(source, folder, keep: list[int]):
    """A W-TALC annotation folder holding only the videos `keep` of `source`, in the real dtypes."""
    folder.mkdir()
    for name in ("subset", "videoname", "duration", "segments", "labels", "labels_all", "extracted_fps", "original_fps"):
        np.save(folder / f"{name}.npy", np.load(source / f"{name}.npy", allow_pickle=True)[keep])
    np.save(folder / "classlist.npy", np.load(source / "classlist.npy"))
    names = {n.decode() for n in np.load(source / "videoname.npy")[keep]}
    lines = [line for line in (source / "Ambiguous_test.txt").read_text().splitlines(keepends=True)
             if line.split()[0] in names]
    (folder / "Ambiguous_test.txt").write_text("".join(lines))
    return folder


def test_read_layouts_reproduces_the_real_ground_truth(shared_data):
    source = shared_data / "Thumos14reduced-Annotations"
    classes, layouts = synthetic.read_layouts(source)
    assert classes == list(CLASSES)
    assert [x.segments for x in layouts] == np.load(source / "segments.npy", allow_pickle=True).tolist()
    assert [x.labels for x in layouts] == np.load(source / "labels.npy", allow_pickle=True).tolist()
    names = {x.name for x in layouts}  # the file also lists 3 spans of a video the reduced set dropped
    listed = [line for line in (source / "Ambiguous_test.txt").read_text().splitlines() if line.split()[0] in names]
    assert sum(len(x.ambiguous) for x in layouts) == len(listed) == 96


def test_annotations_mode_keeps_the_real_files(shared_data, tmp_path, capsys):
    source = shared_data / "Thumos14reduced-Annotations"
    names = [n.decode() for n in np.load(source / "videoname.npy")]
    with_ambiguous = names.index((source / "Ambiguous_test.txt").read_text().split()[0])
    subset = real_subset(source, tmp_path / "annotations", [0, 1, 2, with_ambiguous])
    synthetic_main(["--out", str(tmp_path / "out"), "--annotations", str(subset)])
    assert "4 videos (3 train 'validation', 1 'test')" in capsys.readouterr().out
    written = tmp_path / "out" / DATASET
    for path in subset.iterdir():
        assert (written / path.name).read_bytes() == path.read_bytes(), path.name
    durations = np.load(subset / "duration.npy")[:, 0]
    features = np.load(written / FEATURES_FILE, allow_pickle=True)
    assert [len(x) for x in features] == [max(1, int(d * 25 / 16)) for d in durations]


def test_ensure_synthetic_reuses_the_cache_and_repairs_it(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "small", Preset(SMALL))
    root = ensure_synthetic(tmp_path, preset="small", seed=3)
    features = root / DATASET / FEATURES_FILE
    made = features.stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("a valid cache was regenerated")

    with monkeypatch.context() as patched:
        patched.setattr(synthetic, "generate", must_not_run)
        assert ensure_synthetic(tmp_path, preset="small", seed=3) == root
    assert features.stat().st_mtime_ns == made
    intact = files_of(root)
    features.write_bytes(features.read_bytes()[:1000])  # a crash of some other program mid-copy
    assert files_of(ensure_synthetic(tmp_path, preset="small", seed=3)) == intact
    (root / DATASET / "labels.npy").unlink()
    assert files_of(ensure_synthetic(tmp_path, preset="small", seed=3)) == intact
    assert ensure_synthetic(tmp_path, preset="small", seed=4) != root
    manifest = json.loads((root / DATASET / synthetic.MANIFEST_FILE).read_text())
    assert manifest["seed"] == 3 and manifest["spec"] == json.loads(json.dumps(dataclasses.asdict(SMALL)))


def test_a_failed_generation_leaves_the_previous_dataset(small_root, tmp_path, monkeypatch):
    root = generate(tmp_path, SMALL, seed=0)
    before = files_of(root)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(synthetic.writer, "write_annotations", crash)
    with pytest.raises(OSError, match="disk full"):
        generate(root, SMALL, seed=5)
    assert files_of(root) == before
    assert sorted(p.name for p in root.iterdir()) == [LOCK_FILE, DATASET], "no staging folder may be left behind"


def test_a_folder_not_written_here_is_refused_untouched_unless_overwrite(tmp_path, capsys):
    """A real dataset (or any folder without this module's manifest) at OUT/<dataset>/ is never
    deleted unless --overwrite says so; a synthetic dataset written before is replaced as ever."""
    real = tmp_path / "data" / DATASET
    real.mkdir(parents=True)
    (real / FEATURES_FILE).write_bytes(b"real I3D features")
    (real / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in real.iterdir()}
    for manifest in (None, "{not json", json.dumps({"generator": "someone else"})):
        if manifest is not None:
            (real / synthetic.MANIFEST_FILE).write_text(manifest)
            before[synthetic.MANIFEST_FILE] = manifest.encode()
        assert synthetic_main(["--out", str(tmp_path / "data"), "--seed", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {real} exists and is not a synthetic dataset written by python -m "
                              f"rsnet.synthetic") and "--overwrite" in err and len(err.splitlines()) == 1
        assert {p.name: p.read_bytes() for p in real.iterdir()} == before
        assert [p.name for p in (tmp_path / "data").iterdir()] == [DATASET]
    with pytest.raises(UserError, match="--overwrite"):
        generate(tmp_path / "data", SMALL, seed=1)
    generate(tmp_path / "data", SMALL, seed=1, overwrite=True)
    assert files_of(tmp_path / "data") == files_of(generate(tmp_path / "again", SMALL, seed=1))
    generate(tmp_path / "data", SMALL, seed=2)  # now a synthetic dataset: replaced without --overwrite
    assert files_of(tmp_path / "data") == files_of(generate(tmp_path / "again", SMALL, seed=2))


def test_ensure_synthetic_repairs_a_cache_without_its_manifest(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "small", Preset(SMALL))
    root = ensure_synthetic(tmp_path, preset="small", seed=3)
    intact = files_of(root)
    (root / DATASET / synthetic.MANIFEST_FILE).unlink()
    assert files_of(ensure_synthetic(tmp_path, preset="small", seed=3)) == intact


def test_the_loader_reads_the_generated_dataset(small_root):
    from rsnet.data.dataset import WTALCDataset

    data = WTALCDataset(small_root, dataset=DATASET)
    assert len(data.train_indices) == SMALL.n_train and len(data.test_indices) == SMALL.n_test
    durations = load(small_root, "duration")[:, 0]
    assert [f.shape for f in data.features] == [(max(1, int(d * 25 / 16)), 2048) for d in durations]
    assert data.annotations.video_labels.sum(axis=1).min() >= 1


def test_a_short_training_lifts_classification_map_well_above_chance(tmp_path):
    """The data carries learnable class evidence: a few epochs of the baseline head beat chance by far.
    Chance cmAP is the mean over classes of the positive rate among the test videos."""
    from rsnet import train
    from rsnet.config import Config
    from rsnet.data.dataset import WTALCDataset

    root = generate(tmp_path / "data", SyntheticSpec(n_train=40, n_test=40, length_scale=0.12), seed=3)
    cfg = Config(data_root=str(root), out=str(tmp_path / "run"), epochs=6, warmup_epochs=100, eval_every=6,
                 embed_dim=64, lr=1e-3, lenient=True, device="cpu", intra=False, pseudo_label=False, memory_bank=False)
    summary = train.run(cfg)
    ds = WTALCDataset(root)
    test_labels = ds.annotations.video_labels[ds.test_indices]
    chance = 100 * test_labels[:, test_labels.sum(0) > 0].mean(0).mean()
    assert summary["last"]["cmap"] > 4 * chance, (summary["last"]["cmap"], chance)


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    assert synthetic_main(["--out", str(tmp_path / "out"), "--annotations", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"error: annotation folder not found: {tmp_path / 'none'}\n"
    assert synthetic_main(["--out", str(tmp_path / "out"), "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "error: --seed must be >= 0, got -1\n"
    assert not (tmp_path / "out").exists()


# --- ActivityNet1.2 ------------------------------------------------------------------------------------

ANET_SIZED = PRESETS["activitynet1.2-synthetic"].spec
TINY_ANET = SyntheticSpec(dataset="ActivityNet1.2", n_train=10, n_test=6, length_scale=0.1)


def test_standalone_statistics_match_activitynet12():
    """Loose bounds around the real figures (quoted in each comment), for one 7,202-video draw."""
    layouts = draw_layouts(ANET_SIZED, seed=0)
    duration = np.array([x.duration for x in layouts])
    instances = np.array([len(x.segments) for x in layouts])
    fraction = np.array([sum(e - s for s, e in x.segments) / x.duration for x in layouts])
    lengths = np.array([e - s for x in layouts for s, e in x.segments])
    assert [x.subset for x in layouts].count("training") == 4819 and len(layouts) == 7202
    assert 2.2 <= duration.min() and duration.max() <= 239.1 and 100 < np.median(duration) < 120  # 2.3-239 s, 111
    assert 1.4 < instances.mean() < 1.6 and 0.72 < np.mean(instances == 1) < 0.8  # 1.49, 76 %
    assert 0.6 < fraction.mean() < 0.68  # 0.64
    assert 20 < np.median(lengths) < 36  # 28 s
    per_class = Counter(c for x in layouts if x.subset == "validation" for c in set(x.labels))
    assert len(per_class) == 100 and min(per_class.values()) >= 23  # balanced (the real: 17-36)
    assert 0 < sum(len(set(x.labels)) == 2 for x in layouts) < 30  # 10 two-class videos


def test_activitynet_files_are_the_release_s_and_the_loader_reads_them(tmp_path):
    root = generate(tmp_path, TINY_ANET, seed=0)
    folder = root / "ActivityNet1.2"
    names = {p.name for p in folder.iterdir()}
    assert "ActivityNet1.2-I3D-JOINTFeatures.npy" in names
    assert not names & {"Ambiguous_test.txt", "extracted_fps.npy", "original_fps.npy", "Thumos14reduced"}
    from rsnet.data.dataset import WTALCDataset

    ds = WTALCDataset(root, dataset="ActivityNet1.2")
    assert ds.n_classes == 100 and len(ds.train_indices) == 10 and len(ds.test_indices) == 6
    assert [s.decode() for s in np.load(folder / "subset.npy")] == ["training"] * 10 + ["validation"] * 6


def _peak_memory(generate_it) -> int:
    tracemalloc.start()
    try:
        generate_it()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_store_written_video_by_video_holds_the_pickled_features(tmp_path):
    """feature_store=True writes the same features into a packed store, one video in memory at a
    time: four times the videos take about the same peak memory."""
    from rsnet.data.dataset import WTALCDataset

    pickled = generate(tmp_path / "pickled", TINY_ANET, seed=0)
    stored = generate(tmp_path / "stored", dataclasses.replace(TINY_ANET, feature_store=True), seed=0)
    want = WTALCDataset(pickled, dataset="ActivityNet1.2").features
    got = WTALCDataset(stored, dataset="ActivityNet1.2").features
    assert not (stored / "ActivityNet1.2" / "ActivityNet1.2-I3D-JOINTFeatures.npy").exists()
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))

    few = dataclasses.replace(TINY_ANET, n_train=8, n_test=0, feature_store=True)
    many = dataclasses.replace(few, n_train=64)
    extra_bytes = 4 * 2048 * sum(x.n_snippets for x in draw_layouts(many, 0)[8:])
    grown = _peak_memory(lambda: generate(tmp_path / "many", many)) - _peak_memory(lambda: generate(tmp_path / "few", few))
    assert grown < extra_bytes / 4, (grown, extra_bytes)


def test_ensure_synthetic_keeps_a_stored_dataset(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny-anet", Preset(dataclasses.replace(TINY_ANET, feature_store=True)))
    root = ensure_synthetic(tmp_path, "tiny-anet", seed=0)
    packed = root / "ActivityNet1.2" / "ActivityNet1.2-I3D-JOINTFeatures.store" / "features.npy"
    stamp = packed.stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, "tiny-anet", seed=0) == root and packed.stat().st_mtime_ns == stamp
    with open(packed, "r+b") as f:  # damaged: regenerated
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    ensure_synthetic(tmp_path, "tiny-anet", seed=0)
    assert packed.stat().st_mtime_ns != stamp


def test_annotations_mode_recognizes_activitynet12(shared_data, tmp_path, capsys):
    source = shared_data / "ActivityNet1.2-Annotations"
    subsets = [s.decode() for s in np.load(source / "subset.npy")]
    keep = sorted([i for i, s in enumerate(subsets) if s == "training"][:3]
                  + [i for i, s in enumerate(subsets) if s == "validation"][:2])
    folder = tmp_path / "annotations"
    folder.mkdir()
    for name in ("subset", "videoname", "duration", "segments", "labels", "labels_all", "url"):
        np.save(folder / f"{name}.npy", np.load(source / f"{name}.npy", allow_pickle=True)[keep])
    np.save(folder / "classlist.npy", np.load(source / "classlist.npy"))
    synthetic_main(["--out", str(tmp_path / "out"), "--annotations", str(folder)])
    assert "5 videos (3 train 'training', 2 'validation')" in capsys.readouterr().out
    written = tmp_path / "out" / "ActivityNet1.2"
    for path in folder.iterdir():
        assert (written / path.name).read_bytes() == path.read_bytes(), path.name
    durations = np.load(folder / "duration.npy").reshape(-1)
    features = np.load(written / "ActivityNet1.2-I3D-JOINTFeatures.npy", allow_pickle=True)
    assert [len(x) for x in features] == [max(1, int(d * 25 / 16)) for d in durations]


def test_annotations_mode_under_the_full_activitynet_preset_writes_a_packed_store(shared_data, tmp_path):
    """The real ActivityNet1.2 ground truth is 10 GB of features: under its preset they go video by
    video into the packed store, and the loader reads the same lengths from it."""
    source = shared_data / "ActivityNet1.2-Annotations"
    subsets = [s.decode() for s in np.load(source / "subset.npy")]
    keep = [subsets.index("training"), subsets.index("validation")]
    folder = tmp_path / "annotations"
    folder.mkdir()
    for name in ("subset", "videoname", "duration", "segments", "labels", "labels_all", "url"):
        np.save(folder / f"{name}.npy", np.load(source / f"{name}.npy", allow_pickle=True)[keep])
    np.save(folder / "classlist.npy", np.load(source / "classlist.npy"))
    assert synthetic_main(["--out", str(tmp_path / "out"), "--preset", "activitynet1.2-synthetic",
                           "--annotations", str(folder)]) == 0
    written = tmp_path / "out" / "ActivityNet1.2"
    assert not (written / "ActivityNet1.2-I3D-JOINTFeatures.npy").exists()
    from rsnet.data.dataset import WTALCDataset

    ds = WTALCDataset(tmp_path / "out", dataset="ActivityNet1.2")
    durations = np.load(folder / "duration.npy").reshape(-1)
    assert [len(x) for x in ds.features] == [max(1, int(d * 25 / 16)) for d in durations]


def test_annotations_of_an_unknown_dataset_are_refused(shared_data, tmp_path, capsys):
    """ActivityNet1.2's ground truth cut to 50 classes is neither dataset: one line names what it holds."""
    source = shared_data / "ActivityNet1.2-Annotations"
    classes = np.load(source / "classlist.npy")[:50]
    kept = {c.decode() for c in classes}
    keep = [v for v, labels in enumerate(np.load(source / "labels_all.npy", allow_pickle=True)) if set(labels) <= kept]
    folder = tmp_path / "annotations"
    folder.mkdir()
    for name in ("subset", "videoname", "duration", "segments", "labels", "labels_all"):
        np.save(folder / f"{name}.npy", np.load(source / f"{name}.npy", allow_pickle=True)[keep])
    np.save(folder / "classlist.npy", classes)
    assert synthetic_main(["--out", str(tmp_path / "out"), "--annotations", str(folder)]) == 2
    assert "holds 50 classes and subsets training, validation: none of Thumos14reduced, ActivityNet1.2" in capsys.readouterr().err
