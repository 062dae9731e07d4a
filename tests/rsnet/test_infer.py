"""python -m rsnet.infer: detections of a trained run, scored by python -m rsnet.evaluate --detections
exactly as the run's own predictions are scored; its bad inputs and its cap."""
import dataclasses
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import rel_error

from bench.oracles import official_rskp
from rs_kernels.varlen import Varlen
from rsnet import evaluate, infer, train, trained
from rsnet.checkpoint import OFFICIAL_KEYS
from rsnet.config import Config
from rsnet.data.dataset import PackedBatch
from rsnet.errors import UserError
from rsnet.evaluate.command import main as evaluate_main
from rsnet.model import RSKP, MemoryBank, predict
from rsnet.protocols import CLASS_THRESHOLD
from rsnet.synthetic import SyntheticSpec, generate

ROOT = Path(__file__).resolve().parents[1]
TINY = SyntheticSpec(n_train=8, n_test=6, length_scale=0.15)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run: (data root, run folder, its annotations folder)."""
    root = generate(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=2)
    out = tmp_path_factory.mktemp("run")
    cfg = Config(data_root=str(root), out=str(out), epochs=3, warmup_epochs=0, eval_every=1, embed_dim=48,
                 videos_per_step=3, test_batch_size=4, lenient=True, device="cpu")
    train.run(cfg)
    annotations = trained.dataset_annotations(trained.load(out, "cpu").config).folder
    return root, out, annotations


@pytest.fixture(scope="module")
def anet_run(tmp_path_factory):
    """A tiny ActivityNet1.2 run (its defaults: the anet protocol at 0.5:0.05:0.95, on the
    validation subset): (data root, run folder)."""
    root = generate(tmp_path_factory.mktemp("anet"), SyntheticSpec(dataset="ActivityNet1.2", n_train=12, n_test=8,
                                                                    length_scale=0.1), seed=3)
    out = tmp_path_factory.mktemp("anet_run")
    assert train.main(["--data-root", str(root), "--dataset", "ActivityNet1.2", "--out", str(out), "--epochs", "3",
                       "--warmup-epochs", "1", "--embed-dim", "32", "--videos-per-step", "4", "--max-seqlen", "6",
                       "--device", "cpu"]) == 0
    return root, out


def _table(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.parametrize("lenient", [[], ["--lenient"]])
def test_detections_json_scores_exactly_as_the_predictions(run, tmp_path, capsys, lenient):
    root, out, annotations = run
    assert infer.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "d.json")]) == 0
    assert infer.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "p.npz")]) == 0
    capsys.readouterr()
    ann = ["--annotations", str(annotations), *lenient]
    assert evaluate_main(["--detections", str(tmp_path / "d.json"), *ann, "--out", str(tmp_path / "d.out.json")]) == 0
    assert evaluate_main(["--predictions", str(tmp_path / "p.npz"), *ann, "--out", str(tmp_path / "p.out.json")]) == 0
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
    run = trained.load(out, "cpu")
    dataset = trained.dataset_of(run)
    scores, cas = predict.predict_batches(run.model, dataset.test_batches(4), run.device)
    ann, idx = dataset.annotations, dataset.test_indices
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
    dataset = trained.dataset_of(trained.load(ckpt, "cpu"))
    folder = tmp_path / "feats"
    folder.mkdir()
    for v in dataset.test_indices:
        np.save(folder / f"{dataset.annotations.video_names[v]}.npy", dataset.features[v])
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


def test_out_is_checked_before_the_work_and_replaced_whole(run, tmp_path, capsys, monkeypatch):
    """rsnet.infer's detections and predictions: a folder as --out is one error
    line; a write that fails leaves the previous file as it was, and no temporary file."""
    _, out, _ = run
    ckpt = ["--checkpoint", str(out / "checkpoint.pt")]
    for command, name in ((infer, "d.json"), (infer, "p.npz")):
        (tmp_path / name).mkdir()
        assert command.main([*ckpt, "--out", str(tmp_path / name)]) == 2
        assert _error(capsys) == f"error: --out {tmp_path / name} is a folder; give the {name[1:]} file to write"
        (tmp_path / name).rmdir()
        (tmp_path / name).write_text("previous")

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", failing_fsync)
    for command, name in ((infer, "d.json"), (infer, "p.npz")):
        with pytest.raises(OSError, match="No space left"):
            command.main([*ckpt, "--out", str(tmp_path / name)])
        assert (tmp_path / name).read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "p.npz"]


@pytest.mark.parametrize("which", ["run", "anet_run"])
def test_printed_evaluate_command_gives_the_runs_own_map(which, request, tmp_path, capsys):
    """rsnet.infer prints, for predictions and detections, the rsnet.evaluate command that scores their file as
    the run scored itself (a lenient rskp run; an anet run, whose thresholds are not the evaluator's
    default): running it gives the mAP of the run's last evaluation."""
    out = request.getfixturevalue(which)[1]
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["avg"] > 0
    protocol = "anet" if which == "anet_run" else "rskp"
    for command, name in ((infer, "p.npz"), (infer, "d.json")):
        capsys.readouterr()
        assert command.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / name)]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert f"the {protocol} protocol" in printed[-2]
        words = shlex.split(printed[-1])
        assert words[:3] == ["python", "-m", "rsnet.evaluate"]
        assert evaluate_main([*words[3:], "--out", str(tmp_path / "scored.json")]) == 0
        scored = json.loads((tmp_path / "scored.json").read_text())
        assert scored["protocol"] == protocol and scored["iou"] == list(evaluate.PROTOCOL_IOUS[protocol])
        assert scored["dmap"] == last["dmap"] and scored["avg"] == last["avg"]


