"""End to end: training writes its metrics, is deterministic, resumes exactly after a crash, and
never loses a run or resumes from a damaged or foreign checkpoint."""
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import crash_at_epoch

from rsnet import checkpoint, diagnose, infer, metrics, train, trained
from rsnet.checkpoint import CheckpointError
from rsnet.config import Config
from rsnet.data import DataError
from rsnet.data.convert import convert
from rsnet.data.dataset import WTALCDataset
from rsnet.errors import UserError
from rsnet.evaluate.command import main as evaluate_main
from rsnet.model.predict import predict_batches, predict_packed
from rsnet.synthetic import SyntheticSpec, generate

TINY = SyntheticSpec(n_train=8, n_test=6, length_scale=0.15)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("data") / "tiny", TINY, seed=2)


def _config(root, out, **overrides):
    base = Config(data_root=str(root), out=str(out), epochs=3, warmup_epochs=0, eval_every=1,
                  embed_dim=48, videos_per_step=3, test_batch_size=4, lenient=True, device="cpu")
    return dataclasses.replace(base, **overrides)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_writes_metrics_and_tables(tiny_root, tmp_path):
    summary = train.run(_config(tiny_root, tmp_path / "a"))
    records = _metrics(tmp_path / "a")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert len(r["dmap"]) == 7 and r["iou"] == pytest.approx([0.1 * i for i in range(1, 8)])
        assert abs(r["avg"] - sum(r["dmap"]) / 7) < 1e-9 and 0 <= r["cmap"] <= 100
    table = (tmp_path / "a" / "results.md").read_text()
    assert "| last | 3 |" in table and "best" in table
    assert summary["last"] == records[-1]
    assert int(torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["bank"]["count"].sum()) > 0


def test_same_seed_same_metrics(tiny_root, tmp_path):
    train.run(_config(tiny_root, tmp_path / "a", epochs=2))
    train.run(_config(tiny_root, tmp_path / "b", epochs=2))
    assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()


def test_resume_after_a_crash_continues_exactly(tiny_root, tmp_path, monkeypatch):
    train.run(_config(tiny_root, tmp_path / "straight"))

    crash_at_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train.run(_config(tiny_root, tmp_path / "resumed"))
    # 2 epochs of 8 videos in steps of 3: the checkpoint holds the open step's gradients (of 1 video)
    crashed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert crashed["epoch"] == 2 and all(g is not None and g.abs().sum() > 0 for g in crashed["grads"].values())
    monkeypatch.undo()  # the crash no more
    train.run(_config(tiny_root, tmp_path / "resumed"), resume=True)

    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "straight")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for part in ("model", "bank", "grads"):
        for name, value in straight[part].items():
            other = resumed[part][name]
            assert (value is None and other is None) or torch.equal(value, other), (part, name)


def test_resume_refuses_a_changed_config(tiny_root, tmp_path):
    train.run(_config(tiny_root, tmp_path / "a", epochs=1))
    with pytest.raises(UserError, match="lr"):
        train.run(_config(tiny_root, tmp_path / "a", epochs=2, lr=1e-3), resume=True)


def test_a_run_records_its_feature_cache_and_may_resume_without_it(tiny_root, tmp_path, capsys):
    """--feature-cache only says where the same bytes are read from: the checkpoint records it, so
    restore reads the store there, and a resume may leave it out."""
    with pytest.raises(SystemExit):
        train.main(["--help"])
    assert "--feature-cache" in capsys.readouterr().out
    cache, out = tmp_path / "cache", tmp_path / "cached"
    convert(tiny_root, "Thumos14reduced", feature_cache=cache)
    train.run(_config(tiny_root, out, epochs=1, feature_cache=str(cache)))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["feature_cache"] == str(cache)
    assert isinstance(trained.dataset_of(trained.load(out, "cpu")).features[0], np.memmap)
    train.run(_config(tiny_root, out, epochs=2), resume=True)
    train.run(_config(tiny_root, tmp_path / "plain", epochs=2))
    assert _metrics(out) == _metrics(tmp_path / "plain")


def _reverse_classlist(root):
    path = root / "Thumos14reduced" / "classlist.npy"
    np.save(path, np.load(path)[::-1])


