import argparse
import json

import pytest

from rsnet.config import PRESETS, Config, add_config_arguments, build_config


def _parse(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser)
    return build_config(parser.parse_args(argv))


def test_defaults_are_the_official_ones_when_a_data_root_is_given():
    cfg = _parse(["--data-root", "/data"])
    assert (cfg.lr, cfg.betas, cfg.weight_decay) == (5e-5, (0.9, 0.99), 5e-4)
    assert (cfg.epochs, cfg.warmup_epochs, cfg.eval_every, cfg.videos_per_step) == (200, 100, 5, 10)
    assert (cfg.n_representatives, cfg.bank_slots, cfg.em_iters, cfg.walk_weight) == (8, 5, 2, 0.5)


def test_synthetic_preset_applies_without_data_root():
    assert _parse([]).epochs == PRESETS["default"]["epochs"]


def test_command_line_overrides_file_overrides_defaults(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"lr": 1e-3, "epochs": 7, "intra": False, "memory_bank": False}))
    cfg = _parse(["--data-root", "/d", "--config", str(path), "--lr", "2e-4", "--betas", "0.8", "0.9"])
    assert (cfg.lr, cfg.epochs, cfg.intra, cfg.betas) == (2e-4, 7, False, (0.8, 0.9))


def test_yaml_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("eval_every: 3\nlenient: true\n")
    cfg = _parse(["--data-root", "/d", "--config", str(path)])
    assert cfg.eval_every == 3 and cfg.lenient is True


def test_unknown_key_in_file_is_an_error(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"learning_rate": 1e-3}))
    with pytest.raises(ValueError, match="learning_rate"):
        _parse(["--config", str(path)])


def test_unknown_flag_is_an_error():
    with pytest.raises(SystemExit):
        _parse(["--learning-rate", "1"])


def test_invalid_values_are_named():
    with pytest.raises(ValueError, match="walk_weight"):
        _parse(["--walk-weight", "1.5"])
    with pytest.raises(ValueError, match="memory_bank needs intra"):
        _parse(["--no-intra"])


def test_config_default_instance_is_valid():
    assert Config().ops == "auto"
