"""ActivityNet1.2 end to end: its defaults and their precedence, its protocol in a training run."""
from __future__ import annotations

import argparse
import json

import pytest

from rsnet.config import DATASET_DEFAULTS, Config, ConfigError, add_config_arguments, build_config

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
