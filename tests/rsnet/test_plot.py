"""python -m rsnet.plot: each picture of a tiny trained run is a valid, non-empty PNG and SVG, and
bad input is one error line."""
import json
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import torch
from test_train import TINY, _config

from rsnet import metrics, plot, train, trained
from rsnet.synthetic import generate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(data root, run folder, a test video with ground truth) of a tiny run whose bank is filled."""
    root = generate(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=2)
    out = tmp_path_factory.mktemp("run")
    train.run(_config(root, out, epochs=3, eval_every=2))
    annotations = trained.dataset_annotations(trained.load(out, "cpu").config)
    video = annotations.video_names[max(annotations.indices("test"), key=lambda v: len(annotations.segments[v]))]
    with open(annotations.folder / "Ambiguous_test.txt", "a") as f:  # read at evaluation only: the run is the same
        f.write(f"{video} 1.0 2.5\n")
    return root, out, video


def _assert_image(path):
    data = path.read_bytes()
    if path.suffix == ".png":
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    else:
        assert ElementTree.fromstring(data).tag.endswith("svg") and len(data) > 5000


@pytest.mark.parametrize("suffix", [".png", ".svg"])
@pytest.mark.parametrize("command", ["cas", "embedding"])
def test_video_pictures(run, tmp_path, capsys, command, suffix):
    root, out, video = run
    image = tmp_path / "pictures" / f"{command}{suffix}"
    assert plot.main([command, "--checkpoint", str(out / "checkpoint.pt"), "--video", video, "--out", str(image)]) == 0
    _assert_image(image)
    assert capsys.readouterr().out.startswith(f"{image}: {command} of {video}")


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_bank_picture(run, tmp_path, capsys, suffix):
    _, out, _ = run
    image = tmp_path / f"bank{suffix}"
    assert plot.main(["bank", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(image)]) == 0
    _assert_image(image)
    assert capsys.readouterr().out.startswith(f"{image}: bank of {out / 'checkpoint.pt'}")


def test_the_bank_picture_averages_each_videos_snippets_of_each_class(run):
    """One point per (training video, class of its segments): the mean direction of its embedded
    snippets whose middle falls in that class's segments, whatever batch the video is packed in."""
    _, out, _ = run
    trainer = plot.open_run(out / "checkpoint.pt", "cpu")
    features, classes = plot.action_features(trainer)
    annotations, want = trainer.dataset.annotations, []
    for video in trainer.dataset.train_indices:
        embedded = plot.video_outputs(trainer, video).embedded
        labels = plot.snippet_classes(annotations, video, len(embedded))
        directions = embedded / embedded.norm(dim=1, keepdim=True).clamp_min(1e-12)
        want += [(c, directions[torch.from_numpy(labels == c)].mean(0)) for c in sorted(set(labels) - {plot.BACKGROUND})]
    assert len(want) > len(trainer.dataset.train_indices) // 2 and classes.tolist() == [c for c, _ in want]
    assert torch.allclose(features, torch.stack([f for _, f in want]), atol=1e-6)


def test_the_bank_picture_of_a_run_without_a_bank_is_one_error_line(run, tmp_path, capsys):
    root, _, _ = run
    train.run(_config(root, tmp_path / "no-bank", epochs=1, memory_bank=False))
    capsys.readouterr()
    assert plot.main(["bank", "--checkpoint", str(tmp_path / "no-bank" / "checkpoint.pt"),
                      "--out", str(tmp_path / "b.png")]) == 2
    assert capsys.readouterr().err == ("error: the run's memory bank holds no entry (trained without it, or not past "
                                       "the warm-up): nothing to plot\n")
    assert not (tmp_path / "b.png").exists()


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_curves_of_one_run_and_of_several(run, tmp_path, suffix):
    _, out, _ = run
    assert plot.main(["curves", str(out), "--out", str(tmp_path / f"one{suffix}")]) == 0
    _assert_image(tmp_path / f"one{suffix}")
    assert plot.main(["curves", str(out), str(out), "--out", str(tmp_path / f"two{suffix}")]) == 0
    _assert_image(tmp_path / f"two{suffix}")


