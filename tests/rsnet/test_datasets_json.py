"""The JSON layout (issue 27): ActivityNet JSON annotations with per-video features give the same
data, training and numbers as the W-TALC folders; its bad inputs are one error each; the packed
store of a features folder; --skip-missing; the class order and the subset mapping."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rsnet import train
from rsnet.data import DataError, load_annotations
from rsnet.data.activitynet_json import load_activitynet_json, to_activitynet_json, write_activitynet_json
from rsnet.data.command import main as data_main
from rsnet.data.json_dataset import JSONDataset
from rsnet.data.safe_npy import load_npy
from rsnet.evaluate import ACTIVITYNET_IOUS, evaluate

WTALC_FILES = ("classlist", "subset", "videoname", "duration", "segments", "labels", "labels_all",
               "extracted_fps", "original_fps", "url")
DIM = 16
FAST = ["--epochs", "2", "--warmup-epochs", "1", "--eval-every", "1", "--feature-dim", str(DIM), "--embed-dim", "16",
        "--videos-per-step", "4", "--device", "cpu", "--lenient"]


def wtalc_subset(source: Path, root: Path, dataset: str, per_subset: int | None, seed: int = 0) -> list[str]:
    """ROOT/<dataset>/: the first ``per_subset`` videos of each subset of a real W-TALC annotation
    folder (all with None), with random DIM-d features of the real lengths; also ROOT/features/,
    the same features as one VIDEO_ID.npy each. Returns the video names."""
    folder = root / dataset
    folder.mkdir(parents=True)
    subsets = [s.decode() for s in load_npy(source / "subset.npy")]
    keep = np.sort(np.concatenate([np.flatnonzero(np.array(subsets) == s)[:per_subset] for s in dict.fromkeys(subsets)]))
    for name in WTALC_FILES:
        if (source / f"{name}.npy").is_file():
            array = load_npy(source / f"{name}.npy")
            np.save(folder / f"{name}.npy", array if name == "classlist" else array[keep], allow_pickle=True)
    if (source / "Ambiguous_test.txt").is_file():
        shutil.copyfile(source / "Ambiguous_test.txt", folder / "Ambiguous_test.txt")
    ann = load_annotations(folder)
    rng = np.random.default_rng(seed)
    features = np.empty(len(ann), dtype=object)
    features[:] = [rng.random((max(1, int(d * 25 / 16)), DIM), dtype=np.float32) for d in ann.durations]
    np.save(folder / f"{dataset}-I3D-JOINTFeatures.npy", features, allow_pickle=True)
    (root / "features").mkdir()
    for name, feat in zip(ann.video_names, features):
        np.save(root / "features" / f"{name}.npy", feat)
    return ann.video_names


def export(root: Path, dataset: str) -> list[str]:
    """The JSON layout's flags for ROOT/<dataset>/ exported: --annotations, --features and, where the
    videos kept do not use every class, --classes (the class list the export writes beside)."""
    out = root / f"{dataset}.json"
    assert data_main(["export-json", "--data-root", str(root), "--dataset", dataset, "--out", str(out)]) == 0
    classes = out.with_suffix(".classes.txt")
    return ["--annotations", str(out), "--features", str(root / "features"), "--dataset", dataset,
            *(["--classes", str(classes)] if classes.is_file() else [])]


@pytest.fixture(scope="module")
def thumos(tmp_path_factory, request):
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("needs the shared data folder (real THUMOS14 and ActivityNet1.2 annotations)")
    root = tmp_path_factory.mktemp("thumos")
    wtalc_subset(shared / "Thumos14reduced-Annotations", root, "Thumos14reduced", 12)
    return root, export(root, "Thumos14reduced")


@pytest.fixture
def shared(shared_data):
    return shared_data


# --- 5. the same data, training and numbers from both layouts --------------------------------------

@pytest.mark.parametrize("folder", ["Thumos14reduced-Annotations", "ActivityNet1.2-Annotations"])
def test_the_json_export_holds_the_same_ground_truth(shared, tmp_path, folder):
    wtalc = load_annotations(shared / folder)
    path = tmp_path / "gt.json"
    assert write_activitynet_json(wtalc, path) is None  # the sorted labels are the class list: no class file needed
    ours = load_activitynet_json(path)
    assert (ours.class_names, ours.video_names, ours.subsets) == (wtalc.class_names, wtalc.video_names, wtalc.subsets)
    assert np.array_equal(ours.durations, wtalc.durations) and np.array_equal(ours.video_labels, wtalc.video_labels)
    for mine, theirs in zip(ours.segments + ours.segment_labels, wtalc.segments + wtalc.segment_labels):
        assert np.array_equal(mine, theirs)
    # Ambiguous_test.txt also names video_test_0001292, which THUMOS14reduced leaves out: nothing to carry
    assert ours.ambiguous.keys() == {name for name in wtalc.ambiguous if name in wtalc.video_names}
    assert all(np.array_equal(ours.ambiguous[k], wtalc.ambiguous[k].reshape(-1, 2)) for k in ours.ambiguous)
    if folder.startswith("Thumos"):  # video_test_0000270: segments but no video-level label, carried as "labels"
        database = json.loads(path.read_text())["database"]
        assert database["video_test_0000270"]["labels"] == [] and database["video_test_0000270"]["annotations"]
        assert sum("ambiguous" in entry for entry in database.values()) == len(ours.ambiguous) > 0


@pytest.mark.parametrize("folder, subset, protocol", [("Thumos14reduced-Annotations", "test", "rskp"),
                                                      ("ActivityNet1.2-Annotations", "validation", "anet")])
def test_both_layouts_give_the_same_evaluation_numbers(shared, tmp_path, folder, subset, protocol):
    wtalc = load_annotations(shared / folder)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(to_activitynet_json(wtalc)))
    ours = load_activitynet_json(path)
    rng = np.random.default_rng(0)
    indices = wtalc.indices(subset)
    n_classes = len(wtalc.class_names)
    scores = rng.random((len(indices), n_classes + 1), dtype=np.float32) * 0.09  # below the 0.1 that proposes
    scores[np.arange(len(indices)), rng.integers(n_classes, size=len(indices))] = 0.5  # but for one class a video
    cas = [rng.random((max(1, int(wtalc.durations[v] * 25 / 16)), n_classes + 1), dtype=np.float32) ** 8
           for v in indices.tolist()]
    ious = ACTIVITYNET_IOUS if protocol == "anet" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes without proposals: the same under both layouts
        a = evaluate(scores, cas, wtalc, indices, protocol=protocol, lenient=True, iou_thresholds=ious)
        b = evaluate(scores, cas, ours, ours.indices(subset), protocol=protocol, lenient=True, iou_thresholds=ious)
    assert a.to_dict() == b.to_dict() and a.avg > 0


def _run(out: Path, *data) -> tuple[list[dict], dict]:
    assert train.main([*data, "--out", str(out), *FAST]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return records, torch.load(out / "checkpoint.pt", weights_only=False)


def test_both_layouts_train_bit_for_bit_the_same(thumos, tmp_path):
    root, json_layout = thumos
    folder_records, folder_state = _run(tmp_path / "wtalc", "--data-root", str(root))
    json_records, json_state = _run(tmp_path / "json", *json_layout)
    assert "--classes" in json_layout  # 12 videos of each subset use 11 of the 20 classes
    assert json_records == folder_records and folder_records[-1]["avg"] >= 0
    for key, value in folder_state["model"].items():
        assert torch.equal(json_state["model"][key], value), key
    for key, value in folder_state["bank"].items():
        assert torch.equal(json_state["bank"][key], value), key
    assert json_state["class_names"] == folder_state["class_names"]
    assert json_state["config"]["annotations"] == json_layout[1] and json_state["config"]["fps"] == 25.0


@pytest.mark.slow
@pytest.mark.parametrize("folder, dataset, per_subset", [("Thumos14reduced-Annotations", "Thumos14reduced", None),
                                                         ("ActivityNet1.2-Annotations", "ActivityNet1.2", 300)])
def test_both_layouts_train_the_same_on_the_real_ground_truth(shared, tmp_path, folder, dataset, per_subset):
    wtalc_subset(shared / folder, tmp_path, dataset, per_subset)
    json_layout = export(tmp_path, dataset)
    folder_records, folder_state = _run(tmp_path / "wtalc", "--data-root", str(tmp_path), "--dataset", dataset,
                                        "--epochs", "1")
    json_records, json_state = _run(tmp_path / "json", *json_layout, "--epochs", "1")
    assert json_records == folder_records
    assert all(torch.equal(json_state["model"][k], v) for k, v in folder_state["model"].items())


# --- the layout's rules ---------------------------------------------------------------------------

def _json(tmp_path: Path, database: dict, name: str = "a.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"database": database}))
    return path


def _entry(subset: str, duration: float, *segments, labels=None) -> dict:
    entry = {"subset": subset, "duration": duration,
             "annotations": [{"segment": [s, e], "label": c} for s, e, c in segments]}
    if labels is not None:
        entry["labels"] = labels
    return entry


def _features(folder: Path, lengths: dict[str, int], dim: int = DIM) -> Path:
    folder.mkdir(exist_ok=True)
    for name, length in lengths.items():
        np.save(folder / f"{name}.npy", np.random.default_rng(len(name)).random((length, dim), dtype=np.float32))
    return folder


def _toy(tmp_path: Path) -> tuple[Path, Path]:
    """Four videos of two classes: two training (one known by its labels alone), two validation."""
    database = {"b": _entry("training", 16.0, (1.0, 5.0, "run")), "a": _entry("training", 16.0, labels=["jump"]),
                "d": _entry("validation", 16.0, (2.0, 6.0, "jump")), "c": _entry("validation", 16.0, (0.5, 4.0, "run"))}
    return _json(tmp_path, database), _features(tmp_path / "f", {n: 25 for n in database})


def test_classes_are_the_sorted_labels_unless_a_file_orders_them_and_videos_keep_the_file_order(tmp_path):
    annotations, features = _toy(tmp_path)
    dataset = JSONDataset(annotations, features, feature_dim=DIM)
    assert dataset.annotations.class_names == ["jump", "run"] and dataset.annotations.video_names == ["b", "a", "d", "c"]
    assert dataset.train_indices.tolist() == [0, 1] and dataset.test_indices.tolist() == [2, 3]
    assert dataset.annotations.video_labels.tolist() == [[0, 1], [1, 0], [1, 0], [0, 1]]
    (tmp_path / "classes.txt").write_text("run\njump\n")
    ordered = JSONDataset(annotations, features, feature_dim=DIM, classes=tmp_path / "classes.txt")
    assert ordered.annotations.class_names == ["run", "jump"]
    assert ordered.annotations.video_labels.tolist() == [[1, 0], [0, 1], [0, 1], [1, 0]]
    (tmp_path / "short.txt").write_text("run\n")
    with pytest.raises(DataError, match="video a has label 'jump', not in the class file"):
        JSONDataset(annotations, features, feature_dim=DIM, classes=tmp_path / "short.txt")


def test_subsets_map_by_flag_and_activitynet_testing_is_left_out(tmp_path):
    annotations, features = _toy(tmp_path)
    data = json.loads(annotations.read_text())
    data["database"]["t"] = _entry("testing", 16.0)  # ActivityNet's testing videos: no public ground truth
    annotations.write_text(json.dumps(data))
    dataset = JSONDataset(annotations, features, feature_dim=DIM)  # t has no features either: not needed
    assert dataset.annotations.video_names == ["b", "a", "d", "c"] and not dataset.skipped


def test_a_subset_name_that_maps_nowhere_is_named(tmp_path):
    annotations, features = _toy(tmp_path)
    data = json.loads(annotations.read_text())
    data["database"]["x"] = _entry("extra", 16.0, (1.0, 2.0, "run"))
    annotations.write_text(json.dumps(data))
    _features(features, {"x": 25})
    with pytest.raises(DataError, match="subset 'extra' .1 videos. maps nowhere: training is training and testing "
                                        "validation; add it to one of --train-subsets / --test-subsets"):
        JSONDataset(annotations, features, feature_dim=DIM)
    with pytest.raises(DataError, match="has no video of subset 'val' .its subsets: training, validation, extra."):
        JSONDataset(annotations, features, feature_dim=DIM, test_subsets="val")
    with pytest.raises(DataError, match="subset 'extra' is both a training and a test subset"):
        JSONDataset(annotations, features, feature_dim=DIM, train_subsets="training,extra", test_subsets="extra")
    dataset = JSONDataset(annotations, features, feature_dim=DIM, test_subsets="validation,extra")
    assert [dataset.annotations.video_names[v] for v in dataset.test_indices] == ["d", "c", "x"]


def test_a_packed_features_folder_is_read_while_current(tmp_path):
    annotations, features = _toy(tmp_path)
    assert data_main(["convert", "--annotations", str(annotations), "--features", str(features),
                      "--feature-dim", str(DIM)]) == 0
    store = tmp_path / "f.store"
    assert (store / "features.npy").is_file()
    packed = JSONDataset(annotations, features, feature_dim=DIM)
    assert isinstance(packed.features[0], np.memmap) or packed.features[0].base is not None
    plain = [np.load(features / f"{n}.npy") for n in packed.annotations.video_names]
    assert all(np.array_equal(a, b) for a, b in zip(packed.features, plain))
    np.save(features / "b.npy", np.zeros((25, DIM), dtype=np.float32))  # a changed file: the store is stale
    with pytest.warns(UserWarning, match="packed from another version"):
        stale = JSONDataset(annotations, features, feature_dim=DIM)
    assert not stale.features[0].any()


# --- 6. bad input, one error each -----------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "is not ActivityNet-shaped annotations"),
    ('{"version": "1.3", "results": {}}', "is not ActivityNet-shaped annotations .found keys 'version', 'results'"),
    ('{"database": {"v": {"subset": "training", "duration": -3}}}', "video v has duration -3"),
    ('{"database": {"v": {"subset": "training", "duration": 3, "annotations": [{"segment": [2, 1], "label": "x"}]}}}',
     "video v has segment 0 = .2.0, 1.0. s, which ends before it starts"),
    ('{"database": {"v": {"duration": 3}}}', "video v has subset None"),
    ("{not json", "is not JSON"),
])
def test_a_json_that_is_not_activitynet_shaped_is_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_activitynet_json(path)


def test_a_video_without_features_is_named_and_skip_missing_trains_without_it(tmp_path, capsys):
    annotations, features = _toy(tmp_path)
    (features / "a.npy").unlink()
    with pytest.raises(DataError, match=r"video a \(training\) of .* has no features in .* \(no a.npy; 1 of 4 videos "
                                        r"missing\): --skip-missing"):
        JSONDataset(annotations, features, feature_dim=DIM)
    dataset = JSONDataset(annotations, features, feature_dim=DIM, skip_missing=True)
    assert dataset.annotations.video_names == ["b", "d", "c"] and dataset.skipped == ["a"]
    assert dataset.train_indices.tolist() == [0] and dataset.test_indices.tolist() == [1, 2]
    out = tmp_path / "run"
    assert train.main(["--annotations", str(annotations), "--features", str(features), "--skip-missing", "--out",
                       str(out), *FAST, "--epochs", "1", "--videos-per-step", "1"]) == 0
    assert "--skip-missing: 1 videos without features left out (a)" in capsys.readouterr().err


def test_features_whose_dimension_differs_between_videos_are_named(tmp_path):
    annotations, features = _toy(tmp_path)
    np.save(features / "d.npy", np.ones((25, DIM + 1), dtype=np.float32))
    with pytest.raises(DataError, match=r"d.npy has 17-d features but .*b.npy has 16-d: every video's features must "
                                        r"have the same dimension"):
        JSONDataset(annotations, features, feature_dim=DIM)


def test_a_duration_that_disagrees_with_the_feature_length_is_named(tmp_path):
    annotations, features = _toy(tmp_path)
    np.save(features / "c.npy", np.ones((40, DIM), dtype=np.float32))  # 16 s at 25/16 snippets/s is 25 snippets
    with pytest.raises(DataError, match="video c: features of 40 snippets, expected 25 .duration 16.00 s x 1.5625"):
        JSONDataset(annotations, features, feature_dim=DIM)
    # features at another rate: 40 snippets in 16 s is 2.5 snippets/s (--fps 10 --frames-per-snippet 4)
    _features(features, {n: 40 for n in "abcd"})
    assert JSONDataset(annotations, features, feature_dim=DIM, snippets_per_second=10 / 4).lengths([3]).tolist() == [40]
