"""What a sweep runs: --grid cells named by the keys they change, typed and checked by the config's
own rules; --seeds ranges; repeats refused with one error line; --shard shares that cover each cell once."""
import json
from pathlib import Path

import pytest

from rsnet import ablate
from rsnet.config import Config, to_dict
from rsnet.errors import UserError
from rsnet.sweep.grid import parse_grid, parse_seeds, parse_shard, shard


@pytest.fixture
def fake_training(monkeypatch):
    """ablate's train_cell replaced by one that writes a finished run whose score comes from its keys."""
    trained = []

    def fake_train_cell(cfg, env):
        trained.append(Path(cfg.out).name)
        out = Path(cfg.out)
        (out / "config.json").write_text(json.dumps(to_dict(cfg)))
        score = 1000 * cfg.lr + cfg.em_iters + cfg.seed / 10
        (out / "metrics.jsonl").write_text(json.dumps({"epoch": cfg.epochs, "avg": score}) + "\n")

    monkeypatch.setattr(ablate, "train_cell", fake_train_cell)
    return trained


def test_seeds_take_ranges_and_lists_in_order():
    assert parse_seeds(["0-3"]) == [0, 1, 2, 3]
    assert parse_seeds(["5", "1,2", "8-9"]) == [5, 1, 2, 8, 9]


@pytest.mark.parametrize("tokens, message", [
    (["0-3", "2", "3"], "--seeds repeats 2, 3: each seed may count once"),
    (["3-1"], "--seeds takes seeds and ranges (0 1 2, 0-7), got '3-1'"),
    (["x"], "--seeds takes seeds and ranges (0 1 2, 0-7), got 'x'"),
])
def test_bad_or_repeated_seeds_are_refused_by_name(tokens, message):
    with pytest.raises(UserError) as error:
        parse_seeds(tokens)
    assert str(error.value) == message


def test_a_grid_is_every_combination_named_as_typed_with_the_configs_types():
    variants = parse_grid(["lr=1e-4,5e-4", "n-representatives=4,16", "intra=true"], Config())
    assert [v.name for v in variants] == [
        "lr=1e-4 n_representatives=4 intra=true", "lr=1e-4 n_representatives=16 intra=true",
        "lr=5e-4 n_representatives=4 intra=true", "lr=5e-4 n_representatives=16 intra=true"]
    assert variants[1].switches == {"lr": 1e-4, "n_representatives": 16, "intra": True}
    # the folder names the keys a cell changes, as the studies' do: intra is the default already
    assert ablate.cell_folder(Path("s"), Config(), variants[1], 3) == Path("s/lr-0.0001_n-representatives-16-seed3")


@pytest.mark.parametrize("tokens, message", [
    (["lr=1e-4,0.0001"], "--grid lr repeats 0.0001 (given as 1e-4, 0.0001)"),
    (["lr=1e-4", "lr=2e-4"], "--grid names lr more than once"),
    (["lr"], "--grid takes KEY=VALUE,VALUE,..."),
    (["lr=1e-4,"], "--grid takes KEY=VALUE,VALUE,..."),
    (["seed=1,2"], "--grid cannot sweep seed: --seeds gives it"),
    (["learning_rate=1"], "unknown config key(s) in --grid: learning_rate"),  # rsnet.config's own errors
    (["em_iters=2.5"], "em_iters (--em-iters) in --grid expects int, got '2.5'"),
    (["lr=0"], "--lr must be > 0, got 0.0"),
    (["representatives=topk", "n_representatives=3,4"], "--n-representatives must be even, got 3"),
])
def test_bad_grids_are_refused_before_anything_trains(tokens, message):
    with pytest.raises(UserError, match=None) as error:
        parse_grid(tokens, Config())
    assert message in str(error.value)


def test_the_command_refuses_repeats_with_one_error_line(tmp_path, fake_training, capsys):
    assert ablate.main(["--grid", "em_iters=1,2", "--seeds", "0-2", "1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --seeds repeats 1: each seed may count once\n"
    assert ablate.main(["--grid", "em_iters=1,2,1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: --grid em_iters repeats 1 (given as 1, 2, 1)\n"
    assert fake_training == []


def test_shards_cover_every_cell_once_and_the_last_one_writes_the_table(tmp_path, fake_training, capsys):
    flags = ["--grid", "em_iters=1,2,3", "lr=1e-4,2e-4", "--seeds", "0", "1", "--epochs", "2", "--out", str(tmp_path)]
    assert ablate.main([*flags, "--shard", "1/2"]) == 0
    first = list(fake_training)
    assert "6 of 12 cells are not finished" in capsys.readouterr().out and not (tmp_path / "grid.md").exists()
    assert ablate.main([*flags, "--shard", "2/2"]) == 0
    second = fake_training[len(first):]
    assert len(first) == len(second) == 6 and not set(first) & set(second)
    assert sorted(first + second) == sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    table = capsys.readouterr().out
    assert "| em_iters=3 lr=2e-4 | 3.2 | 3.3 | 3.2 ± 0.1 | 3.2 ± 0.1 |" in table  # 0.2 + 3 + seed / 10
    assert (tmp_path / "grid.md").read_text() == table
    assert ablate.main([*flags, "--shard", "1/2"]) == 0 and len(fake_training) == 12, "finished cells never rerun"


def test_shares_are_every_nth_cell():
    cells = list(range(7))
    assert [shard(cells, parse_shard(f"{k}/3")) for k in (1, 2, 3)] == [[0, 3, 6], [1, 4], [2, 5]]
    for bad in ("0/2", "3/2", "1-2", "1/0"):
        with pytest.raises(UserError, match="--shard takes K/N"):
            parse_shard(bad)
