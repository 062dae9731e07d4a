"""``python -m rsnet.data build``: a dataset from a CSV of one's own labels over a features folder,
which ``rsnet.train --annotations --features`` trains on; every bad row is one error naming it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsnet import infer, train
from rsnet.checkpoint import load_trained
from rsnet.checkpoint.command import main as checkpoint_main
from rsnet.data import DataError
from rsnet.data.command import main as data_main
from rsnet.data.json_dataset import JSONDataset
from rsnet.data.own_labels import build

DIM = 8
LENGTH = 32  # snippets: 20.48 s at 25/16 snippets a second


@pytest.fixture
def features(tmp_path) -> Path:
    folder = tmp_path / "features"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("dunk1", "dunk2", "dunk3", "dunk4", "swim1", "swim2", "swim3", "swim4"):
        np.save(folder / f"{name}.npy", rng.random((LENGTH, DIM), dtype=np.float32))
    return folder


ROWS = ["dunk1,dunk", "dunk2,dunk", "swim1,swim", "swim2,swim",
        "dunk3,dunk,2.0,6.5", "dunk3,dunk,10,12", "dunk4,dunk,1,3", "swim3,swim,0,20", "swim4,swim,4,9.5"]


def _csv(tmp_path: Path, rows: list[str], header: str | None = None) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("".join(f"{row}\n" for row in ([header] if header else []) + rows))
    return path


def test_a_csv_of_video_level_labels_builds_a_dataset_that_trains(tmp_path, features, capsys):
    out = tmp_path / "dataset.json"
    assert data_main(["build", "--features", str(features), "--labels", str(_csv(tmp_path, ROWS)),
                      "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 training and 4 test videos, 2 classes" in printed
    assert f"python -m rsnet.train --annotations {out} --features {features}" in printed
    database = json.loads(out.read_text())["database"]
    assert database["dunk1"] == {"subset": "training", "duration": LENGTH * 16 / 25, "annotations": [],
                                 "labels": ["dunk"]}
    assert database["dunk3"]["subset"] == "validation" and len(database["dunk3"]["annotations"]) == 2
    dataset = JSONDataset(out, features, feature_dim=DIM)
    assert dataset.annotations.class_names == ["dunk", "swim"] and len(dataset.test_indices) == 4
    run = tmp_path / "run"
    assert train.main(["--annotations", str(out), "--features", str(features), "--out", str(run), "--epochs", "2",
                       "--warmup-epochs", "1", "--feature-dim", str(DIM), "--embed-dim", "8", "--videos-per-step", "2",
                       "--device", "cpu", "--lenient"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "custom" and config["lr"] == 5e-5  # a dataset of one's own: the official settings
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    # its shared weights record no local path: scoring the dataset again needs it named
    weights = tmp_path / "w.safetensors"
    assert checkpoint_main(["export", str(run), "--out", str(weights)]) == 0
    assert "annotations" not in load_trained(weights, data_root=str(out)).config
    assert infer.main(["--checkpoint", str(weights), "--out", str(tmp_path / "p.npz"), "--device", "cpu"]) == 2
    assert "trained on ActivityNet JSON annotations, which shared weights do not record" in capsys.readouterr().err
    assert infer.main(["--checkpoint", str(weights), "--annotations", str(out), "--features", str(features),
                       "--out", str(tmp_path / "p.npz"), "--device", "cpu"]) == 0


def test_a_subset_column_or_a_test_fraction_splits_the_videos(tmp_path, features):
    rows = [f"{row},{'training' if row.count(',') == 1 else 'test'}" for row in ROWS]
    rows[4] = rows[4].replace(",test", ",train")  # dunk3 trains, its segments unused as weak labels
    rows[5] = rows[5].replace(",test", ",train")
    out = tmp_path / "a.json"
    assert build(features, _csv(tmp_path, rows), out) == {"training": 5, "validation": 3, "classes": 2}
    counts = build(features, _csv(tmp_path, ROWS), tmp_path / "b.json", test_fraction=0.5, seed=1)
    assert counts == {"training": 6, "validation": 2, "classes": 2}  # one of each class's two segmented videos
    header = build(features, _csv(tmp_path, ["dunk1,dunk", "dunk2,dunk", "swim1,swim", "swim2,swim"], "video,label"),
                   tmp_path / "c.json", test_fraction=None)
    assert header["validation"] == 0  # no video with segments: all train (training then refuses: no test video)


@pytest.mark.parametrize("rows, message", [
    (ROWS + ["nosuch,dunk"], r"labels.csv:10: video nosuch has no features in .*features \(no nosuch.npy\): unknown"),
    (ROWS + ["dunk4,dnuk"], r"labels.csv:10: label 'dnuk' is used by one video only \(dunk4\): a typo\?"),
    (ROWS + ["swim4,swim,12,30"], (r"labels.csv:10: segment \[12.0, 30.0\] s ends beyond video swim4's duration "
                                   r"20.48 s \(32 snippets at 1.5625/s\)")),
    (ROWS + ["swim4,fly,1,2", "swim3,fly,3,4"], r"labels.csv:10: class 'fly' has no training video"),
    (ROWS + ["dunk1,dunk,5,2"], r"labels.csv:10: segment \[5.0, 2.0\] s must start at 0 s or later and not end before"),
    (ROWS + ["dunk1"], r"labels.csv:10: 1 fields; expected video,label"),
    (ROWS + ["dunk1,,"], r"labels.csv:10: empty video or label"),
])
def test_every_bad_row_is_one_error_naming_it(tmp_path, features, rows, message):
    with pytest.raises(DataError, match=message):
        build(features, _csv(tmp_path, rows), tmp_path / "out.json")


def test_a_video_to_evaluate_on_needs_segments(tmp_path, features):
    rows = [f"{row},training" for row in ROWS[:4]] + ["dunk3,dunk,test", "dunk4,dunk,1,2,test", "swim3,swim,0,2,test"]
    with pytest.raises(DataError, match="labels.csv:5: video dunk3 is to evaluate on but has no segment row"):
        build(features, _csv(tmp_path, rows), tmp_path / "out.json")
