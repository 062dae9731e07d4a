import argparse
import json

import pytest
import torch

from rs_kernels._dispatch import resolve_impl
from rsnet import train
from rsnet.config import Config, ConfigError, add_config_arguments, build_config
from rsnet.presets import PRESETS


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
    assert _parse([]).epochs == PRESETS["default"].overrides["epochs"]


@pytest.mark.parametrize("text", ["data_root: null\n", "data_root:\n"])
def test_a_null_data_root_in_the_file_keeps_the_synthetic_preset(tmp_path, text):
    """data_root: null is no data root: the synthetic preset's overrides apply, as without the key."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = _parse(["--config", str(path)])
    assert cfg.data_root is None and cfg == _parse([])
    assert (cfg.lr, cfg.lenient, cfg.eval_every) == (PRESETS["default"].overrides["lr"], True, PRESETS["default"].overrides["eval_every"])


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
    with pytest.raises(ConfigError, match="--walk-weight"):
        _parse(["--walk-weight", "1.5"])
    with pytest.raises(ConfigError, match="--memory-bank needs --intra"):
        _parse(["--no-intra"])


# one value out of range per checked key, as typed on the command line
OUT_OF_RANGE = [
    ("--lr", "-1"), ("--lr", "0"), ("--lr", "nan"), ("--lr", "inf"), ("--epochs", "0"), ("--warmup-epochs", "-1"),
    ("--eval-every", "0"), ("--videos-per-step", "0"), ("--test-batch-size", "0"), ("--checkpoint-every", "0"),
    ("--weight-decay", "-0.1"), ("--feature-dim", "0"), ("--embed-dim", "0"), ("--dropout", "1"),
    ("--scale", "0"), ("--tau", "-5"), ("--em-iters", "0"), ("--n-representatives", "0"), ("--walk-weight", "-0.5"),
    ("--bank-slots", "0"), ("--back-weight", "-1"), ("--att-weight", "-1"), ("--inter-weight", "-1"),
    ("--spl-weight", "-1"), ("--spl-weight-after-warmup", "-1"), ("--spl-temperature", "0"),
    ("--pseudo-inter-mix", "1.5"), ("--fuse-main", "-1"), ("--fuse-intra", "-1"), ("--seed", "-1"),
    ("--data-seed", "-1"), ("--dataset", "Thumos15"), ("--ops", "cuda"), ("--embed-precision", "fp16"),
    ("--device", "gpu"),
]


@pytest.mark.parametrize("flag, value", OUT_OF_RANGE)
def test_every_value_out_of_range_is_named_by_its_flag(flag, value):
    with pytest.raises(ConfigError, match=f"^{flag} must be"):
        _parse(["--data-root", "/d", flag, value])


def test_betas_out_of_range():
    with pytest.raises(ConfigError, match=r"^--betas must be two numbers in \[0, 1\)"):
        _parse(["--betas", "0.9", "1.0"])


def test_a_value_of_the_wrong_type_names_its_flag(capsys):
    """--lr abc used to fail with "could not convert string to float", naming no flag."""
    with pytest.raises(SystemExit) as exit_:
        train.main(["--lr", "abc"])
    assert exit_.value.code == 2
    assert "error: argument --lr: invalid float value: 'abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--epochs", "2.5"])
    assert "argument --epochs: invalid int value: '2.5'" in capsys.readouterr().err


def test_a_config_file_value_of_the_wrong_type_names_its_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: abc\n")
    with pytest.raises(ConfigError, match=f"lr \\(--lr\\) in {path} expects float, got 'abc'"):
        _parse(["--config", str(path)])
    path.write_text("epochs: 2.5\n")
    with pytest.raises(ConfigError, match="epochs"):
        _parse(["--config", str(path)])
    for number in ("epochs", "lr"):  # YAML's true is a bool, not the number 1
        path.write_text(f"{number}: true\n")
        with pytest.raises(ConfigError, match=f"{number} \\(--{number}\\) in {path} expects (int|float), got True"):
            _parse(["--config", str(path)])
    path.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        _parse(["--config", str(path)])


@pytest.mark.parametrize("value", ["5", "[0]", "0", "1", "'maybe'", "null-ish"])
def test_a_boolean_key_takes_only_booleans(tmp_path, value):
    """`intra: 5` and `intra: [0]` used to be read as True (bool() of anything)."""
    path = tmp_path / "c.yaml"
    path.write_text(f"intra: {value}\n")
    with pytest.raises(ConfigError, match=f"intra \\(--intra\\) in {path} expects bool"):
        _parse(["--config", str(path)])
    for word, meant in (("true", True), ("no", False), ("'False'", False)):
        path.write_text(f"intra: {word}\nmemory_bank: false\n")
        assert _parse(["--config", str(path)]).intra is meant


def test_a_value_out_of_range_stops_before_any_data_loads(tmp_path, capsys):
    """--lr -1 used to fail only after the dataset loaded, inside Adam."""
    argv = ["--lr", "-1", "--data-root", str(tmp_path / "no-data"), "--out", str(tmp_path / "run")]
    assert train.main(argv) == 2
    assert capsys.readouterr().err == "error: --lr must be > 0, got -1.0\n"
    assert not (tmp_path / "run").exists()


def test_config_default_instance_is_valid():
    assert Config().ops == "auto"


def test_help_states_what_ops_auto_picks_on_each_device():
    """``--ops auto`` resolves per device (rs_kernels._dispatch): the flag's help says to what."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "auto (the default) is triton on CUDA and reference on a CPU" in text
    assert resolve_impl("auto", torch.zeros(1)) == "reference"
