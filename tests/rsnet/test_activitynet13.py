"""ActivityNet1.3: its settings (the RSKP authors' and ACM-Net's train and test strategy), its
synthetic presets in the JSON layout, and a run on ActivityNet1.3-format data end to end (train,
infer, and the evaluate command the run prints giving the run's own numbers)."""
from __future__ import annotations

import argparse
import json
import shlex

import pytest

from rsnet import evaluate, infer, train
from rsnet.config import ACTIVITYNET_AUTHORS, DATASET_DEFAULTS, ConfigError, add_config_arguments, build_config
from rsnet.evaluate import ACTIVITYNET_IOUS
from rsnet.presets import PRESETS, SyntheticSpec, json_layout_files
from rsnet.synthetic import generate
from rsnet.synthetic.statistics import activitynet_classes

JSON = ["--annotations", "gt.json", "--features", "features/"]


def _parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser)
    return build_config(parser.parse_args(argv))


def test_the_dataset_flag_applies_the_authors_and_acm_nets_settings():
    cfg = _parse(JSON + ["--dataset", "ActivityNet1.3"])
    assert {k: getattr(cfg, k) for k in ACTIVITYNET_AUTHORS} == ACTIVITYNET_AUTHORS
    assert (cfg.max_seqlen, cfg.protocol, cfg.fps, cfg.frames_per_snippet) == (75, "anet", 25.0, 16.0)
    assert DATASET_DEFAULTS["ActivityNet1.2"] == {**ACTIVITYNET_AUTHORS, "max_seqlen": 60, "protocol": "anet"}


def test_json_annotations_without_a_dataset_are_ones_own_with_the_official_settings():
    cfg = _parse(JSON)
    assert (cfg.dataset, cfg.lr, cfg.max_seqlen, cfg.protocol) == ("custom", 5e-5, 0, "rskp")
    assert _parse(JSON + ["--dataset", "Thumos14reduced"]).dataset == "Thumos14reduced"


@pytest.mark.parametrize("argv, message", [
    (["--data-root", "/data", "--dataset", "ActivityNet1.3"], "ActivityNet1.3 comes as --annotations FILE.json"),
    (["--annotations", "gt.json"], "--annotations needs --features"),
    (JSON + ["--data-root", "/data"], "--data-root .a W-TALC folder. and --annotations/--features"),
    (["--data-root", "/data", "--classes", "c.txt"], "--classes applies to --annotations FILE.json"),
    (JSON + ["--fps", "0"], "--fps must be > 0"),
])
def test_a_layout_that_means_nothing_is_refused(argv, message):
    with pytest.raises(ConfigError, match=message):
        _parse(argv)


def test_the_activitynet13_presets_are_its_sizes_in_the_json_layout():
    full, small = PRESETS["activitynet1.3-synthetic"], PRESETS["activitynet1.3-synthetic-small"]
    assert (full.spec.n_train, full.spec.n_test, full.spec.layout, full.spec.feature_store) == (10024, 4926, "json", True)
    assert small.spec.layout == "json" and small.spec.n_train == 2 * 200
    for name in ("activitynet1.3-synthetic", "activitynet1.3-synthetic-small"):
        assert _parse(["--preset", name]).dataset == "ActivityNet1.3" == PRESETS[name].spec.dataset


TINY = SyntheticSpec(dataset="ActivityNet1.3", n_train=12, n_test=8, length_scale=0.1, feature_store=True,
                     layout="json")
FAST = ["--epochs", "2", "--warmup-epochs", "1", "--eval-every", "1", "--embed-dim", "32", "--videos-per-step", "4",
        "--max-seqlen", "6", "--device", "cpu"]


def test_a_run_on_activitynet13_format_data_trains_infers_and_scores_itself(tmp_path, capsys):
    root = generate(tmp_path / "data", TINY, seed=1)
    annotations, features = json_layout_files(root / "ActivityNet1.3")
    classes = tmp_path / "classes.txt"  # 20 videos use 20 of the 200 classes: the file keeps all 200, in order
    classes.write_text("".join(f"{c}\n" for c in activitynet_classes("ActivityNet1.3")))
    out = tmp_path / "run"
    assert train.main(["--annotations", str(annotations), "--features", str(features), "--classes", str(classes),
                       "--dataset", "ActivityNet1.3", "--out", str(out), *FAST]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["protocol"] == "anet" and r["iou"] == list(ACTIVITYNET_IOUS) for r in records)
    capsys.readouterr()
    assert infer.main(["--checkpoint", str(out), "--out", str(tmp_path / "p.npz"), "--device", "cpu"]) == 0
    command = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
    assert command[:3] == ["python", "-m", "rsnet.evaluate"] and "--classes" in command
    assert evaluate.command.main([*command[3:], "--out", str(tmp_path / "r.json")]) == 0
    scored = json.loads((tmp_path / "r.json").read_text())
    assert scored["dmap"] == pytest.approx(records[-1]["dmap"]) and scored["cmap"] == pytest.approx(records[-1]["cmap"])
