"""ActivityNet1.2 end to end: its defaults and their precedence, its protocol in a training run."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import pytest
from helpers import crash_at_epoch

from rsnet import checkpoint, infer, metrics, synthetic, train
from rsnet.config import DATASET_DEFAULTS, Config, ConfigError, add_config_arguments, build_config
from rsnet.errors import UserError
from rsnet.evaluate import ACTIVITYNET_IOUS
from rsnet.synthetic import SyntheticSpec, generate

ANET = ["--data-root", "/data", "--dataset", "ActivityNet1.2"]
# the RSKP authors' ActivityNet1.2 settings (LeonHLJ/RSKP issue #3) and the codebases' sampling and protocol
AUTHORS = {"dropout": 0.7, "lr": 2e-5, "weight_decay": 1e-3, "scale": 10.0, "n_representatives": 8, "em_iters": 2,
           "fuse_main": 0.8, "fuse_intra": 0.2, "back_weight": 0.1, "att_weight": 0.1, "spl_weight": 1.0,
           "max_seqlen": 60, "protocol": "anet"}


def _parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser)
    return build_config(parser.parse_args(argv))


def _values(cfg: Config, keys) -> dict:
    return {k: getattr(cfg, k) for k in keys}


def test_the_dataset_flag_alone_applies_the_activitynet_defaults():
    assert _values(_parse(ANET), AUTHORS) == AUTHORS
    assert DATASET_DEFAULTS["ActivityNet1.2"] == AUTHORS


def test_thumos14_keeps_the_official_defaults():
    cfg = _parse(["--data-root", "/data"])
    assert (cfg.dropout, cfg.lr, cfg.scale, cfg.max_seqlen, cfg.protocol) == (0.6, 5e-5, 20.0, 0, "rskp")


def test_a_config_file_overrides_the_dataset_defaults_and_flags_override_the_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 1e-4, "max_seqlen": 90, "dropout": 0.5}))
    cfg = _parse(ANET + ["--config", str(path), "--dropout", "0.4"])
    assert (cfg.lr, cfg.max_seqlen, cfg.dropout, cfg.scale) == (1e-4, 90, 0.4, 10.0)


def test_a_dataset_named_in_the_config_file_brings_its_defaults(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"dataset": "ActivityNet1.2", "data_root": "/data"}))
    assert _values(_parse(["--config", str(path)]), AUTHORS) == AUTHORS
    assert _parse(["--config", str(path), "--dataset", "Thumos14reduced"]).protocol == "rskp"  # the flag's dataset


@pytest.mark.parametrize("flag, value", [("--max-seqlen", "-1"), ("--protocol", "voc")])
def test_a_sampling_or_protocol_out_of_range_is_named(flag, value):
    with pytest.raises(ConfigError, match=f"^{flag} must be"):
        _parse(ANET + [flag, value])


def test_a_synthetic_preset_of_another_dataset_is_refused():
    with pytest.raises(ConfigError, match="--preset default generates Thumos14reduced, not --dataset ActivityNet1.2"):
        _parse(["--dataset", "ActivityNet1.2"])


# --- end to end on a tiny synthetic ActivityNet1.2 ---------------------------------------------------

# 12 training and 8 validation videos of ActivityNet's statistics, a tenth of the real length
TINY_ANET = SyntheticSpec(dataset="ActivityNet1.2", n_train=12, n_test=8, length_scale=0.1)
FAST = ["--epochs", "3", "--warmup-epochs", "1", "--eval-every", "1", "--embed-dim", "32", "--videos-per-step", "4",
        "--max-seqlen", "6", "--device", "cpu"]


@pytest.fixture(scope="module")
def anet_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("anet"), TINY_ANET, seed=3)


def _train(root, out, *flags):
    assert train.main(["--data-root", str(root), "--dataset", "ActivityNet1.2", "--out", str(out), *FAST, *flags]) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_on_activitynet_reports_its_protocol_and_resumes_exactly(anet_root, tmp_path, monkeypatch):
    records = _train(anet_root, tmp_path / "straight")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert r["protocol"] == "anet" and r["iou"] == list(ACTIVITYNET_IOUS) and len(r["dmap"]) == 10
        assert r["avg"] == pytest.approx(sum(r["dmap"]) / 10) and 0 <= r["cmap"] <= 100
    table = (tmp_path / "straight" / "results.md").read_text()
    assert "| mAP@0.5 | mAP@0.55 |" in table and "| mAP@0.95 | avg | cmAP |" in table
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert (saved["protocol"], saved["max_seqlen"], saved["lr"], saved["scale"]) == ("anet", 6, 2e-5, 10.0)

    crash_at_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _train(anet_root, tmp_path / "resumed")
    monkeypatch.undo()  # the crash no more
    assert _train(anet_root, tmp_path / "resumed", "--resume") == records


def test_the_activitynet_presets_train_on_their_own_dataset():
    for preset in ("activitynet1.2-synthetic", "activitynet1.2-synthetic-small"):
        cfg = _parse(["--preset", preset])
        assert cfg.dataset == "ActivityNet1.2" == synthetic.PRESETS[preset].spec.dataset
        assert (cfg.protocol, cfg.dropout, cfg.scale) == ("anet", 0.7, 10.0)  # the dataset's defaults under the preset
    small = _parse(["--preset", "activitynet1.2-synthetic-small"])
    assert (small.max_seqlen, small.lr) == (12, 2e-4)  # the preset over the dataset's defaults
    assert _parse(["--preset", "activitynet1.2-synthetic-small", "--max-seqlen", "0"]).max_seqlen == 0  # flags over both


def test_a_run_saved_before_the_sampling_and_protocol_keys_existed_resumes(anet_root, tmp_path):
    """A checkpoint whose config lacks max_seqlen and protocol held their defaults (whole videos, rskp)."""
    out = tmp_path / "old"
    flags = ["--max-seqlen", "0", "--protocol", "rskp", "--epochs", "1"]
    _train(anet_root, out, *flags)
    state = checkpoint.load_run(out / "checkpoint.pt")
    for key in ("max_seqlen", "protocol"):
        del state["config"][key]
    checkpoint.save_atomic(state, out / "checkpoint.pt")
    assert [r["epoch"] for r in _train(anet_root, out, *flags[:-2], "--epochs", "2", "--resume")] == [1, 2]
    with pytest.raises(UserError, match="max_seqlen"):  # the dataset's 60 is not what the run did
        train.run(dataclasses.replace(_parse(["--data-root", str(anet_root), "--dataset", "ActivityNet1.2",
                                               "--out", str(out), *FAST, "--protocol", "rskp", "--max-seqlen", "60"]),
                                      epochs=3), resume=True)


def test_held_out_training_videos_pick_an_epoch_without_the_test_split(anet_root, tmp_path):
    out = tmp_path / "held"
    records = _train(anet_root, out, "--val-fraction", "0.25")
    for r in records:
        held = r["held_out"]
        assert held["protocol"] == "anet" and held["iou"] == list(ACTIVITYNET_IOUS) and 0 <= held["cmap"] <= 100
    picked = metrics.held_out_best(records)
    assert picked["held_out"]["avg"] == max(r["held_out"]["avg"] for r in records)
    saved = checkpoint.load_run(out / train.HELD_OUT_BEST)
    assert saved["epoch"] == picked["epoch"] and saved["metrics"] == records[:picked["epoch"]]
    table = (out / "results.md").read_text().splitlines()
    assert len(table) == 5 and table[4].startswith(f"| best on the held-out training videos (their avg "
                                                    f"{picked['held_out']['avg']:.2f}) | {picked['epoch']} |")
    straight = _train(anet_root, tmp_path / "plain")  # the held-out videos do not train
    assert [r["losses"] for r in straight] != [r["losses"] for r in records]
    assert all("held_out" not in r for r in straight)
    assert not (tmp_path / "plain" / train.HELD_OUT_BEST).exists()
    _train(anet_root, out, "--overwrite")  # a new run in the folder leaves no held-out checkpoint of the old one
    assert not (out / train.HELD_OUT_BEST).exists()


def test_detections_of_an_activitynet_run_use_its_protocol_proposals(anet_root, tmp_path, monkeypatch):
    """rsnet.infer proposes as the checkpoint's protocol does: anet also proposes each video's best
    class when no class reaches the threshold (here raised above every score), rskp nothing then."""
    _train(anet_root, tmp_path / "run", "--epochs", "1")
    monkeypatch.setattr(sys.modules["rsnet.evaluate.proposals"], "CLASS_THRESHOLD", 1.01)
    written = {}
    for protocol in (None, "anet", "rskp"):
        out = tmp_path / f"{protocol}.json"
        flags = [] if protocol is None else ["--protocol", protocol]
        assert infer.main(["--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--out", str(out), *flags]) == 0
        written[protocol] = json.loads(out.read_text())["results"]
    assert written[None] == written["anet"]
    assert all(len({d["label"] for d in dets}) == 1 for dets in written["anet"].values())  # the best class only
    assert sum(map(len, written["anet"].values())) > 0 == sum(map(len, written["rskp"].values()))
