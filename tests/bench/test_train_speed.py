"""bench/train_speed.py's data: ActivityNet1.2's shape (counts, classes, the trainer's 60-snippet
sampling, whole test videos), THUMOS14's draws as before --dataset, and a whole small run.

The benchmark is imported as the module it runs as (python -m bench.NAME). Times are the
benchmark's business; these tests check what it times.
"""
import json

import numpy as np
import pytest
import torch

from bench import train_speed  # noqa: E402
from rsnet.data import check_lengths

DIM = 3  # the features' width: the shape of the data is under test, not the model


def resident(dataset: str, scale: float):
    """The benchmark's dataset of ``--dataset`` at ``scale``, with narrow features, and its lengths."""
    cfg = train_speed.bench_config(dataset, "cpu")
    ann, train_idx, test_idx, lengths, _ = train_speed.SPLITS[dataset](scale, 0)
    features = train_speed.make_features(lengths, list(train_idx) + list(test_idx), DIM, "cpu", 0)
    return train_speed.ResidentDataset(cfg, ann, train_idx, test_idx, features), lengths


@pytest.fixture(scope="module")
def anet():
    return resident("activitynet1.2", 0.02)


def test_activitynet_counts_and_classes(anet):
    dataset, lengths = anet
    assert dataset.n_classes == 100 and len(dataset.annotations.class_names) == 100
    assert len(dataset.train_indices) == round(4819 * 0.02) and len(dataset.test_indices) == round(2383 * 0.02)
    assert len(dataset.annotations) == 4819 + 2383  # drawn whole, then sampled, as THUMOS14's
    assert set(np.flatnonzero(dataset.annotations.video_labels[dataset.train_indices].sum(0))) <= set(range(100))
    assert (dataset.annotations.video_labels[dataset.train_indices].sum(1) >= 1).all()
    # the durations of rsnet.synthetic's ActivityNet1.2 table (2.3 to 239 s), not scaled
    snippets = np.array([lengths[int(i)] for i in dataset.train_indices])
    assert snippets.max() > 60 and snippets.max() <= int(239.0 * 25 / 16)
    check_lengths(dataset.annotations, dataset.test_indices, [lengths[int(i)] for i in dataset.test_indices],
                  25 / 16, "features")


def test_activitynet_model_settings():
    cfg = train_speed.bench_config("activitynet1.2", "cpu")
    assert (cfg.dataset, cfg.max_seqlen, cfg.protocol, cfg.scale, cfg.lr) == ("ActivityNet1.2", 60, "anet", 10.0, 2e-5)


def test_activitynet_trains_on_60_snippets_and_tests_whole_videos(anet, monkeypatch):
    dataset, lengths = anet
    pieces = [n for batch in dataset.train_batches(0, 0, 10) for n in batch.varlen.lengths]
    whole = [lengths[int(i)] for i in dataset.train_order(0, 0)]
    assert pieces == [min(n, 60) for n in whole] and max(whole) > 60

    seen = []  # the official-style loop sees the same pieces

    class Seen(Exception):
        pass

    def step_loss(model, videos, labels):
        seen.extend(len(v) for v in videos)
        raise Seen

    monkeypatch.setattr(train_speed.official_rskp, "step_loss", step_loss)
    with pytest.raises(Seen):
        train_speed.official_epoch(torch.nn.Identity(), None, dataset, 0, 0, 10)
    assert seen == pieces[:10]

    tested = [n for batch in dataset.test_batches(32) for n in batch.varlen.lengths]
    assert tested == [lengths[int(i)] for i in dataset.test_indices] and max(tested) > 60


@pytest.mark.parametrize("scale, counts, snippets, first, labelled", [
    (1.0, (200, 212), (65211, 69226), ([0, 1, 2, 3, 4], [47, 193, 117, 527, 133]), 237),
    (0.4, (80, 85), (10747, 11539), ([1, 14, 16, 18, 19], [77, 107, 114, 40, 60]), 101),
])
def test_thumos_default_unchanged(scale, counts, snippets, first, labelled):
    """The THUMOS14 draws of the benchmark before --dataset (seed 0), trained on whole videos."""
    dataset, lengths = resident("thumos14", scale)
    train_idx, test_idx = dataset.train_indices, dataset.test_indices
    assert (len(train_idx), len(test_idx)) == counts and dataset.n_classes == 20
    assert tuple(sum(lengths[int(i)] for i in ix) for ix in (train_idx, test_idx)) == snippets
    assert (train_idx[:5].tolist(), [lengths[int(i)] for i in train_idx[:5]]) == first
    assert int(dataset.annotations.video_labels[train_idx].sum()) == labelled
    assert train_speed.bench_config("thumos14", "cpu") == train_speed.Config(device="cpu")
    pieces = [n for batch in dataset.train_batches(0, 0, 10) for n in batch.varlen.lengths]
    assert pieces == [lengths[int(i)] for i in dataset.train_order(0, 0)]
    # a shortened video's ground truth is shortened with it: the evaluation accepts its CAS
    check_lengths(dataset.annotations, test_idx, [lengths[int(i)] for i in test_idx], 25 / 16, "CAS")


@pytest.mark.slow  # a whole small run, official-style and ours: ~10 s
def test_activitynet_run(tmp_path, capsys):
    """A whole small run: official-style and reference epochs, the checkpoint, the test pass and the
    anet evaluation, each a row without an error."""
    out = tmp_path / "anet.json"
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        assert train_speed.main(["--device", "cpu", "--dataset", "activitynet1.2", "--scale", "0.001", "--modes",
                                 "official,reference", "--phases", "warmup", "--json", str(out)]) == 0
    finally:  # main sets them for the process, as rsnet.train.run does
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    result = json.loads(out.read_text())
    rows = {(r["section"], r["mode"]): r for r in result["rows"]}
    assert result["meta"]["dataset"] == "activitynet1.2" and "100 classes" in result["meta"]["size"]
    assert not [r for r in result["rows"] if r.get("error")]
    assert {("epoch, warm-up", "official"), ("epoch, warm-up", "reference"), ("checkpoint save", "reference"),
            ("test pass", "reference"), ("evaluation", "rsnet.evaluate")} <= set(rows)
    for section in ("epoch, warm-up", "test pass"):  # the embedding's GEMMs alone, beside the implementations
        floor = rows[(section, "GEMM floor")]["ms"]
        assert 0 < floor < rows[(section, "reference")]["ms"], (section, floor)
    assert ("epoch, after warm-up", "GEMM floor") not in rows  # only the phases timed
    printed = {line.split(" | ")[1]: line.split(" | ") for line in capsys.readouterr().out.splitlines()
               if line.startswith("| test pass | ")}
    assert float(printed["reference"][5]) > 1.0 and printed["GEMM floor"][5] == "1.00"  # x floor, beside each row
    assert "host memory: freed blocks kept for reuse" in " ".join(result["meta"]["notes"])
    assert rows[("evaluation", "official")]["note"].startswith("protocol anet")
    assert "largest |diff| vs official 0.0e+00" in rows[("evaluation", "rsnet.evaluate")]["note"]
    assert all(r["target"] == "" for r in result["rows"])  # THUMOS14's targets are not ActivityNet's
    assert "training speed on activitynet1.2 data" in train_speed.summary([result])