def test_the_pseudo_labels_are_the_target_of_the_pseudo_label_loss(run, monkeypatch):
    """The plotted pseudo labels are what rskp_loss trains the main branch toward, for the video's
    classes read from the memory bank as training reads them."""
    _, out, video = run
    trainer = plot.open_run(out / "checkpoint.pt", "cpu")
    index = plot.video_index(trainer.dataset.annotations, video)
    targets = []
    real = train.rskp_loss.__globals__["pseudo_label_loss"]

    def capture(logits, target_logits, cu_seqlens, temperature):
        targets.append(torch.softmax(target_logits / temperature, dim=-1))
        return real(logits, target_logits, cu_seqlens, temperature)

    monkeypatch.setitem(train.rskp_loss.__globals__, "pseudo_label_loss", capture)
    batch = trainer.dataset.pack([index])
    assert int(trainer.trained.bank.count[batch.labels[0].bool()].sum()) > 0
    with torch.no_grad():
        trainer.trained.model.eval()
        output = trainer.trained.model(batch.x, batch.varlen, lambda mu, p_mu: trainer.trained.bank.read(batch.labels))
        assert output.inter is not None
        train.rskp_loss(output, batch.labels, batch.varlen, trainer.trained.config, after_warmup=True)
    shown = plot.video_outputs(trainer, index).pseudo_labels
    assert torch.allclose(shown, targets[0], rtol=1e-6, atol=1e-7)


def test_the_ground_truth_shows_the_ambiguous_spans_apart(run):
    _, out, video = run
    trainer = plot.open_run(out / "checkpoint.pt", "cpu")
    annotations = trainer.dataset.annotations
    fig = plot.cas_figure(trainer, annotations.video_names.index(video))
    ground_truth = fig.axes[-1]
    assert [t.get_text() for t in ground_truth.get_legend().get_texts()] == ["ambiguous"]
    names = {annotations.class_names[c] for c in annotations.segment_labels[annotations.video_names.index(video)]}
    assert {t.get_text() for t in ground_truth.get_yticklabels()} == names
    assert [ax.get_ylabel() for ax in fig.axes] == ["action activation", "pseudo label", "ground truth"]


def test_snippet_classes_follow_the_segments_in_seconds(run):
    _, out, video = run
    annotations = trained.dataset_annotations(trained.load(out, "cpu").config)
    v = annotations.video_names.index(video)
    length = int(annotations.durations[v] * 25 / 16)
    classes = plot.snippet_classes(annotations, v, length)
    times = (np.arange(length) + 0.5) * 16 / 25
    for (start, end), label in zip(annotations.segments[v], annotations.segment_labels[v]):
        inside = (times >= start) & (times <= end)
        assert inside.any() and (classes[inside] == label).all()
    assert (classes == plot.BACKGROUND).any()


def test_pca_gives_the_two_axes_of_largest_variance():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(41, 5, generator=generator) * torch.tensor([0.1, 5.0, 0.2, 2.0, 0.3]) + 7
    xy = plot.pca_2d(points)
    assert xy.shape == (41, 2) and torch.allclose(xy.mean(0), torch.zeros(2, dtype=xy.dtype), atol=1e-9)
    centred = points.double() - points.double().mean(0)
    top_two = torch.linalg.eigvalsh(centred.T @ centred)[-2:].flip(0)
    assert torch.allclose((xy ** 2).sum(0), top_two, rtol=1e-9)


def _error(capsys, argv):
    capsys.readouterr()
    assert plot.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err.strip()


