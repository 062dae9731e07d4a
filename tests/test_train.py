"""End to end: training writes its metrics, is deterministic, and resumes exactly after a crash."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from rsnet import train
from rsnet.data import WTALCDataset
from rsnet.inference import predict_split
from rsnet.config import Config
from rsnet.synthetic import SyntheticSpec, generate

TINY = SyntheticSpec(n_train=8, n_test=6, length_scale=0.15)


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

    real_epoch = train.Trainer.train_epoch

    def crash_in_epoch_two(self, epoch, progress=None):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch, progress)

    monkeypatch.setattr(train.Trainer, "train_epoch", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train.run(_config(tiny_root, tmp_path / "resumed"))
    monkeypatch.setattr(train.Trainer, "train_epoch", real_epoch)
    train.run(_config(tiny_root, tmp_path / "resumed"), resume=True)

    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "straight")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name


def test_resume_refuses_a_changed_config(tiny_root, tmp_path):
    train.run(_config(tiny_root, tmp_path / "a", epochs=1))
    with pytest.raises(ValueError, match="lr"):
        train.run(_config(tiny_root, tmp_path / "a", epochs=2, lr=1e-3), resume=True)


def test_resume_without_checkpoint_is_a_clear_error(tiny_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train.run(_config(tiny_root, tmp_path / "empty"), resume=True)


def test_predict_split_equals_one_video_at_a_time(tiny_root):
    """The batched test pass (one copy back per split) gives each video what predicting it alone gives."""
    dataset = WTALCDataset(tiny_root)
    trainer = train.Trainer(_config(tiny_root, "unused"), dataset, torch.device("cpu"))
    scores, cas = predict_split(trainer.model, dataset, torch.device("cpu"), batch_size=3)
    assert len(cas) == len(dataset.test_indices) == scores.shape[0]
    trainer.model.eval()  # as predict_split runs it (no dropout)
    for row, video in enumerate(dataset.test_indices):
        alone = dataset.pack([video])
        video_scores, video_cas = trainer.model.predict(alone.x, alone.cu_seqlens)
        assert np.allclose(scores[row], video_scores[0].numpy(), rtol=1e-5, atol=1e-7)
        assert cas[row].shape == tuple(video_cas.shape)
        assert np.allclose(cas[row], video_cas.numpy(), rtol=1e-5, atol=1e-7)