@pytest.fixture
def detections_file(run, tmp_path):
    _, out, annotations = run
    assert infer.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "d.json")]) == 0
    return json.loads((tmp_path / "d.json").read_text()), annotations


def _evaluate_edited(record, annotations, tmp_path, capsys) -> str:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert evaluate_main(["--detections", str(path), "--annotations", str(annotations)]) == 2
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


def test_evaluate_detections_refuses_segments_before_the_start_and_empty_ones(detections_file, tmp_path, capsys):
    record, annotations = detections_file
    for segment, message in [([-0.5, 2.0], "segment [-0.5, 2.0] s is outside the video"),
                             ([3.0, 3.0], "segment [3.0, 3.0] s is empty (start >= end)"),
                             ([4.0, 2.0], "segment [4.0, 2.0] s is empty (start >= end)")]:
        bad = json.loads(json.dumps(record))
        _first_detection(bad)["segment"] = segment
        error = _evaluate_edited(bad, annotations, tmp_path, capsys)
        assert f"detection 0: {message}" in error and next(iter(bad["results"])) in error, error


def test_exported_weights_reproduce_the_runs_map_through_infer_and_evaluate(run, tmp_path):
    """python -m rsnet.checkpoint export, then rsnet.infer on the file, then rsnet.evaluate --detections:
    the mAP the run gave itself at its last evaluation (lenient, as it scored itself)."""
    root, out, annotations = run
    weights = tmp_path / "m.safetensors"
    proc = subprocess.run([sys.executable, "-m", "rsnet.checkpoint", "export", str(out), "--out", str(weights)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert infer.main(["--checkpoint", str(weights), "--data-root", str(root), "--out", str(tmp_path / "d.json")]) == 0
    assert any(json.loads((tmp_path / "d.json").read_text())["results"].values())
    assert evaluate_main(["--detections", str(tmp_path / "d.json"), "--annotations", str(annotations), "--lenient",
                          "--out", str(tmp_path / "d.out.json")]) == 0
    scored = json.loads((tmp_path / "d.out.json").read_text())
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert scored["dmap"] == last["dmap"] and scored["avg"] == last["avg"]


# --- which branches score a video (--branches) ----------------------------------------------------

N_CLASSES, LENGTHS = 7, [1, 23, 6, 40]


def _branch_setup(seed):
    """A float64 model (dropout off, reference ops), packed videos, and a bank with rows in every class."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(Config(), feature_dim=30, embed_dim=24, dropout=0.0, ops="reference")
    model = RSKP(cfg, N_CLASSES).double().eval()
    videos = [torch.rand(t, cfg.feature_dim, dtype=torch.float64) * 2 for t in LENGTHS]
    bank = MemoryBank(N_CLASSES, cfg.bank_slots, cfg.embed_dim).double()
    bank.bank.copy_(torch.rand(bank.bank.shape, dtype=torch.float64))
    bank.count.copy_(torch.tensor([5, 1, 3, 2, 5, 4, 1]))
    return model, videos, Varlen.from_lengths(LENGTHS), bank


def _official_all_branches(model, x_in, bank, classes):
    """One video's scores and CAS with the inter-video branch reading ``classes``' rows, the official way."""
    cfg = model.cfg
    x = F.relu(model.embedding(x_in))[None]
    o = official_rskp.prediction_module(model, x)
    mu = official_rskp.em(model.mu0[None], x, cfg.em_iters, cfg.tau)
    m = official_rskp.prediction_module(model, official_rskp.random_walk(x, mu, cfg.walk_weight, cfg.tau))
    memory = official_rskp.read_memory(bank.bank, bank.count, classes)[None]
    r = official_rskp.prediction_module(model, official_rskp.random_walk(x, memory, cfg.walk_weight, cfg.tau))
    weights = (cfg.fuse_main, cfg.fuse_intra * (1 - cfg.pseudo_inter_mix), cfg.fuse_intra * cfg.pseudo_inter_mix)
    scores = sum(w * p[0] for w, p in zip(weights, (o, m, r)))
    cas = sum(w * torch.softmax(p[3], -1) for w, p in zip(weights, (o, m, r))) * o[2][..., None]
    return scores[0], cas[0]


def test_main_branch_alone_is_the_main_branchs_prediction():
    model, videos, varlen, bank = _branch_setup(seed=1)
    x = torch.cat(videos)
    main = model(x, varlen).main
    scores, cas = predict.predict_packed(model, x, varlen, "main")
    assert rel_error(scores, main.p_ca) <= 1e-12
    assert rel_error(cas, torch.softmax(main.logits, -1) * main.attention[:, None]) <= 1e-12
    assert rel_error(scores, predict.predict_packed(model, x, varlen)[0]) > 1e-6  # not the paper's fusion


def test_all_branches_read_the_bank_rows_of_the_predicted_classes_not_the_labels():
    """--branches all: the first round's video scores pick the classes (>= the evaluator's class
    threshold, and the best one); their bank rows feed the inter-video branch. The batch carries
    true labels that differ from the predicted classes: reading them would change the result."""
    model, videos, varlen, bank = _branch_setup(seed=2)
    first_round = torch.stack([official_rskp.predict_video(model, v)[0] for v in videos])
    predicted = (first_round[:, :-1] >= CLASS_THRESHOLD)
    predicted[torch.arange(len(videos)), first_round[:, :-1].argmax(1)] = True
    labels = (~predicted).double()  # "true" labels: every class but the predicted ones
    batch = PackedBatch(x=torch.cat(videos), varlen=varlen, labels=labels, index=torch.arange(len(videos)))
    scores, cas = predict.predict_batches(model, [batch], torch.device("cpu"), "all", bank)
    intra_scores, _ = predict.predict_batches(model, [batch], torch.device("cpu"), "intra", bank)
    assert np.isfinite(scores).all() and all(np.isfinite(c).all() for c in cas)
    for b, x_in in enumerate(videos):
        want_scores, want_cas = _official_all_branches(model, x_in, bank, predicted[b])
        assert rel_error(torch.from_numpy(scores[b]), want_scores) <= 1e-10
        assert rel_error(torch.from_numpy(cas[b]), want_cas) <= 1e-10
        assert rel_error(torch.from_numpy(scores[b]), torch.from_numpy(intra_scores[b])) > 1e-6
    # rows of classes no video predicts do not matter; rows of predicted ones do
    unread = ~predicted.any(0)
    assert unread.any()
    bank.bank[unread] = torch.rand_like(bank.bank[unread])
    assert np.array_equal(predict.predict_batches(model, [batch], torch.device("cpu"), "all", bank)[0], scores)
    bank.bank[predicted[0]] += 1
    assert not np.allclose(predict.predict_batches(model, [batch], torch.device("cpu"), "all", bank)[0], scores)


def test_predicted_classes_are_classes_with_bank_rows():
    scores = torch.tensor([[0.50, 0.30, 0.15, 0.05, 0.0],   # best class 0 has no rows: 1 is the best of the bank's
                           [0.02, 0.03, 0.01, 0.04, 0.9]])  # none reaches the threshold: the best of the bank's
    in_bank = torch.tensor([False, True, True, True])
    assert CLASS_THRESHOLD == 0.1
    assert predict.predicted_classes(scores, in_bank).tolist() == [[False, True, True, False],
                                                                     [False, False, False, True]]


def test_branches_flag_of_infer_for_both_outputs(run, tmp_path, capsys):
    """Each --branches scores the run's test videos, in rsnet.infer's detections and predictions alike; an
    official .pkl has no memory bank: --branches all with it is one error line."""
    root, out, _ = run
    ckpt = str(out / "checkpoint.pt")
    detections = {}
    for branches in predict.BRANCHES:
        argv = ["--checkpoint", ckpt, "--branches", branches]
        assert infer.main([*argv, "--out", str(tmp_path / f"{branches}.json")]) == 0
        assert infer.main([*argv, "--out", str(tmp_path / f"{branches}.npz")]) == 0
        detections[branches] = json.loads((tmp_path / f"{branches}.json").read_text())["results"]
        with np.load(tmp_path / f"{branches}.npz", allow_pickle=True) as saved:
            assert np.isfinite(saved["vid_preds"]).all()
    assert detections["main"] != detections["intra"] != detections["all"] != detections["main"]
    official = tmp_path / "200.pkl"
    weights = trained.load(ckpt, "cpu").model.state_dict()
    torch.save({name: weights[ours] for name, ours in OFFICIAL_KEYS.items()}, official)
    capsys.readouterr()
    assert infer.main(["--checkpoint", str(official), "--data-root", str(root), "--branches", "all",
                       "--out", str(tmp_path / "o.json")]) == 2
    assert _error(capsys).startswith("error: --branches all reads the memory bank, and the checkpoint's is empty")
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("variant, refused", [
    ({}, None), ({"representatives": "topk"}, None),
    ({"fusion": "early"}, "--branches all adds an inter-video branch, which a model trained with --fusion early does not have"),
    ({"representatives": "foreground"}, "--representatives foreground walks only that part of X"),
    ({"representatives": "background"}, "--representatives background walks only that part of X"),
], ids=["paper", "topk", "early-fusion", "foreground", "background"])
def test_all_branches_only_for_models_that_trained_their_inter_video_walk(variant, refused):
    """--branches all walks the whole of X toward the bank's rows: the inter-video branch the paper's
    model and the topk representatives trained (the same logits), which early fusion and the
    foreground or background representatives never did (one error line)."""
    model, videos, varlen, bank = _branch_setup(seed=3)
    model.cfg = dataclasses.replace(model.cfg, **variant)
    x = torch.cat(videos)
    rows = bank.read(torch.ones(len(LENGTHS), N_CLASSES, dtype=torch.bool))
    walked_whole = model.head(model.propagate(model.embed(x), varlen, *rows), varlen, model.cfg.ops)
    trained = model(x, varlen, memory=lambda mu, p_mu: rows).inter
    if refused is None:
        predict.check_branches(model, bank, "all")
        assert rel_error(walked_whole.logits, trained.logits) <= 1e-12
    else:
        with pytest.raises(UserError, match=re.escape(refused)):
            predict.check_branches(model, bank, "all")
        assert trained is None or rel_error(walked_whole.logits, trained.logits) > 1e-3


def test_all_branches_of_a_video_wise_bank_is_one_error_line(run, tmp_path, capsys):
    """It used to end in AttributeError: 'VideoBank' object has no attribute 'count'."""
    root, _, _ = run
    out = tmp_path / "run"
    train.run(Config(data_root=str(root), out=str(out), epochs=1, warmup_epochs=0, embed_dim=48, videos_per_step=3,
                     test_batch_size=4, bank="video", device="cpu"))
    for command, name in ((infer, "d.json"), (infer, "p.npz")):
        capsys.readouterr()
        assert command.main(["--checkpoint", str(out / "checkpoint.pt"), "--branches", "all",
                             "--out", str(tmp_path / name)]) == 2
        assert _error(capsys) == ("error: --branches all needs the class-wise memory bank (it reads the rows of the "
                                  "predicted classes); the model was trained with --bank video: use --branches intra or main")
        assert not (tmp_path / name).exists()