def test_bad_input_is_one_error_line(run, tmp_path, capsys):
    _, out, video = run
    checkpoint = str(out / "checkpoint.pt")
    err = _error(capsys, ["cas", "--checkpoint", checkpoint, "--video", "no_such_video", "--out", str(tmp_path / "a.png")])
    assert "no video 'no_such_video'" in err and "videoname.npy" in err and "video_" in err
    err = _error(capsys, ["embedding", "--checkpoint", checkpoint, "--video", video, "--out", str(tmp_path / "a.jpg")])
    assert err == f"error: --out {tmp_path / 'a.jpg'} must end in .png or .svg"
    err = _error(capsys, ["curves", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.png")])
    assert "nowhere/metrics.jsonl not found" in err
    assert not list(tmp_path.glob("a.*"))


def test_runs_with_other_epochs_are_refused(run, tmp_path, capsys):
    _, out, _ = run
    other = tmp_path / "other"
    other.mkdir()
    records = metrics.read(out / metrics.FILE_NAME)
    metrics.write(other / metrics.FILE_NAME, records[:2])
    err = _error(capsys, ["curves", str(out), str(other), "--out", str(tmp_path / "a.png")])
    assert f"{other} has evaluations at epochs 2" in err and "need the same epochs" in err
    (other / metrics.FILE_NAME).write_text(json.dumps(records[0]) + "\n{not json\n")
    err = _error(capsys, ["curves", str(other), "--out", str(tmp_path / "a.png")])
    assert err == f"error: {other / metrics.FILE_NAME}:2 is not a metrics record (a JSON object with an integer epoch)"


def test_missing_matplotlib_is_one_line_naming_the_extra(run, tmp_path, capsys, monkeypatch):
    _, out, _ = run
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    err = _error(capsys, ["curves", str(out), "--out", str(tmp_path / "a.png")])
    assert err == "error: python -m rsnet.plot needs matplotlib: pip install -e .[plots]"


def test_curves_of_a_run_before_its_first_evaluation_and_of_one_without_losses(run, tmp_path, capsys):
    _, out, _ = run
    records = metrics.read(out / metrics.FILE_NAME)
    for name, kept in (("early", records[:1]), ("no-losses", [{k: v for k, v in r.items() if k != "losses"}
                                                               for r in metrics.evaluated(records)])):
        (tmp_path / name).mkdir()
        metrics.write(tmp_path / name / metrics.FILE_NAME, kept)
        assert plot.main(["curves", str(tmp_path / name), "--out", str(tmp_path / f"{name}.png")]) == 0
        _assert_image(tmp_path / f"{name}.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / metrics.FILE_NAME).write_text("")
    err = _error(capsys, ["curves", str(tmp_path / "empty"), "--out", str(tmp_path / "empty.png")])
    assert err.endswith("holds no epoch yet: nothing to plot")
    other_ious = [dict(r, iou=[0.5] * len(r["iou"])) if "iou" in r else r for r in records]
    (tmp_path / "ious").mkdir()
    metrics.write(tmp_path / "ious" / metrics.FILE_NAME, other_ious)
    err = _error(capsys, ["curves", str(out), str(tmp_path / "ious"), "--out", str(tmp_path / "ious.png")])
    assert "has evaluations of mAP@0.5, mAP@0.5" in err and "need the same curves" in err


def test_the_embedding_shows_the_representatives_of_the_runs_variant(run, tmp_path):
    """Under --representatives topk the online representatives are the top and bottom snippets
    themselves, not EM centres: the picture shows what the run trained with."""
    root, _, video = run
    out = tmp_path / "topk"
    train.run(_config(root, out, epochs=1, representatives="topk"))
    trainer = plot.open_run(out / "checkpoint.pt", "cpu")
    outputs = plot.video_outputs(trainer, trainer.dataset.annotations.video_names.index(video))
    distances = torch.cdist(outputs.representatives, outputs.embedded)
    assert len(outputs.representatives) == trainer.trained.config.n_representatives
    assert (distances.min(dim=1).values == 0).all()  # every one is a snippet of the video


def test_the_video_pictures_of_a_run_with_the_video_wise_bank(run, tmp_path, capsys):
    """--bank video holds training videos' entries, not classes': the pictures draw no bank entry and
    the pseudo labels are the intra-video branch's; the bank picture is one error line."""
    root, _, video = run
    out = tmp_path / "video-bank"
    train.run(_config(root, out, epochs=1, bank="video"))
    for command in ("cas", "embedding"):
        image = tmp_path / f"{command}.png"
        assert plot.main([command, "--checkpoint", str(out / "checkpoint.pt"), "--video", video,
                          "--out", str(image)]) == 0
        _assert_image(image)
    trainer = plot.open_run(out / "checkpoint.pt", "cpu")
    assert int(trainer.trained.bank_state["filled"].sum()) == len(trainer.dataset.train_indices)  # a bank, filled, not drawn
    index = plot.video_index(trainer.dataset.annotations, video)
    batch = trainer.dataset.pack([index])
    assert plot.memory_of(trainer, batch.labels) is None
    with torch.no_grad():
        intra_only = trainer.trained.model.eval()(batch.x, batch.varlen, None)
    want = torch.softmax(plot.pseudo_label_target_logits(intra_only, trainer.trained.config) / trainer.trained.config.spl_temperature, -1)
    assert torch.equal(plot.video_outputs(trainer, index).pseudo_labels, want)
    capsys.readouterr()
    assert plot.main(["bank", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "b.png")]) == 2
    assert "--bank video" in capsys.readouterr().err
