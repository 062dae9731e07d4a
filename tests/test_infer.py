"""python -m rsnet.infer: detections of a trained run, scored by python -m rsnet.evaluate --detections
exactly as the run's own predictions are scored; its bad inputs and its cap."""
import dataclasses
import json

import numpy as np
import pytest

from rsnet import evaluate, infer, inference, train
from rsnet.config import Config
from rsnet.synthetic import SyntheticSpec, generate

TINY = SyntheticSpec(n_train=8, n_test=6, length_scale=0.15)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run: (data root, run folder, its annotations folder)."""
    root = generate(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=2)
    out = tmp_path_factory.mktemp("run")
    cfg = Config(data_root=str(root), out=str(out), epochs=3, warmup_epochs=0, eval_every=1, embed_dim=48,
                 videos_per_step=3, test_batch_size=4, lenient=True, device="cpu")
    train.run(cfg)
    annotations = train.restore(out / "checkpoint.pt", "cpu").dataset.annotations.folder
    return root, out, annotations


def _table(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.parametrize("lenient", [[], ["--lenient"]])
def test_detections_json_scores_exactly_as_the_predictions(run, tmp_path, capsys, lenient):
    root, out, annotations = run
    assert infer.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "d.json")]) == 0
    assert inference.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "p.npz")]) == 0
    capsys.readouterr()
    ann = ["--annotations", str(annotations), *lenient]
    assert evaluate.main(["--detections", str(tmp_path / "d.json"), *ann, "--out", str(tmp_path / "d.out.json")]) == 0
    assert evaluate.main(["--predictions", str(tmp_path / "p.npz"), *ann, "--out", str(tmp_path / "p.out.json")]) == 0
    from_json = json.loads((tmp_path / "d.out.json").read_text())
    from_npz = json.loads((tmp_path / "p.out.json").read_text())
    assert from_json["dmap"] == from_npz["dmap"] and from_json["avg"] == from_npz["avg"]
    assert from_json["classes_without_proposals"] == from_npz["classes_without_proposals"]
    assert from_json["cmap"] is None
    if lenient:  # the run scored itself leniently: the same numbers as its last evaluation
        last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
        assert from_json["dmap"] == last["dmap"] and max(last["dmap"]) > 0


def test_ambiguous_and_unevaluated_detections_are_handled_as_for_predictions(run, tmp_path):
    """The file lists every class of every video; the evaluator proposes only the ground truth's
    classes and drops what overlaps an ambiguous segment: the same ranked detections either way."""
    root, out, annotations = run
    trainer = train.restore(out / "checkpoint.pt", "cpu")
    scores, cas = inference.predict_split(trainer.model, trainer.dataset, trainer.device, 4)
    ann, idx = trainer.dataset.annotations, trainer.dataset.test_indices
    names = [ann.video_names[v] for v in idx]
    results = dict(zip(names, infer.detections_by_video(scores, cas, ann.class_names, 16 / 25)))
    expected = evaluate.evaluate(scores, cas, ann, idx, lenient=True)
    got = evaluate.evaluate_detections(results, ann, idx, lenient=True)
    assert got.dmap == expected.dmap
    # and it is not vacuous: the detections rank something
    assert max(got.dmap) > 0


def test_max_per_video_keeps_the_best(run, tmp_path):
    _, out, _ = run
    ckpt = str(out / "checkpoint.pt")
    assert infer.main(["--checkpoint", ckpt, "--out", str(tmp_path / "all.json")]) == 0
    assert infer.main(["--checkpoint", ckpt, "--out", str(tmp_path / "cap.json"), "--max-per-video", "2"]) == 0
    full = json.loads((tmp_path / "all.json").read_text())["results"]
    capped = json.loads((tmp_path / "cap.json").read_text())["results"]
    assert any(len(d) > 2 for d in full.values())
    for video, dets in full.items():
        assert capped[video] == dets[:2]
        assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)


def test_features_folder_gives_the_datasets_detections(run, tmp_path):
    root, out, _ = run
    ckpt = str(out / "checkpoint.pt")
    trainer = train.restore(ckpt, "cpu")
    folder = tmp_path / "feats"
    folder.mkdir()
    for v in trainer.dataset.test_indices:
        np.save(folder / f"{trainer.dataset.annotations.video_names[v]}.npy", trainer.dataset.features[v])
    assert infer.main(["--checkpoint", ckpt, "--out", str(tmp_path / "f.json"), "--features", str(folder)]) == 0
    assert infer.main(["--checkpoint", ckpt, "--out", str(tmp_path / "d.json"), "--data-root", str(root),
                       "--split", "test"]) == 0
    assert (json.loads((tmp_path / "f.json").read_text())["results"]
            == json.loads((tmp_path / "d.json").read_text())["results"])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_bad_inputs_are_one_error_line(run, tmp_path, capsys):
    _, out, _ = run
    ckpt = str(out / "checkpoint.pt")
    det = ["--out", str(tmp_path / "d.json")]
    assert infer.main(["--checkpoint", str(tmp_path / "none.pt"), *det]) == 2
    assert "none.pt" in _error(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert infer.main(["--checkpoint", ckpt, *det, "--features", str(empty)]) == 2
    assert "no .npy" in _error(capsys)
    wide = tmp_path / "wide"
    wide.mkdir()
    np.save(wide / "v1.npy", np.zeros((5, 7), dtype=np.float32))
    assert infer.main(["--checkpoint", ckpt, *det, "--features", str(wide)]) == 2
    message = _error(capsys)
    assert "v1.npy" in message and "(5, 7)" in message
    assert not (tmp_path / "d.json").exists()


@pytest.fixture
def detections_file(run, tmp_path):
    _, out, annotations = run
    assert infer.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "d.json")]) == 0
    return json.loads((tmp_path / "d.json").read_text()), annotations


def _evaluate_edited(record, annotations, tmp_path, capsys) -> str:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert evaluate.main(["--detections", str(path), "--annotations", str(annotations)]) == 2
    return _error(capsys)


def _first_detection(record):
    return next(d for dets in record["results"].values() for d in dets)


def test_evaluate_detections_refuses_unknown_labels_videos_and_outside_segments(detections_file, tmp_path, capsys):
    record, annotations = detections_file
    bad = json.loads(json.dumps(record))
    _first_detection(bad)["label"] = "NoSuchClass"
    assert "NoSuchClass" in _evaluate_edited(bad, annotations, tmp_path, capsys)
    bad = json.loads(json.dumps(record))
    bad["results"]["no_such_video"] = []
    assert "no_such_video" in _evaluate_edited(bad, annotations, tmp_path, capsys)
    bad = json.loads(json.dumps(record))
    first = next(iter(bad["results"]))
    del bad["results"][first]
    assert first in _evaluate_edited(bad, annotations, tmp_path, capsys)
    bad = json.loads(json.dumps(record))
    _first_detection(bad)["segment"] = [1.0, 1e6]
    assert "outside the video" in _evaluate_edited(bad, annotations, tmp_path, capsys)