def test_a_checkpoint_is_refused_on_a_reordered_class_list(tiny_root, tmp_path, capsys):
    """The run records its class names: data whose classlist.npy lists the same classes in another
    order (every label would mean another class) is one error line, for a command and for --resume."""
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    out = tmp_path / "a"
    train.run(_config(root, out, epochs=1))
    names = WTALCDataset(root, "Thumos14reduced").annotations.class_names
    assert checkpoint.load_trained(out / "checkpoint.pt").class_names == names
    _reverse_classlist(root)
    capsys.readouterr()
    assert diagnose.main(["--checkpoint", str(out / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'checkpoint.pt'} was trained on other classes ({', '.join(names)}) ")
    assert len(err.splitlines()) == 1
    with pytest.raises(CheckpointError, match="was trained on other classes"):
        train.run(_config(root, out, epochs=2), resume=True)


def test_a_checkpoint_written_before_class_names_were_recorded_loads_and_resumes_exactly(tiny_root, tmp_path):
    out = tmp_path / "old"
    train.run(_config(tiny_root, out, epochs=1))
    state = checkpoint.load_run(out / "checkpoint.pt")
    del state["class_names"]
    checkpoint.save_atomic(state, out / "checkpoint.pt")
    assert checkpoint.load_trained(out / "checkpoint.pt").class_names is None
    assert len(trained.load(out, "cpu").class_names) == 20
    train.run(_config(tiny_root, out, epochs=2), resume=True)
    train.run(_config(tiny_root, tmp_path / "straight", epochs=2))
    assert _metrics(out) == _metrics(tmp_path / "straight")


def test_resume_without_checkpoint_is_a_clear_error(tiny_root, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        train.run(_config(tiny_root, tmp_path / "empty"), resume=True)


def _main_args(root, out, *extra):
    return ["--data-root", str(root), "--out", str(out), "--epochs", "1", "--warmup-epochs", "0", "--eval-every", "1",
            "--embed-dim", "48", "--videos-per-step", "3", "--lenient", "--device", "cpu", *extra]


def test_a_new_run_refuses_a_folder_that_holds_a_run(tiny_root, tmp_path, capsys):
    """A second run without --resume used to empty metrics.jsonl beside the old checkpoint and
    results.md, and a later --resume then failed with an IndexError."""
    out = tmp_path / "a"
    train.run(_config(tiny_root, out, epochs=1))
    before = {name: (out / name).read_bytes() for name in train.RUN_FILES}
    capsys.readouterr()
    assert train.main(_main_args(tiny_root, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {out} holds a run")
    assert "--resume" in err and "--overwrite" in err
    assert {name: (out / name).read_bytes() for name in train.RUN_FILES} == before
    summary = train.run(_config(tiny_root, out, epochs=1), resume=True)
    assert summary["last"] == _metrics(out)[-1] and summary["last"]["epoch"] == 1


def test_overwrite_replaces_only_the_runs_own_files(tiny_root, tmp_path, capsys):
    out = tmp_path / "a"
    train.run(_config(tiny_root, out, epochs=1, seed=1))
    (out / "notes.txt").write_text("mine")
    old_checkpoint = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert train.main(_main_args(tiny_root, out, "--overwrite")) == 0
    assert f"removing {out / 'checkpoint.pt'}" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoint.pt").read_bytes() != old_checkpoint and [r["epoch"] for r in _metrics(out)] == [1]
    with pytest.raises(UserError, match="give one of them"):
        train.run(_config(tiny_root, out, epochs=1), resume=True, overwrite=True)


def test_resume_restores_the_metrics_from_the_checkpoint(tiny_root, tmp_path):
    """metrics.jsonl lost or emptied: the checkpoint holds the evaluations, nothing is lost."""
    out = tmp_path / "a"
    train.run(_config(tiny_root, out, epochs=2))
    records = _metrics(out)
    (out / "metrics.jsonl").write_text("")
    summary = train.run(_config(tiny_root, out, epochs=2), resume=True)
    assert _metrics(out) == records and summary["last"] == records[-1]


def test_checkpoints_load_with_weights_only(tiny_root, tmp_path):
    train.run(_config(tiny_root, tmp_path / "a", epochs=1))
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert tuple(state) == (*checkpoint.RUN_KEYS, *checkpoint.RUN_OPTIONAL_KEYS) and state["format"] == checkpoint.RUN_FORMAT
    assert state["metrics"] == _metrics(tmp_path / "a")


def _flip(path, offset, count):
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = bytes(b ^ 0xFF for b in data[offset:offset + count])
    path.write_bytes(bytes(data))


def test_resume_refuses_flipped_bytes_in_the_optimizer_state(tiny_root, tmp_path, capsys):
    out = tmp_path / "a"
    train.run(_config(tiny_root, out, epochs=1))
    path = out / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    exp_avg = next(iter(state["optimizer"]["state"].values()))["exp_avg"]
    offset = path.read_bytes().find(exp_avg.numpy().tobytes())
    assert offset > 0 and exp_avg.numel() * 4 >= 64 + 32
    _flip(path, offset + 32, 64)
    with pytest.raises(CheckpointError, match=f"{path} is damaged"):
        train.run(_config(tiny_root, out, epochs=2), resume=True)
    capsys.readouterr()
    assert train.main(_main_args(tiny_root, out, "--epochs", "2", "--resume")) == 2
    assert capsys.readouterr().err.strip() == f"error: {path} is damaged: its content does not match its SHA-256 checksum"


def test_a_weights_only_checkpoint_is_a_clear_error(tiny_root, tmp_path, capsys):
    out = tmp_path / "a"
    trainer = train.Trainer(_config(tiny_root, out), WTALCDataset(tiny_root), torch.device("cpu"))
    out.mkdir()
    torch.save(trainer.model.state_dict(), out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="carries no rskp checksum"):
        train.run(_config(tiny_root, out), resume=True)
    capsys.readouterr()
    assert diagnose.main(["--checkpoint", str(out / "checkpoint.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'checkpoint.pt'} carries no rskp checksum") and len(err.splitlines()) == 1
    # signed, but another kind of state: named as such
    checkpoint.save_atomic({"model": trainer.model.state_dict()}, out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not a training run's checkpoint"):
        train.run(_config(tiny_root, out), resume=True)


def test_user_errors_are_one_line_and_exit_2_tracebacks_with_debug(tmp_path, monkeypatch):
    args = [sys.executable, "-m", "rsnet.train", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: dataset folder not found: {tmp_path / 'nowhere' / 'Thumos14reduced'} " \
                                  f"(expected ROOT/Thumos14reduced/ in the W-TALC layout)"
    with pytest.raises(DataError):
        train.main(args[3:] + ["--debug"])

    def bug(cfg):
        raise ZeroDivisionError

    monkeypatch.setattr(train, "load_dataset", bug)
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: its traceback stays
        train.main(args[3:])


def test_a_diverged_run_stops_in_its_epoch_with_one_line_and_keeps_the_epochs_before(tiny_root, tmp_path, monkeypatch,
                                                                                     capsys):
    """The loss of epoch 2 turns NaN (as a too high learning rate makes it): the run stops at that
    epoch's end, before its record or checkpoint is written; the epoch before stays resumable."""
    diverging = []
    real_epoch, real_loss = train.Trainer.train_epoch, train.rskp_loss

    def epoch(self, index, progress=None):
        diverging.append(index == 1)
        return real_epoch(self, index, progress)

    def loss(*args, **kwargs):
        terms = real_loss(*args, **kwargs)
        return terms._replace(total=terms.total * float("nan")) if diverging[-1] else terms

    monkeypatch.setattr(train.Trainer, "train_epoch", epoch)
    monkeypatch.setattr(train, "rskp_loss", loss)
    out = tmp_path / "a"
    assert train.main(_main_args(tiny_root, out, "--epochs", "3")) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--lr" in errors[0]
    assert errors[0].startswith("error: the loss stopped being finite in epoch 2 (total nan, fore "), errors
    assert [r["epoch"] for r in _metrics(out)] == [1]
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1 and all(torch.isfinite(p).all() for p in saved["model"].values())


def test_infer_writes_predictions_the_evaluator_scores(tiny_root, tmp_path, capsys):
    """``python -m rsnet.infer`` without flags says what it needs; its .npz scores as the run did."""
    proc = subprocess.run([sys.executable, "-m", "rsnet.infer"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "--checkpoint" in proc.stderr
    out = tmp_path / "a"
    train.run(_config(tiny_root, out, epochs=1))
    assert infer.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "p.npz")]) == 0
    assert "python -m rsnet.evaluate --predictions" in capsys.readouterr().out
    assert evaluate_main(["--predictions", str(tmp_path / "p.npz"), "--annotations", str(tiny_root / "Thumos14reduced"),
                          "--lenient", "--out", str(tmp_path / "r.json")]) == 0
    scored = json.loads((tmp_path / "r.json").read_text())
    assert scored["dmap"] == _metrics(out)[-1]["dmap"] and scored["cmap"] == _metrics(out)[-1]["cmap"]


def test_the_batched_test_pass_equals_one_video_at_a_time(tiny_root):
    """The batched test pass (one copy back per split) gives each video what predicting it alone gives."""
    dataset = WTALCDataset(tiny_root)
    trainer = train.Trainer(_config(tiny_root, "unused"), dataset, torch.device("cpu"))
    scores, cas = predict_batches(trainer.model, dataset.test_batches(3), torch.device("cpu"))
    assert len(cas) == len(dataset.test_indices) == scores.shape[0]
    trainer.model.eval()  # as predict_batches runs it (no dropout)
    for row, video in enumerate(dataset.test_indices):
        alone = dataset.pack([video])
        video_scores, video_cas = predict_packed(trainer.model, alone.x, alone.varlen)
        assert np.allclose(scores[row], video_scores[0].numpy(), rtol=1e-5, atol=1e-7)
        assert cas[row].shape == tuple(video_cas.shape)
        assert np.allclose(cas[row], video_cas.numpy(), rtol=1e-5, atol=1e-7)


def test_an_out_that_is_a_file_is_refused_before_the_data_loads(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(UserError, match="--out .* is a file, not a folder"):
        train.run(_config(tmp_path / "no-data", tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "mine"


def test_held_out_features_of_the_wrong_length_fail_before_any_epoch(tmp_path, monkeypatch):
    """With --val-fraction, a held-out video of the wrong length used to be refused at the first
    evaluation, after the epochs before it had trained."""
    root = generate(tmp_path / "tiny", TINY, seed=2)
    cfg = _config(root, tmp_path / "run", eval_every=2, val_fraction=0.25)
    video = int(WTALCDataset(root, held_out_fraction=cfg.val_fraction, held_out_seed=cfg.seed).held_out_indices[0])
    path = root / "Thumos14reduced" / "Thumos14reduced-I3D-JOINTFeatures.npy"
    features = np.load(path, allow_pickle=True)
    features[video] = features[video][: len(features[video]) // 2]
    np.save(path, features, allow_pickle=True)

    def no_epoch(self, epoch, progress=None):
        raise AssertionError(f"epoch {epoch} trained before the dataset was refused")

    monkeypatch.setattr(train.Trainer, "train_epoch", no_epoch)
    name = np.load(root / "Thumos14reduced" / "videoname.npy")[video].decode()
    with pytest.raises(DataError, match=f"video {name}: features of"):
        train.run(cfg)


def test_every_epoch_records_its_losses_and_an_evaluated_epoch_its_map(tiny_root, tmp_path, monkeypatch):
    """metrics.jsonl used to hold only the evaluated epochs, with the total loss alone."""
    returned = []
    real_epoch = train.Trainer.train_epoch

    def recording_epoch(self, epoch, progress=None):
        returned.append(real_epoch(self, epoch, progress))
        return returned[-1]

    monkeypatch.setattr(train.Trainer, "train_epoch", recording_epoch)
    summary = train.run(_config(tiny_root, tmp_path / "a", epochs=5, eval_every=2))
    records = _metrics(tmp_path / "a")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["losses"] for r in records] == returned
    assert set(returned[0]) == {"total", "fore", "back", "att", "spl"}
    assert [r["epoch"] for r in records if "avg" in r] == [2, 4, 5]
    assert all(set(records[0]) == {"epoch", "losses"} and "dmap" not in r for r in records[::2][:-1])
    best = max(records[1], records[3], records[4], key=lambda r: r["avg"])
    assert summary == {"last": records[4], "best": best, "held_out_best": None}
    assert f"| best (picked on the test split, as in the paper) | {best['epoch']} |" in (tmp_path / "a" / "results.md").read_text()
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert state["metrics"] == records and state["best"] == best


def test_a_resume_that_ends_at_an_unevaluated_epoch_evaluates_it(tiny_root, tmp_path, monkeypatch):
    out = tmp_path / "a"
    crash_at_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train.run(_config(tiny_root, out, epochs=4, eval_every=4))
    assert [("avg" in r) for r in _metrics(out)] == [False, False]
    summary = train.run(_config(tiny_root, out, epochs=2, eval_every=4), resume=True)
    records = _metrics(out)
    assert [r["epoch"] for r in records] == [1, 2] and summary["last"] == summary["best"] == records[-1]
    assert "avg" in records[-1] and "| last | 2 |" in (out / "results.md").read_text()
    assert torch.load(out / "checkpoint.pt", weights_only=True)["metrics"] == records


def test_a_resume_that_ends_at_an_unevaluated_epoch_scores_the_held_out_videos_too(tiny_root, tmp_path, monkeypatch):
    """With --val-fraction, that evaluation is the loop's own: the held-out videos scored and
    checkpoint_held_out_best.pt written (it used to score the test split alone and write no file)."""
    out = tmp_path / "a"
    crash_at_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(_config(tiny_root, out, epochs=6, eval_every=5, val_fraction=0.25))
    assert not (out / train.HELD_OUT_BEST).exists()
    summary = train.run(_config(tiny_root, out, epochs=3, eval_every=5, val_fraction=0.25), resume=True)
    last = _metrics(out)[-1]
    assert last["epoch"] == 3 and "avg" in last and "held_out" in last
    assert summary["held_out_best"] == last
    assert torch.load(out / train.HELD_OUT_BEST, weights_only=True)["epoch"] == 3


def _tensorboard_scalars(out):
    """{tag: [(epoch, value)]} as TensorBoard reads OUT/tensorboard (purged events dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _expected_scalars(records):
    expected = {}
    for r in records:
        values = {f"loss/{k}": v for k, v in r["losses"].items()}
        if "avg" in r:
            values.update({f"mAP/{t:g}": d for t, d in zip(r["iou"], r["dmap"])}, **{"mAP/avg": r["avg"], "cmAP": r["cmap"]})
        for tag, value in values.items():
            expected.setdefault(tag, []).append((r["epoch"], pytest.approx(value, rel=1e-6, abs=1e-6)))
    return expected


def test_tensorboard_logs_every_loss_term_and_map_per_epoch(tiny_root, tmp_path):
    train.run(_config(tiny_root, tmp_path / "a", epochs=3, eval_every=2, tensorboard=True))
    scalars = _tensorboard_scalars(tmp_path / "a")
    assert set(scalars) == {"loss/total", "loss/fore", "loss/back", "loss/att", "loss/spl", "mAP/avg", "cmAP",
                            *(f"mAP/0.{i}" for i in range(1, 8))}
    assert scalars == _expected_scalars(_metrics(tmp_path / "a"))
    assert [step for step, _ in scalars["mAP/avg"]] == [2, 3]


def test_a_resumed_run_logs_each_epoch_once_and_may_turn_tensorboard_on(tiny_root, tmp_path, monkeypatch):
    out = tmp_path / "a"
    crash_at_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):  # epochs 1-2 logged, checkpoint at epoch 1 only
        train.run(_config(tiny_root, out, epochs=3, checkpoint_every=2, tensorboard=True))
    monkeypatch.undo()  # the crash no more
    train.run(_config(tiny_root, out, epochs=3, checkpoint_every=2, tensorboard=True), resume=True)
    assert _tensorboard_scalars(out) == _expected_scalars(_metrics(out))

    other = tmp_path / "b"
    train.run(_config(tiny_root, other, epochs=1))
    train.run(_config(tiny_root, other, epochs=2, tensorboard=True), resume=True)
    assert _tensorboard_scalars(other) == _expected_scalars(_metrics(other))


def test_tensorboard_missing_is_one_line_before_any_work(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    assert train.main(_main_args(tiny_root, tmp_path / "a", "--tensorboard")) == 2
    assert capsys.readouterr().err == "error: --tensorboard needs the tensorboard package: pip install tensorboard\n"
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("n_videos, per_step", [(8, 3), (10, 10), (7, 10), (20, 6), (1, 4)])
def test_steps_count_videos_across_epochs(n_videos, per_step):
    """The official loop steps after every per_step-th video of the run, whatever the epoch: the
    pieces of successive epochs chain into steps of exactly per_step videos, a piece never spans
    a step, and the videos of a last open step are never stepped."""
    epochs, stepped, open_step = 6, [], 0
    for epoch in range(epochs):
        pieces = train.step_chunks(epoch * n_videos, n_videos, per_step)
        assert [p[0] for p in pieces] == [0] + [p[1] for p in pieces[:-1]] and pieces[-1][1] == n_videos
        for start, end, completes_step in pieces:
            open_step += end - start
            assert open_step <= per_step
            if completes_step:
                stepped.append(open_step)
                open_step = 0
    assert stepped == [per_step] * (epochs * n_videos // per_step)
    assert open_step == epochs * n_videos % per_step


def test_the_held_out_pick_breaks_ties_of_the_detection_map_by_the_classification_map():
    def record(epoch, avg, cmap):
        return {"epoch": epoch, "avg": 0.0, "held_out": {"avg": avg, "cmap": cmap}}

    none_localized = [record(5, 0.0, 10.0), record(10, 0.0, 30.0), record(15, 0.0, 30.0), {"epoch": 16}]
    assert metrics.held_out_best(none_localized)["epoch"] == 10  # the first of the best
    assert metrics.held_out_best([record(5, 1.0, 0.0), record(10, 0.5, 99.0)])["epoch"] == 5  # mAP first
    assert metrics.held_out_best([{"epoch": 1, "avg": 3.0}]) is None
